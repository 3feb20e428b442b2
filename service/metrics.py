"""Every Prometheus metric loopserve exports, registered on an injected registry.

Nothing is registered on prometheus_client's global registry, so each server (and each test)
owns its metrics. The README's metrics table lists the same names.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase

LATENCY_BUCKETS = (
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075,
    0.1, 0.2, 0.5, 1.0, 2.5, 5.0,
)  # fmt: skip
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self._children: dict[tuple[MetricWrapperBase, tuple[str, ...]], Any] = {}
        # Registered in this order, which is the order of the exposition.
        self._add_requests(self.registry)
        self._add_response_cache(self.registry)
        self._add_serving_version(self.registry)
        self._add_jobs(self.registry)
        self._add_online_accuracy(self.registry)
        self._add_drift_detectors(self.registry)
        self._add_drift_monitoring(self.registry)
        self._add_operations(self.registry)

    def child(self, metric: MetricWrapperBase, *values: str) -> Any:
        """``metric.labels(*values)``, looked up once: ``labels()`` takes a lock and builds a
        tuple, and the serving path counts each request in several series."""
        key = (metric, values)
        child = self._children.get(key)
        if child is None:  # two threads may both look it up: labels() returns the same child
            child = self._children[key] = metric.labels(*values)
        return child

    def _add_requests(self, r: CollectorRegistry) -> None:
        """ModelInfer calls: counts, latencies, batches and those in flight."""
        self.requests = Counter(
            "loopserve_requests",
            "Inference requests by model, version and gRPC status code.",
            ["model", "version", "code"],
            registry=r,
        )
        self.request_latency = Histogram(
            "loopserve_request_duration_seconds",
            "End-to-end ModelInfer latency inside the server (decode to encode).",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_latency = Histogram(
            "loopserve_queue_duration_seconds",
            "Time a request waited in the batcher queue before its batch started.",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.inference_latency = Histogram(
            "loopserve_inference_duration_seconds",
            "Time to tokenize and run one batch on ONNX Runtime.",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "loopserve_batch_size",
            "Texts per executed batch.",
            ["model"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge(
            "loopserve_in_flight_requests",
            "Inference requests admitted and not yet answered.",
            ["model"],
            registry=r,
        )

    def _add_response_cache(self, r: CollectorRegistry) -> None:
        """Answers served from a model's response cache ([serving] cache), and its size."""
        self.cache_requests = Counter(
            "loopserve_response_cache_requests",
            "ModelInfer requests looked up in the response cache, by outcome (hit, miss).",
            ["model", "outcome"],
            registry=r,
        )
        self.cache_entries = Gauge(
            "loopserve_response_cache_entries",
            "Answers kept in the response cache.",
            ["model"],
            registry=r,
        )
        self.cache_bytes = Gauge(
            "loopserve_response_cache_bytes",
            "Memory the response cache's answers take (arrays plus a fixed overhead per entry).",
            ["model"],
            registry=r,
        )

    def _add_serving_version(self, r: CollectorRegistry) -> None:
        """The batcher's queue and the serving version with its hot swaps."""
        self.queue_depth = Gauge(
            "loopserve_queue_depth",
            "Requests waiting in the batcher queue.",
            ["model"],
            registry=r,
        )
        self.current_version = Gauge(
            "loopserve_model_version",
            "Version number currently serving.",
            ["model"],
            registry=r,
        )
        self.swaps = Counter(
            "loopserve_model_swaps",
            "Hot swaps of the serving version, by outcome (ok, failed).",
            ["model", "outcome"],
            registry=r,
        )

    def _add_jobs(self, r: CollectorRegistry) -> None:
        """Samples posted and fine-tune jobs: outcomes, time, the gate and held-back versions."""
        self.samples = Counter(
            "loopserve_samples",
            "Labeled samples posted, by outcome (accepted, duplicate, rejected).",
            ["model", "outcome"],
            registry=r,
        )
        self.jobs = Counter(
            "loopserve_finetune_jobs",
            "Finished fine-tune jobs by outcome (promoted, rejected, failed, pending).",
            ["model", "outcome"],
            registry=r,
        )
        self.job_duration = Histogram(
            "loopserve_finetune_job_duration_seconds",
            "Fine-tune job wall time, from start to the promotion or rejection decision.",
            ["model"],
            buckets=(5, 10, 20, 30, 45, 60, 90, 120, 180, 300, 600, 1200),
            registry=r,
        )
        self.job_running = Gauge(
            "loopserve_finetune_job_running",
            "1 while a fine-tune job of the model runs.",
            ["model"],
            registry=r,
        )
        self.pending_versions = Gauge(
            "loopserve_pending_versions",
            "Candidate versions that passed the gate and wait for an operator's review.",
            ["model"],
            registry=r,
        )
        self.pending_verdicts = Counter(
            "loopserve_pending_verdicts",
            "Candidates the review held back for an operator (suspected poisoning).",
            ["model"],
            registry=r,
        )
        self.gate_accuracy = Gauge(
            "loopserve_gate_accuracy",
            "Accuracy in the latest gate: candidate or incumbent, on the new-data holdout or the old-data anchor.",
            ["model", "role", "dataset"],
            registry=r,
        )

    def _add_online_accuracy(self, r: CollectorRegistry) -> None:
        """Served predictions scored by later labels, and when the serving version was built."""
        self.online_labeled = Counter(
            "loopserve_online_labeled_predictions",
            "Served predictions that later received a label (delayed labels).",
            ["model", "version"],
            registry=r,
        )
        self.online_correct = Counter(
            "loopserve_online_correct_predictions",
            "Served predictions whose later label matched the predicted one.",
            ["model", "version"],
            registry=r,
        )
        self.online_accuracy = Gauge(
            "loopserve_online_accuracy",
            "Accuracy of served predictions against labels posted later, per version.",
            ["model", "version"],
            registry=r,
        )
        self.version_created = Gauge(
            "loopserve_model_version_created_timestamp_seconds",
            "Unix time at which the serving version was built.",
            ["model"],
            registry=r,
        )

    def _add_drift_detectors(self, r: CollectorRegistry) -> None:
        """Each drift detector's statistic against its threshold, and the alarms."""
        self.drift_statistic = Gauge(
            "loopserve_drift_statistic",
            "Latest test statistic of a drift detector (MMD/LSDD, or -log10 p for KS/Chi-square).",
            ["model", "detector"],
            registry=r,
        )
        self.drift_threshold = Gauge(
            "loopserve_drift_threshold",
            "The value the drift statistic must exceed to count as drift.",
            ["model", "detector"],
            registry=r,
        )
        self.drift_alarm = Gauge(
            "loopserve_drift_alarm",
            "1 while the model-level drift alarm is raised (any budgeted detector's alarm).",
            ["model"],
            registry=r,
        )
        self.drift_detector_alarm = Gauge(
            "loopserve_drift_detector_alarm",
            "1 while one drift detector's own alarm is raised (a diagnostic signal).",
            ["model", "detector"],
            registry=r,
        )
        self.drift_effect = Gauge(
            "loopserve_drift_effect",
            "Effect size of a drift detector's latest window (KS distance, Cramer's V).",
            ["model", "detector"],
            registry=r,
        )
        self.drift_traffic_rate = Gauge(
            "loopserve_drift_traffic_rate",
            "Samples per second the false-alarm budget is computed with.",
            ["model"],
            registry=r,
        )

    def _add_drift_monitoring(self, r: CollectorRegistry) -> None:
        """Label-free accuracy and the drift monitor's own workings."""
        self.estimated_accuracy = Gauge(
            "loopserve_estimated_accuracy",
            "Accuracy estimated without labels: mean calibrated confidence of recent requests.",
            ["model", "version"],
            registry=r,
        )
        self.version_held_out_accuracy = Gauge(
            "loopserve_version_held_out_accuracy",
            "Accuracy of the serving version on held-out rows when it was built (its gate).",
            ["model", "version"],
            registry=r,
        )
        self.drift_scored = Counter(
            "loopserve_drift_samples_scored",
            "Served samples a drift detector scored.",
            ["model", "detector"],
            registry=r,
        )
        self.drift_dropped = Counter(
            "loopserve_drift_samples_dropped",
            "Served samples not monitored because the drift queue was full.",
            ["model"],
            registry=r,
        )
        self.candidate_pool_bytes = Gauge(
            "loopserve_candidate_pool_bytes",
            "Bytes the labeling-candidate pool holds: inputs (each distinct image once) and "
            "their embeddings.",
            ["model"],
            registry=r,
        )
        self.drift_state = Gauge(
            "loopserve_drift_state",
            "1 for a drift detector's current state (calibrating, ready, failed), else 0.",
            ["model", "detector", "state"],
            registry=r,
        )
        self.drift_calibration_seconds = Gauge(
            "loopserve_drift_calibration_seconds",
            "Seconds the latest calibration (thresholds) of a drift detector took.",
            ["model", "detector"],
            registry=r,
        )

    def _add_operations(self, r: CollectorRegistry) -> None:
        """Scale-out, the gRPC and HTTP transports, and a full disk."""
        self.head_version = Gauge(
            "loopserve_head_version",
            "The version the shared head row names (scale-out; equals loopserve_model_version "
            "once this replica has caught up).",
            ["model"],
            registry=r,
        )
        self.head_follow = Counter(
            "loopserve_head_follow",
            "Attempts to follow a new head row, by outcome (ok, failed, unreachable).",
            ["model", "outcome"],
            registry=r,
        )
        self.trainer_lease = Gauge(
            "loopserve_trainer_lease",
            "1 while this process holds the trainer lease (runs jobs and publishes), else 0.",
            registry=r,
        )
        self.grpc_requests = Counter(
            "loopserve_grpc_requests",
            "Every gRPC call handled, by method and status code.",
            ["method", "code"],
            registry=r,
        )
        self.http_closed = Counter(
            "loopserve_http_connections_closed",
            "HTTP connections the server closed unanswered, by endpoint and reason: "
            "header_timeout, response_timeout.",
            ["endpoint", "reason"],
            registry=r,
        )
        self.disk_full = Counter(
            "loopserve_disk_full",
            "Writes refused because the disk, a quota or the database is full, by operation.",
            ["operation"],
            registry=r,
        )
