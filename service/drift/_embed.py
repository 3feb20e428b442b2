"""Reference observations from a version's training inputs, passed through that version."""

from __future__ import annotations

from service.drift._detectors import as_observations
from service.drift._messages import ReferenceInputs
from service.drift._types import Observations

EMBED_CHUNK = 32


def embed_reference(reference: ReferenceInputs, threads: int) -> Observations:
    from service import tasks
    from service.runtime import LoadedVersion, SessionOptions

    meta = reference.meta
    session = LoadedVersion(
        model="drift-reference",
        version=0,
        onnx_path=reference.onnx_path,
        preprocessor=tasks.get(meta.task).preprocessor(reference.version_dir, meta),
        labels=list(meta.labels),
        options=SessionOptions(intra_op_threads=threads, providers="cpu", thread_spinning=False),
    )
    parts = []
    try:
        for start in range(0, len(reference.items), EMBED_CHUNK):
            prediction = session.predict(reference.items[start : start + EMBED_CHUNK])
            parts.append(as_observations(prediction.embedding, prediction.probabilities))
    finally:
        session.retire()  # the worker keeps running for days: free the model and its heap now
    return Observations.concat(parts)
