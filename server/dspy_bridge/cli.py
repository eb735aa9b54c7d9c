"""Command line: `dspy-bridge serve` runs the sidecar, `dspy-bridge health` probes one, and the
admin commands (`sessions`, `variables`, `modules`, `jobs`, `info`; see admin.py) look into one."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

# Before gRPC loads: the sidecar never uses gRPC in a forked child (workers are exec'd, jobs
# come from a forkserver), so gRPC's fork handlers only cost time and log "skipping fork()
# handlers" at every worker or job start.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pydantic import ValidationError

from dspy_bridge import __version__, admin
from dspy_bridge.config import Settings, setting_label
from dspy_bridge.errors import StartupError
from dspy_bridge.log import configure_logging
from dspy_bridge.loop import run
from dspy_bridge.transport.tls import TLSConfigError, channel_credentials
from dspy_bridge_client import BridgeClient


def _flag_type(name: str) -> type:
    """The argparse type of a settings field (Literal and str fields parse as str)."""
    annotation = Settings.model_fields[name].annotation
    if annotation is int:
        return int
    return float if annotation is float else str


def _default_text(name: str) -> str:
    field = Settings.model_fields[name]
    return "CPU count" if field.default_factory is not None else repr(field.default)


def _connection_flags() -> argparse.ArgumentParser:
    """The flags of every command that talks to a running sidecar (`health`, the admin ones)."""
    flags = argparse.ArgumentParser(add_help=False)
    flags.add_argument("--target", default=None, help="host:port (default from settings)")
    flags.add_argument(
        "--timeout", type=float, default=None, help="seconds to wait (health: 3, others: 30)"
    )
    tls_help = " (TLS is used when the settings enable it or any --tls-* flag is given)"
    flags.add_argument("--tls-ca", default="", help="PEM CA to verify the server" + tls_help)
    flags.add_argument(
        "--tls-cert",
        default="",
        help="PEM client certificate for mutual TLS (default: the server's own certificate when "
        "the settings require client certificates)",
    )
    flags.add_argument("--tls-key", default="", help="PEM key of --tls-cert")
    flags.add_argument(
        "--tls-server-name", default="", help="name the server's certificate must hold"
    )
    return flags


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dspy-bridge", description=__doc__)
    parser.add_argument("--version", action="version", version=f"dspy-bridge {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the sidecar")
    # Every setting is a flag and an env var DSPY_BRIDGE_<NAME>; a flag wins over the env.
    for name, field in Settings.model_fields.items():
        flag = f"--{name.replace('_', '-')}"
        help_text = f"{field.description} [{_default_text(name)}; DSPY_BRIDGE_{name.upper()}]"
        if field.annotation is bool:  # a switch: given means true; absent leaves the env's
            serve.add_argument(flag, dest=name, action="store_const", const=True, help=help_text)
        else:
            serve.add_argument(flag, dest=name, type=_flag_type(name), help=help_text)
    connection = _connection_flags()
    commands.add_parser(
        "health", parents=[connection], help="exit 0 if the sidecar reports SERVING"
    )
    # -- admin commands over the public API (admin.py) -------------------------------------
    admin.add_commands(commands, connection)
    return parser


#: Exit status of a start that failed on its settings (argparse uses 2 for bad flags too).
EXIT_BAD_SETTINGS = 2


def _settings(overrides: dict[str, object]) -> Settings:
    """The settings, or exit 2 with one line per invalid setting naming its flag and env var."""
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})  # type: ignore[arg-type]
    except ValidationError as err:
        # Without the input values: one of them may be a secret (auth_token).
        for problem in err.errors(include_input=False, include_url=False):
            where = [str(part) for part in problem["loc"]]
            message = problem["msg"].removeprefix("Value error, ")
            if where and where[0] in Settings.model_fields:
                message = f"{setting_label(where[0])}: {message}"
            print(f"dspy-bridge: {message}", file=sys.stderr)
        sys.exit(EXIT_BAD_SETTINGS)


def _target(args: argparse.Namespace, settings: Settings) -> str:
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    return str(args.target or f"{host}:{settings.port}")


def _credentials(
    args: argparse.Namespace, settings: Settings
) -> tuple[grpc.ChannelCredentials | None, list[tuple[str, str]]]:
    """TLS credentials and channel options as the sidecar's settings and the --tls-* flags call
    for; None for plaintext."""
    if not (settings.tls_cert_file or args.tls_ca or args.tls_cert or args.tls_server_name):
        return None, []
    cert, key = args.tls_cert, args.tls_key
    if not cert and settings.tls_client_ca_file:  # mutual TLS: show the server's own certificate
        cert, key = settings.tls_cert_file, settings.tls_key_file
    credentials = channel_credentials(args.tls_ca, cert, key)
    options = (
        [("grpc.ssl_target_name_override", args.tls_server_name)] if args.tls_server_name else []
    )
    return credentials, options


def _health_channel(args: argparse.Namespace, settings: Settings, target: str) -> grpc.Channel:
    """A channel as the sidecar's settings and the --tls-* flags call for."""
    credentials, options = _credentials(args, settings)
    if credentials is None:
        return grpc.insecure_channel(target)
    return grpc.secure_channel(target, credentials, options=options)


def _admin_client(args: argparse.Namespace) -> BridgeClient:
    """The client of an admin command: the health command's connection, plus the token."""
    settings = _settings({})
    credentials, options = _credentials(args, settings)
    token = admin.token(args)
    return BridgeClient(
        _target(args, settings),
        timeout=30.0 if args.timeout is None else args.timeout,
        metadata={"authorization": f"Bearer {token}"} if token else {},
        credentials=credentials,
        options=options,
    )


def _health(channel: grpc.Channel, timeout: float) -> int:
    with channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout)
        except grpc.RpcError as err:
            print(f"unhealthy: {err.code().name} {err.details()}", file=sys.stderr)
            return 1
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    print(status)
    return 0 if reply.status == health_pb2.HealthCheckResponse.SERVING else 1


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "health":
        settings = _settings({})
        try:
            channel = _health_channel(args, settings, _target(args, settings))
        except TLSConfigError as err:
            print(f"unhealthy: {err}", file=sys.stderr)
            return 1
        return _health(channel, 3.0 if args.timeout is None else args.timeout)
    if getattr(args, "admin", None) is not None:
        try:
            return admin.run(args, _admin_client)
        except TLSConfigError as err:
            print(f"dspy-bridge: {err}", file=sys.stderr)
            return 1
    settings = _settings({name: getattr(args, name) for name in Settings.model_fields})
    configure_logging(settings.log_level, settings.log_format)
    from dspy_bridge import tracing  # OpenTelemetry, when its environment variables ask for it

    tracing.configure_tracing()
    from dspy_bridge.transport.server import serve  # heavy imports only when serving

    try:
        run(serve(settings), settings.event_loop)
    except StartupError as err:  # one line naming the setting to change; nothing was started
        print(f"dspy-bridge: {err}", file=sys.stderr)
        return EXIT_BAD_SETTINGS
    finally:
        tracing.shutdown_tracing()
    return 0


if __name__ == "__main__":
    sys.exit(main())
