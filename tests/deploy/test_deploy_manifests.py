"""deploy/: the Kubernetes, KServe and compose manifests validate, and agree with the server.

Built-in kinds are validated offline against the Kubernetes schemas kubernetes-validate bundles
(strict: unknown fields fail); custom resources get checks of the fields their operators need.
The ports, flags and ``LOOPSERVE_*`` variables the manifests give must be ones ``loopserve serve``
knows, and the ports they publish and probe must be the ones those settings make it listen on.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import shutil
import subprocess
import sys
import typing
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from service.cli._parser import build_parser
from service.config import ServerSettings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
KUBE = DEPLOY / "kubernetes"
KSERVE = DEPLOY / "kserve"
GENERATOR = ROOT / "scripts" / "gen-prometheusrule.py"
# The oldest Kubernetes the manifests target (native gRPC probes are GA since 1.27), and the
# newest whose schemas the installed kubernetes-validate bundles.
KUBE_VERSIONS = ("1.30", kubernetes_validate.latest_version())
CUSTOM_GROUPS = ("monitoring.coreos.com/", "serving.kserve.io/")
NOT_APPLIED = {"kustomization.yaml", "secrets.example.yaml"}  # listed by name in the tests below
SERVING_HEALTH = "inference.GRPCInferenceService"


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]


def manifest_files() -> list[Path]:
    """Every Kubernetes object's file (kustomization.yaml is kustomize's, not the cluster's)."""
    files = [*KUBE.glob("*.yaml"), *KSERVE.glob("*.yaml")]
    return sorted(p for p in files if p.name != "kustomization.yaml")


def all_documents() -> list[tuple[str, dict[str, Any]]]:
    return [(str(p.relative_to(ROOT)), d) for p in manifest_files() for d in documents(p)]


def builtin(doc: dict[str, Any]) -> bool:
    return not str(doc["apiVersion"]).startswith(CUSTOM_GROUPS)


