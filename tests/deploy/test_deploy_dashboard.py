"""deploy/grafana/loopserve.json: a valid dashboard whose every query names metrics that a live
server exports (and so do the alerting rules)."""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from conftest import TINY_LABELS, TINY_MODEL
from prometheus_client.parser import text_string_to_metric_families

from service.api._proto.inference import grpc_predict_v2_pb2 as pb
from service.api._proto.inference.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub
from service.api._proto.loopserve.v1 import adaptation_pb2
from service.api.adaptation_client import AdaptationClient
from service.domain.loop import NewSample

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "loopserve.json"
RULES = ROOT / "deploy" / "prometheus" / "rules.yml"
METRIC = re.compile(r"\bloopserve_[a-z0-9_]+\b")
# Names a family of each type exports (prometheus_client: counters as _total, plus _created).
SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
}
# Panels the dashboard must have: a word of each title.
PANELS = [
    "request rate", "errors", "latency", "queue vs inference", "batch size",
    "serving version per replica", "swaps", "rollbacks", "drift statistic vs threshold",
    "drift alarm", "estimated vs online accuracy", "jobs by outcome", "gate scores",
    "samples by outcome",
]  # fmt: skip


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return loaded


def panels() -> list[dict[str, Any]]:
    found = []
    for panel in dashboard()["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))  # a collapsed row's panels
    return [p for p in found if p["type"] != "row"]


def queries() -> list[str]:
    return [t["expr"] for p in panels() for t in p["targets"]]


def test_dashboard_is_valid_and_every_panel_queries_the_chosen_data_source() -> None:
    board = dashboard()
    assert board["uid"] and board["title"] and board["schemaVersion"] >= 36
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in panels():
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], f"{panel['title']} has no query"
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
            assert METRIC.search(target["expr"]), f"{panel['title']}: {target['expr']}"
            assert target["expr"].count("(") == target["expr"].count(")"), target["expr"]
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24 and grid["h"] > 0, panel["title"]
    titles = " | ".join(p["title"].lower() for p in panels())
    for words in PANELS:
        assert words in titles, f"no panel for {words!r}"


def test_model_variable_reads_a_served_metric() -> None:
    (model,) = [v for v in dashboard()["templating"]["list"] if v["name"] == "model"]
    assert METRIC.findall(model["definition"]) == ["loopserve_model_version"]
    # Every query of per-model metrics follows the variable.
    unlabelled = {"loopserve_trainer_lease", "loopserve_grpc_requests_total"}
    for query in queries():
        if not set(METRIC.findall(query)) & unlabelled:
            assert 'model=~"$model"' in query, query


def test_grpc_method_labels_name_real_methods() -> None:
    methods = {
        f"/{service.full_name}/{method.name}"
        for service in adaptation_pb2.DESCRIPTOR.services_by_name.values()
        for method in service.methods
    }
    for query in queries():
        for method in re.findall(r'method="([^"]+)"', query):
            assert method in methods, method


@pytest.fixture
def live_metrics(start_app: Any) -> dict[str, Any]:
    """Families and samples of a live server's /metrics after predictions and posted labels."""
    app = start_app()
    with grpc.insecure_channel(app.address) as channel:
        stub = GRPCInferenceServiceStub(channel)
        for texts in ([b"hello there"], [b"why is it late", b"how are you"]):
            request = pb.ModelInferRequest(model_name=TINY_MODEL)
            tensor = request.inputs.add(name="text", datatype="BYTES", shape=[len(texts)])
            tensor.contents.bytes_contents.extend(texts)
            stub.ModelInfer(request)
    with AdaptationClient(app.address, timeout=30) as client:
        samples = [NewSample(f"hello text {i}", TINY_LABELS[i % 3], id=f"s{i}") for i in range(3)]
        client.add_samples(TINY_MODEL, samples)
        client.add_samples(TINY_MODEL, samples[:1])  # a duplicate
    url = f"http://127.0.0.1:{app.app.metrics_port}/metrics"
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    names: set[str] = set()
    samples_by_name: dict[str, list[dict[str, str]]] = {}
    for family in text_string_to_metric_families(text):
        names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ("",)))
        for sample in family.samples:
            samples_by_name.setdefault(sample.name, []).append(sample.labels)
    return {"names": names, "samples": samples_by_name}


def test_every_metric_in_the_dashboard_and_the_rules_is_exported(
    live_metrics: dict[str, Any],
) -> None:
    names, samples = live_metrics["names"], live_metrics["samples"]
    # The traffic above made labelled series exist for the request and sample metrics.
    for exported in (
        "loopserve_requests_total", "loopserve_request_duration_seconds_bucket",
        "loopserve_queue_duration_seconds_bucket", "loopserve_inference_duration_seconds_sum",
        "loopserve_batch_size_bucket", "loopserve_samples_total", "loopserve_model_version",
    ):  # fmt: skip
        assert exported in samples, exported
    assert {s["outcome"] for s in samples["loopserve_samples_total"]} >= {"accepted", "duplicate"}

    used = {name for query in queries() for name in METRIC.findall(query)}
    assert used - names == set(), "the dashboard queries metrics the server does not export"
    # Labels a selector filters on exist on the series the server exports.
    for query in queries():
        for name, selector in re.findall(r"\b(loopserve_[a-z0-9_]+)\{([^}]*)\}", query):
            for label in re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", selector):
                for series in samples.get(name, []):
                    assert label in series, f"{name} has no label {label}: {query}"

    rules = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    recorded = {r["record"] for g in rules for r in g["rules"] if "record" in r}
    for group in rules:
        for rule in group["rules"]:
            expr = rule["expr"]
            for name in recorded:
                expr = expr.replace(name, "")
            missing = set(METRIC.findall(expr)) - names
            assert not missing, f"{rule.get('alert', rule.get('record'))}: {missing}"
