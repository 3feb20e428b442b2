"""A standard V2 client (tritonclient) run as its own process by the end-to-end tests.

tritonclient registers the same ``inference.*`` protobuf symbols as loopserve's generated code,
so the two cannot share one process; a real client runs in its own process anyway.
Prints one JSON document with what it observed.

    python triton_client.py infer ADDRESS MODEL
    python triton_client.py drain ADDRESS MODEL SERVER_PID
    python triton_client.py texts ADDRESS MODEL FILE   (one request per line, ids line-N)
    python triton_client.py load ADDRESS MODEL STOP_FILE (steady load until STOP_FILE exists)
    python triton_client.py images ADDRESS MODEL FILE... (one request of encoded images)
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time

import numpy as np
import tritonclient.grpc as triton


def infer(address: str, model: str) -> dict[str, object]:
    client = triton.InferenceServerClient(address)
    report: dict[str, object] = {
        "live": client.is_server_live(),
        "ready": client.is_server_ready(),
        "model_ready": client.is_model_ready(model),
        "metadata": client.get_model_metadata(model, as_json=True),
    }
    tensor = triton.InferInput("text", [2], "BYTES")
    tensor.set_data_from_numpy(np.array([b"hello hi team", b"why is my order late"], dtype=object))
    outputs = [triton.InferRequestedOutput("label"), triton.InferRequestedOutput("probabilities")]
    result = client.infer(model, [tensor], outputs=outputs, request_id="e2e-1")
    report["id"] = result.get_response().id
    report["labels"] = [x.decode() for x in result.as_numpy("label")]
    report["probabilities"] = result.as_numpy("probabilities").tolist()
    report["label_order"] = result.get_output("probabilities").parameters["labels"].string_param
    try:
        client.infer("missing-model", [triton.InferInput("text", [1], "BYTES")])
    except triton.InferenceServerException as exc:
        report["missing_model"] = [exc.status(), exc.message()]
    client.close()
    return report


def drain(address: str, model: str, server_pid: int, requests: int = 40) -> dict[str, object]:
    """Put requests in flight, SIGTERM the server, and record how each one ended."""
    client = triton.InferenceServerClient(address)
    outcomes: list[str] = []
    first, done = threading.Event(), threading.Event()

    def collect(result: object, error: triton.InferenceServerException | None) -> None:
        outcomes.append("ok" if error is None else str(error.status()))
        first.set()
        if len(outcomes) == requests:
            done.set()

    tensor = triton.InferInput("text", [64], "BYTES")
    tensor.set_data_from_numpy(
        np.array([b"why is my order late again today please"] * 64, dtype=object)
    )
    for _ in range(requests):
        client.async_infer(model, [tensor], collect)
    first.wait(30)
    os.kill(server_pid, signal.SIGTERM)
    finished = done.wait(30)
    client.close()
    return {"finished": finished, "outcomes": outcomes}


def texts(address: str, model: str, path: str) -> dict[str, object]:
    client = triton.InferenceServerClient(address)
    with open(path, encoding="utf-8") as handle:
        lines = [line.rstrip("\n") for line in handle if line.strip()]
    labels = []
    for i, line in enumerate(lines):
        tensor = triton.InferInput("text", [1], "BYTES")
        tensor.set_data_from_numpy(np.array([line.encode()], dtype=object))
        result = client.infer(model, [tensor], request_id=f"line-{i}")
        labels.append(result.as_numpy("label")[0].decode())
    client.close()
    return {"sent": len(lines), "labels": labels}


def images(address: str, model: str, paths: list[str]) -> dict[str, object]:
    """The labels of one request of encoded images, the version that answered, whether that
    version reports ready, and the versions ModelMetadata lists."""
    client = triton.InferenceServerClient(address)
    encoded = [open(path, "rb").read() for path in paths]  # noqa: SIM115
    tensor = triton.InferInput("image", [len(encoded)], "BYTES")
    tensor.set_data_from_numpy(np.array(encoded, dtype=object))
    result = client.infer(model, [tensor])
    version = result.get_response().model_version
    report = {
        "labels": [label.decode() for label in result.as_numpy("label")],
        "version": version,
        "version_ready": client.is_model_ready(model, version),
        "metadata_versions": client.get_model_metadata(model, as_json=True).get("versions", []),
    }
    client.close()
    return report


def load(address: str, model: str, stop_file: str) -> dict[str, object]:
    """One request after another until ``stop_file`` exists. Reports, per version served, when
    it was first and last seen (Unix time), and every failure with its time."""
    client = triton.InferenceServerClient(address)
    tensor = triton.InferInput("text", [1], "BYTES")
    tensor.set_data_from_numpy(np.array([b"hello my order is late"], dtype=object))
    seen: dict[str, list[float]] = {}
    failures: list[list[object]] = []
    sent = 0
    while not os.path.exists(stop_file):
        sent += 1
        try:
            result = client.infer(model, [tensor], request_id=f"load-{sent}", client_timeout=10)
            now = time.time()
            version = result.get_response().model_version
            seen.setdefault(version, [now, now])[1] = now
        except triton.InferenceServerException as exc:
            failures.append([time.time(), str(exc.status()), exc.message()])
    client.close()
    return {"sent": sent, "versions": seen, "failures": failures}


if __name__ == "__main__":
    mode, address, model = sys.argv[1:4]
    if mode == "infer":
        result = infer(address, model)
    elif mode == "load":
        result = load(address, model, sys.argv[4])
    elif mode == "images":
        result = images(address, model, sys.argv[4:])
    elif mode == "texts":
        result = texts(address, model, sys.argv[4])
    else:
        result = drain(address, model, int(sys.argv[4]))
    print(json.dumps(result))
