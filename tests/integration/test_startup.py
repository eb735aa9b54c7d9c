"""A server that cannot start says why in one line naming the setting (its flag and its
environment variable), exits 2, and starts nothing: the ports are bound before the store is
opened, workers run or jobs left RUNNING by another process are touched."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from dspy_bridge.errors import StartupError
from dspy_bridge.transport.server import start_server
from tests.conftest import test_settings
from tests.process import failed_start


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A loopback port another socket is listening on."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


def _assert_one_line_naming(stderr: str, flag: str, env: str, *details: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr  # no traceback, no gRPC C-core line, no log noise
    assert lines[0].startswith(f"dspy-bridge: {flag} ({env})"), lines[0]
    for detail in details:
        assert detail in lines[0]
    return lines[0]


async def test_a_busy_port_fails_before_the_store_is_opened(busy_port: int, tmp_path: Path) -> None:
    db = tmp_path / "bridge.db"
    settings = test_settings(port=busy_port, store=f"sqlite:///{db}")
    with pytest.raises(StartupError, match=f"cannot listen on 127.0.0.1:{busy_port}"):
        await start_server(settings)
    assert not db.exists()  # the store was never opened, so nothing in it was touched


def test_a_busy_port(busy_port: int) -> None:
    done = failed_start("--port", str(busy_port))
    assert done.returncode == 2
    _assert_one_line_naming(
        done.stderr, "--port", "DSPY_BRIDGE_PORT", f"cannot listen on 127.0.0.1:{busy_port}"
    )


def test_a_busy_metrics_port(busy_port: int, tmp_path: Path) -> None:
    db = tmp_path / "bridge.db"
    done = failed_start(
        "--port", "0", "--metrics-port", str(busy_port), "--store", f"sqlite:///{db}"
    )
    assert done.returncode == 2
    _assert_one_line_naming(
        done.stderr, "--metrics-port", "DSPY_BRIDGE_METRICS_PORT", "Address already in use"
    )
    assert not db.exists()


@pytest.mark.parametrize(
    ("url", "detail"),
    [
        ("foo.db", "unsupported store URL 'foo.db'"),
        ("sqlite:////proc/x.db", "cannot open the sqlite database /proc/x.db"),
    ],
)
def test_an_unusable_store_url(url: str, detail: str) -> None:
    done = failed_start("--port", "0", "--store", url)
    assert done.returncode == 2
    _assert_one_line_naming(done.stderr, "--store", "DSPY_BRIDGE_STORE", detail)


def test_a_store_in_a_missing_directory_is_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "typo" / "bridge.db"
    done = failed_start("--port", "0", env={"DSPY_BRIDGE_STORE": f"sqlite:///{missing}"})
    assert done.returncode == 2
    _assert_one_line_naming(done.stderr, "--store", "DSPY_BRIDGE_STORE", "does not exist")
    assert not missing.parent.exists()


@pytest.mark.parametrize(
    ("args", "env", "flag", "detail"),
    [
        (["--port", "70000"], {}, "--port", "less than or equal to 65535"),
        ([], {"DSPY_BRIDGE_METRICS_PORT": "-1"}, "--metrics-port", "greater than or equal to 0"),
        ([], {"DSPY_BRIDGE_MAX_RUNNING_JOBS": "many"}, "--max-running-jobs", "valid integer"),
        (["--log-level", "loud"], {}, "--log-level", "debug, info, warning or error"),
        (["--log-format", "xml"], {}, "--log-format", "'auto', 'json' or 'console'"),
    ],
)
def test_an_invalid_value(args: list[str], env: dict[str, str], flag: str, detail: str) -> None:
    done = failed_start(*args, env=env)
    assert done.returncode == 2
    env_name = "DSPY_BRIDGE_" + flag.removeprefix("--").replace("-", "_").upper()
    _assert_one_line_naming(done.stderr, flag, env_name, detail)


@pytest.mark.parametrize(
    ("args", "flag", "detail"),
    [
        (["--lm-allowed-api-bases", "ftp://x"], "--lm-allowed-api-bases", "http:// or https://"),
        (["--lm-api-key-env", "DSPY_BRIDGE_AUTH_TOKEN"], "--lm-api-key-env", "own settings"),
    ],
)
def test_an_unusable_lm_allow_list(args: list[str], flag: str, detail: str) -> None:
    done = failed_start(*args)
    assert done.returncode == 2
    env_name = "DSPY_BRIDGE_" + flag.removeprefix("--").replace("-", "_").upper()
    _assert_one_line_naming(done.stderr, flag, env_name, detail)


def test_an_unreadable_tls_file(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.pem")
    done = failed_start("--port", "0", "--tls-cert-file", missing, "--tls-key-file", missing)
    assert done.returncode == 2
    _assert_one_line_naming(
        done.stderr, "--tls-cert-file", "DSPY_BRIDGE_TLS_CERT_FILE", f"cannot read {missing}"
    )


def test_a_half_tls_configuration() -> None:
    done = failed_start("--port", "0", env={"DSPY_BRIDGE_TLS_KEY_FILE": "key.pem"})
    assert done.returncode == 2
    _assert_one_line_naming(
        done.stderr, "--tls-cert-file", "DSPY_BRIDGE_TLS_CERT_FILE", "must be set together"
    )


def test_an_unreadable_tokens_file(tmp_path: Path) -> None:
    missing = str(tmp_path / "tokens")
    done = failed_start("--port", "0", "--auth-tokens-file", missing)
    assert done.returncode == 2
    _assert_one_line_naming(
        done.stderr, "--auth-tokens-file", "DSPY_BRIDGE_AUTH_TOKENS_FILE", "cannot read"
    )


def test_a_secret_is_never_echoed() -> None:
    done = failed_start("--port", "0", env={"DSPY_BRIDGE_AUTH_TOKEN": "has space sk-secret"})
    assert done.returncode == 2
    line = _assert_one_line_naming(done.stderr, "--auth-token", "DSPY_BRIDGE_AUTH_TOKEN")
    assert "sk-secret" not in line
