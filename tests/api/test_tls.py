"""TLS and mutual TLS on the gRPC port, tokens over TLS, and the ``loopserve`` commands that talk
to a server with ``--token`` and the TLS flags. Certificates come from the openssl CLI
(``tls_files`` in conftest)."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import grpc
import pytest
from fake_adaptation import MODEL, FakeAdaptationCore, FakeServer

from service.api.adaptation_client import AdaptationClient
from service.api.channel import ChannelOptions, open_channel
from service.api.client import ClientError
from service.api.server import ServerTls
from service.cli import main
from service.errors import ConfigError
from service.security import TokenStore

ADMIN_TOKEN = "operator-5e6f7a8b9c0d1e2f"
LABEL_TOKEN = "labeler-0f3b5c7d9e1a2b4c"
TOKENS = f"operator:admin:{ADMIN_TOKEN};labeler:label:{LABEL_TOKEN}"


@pytest.fixture
def tls(tls_files: dict[str, Path]) -> ServerTls:
    return ServerTls(tls_files["server.pem"], tls_files["server.key"])


@pytest.fixture
def mtls(tls_files: dict[str, Path]) -> ServerTls:
    return ServerTls(tls_files["server.pem"], tls_files["server.key"], tls_files["client-ca.pem"])


def list_models(address: str, options: ChannelOptions | None) -> list[str]:
    with AdaptationClient(address, timeout=5, options=options) as client:
        return client.list_models()


def refused(address: str, options: ChannelOptions | None) -> ClientError:
    with pytest.raises(ClientError) as info:
        list_models(address, options)
    return info.value


# ---- TLS ----------------------------------------------------------------------------------------


def test_tls_server_answers_over_tls(
    start_fake_server: Any, tls: ServerTls, tls_files: dict[str, Path]
) -> None:
    server: FakeServer = start_fake_server(FakeAdaptationCore(), tls=tls)
    options = ChannelOptions(ca=tls_files["server-ca.pem"])
    assert list_models(server.address, options) == [MODEL]
    # The certificate names localhost too.
    assert list_models(f"localhost:{server.grpc.port}", options) == [MODEL]


def test_tls_server_refuses_a_plaintext_client(start_fake_server: Any, tls: ServerTls) -> None:
    server: FakeServer = start_fake_server(FakeAdaptationCore(), tls=tls)
    assert refused(server.address, None).code == "UNAVAILABLE"


def test_client_refuses_a_server_certificate_from_another_ca(
    start_fake_server: Any, tls: ServerTls, tls_files: dict[str, Path]
) -> None:
    server: FakeServer = start_fake_server(FakeAdaptationCore(), tls=tls)
    for options in (ChannelOptions(tls=True), ChannelOptions(ca=tls_files["other-ca.pem"])):
        assert refused(server.address, options).code == "UNAVAILABLE"


def test_server_name_override_checks_another_name(
    start_fake_server: Any, tls: ServerTls, tls_files: dict[str, Path]
) -> None:
    server: FakeServer = start_fake_server(FakeAdaptationCore(), tls=tls)
    ca = tls_files["server-ca.pem"]
    assert list_models(server.address, ChannelOptions(ca=ca, server_name="localhost")) == [MODEL]
    wrong = ChannelOptions(ca=ca, server_name="loopserve.example")
    assert refused(server.address, wrong).code == "UNAVAILABLE"


# ---- mutual TLS ---------------------------------------------------------------------------------


def test_mtls_refuses_a_client_without_a_certificate(
    start_fake_server: Any, mtls: ServerTls, tls_files: dict[str, Path]
) -> None:
    server: FakeServer = start_fake_server(FakeAdaptationCore(), tls=mtls)
    assert (
        refused(server.address, ChannelOptions(ca=tls_files["server-ca.pem"])).code == "UNAVAILABLE"
    )


def test_mtls_accepts_a_client_certificate_signed_by_the_client_ca(
    start_fake_server: Any, mtls: ServerTls, tls_files: dict[str, Path]
) -> None:
    server: FakeServer = start_fake_server(FakeAdaptationCore(), tls=mtls)
    options = ChannelOptions(
        ca=tls_files["server-ca.pem"], cert=tls_files["client.pem"], key=tls_files["client.key"]
    )
    assert list_models(server.address, options) == [MODEL]


def test_mtls_refuses_a_client_certificate_from_another_ca(
    start_fake_server: Any, mtls: ServerTls, tls_files: dict[str, Path]
) -> None:
    server: FakeServer = start_fake_server(FakeAdaptationCore(), tls=mtls)
    options = ChannelOptions(
        ca=tls_files["server-ca.pem"], cert=tls_files["stranger.pem"], key=tls_files["stranger.key"]
    )
    assert refused(server.address, options).code == "UNAVAILABLE"


# ---- tokens over TLS ----------------------------------------------------------------------------


@pytest.fixture
def secure_server(
    start_fake_server: Any, tls: ServerTls, tls_files: dict[str, Path]
) -> tuple[FakeServer, Path]:
    store = TokenStore.load(None, TOKENS)
    server: FakeServer = start_fake_server(FakeAdaptationCore(), tokens=store, tls=tls)
    return server, tls_files["server-ca.pem"]


def test_token_travels_as_call_credentials_over_tls(
    secure_server: tuple[FakeServer, Path],
) -> None:
    server, ca = secure_server
    assert list_models(server.address, ChannelOptions(ca=ca, token=ADMIN_TOKEN)) == [MODEL]
    error = refused(server.address, ChannelOptions(ca=ca))
    assert error.code == "UNAUTHENTICATED"
    assert "requires a bearer token" in str(error)


def test_plaintext_channel_sends_the_token_as_metadata(start_fake_server: Any) -> None:
    server: FakeServer = start_fake_server(
        FakeAdaptationCore(), tokens=TokenStore.load(None, TOKENS)
    )
    assert list_models(server.address, ChannelOptions(token=LABEL_TOKEN)) == [MODEL]
    options = ChannelOptions(token=LABEL_TOKEN)
    with (
        AdaptationClient(server.address, options=options) as client,
        pytest.raises(ClientError) as info,
    ):
        client.list_versions(MODEL)
    assert info.value.code == "PERMISSION_DENIED"


def test_channel_options_are_validated(tls_files: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="give both --tls-cert and --tls-key"):
        open_channel("127.0.0.1:1", ChannelOptions(cert=tls_files["client.pem"]))
    with pytest.raises(ConfigError, match=r"cannot read TLS CA .*absent\.pem"):
        open_channel("127.0.0.1:1", ChannelOptions(ca=tmp_path / "absent.pem"))
    (tmp_path / "junk.pem").write_text("not a certificate")
    with pytest.raises(ConfigError, match=r"TLS CA .*junk\.pem is not a PEM file"):
        open_channel("127.0.0.1:1", ChannelOptions(ca=tmp_path / "junk.pem"))


def test_channel_options_from_the_environment(tls_files: dict[str, Path]) -> None:
    env = {
        "LOOPSERVE_TOKEN": ADMIN_TOKEN,
        "LOOPSERVE_TLS_CA": str(tls_files["server-ca.pem"]),
        "LOOPSERVE_TLS_CLIENT_CERT": str(tls_files["client.pem"]),
        "LOOPSERVE_TLS_CLIENT_KEY": str(tls_files["client.key"]),
        "LOOPSERVE_TLS_SERVER_NAME": "localhost",
    }
    options = ChannelOptions.from_env(env)
    assert options == ChannelOptions(
        token=ADMIN_TOKEN,
        ca=tls_files["server-ca.pem"],
        cert=tls_files["client.pem"],
        key=tls_files["client.key"],
        server_name="localhost",
    )
    assert options.secure
    assert ADMIN_TOKEN not in repr(options)
    assert (
        ChannelOptions.from_env(env, token="flag-token-0123456789").token == "flag-token-0123456789"
    )
    assert not ChannelOptions.from_env({}).secure


def test_a_failed_server_start_names_the_unreadable_tls_file(tmp_path: Path) -> None:
    from service.api import build_server
    from service.inference import InferenceService
    from service.metrics import Metrics

    tls = ServerTls(tmp_path / "missing.pem", tmp_path / "missing.key")
    with pytest.raises(ConfigError, match=r"cannot read TLS certificate .*missing\.pem"):
        build_server(InferenceService({}), Metrics(), "127.0.0.1", 0, tls=tls)


# ---- loopserve commands with --token and TLS ----------------------------------------------------

REMOTE_COMMANDS = [
    ["versions"],
    ["status"],
    ["finetune", "--reason", "test"],
    ["drift"],
    ["rollback", "1"],
]


@pytest.mark.parametrize("command", REMOTE_COMMANDS, ids=lambda c: c[0])
def test_remote_commands_take_token_and_tls_flags(
    secure_server: tuple[FakeServer, Path],
    command: list[str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    server, ca = secure_server
    flags = ["--addr", server.address, "--tls-ca", str(ca), "--token", ADMIN_TOKEN]
    assert main([*command, *flags]) == 0, capsys.readouterr().err
    assert main([*command, "--addr", server.address, "--tls-ca", str(ca)]) == 1
    assert "UNAUTHENTICATED" in capsys.readouterr().err


def test_label_and_candidates_with_a_label_token(
    secure_server: tuple[FakeServer, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server, ca = secure_server
    monkeypatch.setenv("LOOPSERVE_TOKEN", LABEL_TOKEN)  # the default of --token
    monkeypatch.setenv("LOOPSERVE_TLS_CA", str(ca))
    out = tmp_path / "candidates.csv"
    assert main(["candidates", "--addr", server.address, "--out", str(out)]) == 0
    labels = tmp_path / "labels.csv"
    labels.write_text("text,label\nwhere is my parcel,shipping\n")
    assert main(["label", str(labels), "--addr", server.address]) == 0
    assert "1 accepted" in capsys.readouterr().out
    # The label token may not start a fine-tune.
    assert main(["finetune", "--addr", server.address]) == 1
    assert "PERMISSION_DENIED: token 'labeler'" in capsys.readouterr().err


def test_commands_refuse_a_half_client_certificate(
    secure_server: tuple[FakeServer, Path],
    tls_files: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    server, _ = secure_server
    code = main(["status", "--addr", server.address, "--tls-cert", str(tls_files["client.pem"])])
    assert code == 2
    assert "give both --tls-cert and --tls-key" in capsys.readouterr().err


def test_predict_and_label_over_mtls_with_tokens_against_the_real_app(
    start_app: Any, tls_files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    app = start_app(
        tokens=TOKENS + ";reader:infer:reader-7c1d0e5b9a8f4e2d",
        tls_cert=tls_files["server.pem"],
        tls_key=tls_files["server.key"],
        tls_client_ca=tls_files["client-ca.pem"],
        metrics_token="scrape-token-0123456789",
    )
    metrics_url = f"http://127.0.0.1:{app.app.metrics_port}/metrics"
    with pytest.raises(urllib.error.HTTPError) as refused_scrape:
        urllib.request.urlopen(metrics_url, timeout=5)
    assert refused_scrape.value.code == 401
    scrape = urllib.request.Request(
        metrics_url, headers={"Authorization": "Bearer scrape-token-0123456789"}
    )
    with urllib.request.urlopen(scrape, timeout=5) as response:
        assert response.status == 200
    flags = [
        "--addr", f"localhost:{app.app.grpc_port}", "--tls-ca", str(tls_files["server-ca.pem"]),
        "--tls-cert", str(tls_files["client.pem"]), "--tls-key", str(tls_files["client.key"]),
    ]  # fmt: skip
    args = ["predict", "hello hi the team", *flags, "--json"]
    assert main([*args, "--token", "reader-7c1d0e5b9a8f4e2d"]) == 0
    assert '"label"' in capsys.readouterr().out
    assert main([*args, "--token", LABEL_TOKEN]) == 1
    assert "PERMISSION_DENIED" in capsys.readouterr().err
    labels = tmp_path / "labels.csv"
    labels.write_text("text,label\nhello there,greeting\n")
    assert main(["label", str(labels), *flags, "--token", LABEL_TOKEN]) == 0
    assert "1 accepted" in capsys.readouterr().out
    # Without the client certificate the handshake fails.
    plain = [
        "--addr",
        f"localhost:{app.app.grpc_port}",
        "--tls-ca",
        str(tls_files["server-ca.pem"]),
    ]
    assert main(["predict", "hello", *plain, "--token", ADMIN_TOKEN]) == 1
    assert "UNAVAILABLE" in capsys.readouterr().err


def test_health_port_answers_plaintext_probes_of_a_tls_app(
    start_app: Any, tls_files: dict[str, Path]
) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from service.api._proto.inference import grpc_predict_v2_pb2 as pb
    from service.api._proto.inference.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub

    app = start_app(
        tls_cert=tls_files["server.pem"], tls_key=tls_files["server.key"], health_port=0,
        tokens=TOKENS,
    )  # fmt: skip
    request = health_pb2.HealthCheckRequest(service="inference.GRPCInferenceService")
    with grpc.insecure_channel(app.address) as channel, pytest.raises(grpc.RpcError) as info:
        health_pb2_grpc.HealthStub(channel).Check(request, timeout=3)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE  # the main port speaks TLS only
    probe_port = app.app.grpc.health_port
    assert probe_port and probe_port != app.app.grpc_port
    with grpc.insecure_channel(f"127.0.0.1:{probe_port}") as channel:
        response = health_pb2_grpc.HealthStub(channel).Check(request, timeout=3)
        assert response.status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as info:  # and nothing but health
            GRPCInferenceServiceStub(channel).ServerLive(pb.ServerLiveRequest(), timeout=3)
        assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
