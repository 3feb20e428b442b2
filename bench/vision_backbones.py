"""Image backbones and image decoding on the CPU: what serving an image model costs.

Per backbone (MobileNetV2 and EfficientNet-Lite0 with their bundled ImageNet weights, ResNet-18
and ResNet-50 randomly initialised, which costs the same): export backbone + 1000-class head to
ONNX (dynamo, opset 18), the ORT-vs-torch parity, then ONNX Runtime CPU FP32 time per 224 px
image at batch 1 and batch 8 (``--threads`` intra-op threads, sequential execution): wall and
process CPU milliseconds per image, medians over ``--repeats`` runs after warm-up. With
``--int8`` also int8 versions of the same graph, ORT's dynamic quantization (refused for image
models) and static QDQ calibrated on images: time per image and top-1 agreement with FP32.

Decoding (service.tasks.image): a generated 3000x2000 JPEG to the 224 px model input with
``draft()`` (as served) and without (full-size decode, then resize); then a 94 KB 10000x10000 PNG
bomb: the refusal's time and the growth of peak RSS of a fresh process while refusing it (with
``--pillow-baseline``, also what Pillow's defaults spend decoding it).

``--photo PATH`` prints the top-5 ImageNet classes (indices) of the bundled models for a real
photo, e.g. matplotlib's ``sample_data/grace_hopper.jpg`` (652 military uniform, 457 bow tie,
834 suit, 906 Windsor tie, 400 academic gown, 667 mortarboard are the expected neighbourhood).

    python bench/vision_backbones.py [--backbones mobilenet_v2,efficientnet_lite0,resnet18,resnet50]
        [--threads 2] [--repeats 30] [--int8] [--pillow-baseline] [--photo PATH] [--json OUT]
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from service.errors import InvalidInput  # noqa: E402
from service.tasks.image import ImageSpec, decode_image  # noqa: E402
from service.tasks.image import _decode as decode_module  # noqa: E402
from service.tasks.image.training import (  # noqa: E402
    ARCHITECTURES,
    BUNDLED,
    ImageClassifier,
    SplitFeatures,
    create_network,
    export_onnx,
    parity_check,
    quantize_images,
    top1_agreement,
)
from tests.tasks.image.hostile_images import (  # noqa: E402
    PILLOW_DEFAULTS,
    REFUSE_BOMB,
    peak_rss_growth_kib,
    png_bomb,
)

BATCHES = (1, 8)


def timed(run: Callable[[], object], repeats: int, per: int = 1) -> dict[str, float]:
    """Median wall and process-CPU milliseconds per item over ``repeats`` runs, after two
    warm-up runs."""
    for _ in range(2):
        run()
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        run()
        walls.append((time.perf_counter() - wall) * 1000 / per)
        cpus.append((time.process_time() - cpu) * 1000 / per)
    return {"wall_ms": statistics.median(walls), "cpu_ms": statistics.median(cpus)}


def classifier(name: str) -> ImageClassifier:
    """Backbone features + a 1000-class head holding the ImageNet classifier's weights."""
    weights = f"bundled:{name}" if name in BUNDLED else None
    network = create_network(name, weights)
    features = SplitFeatures(network.stages(), 1, network.feature_dim)
    model = ImageClassifier(features, 1000)
    linear = [m for m in network.modules() if isinstance(m, torch.nn.Linear)][-1]
    model.head.load_state_dict(linear.state_dict())
    return model.eval()


