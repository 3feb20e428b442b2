"""Tokens revoked or added in the tokens file take effect without a restart (polled, SIGHUP);
a new file that does not parse keeps the tokens in force. And the app logs its health port."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from fake_adaptation import FakeAdaptationCore, FakeServer
from waiting import wait_until

from service.api._proto.loopserve.v1 import adaptation_pb2 as apb
from service.api._proto.loopserve.v1.adaptation_pb2_grpc import AdaptationStub
from service.errors import Unauthenticated
from service.security import TokenFileWatcher, TokenStore

OPERATOR = "operator:admin:operator-5e6f7a8b9c0d1e2f"
LABELER = "labeler:label:labeler-0f3b5c7d9e1a2b4c"
NEWCOMER = "newcomer:label:newcomer-9a8b7c6d5e4f3a2b"


def secret(line: str) -> str:
    return line.split(":", 2)[2]


def replace_file(path: Path, *lines: str) -> None:
    """As an operator should: write a new file and rename it over the old one."""
    tmp = path.with_name(path.name + ".new")
    tmp.write_text("".join(f"{line}\n" for line in lines))
    os.replace(tmp, path)


@pytest.fixture
def tokens_file(tmp_path: Path) -> Path:
    path = tmp_path / "tokens"
    replace_file(path, OPERATOR, LABELER)
    return path


@pytest.fixture
def tokens(tokens_file: Path) -> TokenStore:
    store = TokenStore.load(tokens_file, "")
    assert store is not None
    return store


# ---- over gRPC, with the polling thread ----------------------------------------------------------


@pytest.fixture
def watcher(tokens: TokenStore, tokens_file: Path) -> Iterator[TokenFileWatcher]:
    watching = TokenFileWatcher(tokens, tokens_file, interval=0.05)
    watching.start()
    yield watching
    watching.stop()


@pytest.fixture
def stub(start_fake_server: Any, tokens: TokenStore) -> Iterator[AdaptationStub]:
    server: FakeServer = start_fake_server(FakeAdaptationCore(), tokens=tokens)
    with grpc.insecure_channel(server.address) as channel:
        yield AdaptationStub(channel)


def code_for(stub: AdaptationStub, line: str) -> grpc.StatusCode:
    metadata = [("authorization", f"Bearer {secret(line)}")]
    try:
        stub.ListModels(apb.ListModelsRequest(), metadata=metadata, timeout=5)
    except grpc.RpcError as exc:
        code: grpc.StatusCode = exc.code()
        return code
    return grpc.StatusCode.OK


def test_a_token_removed_from_the_file_is_refused_without_a_restart(
    watcher: TokenFileWatcher, stub: AdaptationStub, tokens_file: Path
) -> None:
    assert code_for(stub, LABELER) == grpc.StatusCode.OK
    replace_file(tokens_file, OPERATOR, NEWCOMER)
    wait_until(lambda: code_for(stub, LABELER) == grpc.StatusCode.UNAUTHENTICATED)
    assert code_for(stub, NEWCOMER) == grpc.StatusCode.OK
    assert code_for(stub, OPERATOR) == grpc.StatusCode.OK


def test_sighup_reloads_at_once(tokens: TokenStore, tokens_file: Path) -> None:
    watching = TokenFileWatcher(tokens, tokens_file, interval=3600)  # no poll during the test
    watching.start()
    try:
        replace_file(tokens_file, OPERATOR)
        watching.reload_soon()
        wait_until(lambda: tokens.names == ("operator",))
    finally:
        watching.stop()


# ---- one check at a time ------------------------------------------------------------------------


def test_a_malformed_file_keeps_the_tokens_in_force_and_logs_an_error(
    tokens: TokenStore, tokens_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    watching = TokenFileWatcher(tokens, tokens_file)
    replace_file(tokens_file, OPERATOR, "broken line")
    assert watching.check() is False
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert f"{tokens_file}: line 2: expected name:scope" in errors[0].getMessage()
    assert "previous ones stay in force" in errors[0].getMessage()
    assert tokens.authenticate(secret(LABELER)).name == "labeler"
    # The same broken file is not reported again on every poll.
    assert watching.check() is False
    assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 1
    # Fixed: the new tokens are in force.
    replace_file(tokens_file, OPERATOR)
    assert watching.check() is True
    with pytest.raises(Unauthenticated):
        tokens.authenticate(secret(LABELER))


def test_a_deleted_file_keeps_the_tokens_in_force(
    tokens: TokenStore, tokens_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    watching = TokenFileWatcher(tokens, tokens_file)
    tokens_file.unlink()
    assert watching.check() is False
    assert "cannot read tokens file" in caplog.text
    assert tokens.names == ("operator", "labeler")


def test_an_unchanged_file_is_not_read_again_and_the_log_names_changes_not_tokens(
    tokens: TokenStore, tokens_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="service.security")
    watching = TokenFileWatcher(tokens, tokens_file)
    assert watching.check() is False
    replace_file(tokens_file, OPERATOR, NEWCOMER)
    assert watching.check() is True
    assert "added newcomer; removed labeler" in caplog.text
    for line in (OPERATOR, LABELER, NEWCOMER):
        assert secret(line) not in caplog.text


def test_environment_tokens_stay_beside_the_reloaded_file(tokens_file: Path) -> None:
    tokens = TokenStore.load(tokens_file, NEWCOMER)
    assert tokens is not None
    watching = TokenFileWatcher(tokens, tokens_file, inline=NEWCOMER)
    replace_file(tokens_file, OPERATOR)
    assert watching.check() is True
    assert tokens.names == ("operator", "newcomer")


# ---- the app ------------------------------------------------------------------------------------


def test_the_app_reloads_its_tokens_file_and_logs_its_health_port(
    start_app: Any, tokens_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="service.app")
    app = start_app(tokens_file=tokens_file, health_port=0)
    health_port = app.app.grpc.health_port
    assert health_port
    assert f"health checks (grpc.health.v1, plaintext) on 127.0.0.1:{health_port}" in caplog.text
    with grpc.insecure_channel(app.address) as channel:
        stub = AdaptationStub(channel)
        assert code_for(stub, LABELER) == grpc.StatusCode.OK
        replace_file(tokens_file, OPERATOR)
        app.loop.call_soon_threadsafe(app.app.reload_tokens)  # what SIGHUP does
        wait_until(lambda: code_for(stub, LABELER) == grpc.StatusCode.UNAUTHENTICATED)
