"""The loopserve.v1.Adaptation surface: converters both ways, every RPC against a fake core over
a real in-process server, error statuses, the event stream and its cancellation."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator

import grpc
import pytest
from fake_adaptation import (
    CANDIDATES,
    CREATED,
    DRIFT,
    LABELS,
    MODEL,
    OTHER_MODEL,
    REJECTING_GATE,
    FakeAdaptationCore,
    FakeServer,
    finished_job,
    initial_samples,
    initial_versions,
)
from grpc_health.v1 import health_pb2, health_pb2_grpc
from waiting import wait_until

from service.api._proto.loopserve.v1 import adaptation_pb2 as pb
from service.api._proto.loopserve.v1.adaptation_pb2_grpc import AdaptationStub
from service.api.adaptation_client import AdaptationClient
from service.api.adaptation_converters import (
    AddSamplesRequestConverter,
    AddSamplesResponseConverter,
    DriftStatusConverter,
    EventConverter,
    GateResultConverter,
    JobConverter,
    ListSampleSourcesResponseConverter,
    ListVersionsResponseConverter,
    ModelStatusConverter,
    PurgeSamplesRequestConverter,
    PurgeSamplesResponseConverter,
    SampleConverter,
    SampleSourceConverter,
    VersionConverter,
    numeric_metrics,
)
from service.api.client import ClientError
from service.domain.loop import (
    AddOutcome,
    Event,
    EventKind,
    Job,
    JobState,
    ModelStatus,
    NewSample,
    PurgeOutcome,
    SourceSummary,
)
from service.domain.provenance import SeqRange, SourceData, TrainingData
from service.drift import DetectorState
from service.errors import InvalidInput, Unavailable

SERVICE = "loopserve.v1.Adaptation"
WATCH = f"/{SERVICE}/WatchEvents"


@pytest.fixture
def core() -> FakeAdaptationCore:
    return FakeAdaptationCore()


@pytest.fixture
def server(core: FakeAdaptationCore) -> Iterator[FakeServer]:
    running = FakeServer(core)
    yield running
    running.stop()


@pytest.fixture
def stub(server: FakeServer) -> Iterator[AdaptationStub]:
    with grpc.insecure_channel(server.address) as channel:
        yield AdaptationStub(channel)


@pytest.fixture
def client(server: FakeServer) -> Iterator[AdaptationClient]:
    with AdaptationClient(server.address, timeout=10) as adaptation:
        yield adaptation


def expect_error(call: Callable[[], object], code: grpc.StatusCode, message: str) -> None:
    with pytest.raises(grpc.RpcError) as info:
        call()
    assert info.value.code() == code, info.value.details()
    assert message in (info.value.details() or ""), info.value.details()


# ---- converters ---------------------------------------------------------------------------------


def test_samples_convert_both_ways() -> None:
    samples = [
        NewSample("where is my parcel", "shipping", id="a-1", prediction_id="req-9"),
        NewSample("refund please", "billing"),
    ]
    message = AddSamplesRequestConverter.from_types(MODEL, samples)
    assert [(s.text, s.label, s.id, s.prediction_id) for s in message.samples] == [
        ("where is my parcel", "shipping", "a-1", "req-9"),
        ("refund please", "billing", "", ""),
    ]
    wire = pb.AddSamplesRequest.FromString(message.SerializeToString())
    assert AddSamplesRequestConverter.to_types(wire) == (MODEL, samples)
    assert SampleConverter.to_types(SampleConverter.from_types(samples[0])) == samples[0]
    outcome = AddOutcome(accepted=1, duplicates=1, ids=["a-1", "s2"])
    assert AddSamplesResponseConverter.to_types(
        AddSamplesResponseConverter.from_types(outcome)
    ) == (outcome)


def test_versions_keep_a_missing_parent_and_send_only_flat_numeric_metrics() -> None:
    first, second, _ = initial_versions()
    message = VersionConverter.from_types(first)
    assert not message.HasField("parent")
    assert VersionConverter.to_types(message) == first
    message = VersionConverter.from_types(second)
    assert message.HasField("parent") and message.parent == 1
    assert dict(message.metrics) == {"validation_accuracy": 0.9, "train_examples": 96.0}
    assert VersionConverter.to_types(message) == dataclasses.replace(
        second, metrics={"validation_accuracy": 0.9, "train_examples": 96.0}
    )
    listed = ListVersionsResponseConverter.from_types([first])
    assert ListVersionsResponseConverter.to_types(listed) == [first]
    assert numeric_metrics({"a": 1, "b": 2.5, "c": False, "d": "x", "e": {"f": 1}}) == {
        "a": 1.0,
        "b": 2.5,
    }


def test_jobs_convert_both_ways_with_and_without_optional_fields() -> None:
    full = finished_job()
    message = JobConverter.from_types(full)
    assert message.state == "rejected" and message.attempt == 2
    assert message.started == CREATED + 1.5 and message.candidate_version == 3
    assert message.gate.forgetting == pytest.approx(0.08)
    assert JobConverter.to_types(pb.Job.FromString(message.SerializeToString())) == full

    queued = Job("job-2", MODEL, JobState.QUEUED, "manual", "", 2, 160, CREATED)
    message = JobConverter.from_types(queued)
    for name in ("started", "finished", "candidate_version", "gate"):
        assert not message.HasField(name), name
    assert JobConverter.to_types(message) == queued


def test_gate_result_sends_forgetting_and_round_trips() -> None:
    message = GateResultConverter.from_types(REJECTING_GATE)
    assert message.forgetting == pytest.approx(REJECTING_GATE.forgetting)
    assert not message.promote and message.reason == REJECTING_GATE.reason
    assert GateResultConverter.to_types(message) == REJECTING_GATE


def test_model_status_converts_both_ways_with_and_without_job_gate_and_backoff() -> None:
    full = ModelStatus(MODEL, 2, 7, LABELS, finished_job(), REJECTING_GATE, True, CREATED + 60)
    message = ModelStatusConverter.from_types(full)
    assert message.HasField("job") and message.HasField("last_gate")
    assert message.backoff_until == CREATED + 60
    assert ModelStatusConverter.to_types(message) == full

    bare = ModelStatus(MODEL, 1, 0, LABELS, None, None, False, None)
    message = ModelStatusConverter.from_types(bare)
    for name in ("job", "last_gate", "backoff_until"):
        assert not message.HasField(name), name
    assert message.backoff_until == 0.0  # absent reads as 0
    assert ModelStatusConverter.to_types(message) == bare


def test_events_convert_both_ways() -> None:
    event = Event(EventKind.ROLLBACK, MODEL, CREATED, "serving version 1", {"version": "1"})
    message = EventConverter.from_types(event)
    assert message.kind == "rollback" and dict(message.attributes) == {"version": "1"}
    assert EventConverter.to_types(message) == event


def test_sample_sources_and_purge_outcomes_convert_both_ways() -> None:
    summary = SourceSummary("labeler", 3, CREATED + 10, CREATED + 7300, 2, 150)
    message = SampleSourceConverter.from_types(summary)
    assert (message.source, message.samples, message.last_seq) == ("labeler", 3, 150)
    wire = pb.SampleSource.FromString(message.SerializeToString())
    assert SampleSourceConverter.to_types(wire) == summary
    listed = ListSampleSourcesResponseConverter.from_types([summary, summary])
    assert ListSampleSourcesResponseConverter.to_types(listed) == [summary, summary]

    outcome = PurgeOutcome(MODEL, "junk", 2, 101, 102, [2, 3])
    message = PurgeSamplesResponseConverter.from_types(outcome)
    assert list(message.versions) == [2, 3] and message.removed == 2
    assert PurgeSamplesResponseConverter.to_types(message) == outcome
    nothing = PurgeOutcome(MODEL, "junk", 0, 0, 0, [])
    message = PurgeSamplesResponseConverter.from_types(nothing)
    assert PurgeSamplesResponseConverter.to_types(message) == nothing


def test_purge_outcomes_carry_the_jobs_with_their_data_records() -> None:
    data = TrainingData(
        (
            SourceData("junk", 3, CREATED, CREATED + 60, (SeqRange(101, 102), SeqRange(150, 150))),
            SourceData("labeler", 1, CREATED, CREATED, (SeqRange(7, 7),)),
        ),
        purges_seen=4,
    )
    running = dataclasses.replace(finished_job(), id="job-2", state=JobState.RUNNING, data=data)
    outcome = PurgeOutcome(MODEL, "junk", 0, 0, 0, [3], [running, finished_job()])
    wire = pb.PurgeSamplesResponse.FromString(
        PurgeSamplesResponseConverter.from_types(outcome).SerializeToString()
    )
    assert [job.id for job in wire.jobs] == ["job-2", "job-1"]
    assert [r.last for r in wire.jobs[0].data.sources[0].seqs] == [102, 150]
    assert not wire.jobs[1].HasField("data")  # no record: None, not an empty one
    assert PurgeSamplesResponseConverter.to_types(wire) == outcome


def test_purge_requests_keep_an_absent_since_and_validate_the_source() -> None:
    message = PurgeSamplesRequestConverter.from_types(MODEL, "junk")
    assert not message.HasField("since")
    assert PurgeSamplesRequestConverter.to_types(message) == (MODEL, "junk", None)
    message = PurgeSamplesRequestConverter.from_types(MODEL, "junk", 0.0)
    assert message.HasField("since")  # 0.0 is a time, not "absent"
    assert PurgeSamplesRequestConverter.to_types(message) == (MODEL, "junk", 0.0)
    with pytest.raises(InvalidInput, match="source is empty"):
        PurgeSamplesRequestConverter.to_types(pb.PurgeSamplesRequest(model=MODEL))
    with pytest.raises(InvalidInput, match=r"source 'x+…' \(129 characters\) is too long"):
        PurgeSamplesRequestConverter.to_types(pb.PurgeSamplesRequest(model=MODEL, source="x" * 129))
    for since in (math.nan, math.inf, -math.inf):
        with pytest.raises(InvalidInput, match="since must be a finite Unix time"):
            PurgeSamplesRequestConverter.to_types(
                pb.PurgeSamplesRequest(model=MODEL, source="junk", since=since)
            )


# ---- RPCs ---------------------------------------------------------------------------------------


def test_add_samples_passes_samples_in_and_the_outcome_out(
    client: AdaptationClient, core: FakeAdaptationCore, server: FakeServer
) -> None:
    samples = [
        NewSample("where is my parcel", "shipping", id="a-1", prediction_id="req-9"),
        NewSample("refund please", "billing"),
    ]
    assert client.add_samples(MODEL, samples) == AddOutcome(2, 0, ["a-1", "s2"])
    assert core.batches == [samples]
    assert client.add_samples(MODEL, samples[:1]) == AddOutcome(0, 1, ["a-1"])
    assert server.grpc_requests(f"/{SERVICE}/AddSamples", "OK") == 2


def test_add_samples_errors_map_to_statuses(stub: AdaptationStub, server: FakeServer) -> None:
    def add(model: str, text: str, label: str) -> object:
        sample = pb.Sample(text=text, label=label)
        return stub.AddSamples(pb.AddSamplesRequest(model=model, samples=[sample]))

    expect_error(
        lambda: add("nope", "hi", "other"),
        grpc.StatusCode.NOT_FOUND,
        "unknown model 'nope'; this server adapts 'support-intents'",
    )
    expect_error(
        lambda: add(MODEL, "   ", "other"),
        grpc.StatusCode.INVALID_ARGUMENT,
        "sample 0: text is empty",
    )
    expect_error(
        lambda: add(MODEL, "hi", "weather"),
        grpc.StatusCode.INVALID_ARGUMENT,
        "unknown label 'weather'; labels are billing, shipping, other",
    )
    assert server.grpc_requests(f"/{SERVICE}/AddSamples", "INVALID_ARGUMENT") == 2


def test_client_raises_client_error_with_the_code_name(client: AdaptationClient) -> None:
    with pytest.raises(ClientError) as info:
        client.list_versions("nope")
    assert info.value.code == "NOT_FOUND"
    assert (
        str(info.value) == "NOT_FOUND: unknown model 'nope'; this server adapts 'support-intents'"
    )


def test_list_versions(stub: AdaptationStub, client: AdaptationClient) -> None:
    message = stub.ListVersions(pb.ListVersionsRequest(model=MODEL))
    assert [(v.version, v.status) for v in message.versions] == [
        (1, "promoted"),
        (2, "serving"),
        (3, "rejected"),
    ]
    assert not message.versions[0].HasField("parent") and message.versions[2].parent == 2
    assert dict(message.versions[1].metrics) == {"validation_accuracy": 0.9, "train_examples": 96}
    first, _, third = client.list_versions(MODEL)
    assert (first, third) == (initial_versions()[0], initial_versions()[2])


def test_model_status(
    stub: AdaptationStub, client: AdaptationClient, core: FakeAdaptationCore
) -> None:
    status = client.model_status(MODEL)
    assert status == ModelStatus(
        MODEL, 2, 0, LABELS, finished_job(), REJECTING_GATE, True, CREATED + 3600
    )
    message = stub.GetModelStatus(pb.GetModelStatusRequest(model=MODEL))
    assert message.job.state == "rejected" and message.last_gate.forgetting == pytest.approx(0.08)

    core.jobs.clear()
    core.backoff_until = None
    core.needs_adaptation = False
    message = stub.GetModelStatus(pb.GetModelStatusRequest(model=MODEL))
    for name in ("job", "last_gate", "backoff_until"):
        assert not message.HasField(name), name
    assert client.model_status(MODEL).job is None
    expect_error(
        lambda: stub.GetModelStatus(pb.GetModelStatusRequest(model="")),
        grpc.StatusCode.NOT_FOUND,
        "unknown model ''",
    )


def test_start_fine_tune_returns_the_active_job_and_get_job_finds_it(
    client: AdaptationClient, stub: AdaptationStub
) -> None:
    job = client.start_fine_tune(MODEL, "operator asked")
    assert (job.id, job.state, job.trigger, job.reason) == (
        "job-2",
        JobState.QUEUED,
        "manual",
        "operator asked",
    )
    assert job.base_version == 2 and job.started is None and job.gate is None
    assert client.start_fine_tune(MODEL, "again") == job
    assert client.get_job("job-2") == job
    assert client.get_job("job-1") == finished_job()
    expect_error(
        lambda: stub.GetJob(pb.GetJobRequest(job_id="job-9")),
        grpc.StatusCode.NOT_FOUND,
        "no job 'job-9'",
    )
    expect_error(
        lambda: stub.StartFineTune(pb.StartFineTuneRequest(model="nope")),
        grpc.StatusCode.NOT_FOUND,
        "unknown model 'nope'",
    )


def test_rollback(client: AdaptationClient, stub: AdaptationStub) -> None:
    version = client.rollback(MODEL, 1)
    assert (version.model, version.version, version.status, version.parent) == (
        MODEL,
        1,
        "serving",
        None,
    )
    assert [v.status for v in client.list_versions(MODEL)] == ["serving", "promoted", "rejected"]
    expect_error(
        lambda: stub.Rollback(pb.RollbackRequest(model=MODEL, version=3)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "version 3 is rejected; only an earlier promoted version can serve again",
    )
    expect_error(
        lambda: stub.Rollback(pb.RollbackRequest(model=MODEL, version=9)),
        grpc.StatusCode.NOT_FOUND,
        "support-intents has no version 9",
    )


def test_list_sample_sources(stub: AdaptationStub, client: AdaptationClient) -> None:
    message = stub.ListSampleSources(pb.ListSampleSourcesRequest(model=MODEL))
    assert [(s.source, s.samples, s.first_seq, s.last_seq) for s in message.sources] == [
        ("", 1, 1, 1),
        ("junk", 2, 101, 102),
        ("labeler", 3, 2, 150),
    ]
    assert client.sample_sources(MODEL)[1] == SourceSummary(
        "junk", 2, CREATED + 3600, CREATED + 7200, 101, 102
    )
    expect_error(
        lambda: stub.ListSampleSources(pb.ListSampleSourcesRequest(model="nope")),
        grpc.StatusCode.NOT_FOUND,
        "unknown model 'nope'",
    )


def test_added_samples_record_the_caller_as_their_source(
    client: AdaptationClient, core: FakeAdaptationCore
) -> None:
    client.add_samples(MODEL, [NewSample("refund please", "billing", id="r-1")])
    assert core.stored[-1].source == "anonymous"  # the server runs without tokens
    assert "anonymous" in [s.source for s in client.sample_sources(MODEL)]


def test_purge_samples_passes_source_and_since_and_returns_the_outcome(
    client: AdaptationClient, core: FakeAdaptationCore, server: FakeServer
) -> None:
    assert client.purge_samples(MODEL, "junk", since=CREATED + 5000) == PurgeOutcome(
        MODEL, "junk", 1, 102, 102, [2, 3]
    )
    assert client.purge_samples(MODEL, "junk") == PurgeOutcome(MODEL, "junk", 1, 101, 101, [2, 3])
    # Repeated: nothing removed, the same versions named.
    assert client.purge_samples(MODEL, "junk") == PurgeOutcome(MODEL, "junk", 0, 0, 0, [2, 3])
    assert core.purges == [
        (MODEL, "junk", CREATED + 5000),
        (MODEL, "junk", None),
        (MODEL, "junk", None),
    ]
    assert [s.source for s in client.sample_sources(MODEL)] == ["", "labeler"]
    assert core.stored == [s for s in initial_samples() if s.source != "junk"]
    assert server.grpc_requests(f"/{SERVICE}/PurgeSamples", "OK") == 3


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (pb.PurgeSamplesRequest(model=MODEL), "source is empty"),
        (
            pb.PurgeSamplesRequest(model=MODEL, source="j" * 129),
            "source 'jjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjj…' (129 characters) is too long; "
            "at most 128 characters",
        ),
        (
            pb.PurgeSamplesRequest(model=MODEL, source="junk", since=math.nan),
            "since must be a finite Unix time, got nan",
        ),
    ],
    ids=["empty-source", "overlong-source", "nan-since"],
)
def test_purge_samples_refuses_a_bad_request_before_the_core_sees_it(
    stub: AdaptationStub,
    core: FakeAdaptationCore,
    request_: pb.PurgeSamplesRequest,
    message: str,
) -> None:
    expect_error(lambda: stub.PurgeSamples(request_), grpc.StatusCode.INVALID_ARGUMENT, message)
    assert core.purges == [] and core.stored == initial_samples()


def test_purge_samples_of_an_unknown_model_is_not_found(stub: AdaptationStub) -> None:
    expect_error(
        lambda: stub.PurgeSamples(pb.PurgeSamplesRequest(model="nope", source="junk")),
        grpc.StatusCode.NOT_FOUND,
        "unknown model 'nope'",
    )


# ---- WatchEvents --------------------------------------------------------------------------------


def event(model: str, n: int) -> Event:
    return Event(EventKind.SWAP, model, CREATED + n, f"event {n}", {"n": str(n)})


def test_watch_events_streams_events_of_one_model_until_the_client_cancels(
    stub: AdaptationStub, server: FakeServer, core: FakeAdaptationCore
) -> None:
    stream = stub.WatchEvents(pb.WatchEventsRequest(model=MODEL))
    assert core.watching.wait(5)
    for item in (event(MODEL, 1), event(OTHER_MODEL, 2), event(MODEL, 3), event(MODEL, 4)):
        server.publish(item)
    received = [EventConverter.to_types(next(stream)) for _ in range(3)]
    assert received == [event(MODEL, 1), event(MODEL, 3), event(MODEL, 4)]

    stream.cancel()
    with pytest.raises(grpc.RpcError) as info:
        next(stream)
    assert info.value.code() == grpc.StatusCode.CANCELLED
    # The server closes the core's subscription as soon as the client goes.
    assert core.unwatched.wait(5)
    assert core.watcher_count == 0
    wait_until(lambda: server.grpc_requests(WATCH, "CANCELLED") == 1)


def test_watch_events_of_every_model(
    stub: AdaptationStub, server: FakeServer, core: FakeAdaptationCore
) -> None:
    stream = stub.WatchEvents(pb.WatchEventsRequest())
    assert core.watching.wait(5)
    server.publish(event(MODEL, 1))
    server.publish(event(OTHER_MODEL, 2))
    assert [EventConverter.to_types(next(stream)).model for _ in range(2)] == [MODEL, OTHER_MODEL]
    stream.cancel()
    assert core.unwatched.wait(5)


def test_watch_events_sees_what_the_core_does(
    stub: AdaptationStub, client: AdaptationClient, core: FakeAdaptationCore
) -> None:
    stream = stub.WatchEvents(pb.WatchEventsRequest(model=MODEL))
    assert core.watching.wait(5)
    client.add_samples(MODEL, [NewSample("refund please", "billing")])
    first = next(stream)
    assert (first.kind, first.message) == ("samples_accepted", "1 samples accepted")
    stream.cancel()


def test_watch_events_errors_before_the_first_event_map_to_statuses(
    stub: AdaptationStub, server: FakeServer
) -> None:
    expect_error(
        lambda: list(stub.WatchEvents(pb.WatchEventsRequest(model="nope"))),
        grpc.StatusCode.NOT_FOUND,
        "unknown model 'nope'",
    )
    assert server.grpc_requests(WATCH, "NOT_FOUND") == 1


def test_watch_events_errors_after_events_map_to_statuses(
    stub: AdaptationStub, server: FakeServer, core: FakeAdaptationCore
) -> None:
    stream = stub.WatchEvents(pb.WatchEventsRequest(model=MODEL))
    assert core.watching.wait(5)
    server.publish(event(MODEL, 1))
    server.publish(Unavailable("server is shutting down"))
    assert next(stream).message == "event 1"
    with pytest.raises(grpc.RpcError) as info:
        next(stream)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert info.value.details() == "server is shutting down"
    assert core.unwatched.wait(5)
    assert server.grpc_requests(WATCH, "UNAVAILABLE") == 1


def test_watch_events_bugs_are_internal_without_details(
    stub: AdaptationStub, server: FakeServer, core: FakeAdaptationCore
) -> None:
    core.fail_watch = RuntimeError("secret stack detail")
    with pytest.raises(grpc.RpcError) as info:
        list(stub.WatchEvents(pb.WatchEventsRequest(model=MODEL)))
    assert info.value.code() == grpc.StatusCode.INTERNAL
    assert "secret" not in (info.value.details() or "")
    assert "internal error" in (info.value.details() or "")
    assert server.grpc_requests(WATCH, "INTERNAL") == 1


# ---- registration -------------------------------------------------------------------------------


def test_health_and_reflection_list_the_adaptation_service(server: FakeServer) -> None:
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    with grpc.insecure_channel(server.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "inference.GRPCInferenceService", SERVICE):
            status = health.Check(health_pb2.HealthCheckRequest(service=service)).status
            assert status == health_pb2.HealthCheckResponse.SERVING, service
        responses = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")])
        )
        names = {s.name for r in responses for s in r.list_services_response.service}
    assert {SERVICE, "inference.GRPCInferenceService", "grpc.health.v1.Health"} <= names


def test_without_an_adaptation_core_the_service_is_absent(core: FakeAdaptationCore) -> None:
    server = FakeServer(core, with_adaptation=False)
    try:
        with grpc.insecure_channel(server.address) as channel:
            expect_error(
                lambda: AdaptationStub(channel).ListVersions(pb.ListVersionsRequest(model=MODEL)),
                grpc.StatusCode.UNIMPLEMENTED,
                "",
            )
            expect_error(
                lambda: health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(service=SERVICE)
                ),
                grpc.StatusCode.NOT_FOUND,
                "",
            )
    finally:
        server.stop()


def test_drift_status_round_trips_with_absent_values(client: AdaptationClient) -> None:
    status = client.drift_status(MODEL)
    assert status.model == MODEL and status.version == 3 and status.alarm and status.enabled
    assert status.samples_dropped == 7
    calibrating, ready = status.detectors
    assert ready == DRIFT.detectors[1]
    assert calibrating.state is DetectorState.CALIBRATING
    assert math.isnan(calibrating.statistic) and calibrating.alarm_since is None
    assert calibrating.calibration_seconds is None
    assert calibrating.message == "collecting traffic reference: 12/1000"


def test_drift_status_message_leaves_unknown_numbers_unset() -> None:
    message = DriftStatusConverter.from_types(DRIFT)
    assert not message.detectors[0].HasField("statistic")
    assert message.detectors[1].statistic == pytest.approx(DRIFT.detectors[1].statistic)


def test_labeling_candidates(client: AdaptationClient, stub: AdaptationStub) -> None:
    candidates = client.labeling_candidates(MODEL, 0)
    assert [c.prediction_id for c in candidates] == ["req-9", ""]
    assert candidates[0] == CANDIDATES[0]
    assert math.isnan(candidates[1].atypicality)
    assert len(client.labeling_candidates(MODEL, 1)) == 1
    with pytest.raises(grpc.RpcError) as error:
        stub.GetLabelingCandidates(pb.GetLabelingCandidatesRequest(model=MODEL, count=-1))
    assert error.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert error.value.details() == "count must be in [0, 1000] (0 means 20), got -1"
    with pytest.raises(grpc.RpcError) as error:
        stub.GetDriftStatus(pb.GetDriftStatusRequest(model="nope"))
    assert error.value.code() is grpc.StatusCode.NOT_FOUND
