"""``loopserve.v1.Adaptation``: each method converts in, calls the core, converts out.

Errors are :mod:`service.errors` kinds raised by the core; the interceptor maps them to statuses,
for the event stream too. A method whose effect records who acted passes the call's principal
(:func:`service.api.auth.caller`) to the core as ``caller=``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from grpc import aio

from service.adaptation.core import AdaptationCore
from service.api._proto.loopserve.v1 import adaptation_pb2 as pb
from service.api._proto.loopserve.v1.adaptation_pb2_grpc import (
    AdaptationServicer as AdaptationServicerBase,
)
from service.api.adaptation_converters import (
    AddSamplesRequestConverter,
    AddSamplesResponseConverter,
    DriftStatusConverter,
    EventConverter,
    GetLabelingCandidatesResponseConverter,
    JobConverter,
    ListSampleSourcesResponseConverter,
    ListVersionsResponseConverter,
    ModelStatusConverter,
    PurgeSamplesRequestConverter,
    PurgeSamplesResponseConverter,
    VersionConverter,
)
from service.api.auth import caller
from service.domain.loop import MAX_SAMPLES_PER_CALL


class AdaptationServicer(AdaptationServicerBase):
    def __init__(self, core: AdaptationCore) -> None:
        self._core = core

    async def ListModels(
        self, request: pb.ListModelsRequest, context: aio.ServicerContext
    ) -> pb.ListModelsResponse:
        models = await self._core.list_models()
        return pb.ListModelsResponse(models=models)

    async def AddSamples(
        self, request: pb.AddSamplesRequest, context: aio.ServicerContext
    ) -> pb.AddSamplesResponse:
        model, samples = AddSamplesRequestConverter.to_types(request, MAX_SAMPLES_PER_CALL)
        outcome = await self._core.add_samples(model, samples, caller=caller())
        return AddSamplesResponseConverter.from_types(outcome)

    async def ListSampleSources(
        self, request: pb.ListSampleSourcesRequest, context: aio.ServicerContext
    ) -> pb.ListSampleSourcesResponse:
        sources = await self._core.sample_sources(request.model)
        return ListSampleSourcesResponseConverter.from_types(sources)

    async def PurgeSamples(
        self, request: pb.PurgeSamplesRequest, context: aio.ServicerContext
    ) -> pb.PurgeSamplesResponse:
        model, source, since = PurgeSamplesRequestConverter.to_types(request)
        outcome = await self._core.purge_samples(model, source, since)
        return PurgeSamplesResponseConverter.from_types(outcome)

    async def ListVersions(
        self, request: pb.ListVersionsRequest, context: aio.ServicerContext
    ) -> pb.ListVersionsResponse:
        versions = await self._core.list_versions(request.model)
        return ListVersionsResponseConverter.from_types(versions)

    async def GetModelStatus(
        self, request: pb.GetModelStatusRequest, context: aio.ServicerContext
    ) -> pb.ModelStatus:
        status = await self._core.model_status(request.model)
        return ModelStatusConverter.from_types(status)

    async def StartFineTune(
        self, request: pb.StartFineTuneRequest, context: aio.ServicerContext
    ) -> pb.Job:
        job = await self._core.start_fine_tune(request.model, request.reason)
        return JobConverter.from_types(job)

    async def GetJob(self, request: pb.GetJobRequest, context: aio.ServicerContext) -> pb.Job:
        job = await self._core.get_job(request.job_id)
        return JobConverter.from_types(job)

    async def CancelJob(self, request: pb.CancelJobRequest, context: aio.ServicerContext) -> pb.Job:
        job = await self._core.cancel_job(request.model, request.job_id, caller=caller())
        return JobConverter.from_types(job)

    async def Rollback(
        self, request: pb.RollbackRequest, context: aio.ServicerContext
    ) -> pb.Version:
        summary = await self._core.rollback(request.model, request.version)
        return VersionConverter.from_types(summary)

    async def ApproveVersion(
        self, request: pb.ApproveVersionRequest, context: aio.ServicerContext
    ) -> pb.Version:
        summary = await self._core.approve_version(request.model, request.version, caller=caller())
        return VersionConverter.from_types(summary)

    async def RejectVersion(
        self, request: pb.RejectVersionRequest, context: aio.ServicerContext
    ) -> pb.Version:
        summary = await self._core.reject_version(request.model, request.version, caller=caller())
        return VersionConverter.from_types(summary)

    async def GetDriftStatus(
        self, request: pb.GetDriftStatusRequest, context: aio.ServicerContext
    ) -> pb.DriftStatus:
        status = await self._core.drift_status(request.model)
        return DriftStatusConverter.from_types(status)

    async def GetLabelingCandidates(
        self, request: pb.GetLabelingCandidatesRequest, context: aio.ServicerContext
    ) -> pb.GetLabelingCandidatesResponse:
        candidates = await self._core.labeling_candidates(request.model, request.count)
        return GetLabelingCandidatesResponseConverter.from_types(candidates)

    async def WatchEvents(
        self, request: pb.WatchEventsRequest, context: aio.ServicerContext
    ) -> AsyncIterator[pb.Event]:
        events = self._core.watch_events(request.model)
        try:
            async for event in events:
                yield EventConverter.from_types(event)
        finally:
            # Unsubscribe now when the client cancels, not whenever the generator is collected.
            await events.aclose()
