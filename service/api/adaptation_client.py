"""A small synchronous ``loopserve.v1.Adaptation`` client used by the CLI."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import grpc

from service.api._proto.loopserve.v1 import adaptation_pb2 as pb
from service.api._proto.loopserve.v1.adaptation_pb2_grpc import AdaptationStub
from service.api.adaptation_converters import (
    AddSamplesRequestConverter,
    AddSamplesResponseConverter,
    DriftStatusConverter,
    GetLabelingCandidatesResponseConverter,
    JobConverter,
    ListSampleSourcesResponseConverter,
    ListVersionsResponseConverter,
    ModelStatusConverter,
    PurgeSamplesRequestConverter,
    PurgeSamplesResponseConverter,
    VersionConverter,
)
from service.api.channel import ChannelOptions, open_channel
from service.api.client import ClientError
from service.domain.loop import (
    AddOutcome,
    Job,
    ModelStatus,
    NewSample,
    PurgeOutcome,
    SourceSummary,
    VersionSummary,
)
from service.drift import Candidate, DriftStatus

T = TypeVar("T")


class AdaptationClient:
    def __init__(
        self, address: str, timeout: float = 30.0, options: ChannelOptions | None = None
    ) -> None:
        """``options``: TLS and token (default plaintext without a token)."""
        self._channel = open_channel(address, options)
        self._stub = AdaptationStub(self._channel)
        self._timeout = timeout

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> AdaptationClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def list_models(self) -> list[str]:
        return list(self._call(self._stub.ListModels, pb.ListModelsRequest()).models)

    def add_samples(self, model: str, samples: list[NewSample]) -> AddOutcome:
        request = AddSamplesRequestConverter.from_types(model, samples)
        return AddSamplesResponseConverter.to_types(self._call(self._stub.AddSamples, request))

    def list_versions(self, model: str) -> list[VersionSummary]:
        message = self._call(self._stub.ListVersions, pb.ListVersionsRequest(model=model))
        return ListVersionsResponseConverter.to_types(message)

    def sample_sources(self, model: str) -> list[SourceSummary]:
        request = pb.ListSampleSourcesRequest(model=model)
        message = self._call(self._stub.ListSampleSources, request)
        return ListSampleSourcesResponseConverter.to_types(message)

    def purge_samples(self, model: str, source: str, since: float | None = None) -> PurgeOutcome:
        request = PurgeSamplesRequestConverter.from_types(model, source, since)
        message = self._call(self._stub.PurgeSamples, request)
        return PurgeSamplesResponseConverter.to_types(message)

    def model_status(self, model: str) -> ModelStatus:
        message = self._call(self._stub.GetModelStatus, pb.GetModelStatusRequest(model=model))
        return ModelStatusConverter.to_types(message)

    def start_fine_tune(self, model: str, reason: str = "") -> Job:
        request = pb.StartFineTuneRequest(model=model, reason=reason)
        return JobConverter.to_types(self._call(self._stub.StartFineTune, request))

    def get_job(self, job_id: str) -> Job:
        return JobConverter.to_types(self._call(self._stub.GetJob, pb.GetJobRequest(job_id=job_id)))

    def cancel_job(self, model: str, job_id: str) -> Job:
        request = pb.CancelJobRequest(model=model, job_id=job_id)
        return JobConverter.to_types(self._call(self._stub.CancelJob, request))

    def rollback(self, model: str, version: int) -> VersionSummary:
        request = pb.RollbackRequest(model=model, version=version)
        return VersionConverter.to_types(self._call(self._stub.Rollback, request))

    def approve_version(self, model: str, version: int) -> VersionSummary:
        request = pb.ApproveVersionRequest(model=model, version=version)
        return VersionConverter.to_types(self._call(self._stub.ApproveVersion, request))

    def reject_version(self, model: str, version: int) -> VersionSummary:
        request = pb.RejectVersionRequest(model=model, version=version)
        return VersionConverter.to_types(self._call(self._stub.RejectVersion, request))

    def drift_status(self, model: str) -> DriftStatus:
        message = self._call(self._stub.GetDriftStatus, pb.GetDriftStatusRequest(model=model))
        return DriftStatusConverter.to_types(message)

    def labeling_candidates(self, model: str, count: int = 0) -> list[Candidate]:
        request = pb.GetLabelingCandidatesRequest(model=model, count=count)
        message = self._call(self._stub.GetLabelingCandidates, request)
        return GetLabelingCandidatesResponseConverter.to_types(message)

    def _call(self, method: Callable[..., T], request: Any) -> T:
        try:
            return method(request, timeout=self._timeout)
        except grpc.RpcError as exc:
            raise ClientError(exc.code().name, exc.details() or "") from None
