"""Structured logging: JSON off a terminal, readable on one; secrets never printed."""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
import time
from collections.abc import MutableMapping
from typing import Any

import structlog

from dspy_bridge.config import LogFormat

_SECRET_KEYS = re.compile(r"(api_?key|token|secret|password|authorization)", re.IGNORECASE)
_SECRET_VALUES = re.compile(r"\b(sk-[A-Za-z0-9_\-]{8,}|Bearer\s+\S+)")


def _redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Drops values of secret-looking keys and masks key-shaped strings anywhere in an event."""
    for key, value in list(event.items()):
        if _SECRET_KEYS.search(key) and not key.endswith("_env"):
            event[key] = "***"
        elif isinstance(value, str):
            event[key] = _SECRET_VALUES.sub("***", value)
    return event


#: Libraries that log through the standard library, kept at WARNING even at `--log-level debug`:
#: gRPC alone writes ~40 DEBUG lines per RPC, LiteLLM and httpx one per request and header.
#: Their warnings and errors still come through, rendered like every other line.
QUIET_LIBRARIES = (
    "grpc",
    "LiteLLM",
    "LiteLLM Router",
    "LiteLLM Proxy",
    "litellm",
    "httpx",
    "httpcore",
    "openai",
    "urllib3",
    "asyncio",
    "dspy",
    "optuna",
)
#: Where the resolved choice is left for the processes this one starts (job processes come from
#: a forkserver that inherits the environment, not the command line).
#: Not a `DSPY_BRIDGE_*` name: settings read those, and this one is only ever set, not given.
_CHILD_ENV = "_DSPY_BRIDGE_CHILD_LOGGING"


def configure_logging(level: str = "info", fmt: LogFormat = "auto") -> None:
    """Sets up structlog, and the stdlib root logger so that library records (gRPC, LiteLLM,
    Python warnings) are rendered by the same processors: in JSON mode every line on stderr is
    one JSON object, at every level."""
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    stamp = structlog.processors.TimeStamper(fmt="iso", utc=True)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            stamp,
            _redact,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                structlog.contextvars.merge_contextvars,
                structlog.stdlib.add_logger_name,
                structlog.stdlib.add_log_level,
                stamp,
                _redact,
            ],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.captureWarnings(True)  # `warnings.warn` becomes a log record, rendered as above
    os.environ[_CHILD_ENV] = f"{level} {'json' if use_json else 'console'}"


def configure_logging_as_parent() -> None:
    """In a process the sidecar started (a job): logs as the sidecar was told to."""
    level, _, fmt = os.environ.get(_CHILD_ENV, "warning json").partition(" ")
    configure_logging(level, "console" if fmt == "console" else "json")


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(name)
    return logger


class RateLimited:
    """At most one line per `every` seconds for an event a caller can repeat at will (garbage
    request bytes, a host's answers to unknown calls): the lines in between are only counted,
    and the next line says how many (`suppressed`), so a flood cannot flood the log."""

    def __init__(self, logger: structlog.stdlib.BoundLogger, every: float) -> None:
        self._log = logger
        self._every = every
        self._next = 0.0
        self._suppressed = 0
        self._lock = threading.Lock()  # may be called from gRPC's threads

    def warning(self, event: str, **fields: Any) -> None:
        self._emit(logging.WARNING, event, fields)

    def info(self, event: str, **fields: Any) -> None:
        self._emit(logging.INFO, event, fields)

    def _emit(self, level: int, event: str, fields: dict[str, Any]) -> None:
        now = time.monotonic()
        with self._lock:
            if now < self._next:
                self._suppressed += 1
                return
            suppressed, self._suppressed = self._suppressed, 0
            self._next = now + self._every
        self._log.log(level, event, suppressed=suppressed, **fields)
