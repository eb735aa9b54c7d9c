"""The admin commands of `dspy-bridge`: look into and manage a running sidecar.

`sessions list|show|delete`, `variables list|get|set|history|watch`, `modules list|show|export`,
`jobs list|show|watch|cancel` and `info` call the sidecar's public API through the Python
client, with the same connection flags as `health` (TLS, mutual TLS) plus a bearer token.
Output is a table (or `key: value` lines) for people and `--json` for scripts.

Sessions are owned per caller when the sidecar names callers (`--auth-tokens-file`, mutual
TLS): these commands see and touch only what the token's (or certificate's) principal owns,
like any other client.
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import json
import os
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from dspy_bridge_client import BridgeClient, BridgeError, SessionHandle

#: Where the token comes from unless `--token-file` names a file (flags show in `ps`).
TOKEN_ENV = "DSPY_BRIDGE_TOKEN"
#: Longest cell of a table; the full value is in `show` and `--json`.
_CELL = 60

Handler = Callable[[BridgeClient, argparse.Namespace], Any]


# -- argument parsing ------------------------------------------------------------------------


def add_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    connection: argparse.ArgumentParser,
) -> None:
    """Adds the admin command groups; `connection` is the parent parser of the connection flags
    (`--target`, `--timeout`, `--tls-*`) shared with `health`."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--token-file",
        default="",
        help=f"file holding the bearer token (default: the {TOKEN_ENV} environment variable)",
    )
    common.add_argument("--json", action="store_true", help="print JSON for scripts")
    parents = [connection, common]

    def group(name: str, help_text: str) -> argparse._SubParsersAction[argparse.ArgumentParser]:
        parser = commands.add_parser(name, help=help_text)
        return parser.add_subparsers(dest="action", required=True)

    def action(
        sub: argparse._SubParsersAction[argparse.ArgumentParser],
        name: str,
        handler: Handler,
        help_text: str,
        *args: str,
    ) -> argparse.ArgumentParser:
        parser = sub.add_parser(name, parents=parents, help=help_text)
        for arg in args:
            parser.add_argument(arg)
        parser.set_defaults(admin=handler)
        return parser

    info = commands.add_parser("info", parents=parents, help="what the sidecar runs and allows")
    info.set_defaults(admin=_info)

    sessions = group("sessions", "list, show or delete sessions")
    action(sessions, "list", _sessions_list, "the sessions this caller can see")
    action(sessions, "show", _sessions_show, "one session", "session")
    action(sessions, "delete", _sessions_delete, "delete a session and all it holds", "session")

    variables = group("variables", "a session's variables")
    listing = action(variables, "list", _variables_list, "a session's variables", "session")
    listing.add_argument("--pattern", default="", help="only names matching this glob")
    action(variables, "get", _variables_get, "one variable", "session", "name")
    setter = action(
        variables, "set", _variables_set, "write a value (JSON, else a string)", *_VAR, "value"
    )
    setter.add_argument("--expected-version", type=int, default=None, help="write only at it")
    setter.add_argument("--reason", default="", help="recorded in the history")
    history = action(variables, "history", _variables_history, "past values", *_VAR)
    history.add_argument("--limit", type=int, default=0, help="newest N (0 = all kept)")
    watch = action(variables, "watch", _variables_watch, "print changes as they happen", "session")
    watch.add_argument("names", nargs="*", help="variables to watch (default: all)")

    modules = group("modules", "a session's modules")
    action(modules, "list", _modules_list, "a session's modules", "session")
    show = action(modules, "show", _modules_show, "one module", "session", "module")
    show.add_argument("--version", type=int, default=0, help="a past version (default: current)")
    export = action(modules, "export", _modules_export, "its state as JSON", "session", "module")
    export.add_argument("--version", type=int, default=0, help="a past version (default: current)")

    jobs = group("jobs", "a session's optimization, evaluation and search jobs")
    job_list = action(jobs, "list", _jobs_list, "a session's jobs", "session")
    job_list.add_argument("--module", default="", help="only jobs of this module")
    action(jobs, "show", _jobs_show, "one job", "session", "job")
    action(jobs, "watch", _jobs_watch, "print a job's progress until it ends", "session", "job")
    action(jobs, "cancel", _jobs_cancel, "cancel a job", "session", "job")