def find(kind: str, name: str | None = None) -> dict[str, Any]:
    found = [
        d
        for _, d in all_documents()
        if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


# ---- schemas ------------------------------------------------------------------------------------


BUILTIN_DOCS = [(where, d) for where, d in all_documents() if builtin(d)]


@pytest.mark.parametrize("version", KUBE_VERSIONS)
@pytest.mark.parametrize(
    "doc", [d for _, d in BUILTIN_DOCS], ids=[f"{w}:{d['kind']}" for w, d in BUILTIN_DOCS]
)
def test_builtin_kinds_validate_against_the_kubernetes_schemas(
    doc: dict[str, Any], version: str
) -> None:
    kubernetes_validate.validate(doc, version, strict=True)


def test_the_manifests_hold_the_expected_kinds_and_no_namespace() -> None:
    kinds = {(d["kind"], d["metadata"]["name"]) for _, d in all_documents()}
    assert {
        ("ConfigMap", "loopserve"),
        ("PersistentVolumeClaim", "loopserve-state"),
        ("Service", "loopserve"),
        ("Service", "loopserve-trainer"),
        ("Deployment", "loopserve"),
        ("StatefulSet", "loopserve-trainer"),
        ("ServiceMonitor", "loopserve"),
        ("PrometheusRule", "loopserve"),
        ("ClusterServingRuntime", "loopserve"),
        ("InferenceService", "support-intents"),
        ("Secret", "loopserve-database"),
        ("NetworkPolicy", "loopserve"),
    } <= kinds
    for where, doc in all_documents():
        assert "namespace" not in doc.get("metadata", {}), f"{where}: {doc['kind']} names one"


def test_kustomization_applies_every_manifest_but_the_example_secrets() -> None:
    kustomization = yaml.safe_load((KUBE / "kustomization.yaml").read_text(encoding="utf-8"))
    expected = sorted(p.name for p in KUBE.glob("*.yaml") if p.name not in NOT_APPLIED)
    assert sorted(kustomization["resources"]) == expected
    assert "namespace" not in kustomization


def test_the_example_secrets_hold_placeholders_only() -> None:
    for secret in documents(KUBE / "secrets.example.yaml"):
        assert secret["kind"] == "Secret"
        for value in secret["stringData"].values():
            assert "REPLACE" in value, value


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (kustomize) not installed")
def test_kustomize_builds_and_the_result_validates() -> None:
    built = subprocess.run(
        ["kubectl", "kustomize", str(KUBE)], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    docs = [d for d in yaml.safe_load_all(built) if d is not None]
    assert len(docs) == sum(
        len(documents(KUBE / name))
        for name in yaml.safe_load((KUBE / "kustomization.yaml").read_text())["resources"]
    )
    for doc in docs:
        assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "loopserve"
        if builtin(doc):
            kubernetes_validate.validate(doc, KUBE_VERSIONS[0], strict=True)


# ---- custom resources ----------------------------------------------------------------------------


def test_servicemonitor_scrapes_the_metrics_port_of_both_services_with_the_token() -> None:
    monitor = find("ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    selector = monitor["spec"]["selector"]["matchLabels"]
    services = [d for _, d in all_documents() if d["kind"] == "Service"]
    selected = [s for s in services if selector.items() <= s["metadata"]["labels"].items()]
    assert {s["metadata"]["name"] for s in selected} == {"loopserve", "loopserve-trainer"}
    (endpoint,) = monitor["spec"]["endpoints"]
    for service in selected:
        assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    credentials = endpoint["authorization"]["credentials"]
    assert endpoint["authorization"].get("type", "Bearer") == "Bearer"
    for workload in (find("Deployment"), find("StatefulSet")):
        (container,) = workload["spec"]["template"]["spec"]["containers"]
        ref = env_secret(container, "LOOPSERVE_METRICS_TOKEN")
        assert (ref["name"], ref["key"]) == (credentials["name"], credentials["key"])
        assert not ref.get("optional"), "the ServiceMonitor always sends the token"


def test_prometheusrule_is_generated_from_the_rule_file() -> None:
    done = subprocess.run(
        [sys.executable, str(GENERATOR), "--check"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr


def test_prometheusrule_holds_the_same_groups_as_the_rule_file() -> None:
    rule = find("PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    source = yaml.safe_load((DEPLOY / "prometheus" / "rules.yml").read_text(encoding="utf-8"))
    assert rule["spec"]["groups"] == source["groups"]
    for group in rule["spec"]["groups"]:
        assert group["name"] and group["rules"]
        for item in group["rules"]:
            assert item["expr"] and (("alert" in item) != ("record" in item)), item


def test_prometheusrule_check_fails_on_a_stale_manifest(tmp_path: Path) -> None:
    stale = tmp_path / "prometheusrule.yaml"
    stale.write_text((KUBE / "prometheusrule.yaml").read_text().replace("for: 5m", "for: 6m", 1))
    done = subprocess.run(
        [sys.executable, str(GENERATOR), "--check", "--output", str(stale)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1
    assert "stale" in done.stderr
    fresh = tmp_path / "fresh.yaml"
    subprocess.run([sys.executable, str(GENERATOR), "--output", str(fresh)], check=True)
    assert fresh.read_text() == (KUBE / "prometheusrule.yaml").read_text()


def test_clusterservingruntime_speaks_grpc_v2_from_the_model_dir() -> None:
    runtime = find("ClusterServingRuntime")
    assert runtime["apiVersion"] == "serving.kserve.io/v1alpha1"
    spec = runtime["spec"]
    assert "grpc-v2" in spec["protocolVersions"]
    assert any(f["name"] == "loopserve" for f in spec["supportedModelFormats"])
    (container,) = spec["containers"]
    assert container["name"] == "kserve-container"
    (port,) = container["ports"]
    assert port["name"] == "h2c"
    settings = effective(container, {})
    assert port["containerPort"] == settings.grpc_port
    assert settings.state_dir == Path("/mnt/models")  # where KServe mounts pvc:// storage
    assert settings.role == "serving"
    assert "{{.Name}}" in settings.models
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert set(mounts) <= set(volumes)


def test_inferenceservice_uses_the_runtime_and_the_state_volume() -> None:
    service = find("InferenceService")
    assert service["apiVersion"] == "serving.kserve.io/v1beta1"
    model = service["spec"]["predictor"]["model"]
    runtime = find("ClusterServingRuntime")
    assert model["runtime"] == runtime["metadata"]["name"]
    assert model["protocolVersion"] in runtime["spec"]["protocolVersions"]
    assert model["modelFormat"]["name"] in {
        f["name"] for f in runtime["spec"]["supportedModelFormats"]
    }
    assert model["storageUri"].startswith("pvc://")
    claim = model["storageUri"].removeprefix("pvc://").split("/")[0]
    assert claim == find("PersistentVolumeClaim")["metadata"]["name"]
    # The runtime's --model={{.Name}}: the service's name is the model's.
    assert (ROOT / "models" / service["metadata"]["name"] / "model.toml").exists()


# ---- agreement with the server --------------------------------------------------------------------


def serve_parser() -> argparse.ArgumentParser:
    parser = build_parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    serve: argparse.ArgumentParser = commands.choices["serve"]
    return serve


SERVE_FLAGS = {o for a in serve_parser()._actions for o in a.option_strings}
SETTINGS_ENV = {f"LOOPSERVE_{f.name.upper()}": f for f in dataclasses.fields(ServerSettings)}
# Variables the command line reads itself (client commands, directories), besides the settings.
CLI_ENV = {
    name
    for path in (ROOT / "service" / "cli").rglob("*.py")
    for name in re.findall(r"LOOPSERVE_[A-Z_]+", path.read_text(encoding="utf-8"))
}


@dataclass
class Process:
    """What one container gives ``loopserve serve``: arguments and environment."""

    where: str
    args: list[str]
    env: dict[str, str]  # plain values
    secret_env: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> secretKeyRef


def env_secret(container: dict[str, Any], name: str) -> dict[str, Any]:
    (entry,) = [e for e in container.get("env", []) if e["name"] == name]
    ref: dict[str, Any] = entry["valueFrom"]["secretKeyRef"]
    return ref


def config_maps() -> dict[str, dict[str, str]]:
    return {
        d["metadata"]["name"]: d["data"] for _, d in all_documents() if d["kind"] == "ConfigMap"
    }


def kube_process(where: str, container: dict[str, Any]) -> Process:
    env: dict[str, str] = {}
    maps = config_maps()
    for source in container.get("envFrom", []):
        env.update(maps[source["configMapRef"]["name"]])
    secrets = {}
    for entry in container.get("env", []):
        if "value" in entry:
            env[entry["name"]] = str(entry["value"])
        else:
            secrets[entry["name"]] = entry["valueFrom"]["secretKeyRef"]
    return Process(where, [*container.get("command", []), *container.get("args", [])], env, secrets)


def pod_containers() -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(pod spec, container) of every loopserve container in deploy/kubernetes and deploy/kserve."""
    for kind in ("Deployment", "StatefulSet"):
        pod = find(kind)["spec"]["template"]["spec"]
        yield pod, pod["containers"][0]
    runtime = find("ClusterServingRuntime")["spec"]
    yield runtime, runtime["containers"][0]


def flag_values(args: list[str]) -> dict[str, Any]:
    """The settings ``args`` give explicitly (defaults, some read from the environment, left out);
    an unknown flag fails here."""
    parser = serve_parser()
    for action in parser._actions:
        action.default = argparse.SUPPRESS
    parser._defaults.clear()
    return vars(parser.parse_args(args))


def effective(container: dict[str, Any], environ: dict[str, str]) -> ServerSettings:
    """The settings ``loopserve serve`` builds from a container, secrets aside."""
    process = kube_process(container["name"], container)
    return settings_of(process, environ)


def settings_of(process: Process, extra_env: dict[str, str]) -> ServerSettings:
    env = {**process.env, **extra_env}
    values = {
        SETTINGS_ENV[k].name: parse_env(k, raw) for k, raw in env.items() if k in SETTINGS_ENV
    }
    parsed = flag_values(process.args)
    if "models" in parsed:
        parsed["models"] = tuple(parsed["models"])
    values.update({k: v for k, v in parsed.items() if k in SETTINGS_FIELDS})
    # Not validated: the secrets and the files they mount are not here.
    return ServerSettings(**values)


SETTINGS_FIELDS = {f.name for f in dataclasses.fields(ServerSettings)}


def parse_env(name: str, raw: str) -> Any:
    """``LOOPSERVE_<FIELD>``'s value as the server parses it (a port as an int, ...)."""
    field_name = SETTINGS_ENV[name].name
    return ServerSettings._env_value(
        field_name, raw, typing.get_type_hints(ServerSettings)[field_name]
    )


def test_every_flag_and_variable_is_one_the_server_knows() -> None:
    processes = [kube_process(c["name"], c) for _, c in pod_containers()]
    processes += compose_processes()
    assert processes
    for process in processes:
        for arg in process.args:
            if arg.startswith("-"):
                assert arg.split("=")[0] in SERVE_FLAGS, f"{process.where}: {arg}"
        flag_values(process.args)
        for name in [*process.env, *process.secret_env]:
            if name.startswith("LOOPSERVE_"):
                assert name in SETTINGS_ENV or name in CLI_ENV, f"{process.where}: {name}"
        for name, raw in process.env.items():
            if name in SETTINGS_ENV:
                parse_env(name, raw)


def test_secrets_come_from_secrets_only() -> None:
    secret_names = {"LOOPSERVE_DATABASE_URL", "LOOPSERVE_METRICS_TOKEN", "LOOPSERVE_TOKENS"}
    for _, container in pod_containers():
        process = kube_process(container["name"], container)
        assert not secret_names & set(process.env), container["name"]
        assert "LOOPSERVE_DATABASE_URL" in process.secret_env
    for data in config_maps().values():
        assert not secret_names & set(data)


@pytest.mark.parametrize("kind", ["Deployment", "StatefulSet"])
def test_workload_ports_probes_and_volumes_match_its_settings(kind: str) -> None:
    workload = find(kind)
    pod = workload["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    settings = effective(container, {})
    role = {"Deployment": "serving", "StatefulSet": "trainer"}[kind]
    assert settings.role == role
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {
        "grpc": settings.grpc_port,
        "health": settings.health_port,
        "metrics": settings.metrics_port,
    }
    assert settings.host == settings.metrics_host == "0.0.0.0"
    # The kubelet's gRPC probes speak plaintext: the health port, never the TLS gRPC port.
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["grpc"]["port"] == settings.health_port, probe
    if role == "serving":
        assert container["readinessProbe"]["grpc"]["service"] == SERVING_HEALTH
    # The grace period covers the preStop sleep and the drain.
    (sleep_command, seconds) = container["lifecycle"]["preStop"]["exec"]["command"]
    assert sleep_command == "sleep"
    assert pod["terminationGracePeriodSeconds"] >= int(seconds) + settings.drain_seconds + 5
    # The state dir on the shared RWX claim; the work dir on this pod's own volume.
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    state = volumes[mounts[str(settings.state_dir)]]
    claim = find("PersistentVolumeClaim")
    assert state["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    assert settings.work_dir is not None
    assert "emptyDir" in volumes[mounts[str(settings.work_dir)]]
    assert "emptyDir" in volumes[mounts["/tmp"]]
    # Secret files lie under the mounts of their Secrets.
    for path, secret in (
        (settings.tokens_file, "loopserve-tokens"),
        (settings.tls_cert, "loopserve-tls"),
        (settings.tls_key, "loopserve-tls"),
    ):
        assert path is not None
        volume = volumes[mounts[str(path.parent)]]
        assert volume["secret"]["secretName"] == secret
    # Non-root, read-only root filesystem.
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["resources"]["limits"] and container["resources"]["requests"]


def test_serving_deployment_and_trainer_statefulset_sizes() -> None:
    assert find("Deployment")["spec"]["replicas"] == 2
    trainer = find("StatefulSet")
    assert trainer["spec"]["replicas"] == 1
    assert trainer["spec"]["serviceName"] == "loopserve-trainer"
    assert "replicas: 2" in (KUBE / "trainer.yaml").read_text()  # the standby is documented


@pytest.mark.parametrize("name", ["loopserve", "loopserve-trainer"])
def test_services_target_named_ports_of_the_pods_they_select(name: str) -> None:
    service = find("Service", name)
    selector = service["spec"]["selector"]
    (workload,) = [
        d
        for _, d in all_documents()
        if d["kind"] in ("Deployment", "StatefulSet")
        and selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()
    ]
    container = workload["spec"]["template"]["spec"]["containers"][0]
    container_ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for port in service["spec"]["ports"]:
        assert container_ports[port["targetPort"]] == port["port"], port
    assert {p["name"] for p in service["spec"]["ports"]} == {"grpc", "metrics"}
    if workload["kind"] == "StatefulSet":
        assert workload["spec"]["serviceName"] == name


def test_networkpolicy_opens_metrics_to_the_monitoring_namespace_only() -> None:
    policy = find("NetworkPolicy", "loopserve")["spec"]
    selector = policy["podSelector"]["matchLabels"]
    workloads = [d for _, d in all_documents() if d["kind"] in ("Deployment", "StatefulSet")]
    assert len(workloads) == 2
    port_names: set[str] = set()
    for workload in workloads:  # it selects both, and names ports they have
        assert selector.items() <= workload["spec"]["template"]["metadata"]["labels"].items()
        port_names |= {
            p["name"] for p in workload["spec"]["template"]["spec"]["containers"][0]["ports"]
        }
    assert policy["policyTypes"] == ["Ingress"]
    opened = {
        port["port"]: rule.get("from") for rule in policy["ingress"] for port in rule["ports"]
    }
    assert set(opened) == port_names == {"grpc", "health", "metrics"}
    assert opened["grpc"] is None and opened["health"] is None  # from anywhere
    assert opened["metrics"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    ]


# ---- compose ----------------------------------------------------------------------------------------


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))
    return loaded


def loopserve_services() -> dict[str, dict[str, Any]]:
    return {
        name: service
        for name, service in compose()["services"].items()
        if service.get("image", "").startswith("loopserve")
    }


def compose_processes() -> list[Process]:
    return [
        Process(f"compose {name}", list(service.get("command", [])), dict(service["environment"]))
        for name, service in loopserve_services().items()
    ]


def image_env() -> dict[str, str]:
    """The ENV of the Dockerfile's runtime stage (defaults every container starts with)."""
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    runtime = text.split("\nFROM ")[-1]
    env = {}
    for line in runtime.splitlines():
        if line.startswith("ENV "):
            env.update(dict(re.findall(r"(\w+)=(\S+)", line)))
    return env


def test_compose_runs_two_serving_replicas_one_trainer_and_the_rest() -> None:
    services = compose()["services"]
    roles = {name: settings_of(p, {}).role for name, p in zip(
        loopserve_services(), compose_processes(), strict=True)}  # fmt: skip
    assert sorted(roles.values()) == ["serving", "serving", "trainer"]
    assert services["postgres"]["image"].startswith("postgres:16")
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert {"prometheus", "grafana"} <= set(services)
    for name, service in loopserve_services().items():
        assert service["depends_on"]["postgres"]["condition"] == "service_healthy", name
        # The database URL holds a password: from an env file under the secrets dir, never here.
        assert "LOOPSERVE_DATABASE_URL" not in service["environment"]
        assert all("secrets" in f for f in service["env_file"])


def test_compose_shares_the_state_volume_and_gives_each_process_its_own_work_dir() -> None:
    state, work = set(), []
    for name, process in zip(loopserve_services(), compose_processes(), strict=True):
        settings = settings_of(process, image_env())
        mounts = dict(reversed(v.split(":")[:2]) for v in loopserve_services()[name]["volumes"])
        state.add(mounts[str(settings.state_dir)])
        assert settings.work_dir is not None and settings.work_dir != settings.state_dir
        work.append(mounts[str(settings.work_dir)])
    assert len(state) == 1
    assert len(set(work)) == len(work) == 3
    assert set(work) | state <= set(compose()["volumes"])


def test_compose_ports_and_prometheus_targets_match_the_settings() -> None:
    scrape = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    (job,) = scrape["scrape_configs"]
    targets = {t for group in job["static_configs"] for t in group["targets"]}
    expected = set()
    for name, process in zip(loopserve_services(), compose_processes(), strict=True):
        settings = settings_of(process, image_env())
        expected.add(f"{name}:{settings.metrics_port}")
        for published in loopserve_services()[name].get("ports", []):
            container_port = int(published.rsplit(":", 1)[1])
            assert container_port in (settings.grpc_port, settings.metrics_port), published
        assert settings.health_port is not None  # the image's HEALTHCHECK probes it
    assert targets == expected


def test_compose_provisions_grafana_with_the_dashboard() -> None:
    grafana = compose()["services"]["grafana"]
    mounts = dict(v.split(":")[:2] for v in grafana["volumes"])
    assert mounts["./grafana/loopserve.json"].startswith("/etc/grafana/dashboards/")
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    providers = yaml.safe_load(
        (DEPLOY / "grafana/provisioning/dashboards/loopserve.yaml").read_text()
    )["providers"]
    assert providers[0]["options"]["path"] == "/etc/grafana/dashboards"
    sources = yaml.safe_load(
        (DEPLOY / "grafana/provisioning/datasources/prometheus.yaml").read_text()
    )["datasources"]
    assert sources[0]["type"] == "prometheus"
    assert sources[0]["url"] == "http://prometheus:9090"


def test_the_secrets_dir_stays_out_of_version_control() -> None:
    ignored = (ROOT / ".gitignore").read_text().splitlines()
    assert "deploy/secrets/" in ignored


# ---- the image's entrypoint -----------------------------------------------------------------------

FAKE_LOOPSERVE = """#!/bin/sh
echo "$*" >> "$CALLS"
"""


def run_entrypoint(tmp_path: Path, *args: str, **env: str) -> list[str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "loopserve"
    fake.write_text(FAKE_LOOPSERVE)
    fake.chmod(0o755)
    calls = tmp_path / "calls"
    calls.unlink(missing_ok=True)
    environ = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "CALLS": str(calls),
        "LOOPSERVE_MODELS": "a,b",
        **env,
    }
    subprocess.run(
        ["sh", str(DEPLOY / "docker-entrypoint.sh"), *args], env=environ, check=True, timeout=30
    )
    return calls.read_text().splitlines()


@pytest.mark.parametrize(
    ("args", "env", "builds"),
    [
        ((), {}, True),  # role all, the default
        (("--role", "trainer"), {}, True),
        (("--role=trainer",), {}, True),
        ((), {"LOOPSERVE_ROLE": "trainer"}, True),
        (("--role", "serving"), {}, False),
        (("--role=serving",), {}, False),
        ((), {"LOOPSERVE_ROLE": "serving"}, False),
        (("--role", "serving"), {"LOOPSERVE_ROLE": "trainer"}, False),  # the flag wins
    ],
)
def test_entrypoint_builds_first_versions_only_for_roles_that_write_them(
    tmp_path: Path, args: tuple[str, ...], env: dict[str, str], builds: bool
) -> None:
    calls = run_entrypoint(tmp_path, *args, **env)
    rest = " ".join(args)
    init = ["init a --if-missing", "init b --if-missing"] if builds else []
    assert calls == [f"serve --check {rest}".strip(), *init, f"serve {rest}".strip()]


def test_entrypoint_builds_the_models_and_dirs_given_as_arguments(tmp_path: Path) -> None:
    calls = run_entrypoint(tmp_path, "--model", "c", "--state-dir=/s", "--models-dir", "/m")
    assert calls[1:-1] == ["init c --if-missing --state-dir=/s --models-dir /m"]


def test_entrypoint_runs_other_commands_as_given(tmp_path: Path) -> None:
    assert run_entrypoint(tmp_path, "loopserve", "versions") == ["versions"]
