"""TLS and mutual TLS on the gRPC port through real channels (certificates from `trustme`):
plaintext and unknown clients are refused, verified clients get through, bad TLS settings stop
the server before it starts anything, and `dspy-bridge health` speaks TLS."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
import pytest_asyncio
import trustme

from dspy_bridge.cli import main
from dspy_bridge.config import Settings
from dspy_bridge.transport.server import RunningServer, start_server
from dspy_bridge.transport.tls import TLSConfigError
from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2 as pb
from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2_grpc as pb_grpc
from tests.conftest import test_settings


class Pki:
    """A CA, a server certificate for localhost/127.0.0.1 and a client certificate, as files."""

    def __init__(self, root: Path) -> None:
        self.ca = trustme.CA()
        self.root = root
        self.ca_file = self._write("ca.pem", self.ca.cert_pem.bytes())
        server = self.ca.issue_cert("localhost", "127.0.0.1")
        self.cert_file = self._write(
            "server.pem", b"".join(p.bytes() for p in server.cert_chain_pems)
        )
        self.key_file = self._write("server.key", server.private_key_pem.bytes())
        client = self.ca.issue_cert("client.example")
        self.client_cert = b"".join(p.bytes() for p in client.cert_chain_pems)
        self.client_key = client.private_key_pem.bytes()
        self.client_cert_file = self._write("client.pem", self.client_cert)
        self.client_key_file = self._write("client.key", self.client_key)

    def _write(self, name: str, data: bytes) -> str:
        path = self.root / name
        path.write_bytes(data)
        return str(path)

    def server_settings(self, mutual: bool = False) -> dict[str, object]:
        settings: dict[str, object] = {
            "tls_cert_file": self.cert_file,
            "tls_key_file": self.key_file,
        }
        if mutual:
            settings["tls_client_ca_file"] = self.ca_file
        return settings

    def credentials(self, with_client_cert: bool = False) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca.cert_pem.bytes(),
            private_key=self.client_key if with_client_cert else None,
            certificate_chain=self.client_cert if with_client_cert else None,
        )


def _presenting(pki: Pki, cert: trustme.LeafCert) -> grpc.ChannelCredentials:
    """Credentials that trust `pki`'s CA and present `cert` as the client certificate."""
    return grpc.ssl_channel_credentials(
        root_certificates=pki.ca.cert_pem.bytes(),
        private_key=cert.private_key_pem.bytes(),
        certificate_chain=b"".join(p.bytes() for p in cert.cert_chain_pems),
    )


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path)


@pytest_asyncio.fixture
async def tls_server(pki: Pki) -> AsyncIterator[RunningServer]:
    running = await start_server(test_settings(**pki.server_settings()))
    try:
        yield running
    finally:
        await running.stop(grace=0)


@pytest_asyncio.fixture
async def mtls_server(pki: Pki) -> AsyncIterator[RunningServer]:
    running = await start_server(test_settings(**pki.server_settings(mutual=True)))
    try:
        yield running
    finally:
        await running.stop(grace=0)


async def _create_session(target: str, credentials: grpc.ChannelCredentials | None) -> str:
    channel = (
        grpc.aio.secure_channel(target, credentials)
        if credentials is not None
        else grpc.aio.insecure_channel(target)
    )
    async with channel:
        stub = pb_grpc.BridgeServiceStub(channel)
        response = await stub.CreateSession(pb.CreateSessionRequest(), timeout=10)
        return str(response.session.session_id)


async def test_a_verified_client_gets_through_tls(tls_server: RunningServer, pki: Pki) -> None:
    target = f"localhost:{tls_server.port}"
    assert await _create_session(target, pki.credentials())


async def test_plaintext_and_unverifiable_servers_fail(tls_server: RunningServer) -> None:
    target = f"localhost:{tls_server.port}"
    with pytest.raises(grpc.aio.AioRpcError) as plaintext:
        await _create_session(target, None)
    assert plaintext.value.code() == grpc.StatusCode.UNAVAILABLE
    stranger = trustme.CA()  # the client trusts another CA: the handshake fails
    credentials = grpc.ssl_channel_credentials(root_certificates=stranger.cert_pem.bytes())
    with pytest.raises(grpc.aio.AioRpcError) as unverified:
        await _create_session(target, credentials)
    assert unverified.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_mutual_tls_needs_a_client_certificate_the_ca_signed(
    mtls_server: RunningServer, pki: Pki
) -> None:
    target = f"localhost:{mtls_server.port}"
    assert await _create_session(target, pki.credentials(with_client_cert=True))
    with pytest.raises(grpc.aio.AioRpcError) as anonymous:
        await _create_session(target, pki.credentials())
    assert anonymous.value.code() == grpc.StatusCode.UNAVAILABLE
    credentials = _presenting(pki, trustme.CA().issue_cert("client.example"))
    with pytest.raises(grpc.aio.AioRpcError) as foreign:
        await _create_session(target, credentials)
    assert foreign.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_under_mutual_tls_each_certificate_owns_its_sessions(
    mtls_server: RunningServer, pki: Pki
) -> None:
    target = f"localhost:{mtls_server.port}"

    def as_(*names: str) -> grpc.ChannelCredentials:
        return _presenting(pki, pki.ca.issue_cert(*names))

    # A shared name first: the caller is every name the certificate holds, not the first one.
    ana, bo = as_("shared.example", "ana.example"), as_("shared.example", "bo.example")
    sid = await _create_session(target, ana)
    async with grpc.aio.secure_channel(target, bo) as channel:
        stub = pb_grpc.BridgeServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as hidden:
            await stub.GetSession(pb.GetSessionRequest(session_id=sid), timeout=10)
        assert hidden.value.code() == grpc.StatusCode.NOT_FOUND
        assert list((await stub.ListSessions(pb.ListSessionsRequest(), timeout=10)).sessions) == []
    async with grpc.aio.secure_channel(target, ana) as channel:
        stub = pb_grpc.BridgeServiceStub(channel)
        got = await stub.GetSession(pb.GetSessionRequest(session_id=sid), timeout=10)
        assert got.session.session_id == sid