_VAR = ("session", "name")


def token(args: argparse.Namespace) -> str:
    """The bearer token: from `--token-file`, else the environment; empty for none."""
    if args.token_file:
        return Path(args.token_file).read_text().strip()
    return os.environ.get(TOKEN_ENV, "").strip()


def run(args: argparse.Namespace, connect: Callable[[argparse.Namespace], BridgeClient]) -> int:
    """Runs the admin command `args` names over the client `connect` opens."""
    try:
        with connect(args) as client:
            result = args.admin(client, args)
    except BridgeError as err:
        reason = f" {err.reason}" if err.reason else ""
        print(f"dspy-bridge: {err.code.name}{reason}: {err.message}", file=sys.stderr)
        return 1
    except OSError as err:  # an unreadable --token-file
        print(f"dspy-bridge: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # leaving a watch
        return 0
    if result is not None:
        _print(result, args.json)
    return 0


# -- the commands ----------------------------------------------------------------------------


def _info(client: BridgeClient, _: argparse.Namespace) -> Any:
    return client.server_info()


def _sessions_list(client: BridgeClient, _: argparse.Namespace) -> Any:
    rows = list(client.list_sessions())
    return _Table(
        rows, ("session_id", "create_time", "expire_time", "variable_count", "module_count")
    )


def _sessions_show(client: BridgeClient, args: argparse.Namespace) -> Any:
    return client.session(args.session).get()


def _sessions_delete(client: BridgeClient, args: argparse.Namespace) -> Any:
    client.session(args.session).delete()
    return {"deleted": args.session}


def _variables_list(client: BridgeClient, args: argparse.Namespace) -> Any:
    rows = _session(client, args).list_variables(args.pattern)
    return _Table(rows, ("name", "type", "value", "version", "update_time", "source"))


def _variables_get(client: BridgeClient, args: argparse.Namespace) -> Any:
    return _session(client, args).get_variable(args.name)


def _variables_set(client: BridgeClient, args: argparse.Namespace) -> Any:
    return _session(client, args).update_variable(
        args.name,
        _value(args.value),
        expected_version=args.expected_version,
        source="dspy-bridge cli",
        reason=args.reason,
    )


def _variables_history(client: BridgeClient, args: argparse.Namespace) -> Any:
    rows = _session(client, args).history(args.name, args.limit)
    return _Table(rows, ("version", "value", "update_time", "source", "reason"))


def _variables_watch(client: BridgeClient, args: argparse.Namespace) -> None:
    with _session(client, args).watch(args.names, include_initial=True) as events:
        for event in events:
            _print_event(event, args.json)


def _modules_list(client: BridgeClient, args: argparse.Namespace) -> Any:
    rows = _session(client, args).list_modules()
    return _Table(rows, ("module_id", "module_type", "signature", "version", "demo_count"))


def _modules_show(client: BridgeClient, args: argparse.Namespace) -> Any:
    return _session(client, args).get_module(args.module, args.version)


def _modules_export(client: BridgeClient, args: argparse.Namespace) -> Any:
    state = json.loads(_session(client, args).export_state(args.module, args.version))
    return _Raw(state)


def _jobs_list(client: BridgeClient, args: argparse.Namespace) -> Any:
    rows = list(_session(client, args).list_optimizations(args.module))
    return _Table(
        rows,
        ("job_id", "module_id", "optimizer", "status", "progress", "best_score", "create_time"),
    )


def _jobs_show(client: BridgeClient, args: argparse.Namespace) -> Any:
    return _session(client, args).get_optimization(args.job)


def _jobs_watch(client: BridgeClient, args: argparse.Namespace) -> None:
    with _session(client, args).watch_optimization(args.job) as updates:
        for job in updates:
            _print_event(job, args.json)


def _jobs_cancel(client: BridgeClient, args: argparse.Namespace) -> Any:
    return _session(client, args).cancel_optimization(args.job)


def _session(client: BridgeClient, args: argparse.Namespace) -> SessionHandle:
    return client.session(args.session)


def _value(text: str) -> Any:
    """A value from the command line: JSON when it parses (`0.7`, `true`, `[1, 2]`), else the
    text itself (so `hello` needs no quotes)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


# -- output ----------------------------------------------------------------------------------


@dataclasses.dataclass
class _Table:
    """Rows to print as a table of `columns` (or as a JSON list of whole rows)."""

    rows: Sequence[Any]
    columns: Sequence[str]


@dataclasses.dataclass
class _Raw:
    """A JSON document printed as is, with or without `--json`."""

    document: Any


def jsonable(value: Any) -> Any:
    """The client's dataclasses, enums, datetimes and errors as JSON-compatible values."""
    if isinstance(value, BridgeError):
        return {"code": value.code.name, "reason": value.reason, "message": value.message}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, timedelta):  # as protobuf's JSON form of a Duration: "3600s"
        return f"{value.total_seconds():g}s"
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _print(result: Any, as_json: bool) -> None:
    if isinstance(result, _Raw):
        print(json.dumps(result.document, indent=2, ensure_ascii=False))
    elif isinstance(result, _Table):
        if as_json:
            print(json.dumps([jsonable(r) for r in result.rows], indent=2, ensure_ascii=False))
        else:
            print(_table([jsonable(r) for r in result.rows], result.columns))
    elif as_json:
        print(json.dumps(jsonable(result), indent=2, ensure_ascii=False))
    else:
        print(_record(jsonable(result)))