def session(path: Path, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def per_image(sess: ort.InferenceSession, size: int, repeats: int) -> dict[str, dict[str, float]]:
    out = {}
    for batch in BATCHES:
        pixels = np.random.default_rng(batch).standard_normal((batch, 3, size, size), np.float32)
        out[f"batch_{batch}"] = timed(
            lambda p=pixels: sess.run(None, {"pixels": p}), repeats, batch
        )
    return out


def top5(sess: ort.InferenceSession, pixels: np.ndarray) -> list[int]:
    probabilities = sess.run(["probabilities"], {"pixels": pixels})[0][0]
    return [int(i) for i in np.argsort(probabilities)[::-1][:5]]


def synthetic_images(seed: int, count: int, spec: ImageSpec) -> list[np.ndarray]:
    """Model inputs from generated pictures: coloured gradients under noise of varying strength
    (no real photos ship with the project)."""
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(count):
        height, width = rng.integers(200, 400, size=2)
        y, x = np.mgrid[0:height, 0:width]
        colours = rng.uniform(0, 255, size=(2, 3))
        ramp = (x / width)[..., None] * colours[0] + (y / height)[..., None] * colours[1]
        noisy = ramp / 2 + rng.normal(0, rng.uniform(5, 60), (height, width, 3))
        pixels = np.clip(noisy, 0, 255).astype(np.uint8)
        out = io.BytesIO()
        Image.fromarray(pixels).save(out, "PNG")
        images.append(decode_image(out.getvalue(), spec)[None])
    return images


def int8_variants(
    path: Path, spec: ImageSpec, args: argparse.Namespace, photo: np.ndarray | None
) -> dict[str, Any]:
    """Dynamic int8 (as text models use it; refused for image models) against static QDQ int8
    calibrated on 16 generated images: time per image and top-1 agreement with FP32 on 32 other
    generated images (and the photo)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    extra = [photo] if photo is not None else []
    held_out = np.concatenate(synthetic_images(1, 32, spec) + extra)
    variants: dict[str, Any] = {}
    plain = path.with_suffix(".plain.onnx")
    dynamic, static = path.with_suffix(".dynamic.onnx"), path.with_suffix(".static.onnx")
    # The dynamo exporter's recorded intermediate shapes trip the quantizer's shape inference.
    graph = onnx.load(str(path))
    del graph.graph.value_info[:]
    onnx.save(graph, str(plain))
    quantize_dynamic(str(plain), str(dynamic), weight_type=QuantType.QInt8)
    quantize_images(path, static, synthetic_images(0, 16, spec))
    for name, quantized in (("dynamic", dynamic), ("static", static)):
        sess = session(quantized, args.threads)
        result: dict[str, Any] = {"timing": per_image(sess, spec.size, max(5, args.repeats // 3))}
        result["top1_agreement"] = top1_agreement(path, quantized, held_out)
        if photo is not None:
            result["photo_top5"] = top5(sess, photo)
        variants[name] = result
    return variants


def backbone(
    name: str, args: argparse.Namespace, work: Path, photo_bytes: bytes | None
) -> dict[str, Any]:
    model = classifier(name)
    spec = ARCHITECTURES[name].spec
    path = work / f"{name}.onnx"
    started = time.perf_counter()
    export_onnx(model, path, spec.size)
    result: dict[str, Any] = {"export_s": round(time.perf_counter() - started, 1)}
    result["parity_max_abs_diff"] = parity_check(model, path, spec.size)
    result["onnx_mb"] = round(path.stat().st_size / 2**20, 1)
    sess = session(path, args.threads)
    result["fp32"] = per_image(sess, spec.size, args.repeats)
    photo = decode_image(photo_bytes, spec)[None] if photo_bytes is not None else None
    if photo is not None and name in BUNDLED:
        result["photo_top5"] = top5(sess, photo)
    if args.int8:
        result["int8"] = int8_variants(path, spec, args, photo)
    return result


def camera_jpeg() -> bytes:
    """A 3000x2000 photo-like JPEG: smooth gradients with sensor-like noise, quality 90."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:2000, 0:3000]
    base = np.stack([x / 3000 * 255, y / 2000 * 255, (x + y) / 5000 * 255], axis=-1)
    pixels = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", quality=90)
    return out.getvalue()


def decoding(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    spec, data = ImageSpec(224), camera_jpeg()
    repeats = max(5, args.repeats // 3)
    result: dict[str, Any] = {"jpeg_kb": len(data) // 1024}
    result["jpeg_3000x2000_draft"] = timed(lambda: decode_image(data, spec), repeats)
    drafting = decode_module._draft
    decode_module._draft = lambda image, spec: None
    try:
        result["jpeg_3000x2000_full_decode"] = timed(lambda: decode_image(data, spec), repeats)
    finally:
        decode_module._draft = drafting
    bomb = png_bomb()
    result["bomb_kb"] = len(bomb) // 1024
    result["bomb_refusal"] = timed(lambda: _refused(bomb, spec), repeats * 10)
    bomb_path = work / "bomb.png"
    bomb_path.write_bytes(bomb)
    result["bomb_refusal_peak_rss_growth_mb"] = peak_rss_growth_kib(REFUSE_BOMB, bomb_path) / 1024
    if args.pillow_baseline:
        growth = peak_rss_growth_kib(PILLOW_DEFAULTS, bomb_path) / 1024
        result["bomb_pillow_defaults_peak_rss_growth_mb"] = growth
    return result


def _refused(data: bytes, spec: ImageSpec) -> None:
    try:
        decode_image(data, spec)
    except InvalidInput:
        return
    raise AssertionError("the bomb was accepted")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbones", default="mobilenet_v2,efficientnet_lite0,resnet18,resnet50")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--int8", action="store_true")
    parser.add_argument("--pillow-baseline", action="store_true")
    parser.add_argument("--photo", type=Path)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    photo = args.photo.read_bytes() if args.photo else None
    results: dict[str, Any] = {"threads": args.threads}
    with tempfile.TemporaryDirectory() as tmp:
        results["decoding"] = decoding(args, Path(tmp))
        print(json.dumps({"decoding": results["decoding"]}, indent=1), flush=True)
        for name in args.backbones.split(","):
            results[name] = backbone(name, args, Path(tmp), photo)
            print(json.dumps({name: results[name]}, indent=1), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
