"""Reference observations from a version's training texts, passed through that version."""

from __future__ import annotations

from service.drift._detectors import as_observations
from service.drift._messages import ReferenceTexts
from service.drift._types import Observations

EMBED_CHUNK = 32


def embed_reference(reference: ReferenceTexts, threads: int) -> Observations:
    from service.runtime import LoadedVersion, SessionOptions

    session = LoadedVersion(
        model="drift-reference",
        version=0,
        onnx_path=reference.onnx_path,
        tokenizer_path=reference.tokenizer_path,
        labels=reference.labels,
        max_length=reference.max_length,
        options=SessionOptions(intra_op_threads=threads, providers="cpu", thread_spinning=False),
    )
    parts = []
    for start in range(0, len(reference.texts), EMBED_CHUNK):
        prediction = session.predict(reference.texts[start : start + EMBED_CHUNK])
        parts.append(as_observations(prediction.embedding, prediction.probabilities))
    return Observations.concat(parts)
