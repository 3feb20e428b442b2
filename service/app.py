"""Composition root: builds the parts from settings, wires them, owns start and stop."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from dataclasses import dataclass, field

from service.adaptation.events import EventBus
from service.adaptation.loop import AdaptationService
from service.adaptation.predictions import PredictionLog
from service.api import GrpcServer, build_server
from service.api.server import ServerTls
from service.config import ServerSettings, load_model_definition
from service.drift import DriftMonitor, training_texts
from service.inference import InferenceService
from service.metrics import Metrics
from service.metrics_http import MetricsServer
from service.registry import ModelRegistry
from service.serving import ServedModel
from service.store import SQLiteStore

log = logging.getLogger(__name__)


@dataclass
class App:
    settings: ServerSettings
    metrics: Metrics = field(default_factory=Metrics)
    models: dict[str, ServedModel] = field(default_factory=dict)
    events: EventBus = field(default_factory=EventBus)
    predictions: PredictionLog = field(default_factory=PredictionLog)
    store: SQLiteStore | None = None
    adaptation: AdaptationService | None = None
    drift: DriftMonitor | None = None
    # Run the drift worker on a thread instead of a separate process (tests).
    drift_in_process: bool = False
    inference: InferenceService | None = None
    grpc: GrpcServer | None = None
    _metrics_http: MetricsServer | None = None
    _stopped: bool = False

    @property
    def grpc_port(self) -> int:
        assert self.grpc is not None, "start() first"
        return self.grpc.port

    @property
    def metrics_port(self) -> int:
        assert self._metrics_http is not None, "start() first"
        return self._metrics_http.port

    async def start(self) -> None:
        started = time.perf_counter()
        s = self.settings
        # Credentials first: a bad tokens file must stop the start before any model loads.
        tokens, metrics_auth = s.token_store(), s.metrics_auth()
        tls = None
        if s.tls_cert is not None and s.tls_key is not None:
            tls = ServerTls(s.tls_cert, s.tls_key, s.tls_client_ca)
            tls.credentials()  # reads the files: an unreadable one fails here
        for name in s.models:
            definition = load_model_definition(s.models_dir, name)
            registry = ModelRegistry(s.state_dir, name)
            served = ServedModel(
                definition, registry, self.metrics, on_predictions=self.predictions.record
            )
            await asyncio.to_thread(served.start)
            self.models[name] = served
        self.store = SQLiteStore(s.state_dir / "loopserve.db")
        store = self.store
        self.drift = DriftMonitor(
            self.models,
            s.local_dir / "drift",
            self.metrics,
            reference_texts=lambda model, info, size: training_texts(
                self.models[model].definition, store, info, size,
                self.models[model].definition.drift.seed,
            ),
            in_process=self.drift_in_process,
            log_level=s.log_level,
        )  # fmt: skip
        self.adaptation = AdaptationService(
            self.models,
            self.store,
            self.store,
            self.events,
            self.predictions,
            self.metrics,
            s.local_dir / "jobs",
            drift=self.drift,
        )
        self.drift.on_alarm = self.adaptation.drift_alarm_changed
        self.drift.on_signal = self.adaptation.drift_signal_changed
        self.adaptation.on_labeled = self.drift.forget
        for served in self.models.values():
            served.add_observer(self.drift.observe)
        self.drift.start()
        self.inference = InferenceService(self.models)
        self.grpc = build_server(
            self.inference, self.metrics, s.host, s.grpc_port, adaptation=self.adaptation,
            tokens=tokens, tls=tls,
        )  # fmt: skip
        if s.health_port is not None:
            self.grpc.add_health_port(s.host, s.health_port)
        await self.grpc.start()
        self._metrics_http = MetricsServer(
            self.metrics.registry, s.metrics_host, s.metrics_port, metrics_auth
        )
        await self.grpc.set_serving(True)
        await asyncio.to_thread(self.adaptation.recover)
        for warning in s.exposure_warnings(tokens is not None, metrics_auth is not None):
            log.warning("%s", warning)
        log.info(
            "serving %s on %s:%d (gRPC), metrics on :%d/metrics at %s; %s; ready in %.2fs",
            ", ".join(self.models), s.host, self.grpc.port, self.metrics_port, s.metrics_host,
            _security_summary(tokens is not None, tls, metrics_auth is not None),
            time.perf_counter() - started,
        )  # fmt: skip

    async def stop(self) -> None:
        """Stop taking work, let in-flight requests finish (up to ``drain_seconds``), release all."""
        if self._stopped:
            return
        self._stopped = True
        if self.grpc is not None:
            await self.grpc.set_serving(False)
        grace = self.settings.drain_seconds
        if self.inference is not None:
            # Answer new calls UNAVAILABLE ourselves and finish admitted ones before the transport
            # stops: grpcio cancels calls it has not yet handed to a handler when it stops.
            self.inference.begin_drain()
            await self.inference.wait_idle(grace)
        if self.adaptation is not None:
            # A running fine-tune is ended; its job is marked failed and retried after restart.
            await asyncio.to_thread(self.adaptation.stop, grace)
        if self.grpc is not None:
            await self.grpc.stop(grace)
        if self.drift is not None:
            await asyncio.to_thread(self.drift.stop)
        for served in self.models.values():
            await asyncio.to_thread(served.stop, self.settings.drain_seconds)
        if self.store is not None:
            self.store.close()
        if self._metrics_http is not None:
            self._metrics_http.stop()
        log.info("stopped")

    async def run_until_signal(self) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await self.start()
        await stop.wait()
        log.info("signal received: draining")
        await self.stop()


def _security_summary(has_tokens: bool, tls: ServerTls | None, metrics_auth: bool) -> str:
    transport = "plaintext" if tls is None else "mutual TLS" if tls.client_ca else "TLS"
    calls = "tokens required" if has_tokens else "no authentication"
    metrics = "metrics need credentials" if metrics_auth else "metrics open"
    return f"{transport}, {calls}, {metrics}"
