"""TLS and mutual TLS for the gRPC port (`--tls-cert-file`, `--tls-key-file`,
`--tls-client-ca-file`), and the matching client side for `dspy-bridge health`.

Files are read and checked at start: a missing, unreadable or non-PEM file, or a key that does
not match its certificate, stops the server with the setting's name rather than failing the
first handshake.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import grpc

from dspy_bridge.config import Settings, setting_label
from dspy_bridge.errors import StartupError


class TLSConfigError(StartupError, ValueError):
    """A TLS file named in the settings cannot be used; the message names the setting."""


def read_pem(path: str, setting: str) -> bytes:
    """The PEM file at `path`; errors name `setting` (how the user gave the path)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise TLSConfigError(f"{setting}: cannot read {path}: {exc.strerror or exc}") from None
    if b"-----BEGIN " not in data:
        raise TLSConfigError(f"{setting}: {path} is not a PEM file")
    return data


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """The port's credentials: None for plaintext, TLS with the server's certificate, and
    mutual TLS (client certificates required and checked) with a client CA."""
    if not settings.tls_cert_file:
        return None
    chain = read_pem(settings.tls_cert_file, setting_label("tls_cert_file"))
    key = read_pem(settings.tls_key_file, setting_label("tls_key_file"))
    client_ca = (
        read_pem(settings.tls_client_ca_file, setting_label("tls_client_ca_file"))
        if settings.tls_client_ca_file
        else None
    )
    _check_loadable(settings, client_ca)
    return grpc.ssl_server_credentials(
        [(key, chain)], root_certificates=client_ca, require_client_auth=client_ca is not None
    )


def _check_loadable(settings: Settings, client_ca: bytes | None) -> None:
    """Parses the files as a TLS library will: a key that does not match its certificate (or
    is encrypted) and a CA file without certificates fail here, by name, not at bind time."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        # An empty password: an encrypted key fails instead of prompting on a terminal.
        context.load_cert_chain(settings.tls_cert_file, settings.tls_key_file, password=b"")
    except ssl.SSLError as exc:
        raise TLSConfigError(
            f"{setting_label('tls_key_file')}: {settings.tls_key_file} does not match the "
            f"certificate of {setting_label('tls_cert_file')} "
            f"{settings.tls_cert_file}, or is encrypted ({exc.reason or exc})"
        ) from None
    if client_ca is not None:
        try:
            context.load_verify_locations(cadata=client_ca.decode(errors="replace"))
        except ssl.SSLError as exc:
            raise TLSConfigError(
                f"{setting_label('tls_client_ca_file')}: {settings.tls_client_ca_file} holds no "
                "usable CA "
                f"certificate ({exc.reason or exc})"
            ) from None


def mode(settings: Settings) -> str:
    """`mutual`, `tls` or `off`, for the serving log line."""
    if settings.tls_client_ca_file:
        return "mutual"
    return "tls" if settings.tls_cert_file else "off"


def channel_credentials(
    ca_file: str = "", cert_file: str = "", key_file: str = ""
) -> grpc.ChannelCredentials:
    """Client credentials: `ca_file` to verify the server (empty: the system's roots), and a
    client certificate for mutual TLS when `cert_file` and `key_file` are given."""
    if bool(cert_file) != bool(key_file):
        raise TLSConfigError("a client certificate needs both its certificate and its key")
    return grpc.ssl_channel_credentials(
        root_certificates=read_pem(ca_file, "--tls-ca") if ca_file else None,
        private_key=read_pem(key_file, "--tls-key") if key_file else None,
        certificate_chain=read_pem(cert_file, "--tls-cert") if cert_file else None,
    )