def _health(monkeypatch: pytest.MonkeyPatch, settings: dict[str, object], *flags: str) -> int:
    """`dspy-bridge health` with `settings` as the sidecar's environment (and only those)."""
    for name in ("tls_cert_file", "tls_key_file", "tls_client_ca_file"):
        monkeypatch.delenv(f"DSPY_BRIDGE_{name.upper()}", raising=False)
    for name, value in settings.items():
        monkeypatch.setenv(f"DSPY_BRIDGE_{name.upper()}", str(value))
    return main(["health", *flags])


async def test_health_speaks_tls_from_the_settings(
    tls_server: RunningServer, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    flags = ("--target", f"127.0.0.1:{tls_server.port}", "--timeout", "10", "--tls-ca", pki.ca_file)
    ok = await asyncio.to_thread(_health, monkeypatch, pki.server_settings(), *flags)
    assert ok == 0
    plain = ("--target", f"127.0.0.1:{tls_server.port}", "--timeout", "2")
    assert await asyncio.to_thread(_health, monkeypatch, {}, *plain) == 1


async def test_health_under_mutual_tls_shows_the_servers_certificate(
    mtls_server: RunningServer, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    flags = (
        "--target",
        f"localhost:{mtls_server.port}",
        "--timeout",
        "10",
        "--tls-ca",
        pki.ca_file,
    )
    settings = pki.server_settings(mutual=True)
    assert await asyncio.to_thread(_health, monkeypatch, settings, *flags) == 0
    explicit = (*flags, "--tls-cert", pki.client_cert_file, "--tls-key", pki.client_key_file)
    assert await asyncio.to_thread(_health, monkeypatch, settings, *explicit) == 0


def test_incomplete_tls_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="must be set together"):
        Settings(tls_cert_file="server.pem")
    with pytest.raises(ValueError, match="needs --tls-cert-file"):
        Settings(tls_client_ca_file="ca.pem")


async def test_an_unusable_file_stops_the_server_before_it_starts(pki: Pki, tmp_path: Path) -> None:
    missing = test_settings(tls_cert_file=str(tmp_path / "nope.pem"), tls_key_file=pki.key_file)
    with pytest.raises(
        TLSConfigError,
        match=r"--tls-cert-file \(DSPY_BRIDGE_TLS_CERT_FILE\): cannot read .*nope\.pem",
    ):
        await start_server(missing)
    garbage = tmp_path / "garbage.key"
    garbage.write_text("not a key")
    not_pem = test_settings(tls_cert_file=pki.cert_file, tls_key_file=str(garbage))
    with pytest.raises(
        TLSConfigError, match=r"--tls-key-file \(DSPY_BRIDGE_TLS_KEY_FILE\): .* is not a PEM file"
    ):
        await start_server(not_pem)


async def test_a_key_that_does_not_match_the_certificate_stops_the_server(pki: Pki) -> None:
    other = pki.ca.issue_cert("localhost")
    stray = pki.root / "other.key"
    stray.write_bytes(other.private_key_pem.bytes())
    mismatched = test_settings(tls_cert_file=pki.cert_file, tls_key_file=str(stray))
    with pytest.raises(TLSConfigError, match="does not match the certificate of --tls-cert-file"):
        await start_server(mismatched)
    no_ca = test_settings(**pki.server_settings(), tls_client_ca_file=pki.key_file)
    with pytest.raises(
        TLSConfigError,
        match=r"--tls-client-ca-file \(DSPY_BRIDGE_TLS_CLIENT_CA_FILE\): .* no usable CA",
    ):
        await start_server(no_ca)


def test_the_command_line_names_the_unusable_file(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.pem")
    serve = [sys.executable, "-m", "dspy_bridge", "serve", "--port", "0", "--workers", "0"]
    flags = ["--tls-cert-file", missing, "--tls-key-file", missing]
    done = subprocess.run([*serve, *flags], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert (
        f"dspy-bridge: --tls-cert-file (DSPY_BRIDGE_TLS_CERT_FILE): cannot read {missing}"
        in done.stderr
    )
