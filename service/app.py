"""Composition root: builds the parts from settings, wires them, owns start and stop.

Roles (``--role``): ``all`` serves and runs jobs in one process; a ``serving`` replica answers
calls and stores samples but never runs jobs; the ``trainer`` runs jobs while it holds the
trainer lease. With a shared (PostgreSQL) store every process follows the head row.
"""

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
from service.cluster import (
    HeadFollower,
    LeaseHeadPointer,
    StoreHeadPointer,
    TrainerDuty,
    adopt_volume,
    recorder,
    replica_name,
)
from service.config import ServerSettings, load_model_definition
from service.console import ConsoleServer
from service.drift import DriftMonitor, training_texts
from service.inference import InferenceService
from service.metrics import Metrics
from service.registry import HeadPointer, ModelRegistry
from service.security import TokenFileWatcher
from service.serving import ServedModel
from service.store import Store, TrainerLease, open_store
from service.web import MetricsServer

log = logging.getLogger(__name__)
LEASE_LOST_EXIT = 3  # the trainer lost its lease: its supervisor restarts it as a standby


@dataclass
class App:
    settings: ServerSettings
    metrics: Metrics = field(default_factory=Metrics)
    models: dict[str, ServedModel] = field(default_factory=dict)
    events: EventBus = field(default_factory=EventBus)
    predictions: PredictionLog = field(default_factory=PredictionLog)
    store: Store | None = None
    adaptation: AdaptationService | None = None
    drift: DriftMonitor | None = None
    # Run the drift worker on a thread instead of a separate process (tests).
    drift_in_process: bool = False
    inference: InferenceService | None = None
    grpc: GrpcServer | None = None
    follower: HeadFollower | None = None
    duty: TrainerDuty | None = None
    exit_code: int = 0
    _lease: TrainerLease | None = None
    _metrics_http: MetricsServer | None = None
    _console: ConsoleServer | None = None
    _stop_requested: asyncio.Event | None = None
    _loop: asyncio.AbstractEventLoop | None = None
    _stopped: bool = False
    _tokens_watch: TokenFileWatcher | None = None

    @property
    def grpc_port(self) -> int:
        assert self.grpc is not None, "start() first"
        return self.grpc.port

    @property
    def metrics_port(self) -> int:
        assert self._metrics_http is not None, "start() first"
        return self._metrics_http.port

    @property
    def console_port(self) -> int:
        assert self._console is not None, "start() with the console on first"
        return self._console.port

    @property
    def runs_jobs(self) -> bool:
        return self.settings.role in ("all", "trainer")

    async def start(self) -> None:
        started = time.perf_counter()
        s = self.settings
        self._loop = asyncio.get_running_loop()
        # Credentials first: a bad tokens file must stop the start before any model loads.
        tokens, metrics_auth = s.token_store(), s.metrics_auth()
        if tokens is not None and s.tokens_file is not None:
            # Created now: a change made while the models load is seen once it runs.
            self._tokens_watch = TokenFileWatcher(tokens, s.tokens_file, s.tokens)
        tls = None
        if s.tls_cert is not None and s.tls_key is not None:
            tls = ServerTls(s.tls_cert, s.tls_key, s.tls_client_ca)
            tls.credentials()  # reads the files: an unreadable one fails here
        self.store = store = await asyncio.to_thread(open_store, s.database_url, s.state_dir)
        if store.shared and self.runs_jobs:
            self._lease = store.trainer_lease()
        for name in s.models:
            self.models[name] = await self._load_model(name, store)
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
            self.models, store, store, self.events, self.predictions, self.metrics,
            s.local_dir / "jobs", drift=self.drift, marks=store, replica=replica_name(),
            runs_jobs=self.runs_jobs, may_run_jobs=self._holds_lease,
            trusted=tokens.trusted if tokens is not None else lambda source: False,
        )  # fmt: skip
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
            health_port = self.grpc.add_health_port(s.host, s.health_port)
            log.info("health checks (grpc.health.v1, plaintext) on %s:%d", s.host, health_port)
        await self.grpc.start()
        if self._tokens_watch is not None:
            self._tokens_watch.start()
        closed = self.metrics.http_closed
        self._metrics_http = MetricsServer(
            self.metrics.registry, s.metrics_host, s.metrics_port, metrics_auth,
            on_closed=lambda reason: closed.labels("metrics", reason).inc(),
        )  # fmt: skip
        await self._metrics_http.start()  # on this loop: no thread per connection
        if s.console:
            self._console = ConsoleServer(
                self.adaptation, self.inference, self.metrics, tokens, s.console_host,
                s.console_port, tls=tls,
                on_closed=lambda reason: closed.labels("console", reason).inc(),
            )  # fmt: skip
            await self._console.start()
        await self.grpc.set_serving(True)
        self._start_cluster(store)
        if self._lease is None:
            await asyncio.to_thread(self.adaptation.recover)
        for warning in s.exposure_warnings(tokens is not None, metrics_auth is not None):
            log.warning("%s", warning)
        log.info(
            "serving %s on %s:%d (gRPC), metrics on :%d/metrics at %s; %s; role %s, %s; "
            "ready in %.2fs",
            ", ".join(self.models), s.host, self.grpc.port, self.metrics_port, s.metrics_host,
            _security_summary(tokens is not None, tls, metrics_auth is not None), s.role,
            "PostgreSQL" if store.shared else "SQLite", time.perf_counter() - started,
        )  # fmt: skip
        if self._console is not None:
            log.info("console at %s", self._console.url)

    async def _load_model(self, name: str, store: Store) -> ServedModel:
        """The model's registry (its head in the database when the store is shared), loaded
        and warm. A serving replica waits for the trainer to publish a first version."""
        s = self.settings
        definition = load_model_definition(s.models_dir, name)
        registry = ModelRegistry(
            s.state_dir, name, pointer=self._pointer(name, store), on_publish=recorder(store),
            fence=store.publish_fence,  # the purge check of a publish (the `current` file)
        )  # fmt: skip
        if store.shared:
            if self.runs_jobs:
                await asyncio.to_thread(adopt_volume, s.state_dir, store, name)
            else:
                waiter = HeadFollower({}, store, self.metrics, s.poll_seconds)
                await asyncio.to_thread(waiter.wait_for_head, name)
        served = ServedModel(
            definition, registry, self.metrics, on_predictions=self.predictions.record
        )
        await asyncio.to_thread(served.start)
        return served

    def _pointer(self, name: str, store: Store) -> HeadPointer | None:
        if not store.shared:
            return None  # the `current` file in the state dir
        if self._lease is not None:
            return LeaseHeadPointer(store, self._lease, name)
        return StoreHeadPointer(store, name)

    def _start_cluster(self, store: Store) -> None:
        s = self.settings
        if not store.shared:
            return
        self.follower = HeadFollower(
            self.models, store, self.metrics, s.poll_seconds, watcher=store.head_watcher()
        )
        self.follower.start()
        if self._lease is not None:
            assert self.adaptation is not None
            self.duty = TrainerDuty(
                self._lease, self.metrics, s.poll_seconds,
                on_acquired=self.adaptation.recover, on_tick=self.adaptation.poll,
                on_lost=self._lease_lost,
            )  # fmt: skip
            self.duty.start()

    def _holds_lease(self) -> bool:
        """Whether this process may run jobs now: always without a lease (SQLite, one process),
        else only while the trainer duty holds it."""
        return self._lease is None or (self.duty is not None and self.duty.holding)

    def _lease_lost(self) -> None:
        self.exit_code = LEASE_LOST_EXIT
        self.request_stop()

    def request_stop(self) -> None:
        """Ask :meth:`run_until_signal` to drain and return (from any thread)."""
        if self._loop is not None and self._stop_requested is not None:
            self._loop.call_soon_threadsafe(self._stop_requested.set)

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
        if self._console is not None:
            await self._console.stop()  # before the core stops: no console action runs after it
        if self.duty is not None:
            await asyncio.to_thread(self.duty.stop)
        if self.adaptation is not None:
            # A running fine-tune is ended; its job is marked failed and retried after restart.
            await asyncio.to_thread(self.adaptation.stop, grace)
        if self.follower is not None:
            await asyncio.to_thread(self.follower.stop)
        if self.grpc is not None:
            await self.grpc.stop(grace)
        if self.drift is not None:
            await asyncio.to_thread(self.drift.stop)
        for served in self.models.values():
            await asyncio.to_thread(served.stop, self.settings.drain_seconds)
        if self._lease is not None:
            await asyncio.to_thread(self._lease.close)  # a standby takes over at once
        if self.store is not None:
            await asyncio.to_thread(self.store.close)
        if self._metrics_http is not None:
            await self._metrics_http.stop()
        if self._tokens_watch is not None:
            await asyncio.to_thread(self._tokens_watch.stop)
        log.info("stopped")

    async def run_until_signal(self) -> int:
        """Serve until SIGTERM or SIGINT (or a lost trainer lease); the exit code."""
        self._stop_requested = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop_requested.set)
        loop.add_signal_handler(signal.SIGHUP, self.reload_tokens)
        await self.start()
        await self._stop_requested.wait()
        log.info("stop requested: draining" if self.exit_code else "signal received: draining")
        await self.stop()
        return self.exit_code

    def reload_tokens(self) -> None:
        """Read the tokens file again now (SIGHUP); it is also polled for changes."""
        if self._tokens_watch is None:
            log.info("SIGHUP: no tokens file to reload")
        else:
            self._tokens_watch.reload_soon()


def _security_summary(has_tokens: bool, tls: ServerTls | None, metrics_auth: bool) -> str:
    transport = "plaintext" if tls is None else "mutual TLS" if tls.client_ca else "TLS"
    calls = "tokens required" if has_tokens else "no authentication"
    metrics = "metrics need credentials" if metrics_auth else "metrics open"
    return f"{transport}, {calls}, {metrics}"