def _print_event(event: Any, as_json: bool) -> None:
    """One line per stream event: JSON, or `Kind key=value ...`."""
    data = jsonable(event)
    if as_json:
        print(json.dumps({"event": type(event).__name__, **data}, ensure_ascii=False), flush=True)
        return
    fields = " ".join(f"{k}={_cell(v)}" for k, v in _flat(data).items() if v not in (None, "", {}))
    print(f"{type(event).__name__} {fields}", flush=True)


def _flat(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as dotted keys (`progress.completed`)."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping) and value:
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _cell(value: Any) -> str:
    if value is None:
        return ""
    text = json.dumps(value, ensure_ascii=False) if isinstance(value, dict | list) else str(value)
    text = text.replace("\n", " ")
    return text if len(text) <= _CELL else text[: _CELL - 1] + "…"


def _table(rows: Iterable[Mapping[str, Any]], columns: Sequence[str]) -> str:
    cells = [[_cell(_pick(row, column)) for column in columns] for row in rows]
    headers = [c.upper() for c in columns]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)


def _pick(row: Mapping[str, Any], column: str) -> Any:
    """A row's value for a column; a signature shows as its text, progress as `phase n/total`."""
    value = row.get(column)
    if column == "signature" and isinstance(value, Mapping):
        return value.get("text") or value
    if column == "progress" and isinstance(value, Mapping):
        return f"{value.get('phase', '')} {value.get('completed', 0)}/{value.get('total', 0)}"
    return value


def _record(data: Any) -> str:
    """`key  value` lines, nested records as dotted keys (`limits.jobs.max_running_jobs`);
    lists as JSON."""
    if not isinstance(data, Mapping):
        return str(data)
    data = _flat(data)
    width = max((len(k) for k in data), default=0)
    lines = []
    for key, value in data.items():
        shown = json.dumps(value, ensure_ascii=False) if isinstance(value, dict | list) else value
        lines.append(f"{key.ljust(width)}  {'' if shown is None else shown}")
    return "\n".join(lines)
