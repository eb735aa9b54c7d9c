"""`host:<name>` LMs: a language model the host serves itself, over `Connect`.

`LMConfig{model: "host:my_llm"}` (on a session, a module, or GEPA's `reflection_lm`) builds a
`HostLM`. Each LM call DSPy makes sends the chat messages and the call options (temperature,
max_tokens, ...) to a host connection of the session offering `my_llm` as an `lm_call`; the
host's `text` becomes the completion and its `usage` the call's token counts. The host's
`error` fails the call (and so the execution).

Which session and which way to the host: inside an execution, the executor's (`CURRENT_HOST`,
`CURRENT_SESSION`) — from a sync-only module's thread (Refine, ProgramOfThought, ...) the call
runs on the execution's loop and ends with it (`THREAD_HOST_CALLS`); in a job process, the
process's channel to the front (`PROCESS_HOST`).

Streaming is unary for now: `ExecuteStream` with a host LM gets the whole completion as one
piece when the host answers, not token by token.

How: `HostLM` is a `dspy.LM` whose engines (`HostEngine`, `AsyncHostEngine`) implement DSPy's
engine API (`complete(Request) -> Response`, `stream(Request)`), as the offline LM does, not the
`BaseLM.forward` that DSPy 3.4 deprecates and 3.5 removes; so DSPy's own path runs unchanged:
usage, history, callbacks, streaming listeners. `n > 1` is one host call per candidate.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import dspy
import grpc
from dspy.clients.engines.base import validate_request
from dspy.lm15 import Message, Request, Response, TextPart, Usage, response_to_events

from dspy_bridge.errors import BridgeError, Reason, invalid_argument
from dspy_bridge.model import LMSpec
from dspy_bridge.runtime.host_calls import (
    CURRENT_HOST,
    CURRENT_SESSION,
    PREFIX,
    PROCESS_HOST,
    THREAD_HOST_CALLS,
    HostReply,
    LMCall,
    LMReply,
    host_disconnected,
    host_name,
    remaining_s,
)
from dspy_bridge.runtime.lm.offline import request_messages

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_\-]{0,63}")
#: Options forwarded to the host (the rest of DSPy's call kwargs are its own business). `n` is
#: not one: DSPy asks an engine once per candidate, so `n=3` is three host calls.
_FORWARDED = ("temperature", "max_tokens", "top_p", "stop", "seed")
StreamEvent = Any  # dspy.lm15's stream event union


def is_host_lm(model: str) -> bool:
    return host_name(model) is not None


def validate_host_lm_spec(spec: LMSpec) -> None:
    """INVALID_ARGUMENT for a malformed `host:` model or fields a host LM cannot use."""
    name = host_name(spec.model) or ""
    if not _NAME.fullmatch(name):
        raise invalid_argument(
            Reason.INVALID_REQUEST,
            f"lm.model: {spec.model[:80]!r} is not a valid host LM (host: then a letter, then "
            "letters, digits, `_` or `-`, up to 64)",
            "lm.model",
        )
    for field, value in (("api_base", spec.api_base), ("api_key_env", spec.api_key_env)):
        if value:
            raise invalid_argument(
                Reason.INVALID_REQUEST,
                f"lm.{field}: a host LM is served by the host over Connect; it takes no {field}",
                f"lm.{field}",
            )


def _call(name: str, request: Request) -> LMCall:
    """What the host is asked: the chat messages DSPy's adapter wrote and the call's options."""
    validate_request(request)
    config = request.config
    options = {k: getattr(config, k) for k in _FORWARDED if getattr(config, k, None) is not None}
    if isinstance(options.get("stop"), tuple):
        options["stop"] = list(options["stop"])
    return LMCall(name, request_messages(request), options)


def _response(name: str, reply: HostReply) -> Response:
    """The host's answer as DSPy's canonical response (its error fails the call)."""
    assert isinstance(reply, LMReply)
    if reply.error:
        raise BridgeError(
            grpc.StatusCode.UNKNOWN,
            Reason.EXECUTION_FAILED,
            f"the host LM {PREFIX}{name} failed: {reply.error[:500]}",
            {"lm": f"{PREFIX}{name}"},
        )
    return Response(
        id=f"host-{uuid.uuid4().hex[:16]}",
        model=f"{PREFIX}{name}",
        message=Message.assistant([TextPart(reply.text)]),
        finish_reason="stop",
        usage=Usage(
            input_tokens=reply.prompt_tokens,
            output_tokens=reply.completion_tokens,
            total_tokens=reply.prompt_tokens + reply.completion_tokens,
        ),
    )


class HostEngine:
    """The host LM as a DSPy engine (sync calls: a job process, or a sync-only module's thread
    inside an execution). See the module docstring for which way a call goes."""

    def __init__(self, name: str) -> None:
        self.name = name

    def complete(self, request: Request) -> Response:
        call = _call(self.name, request)
        session = CURRENT_SESSION.get() or PROCESS_HOST.session_id
        caller = PROCESS_HOST.caller
        if caller is not None:  # a job process: through its channel to the front
            return _response(self.name, caller.call_host_sync(session, call, remaining_s()))
        execution_host = CURRENT_HOST.get()
        thread_calls = THREAD_HOST_CALLS.get()
        if execution_host is None or thread_calls is None:
            raise host_disconnected("lm", self.name)
        # A sync-only module's thread: the call runs on the execution's loop.
        reply = thread_calls.call(execution_host, session, call, remaining_s())
        return _response(self.name, reply)

    def stream(self, request: Request) -> Iterator[StreamEvent]:
        """The whole answer as one piece once the host gives it (host LMs are unary)."""
        return iter(response_to_events(self.complete(request)))

    def close(self) -> None:
        return None


class AsyncHostEngine:
    """`HostEngine` for async calls: awaited on the execution's loop, so a cancel or the
    deadline ends the host call."""

    def __init__(self, sync: HostEngine) -> None:
        self.sync = sync

    async def complete(self, request: Request) -> Response:
        name = self.sync.name
        call = _call(name, request)
        caller = CURRENT_HOST.get()
        session = CURRENT_SESSION.get() or PROCESS_HOST.session_id
        if caller is not None:
            return _response(name, await caller.call_host(session, call, remaining_s()))
        sync = PROCESS_HOST.caller
        if sync is None:
            raise host_disconnected("lm", name)
        reply = await asyncio.to_thread(sync.call_host_sync, session, call, remaining_s())
        return _response(name, reply)

    async def stream(self, request: Request) -> AsyncIterator[StreamEvent]:
        for event in response_to_events(await self.complete(request)):
            yield event

    async def aclose(self) -> None:
        return None


class HostLM(dspy.LM):  # type: ignore[misc]
    """The LM `host:<name>` (module docstring), on DSPy's engine API."""

    def __init__(self, name: str, **options: Any) -> None:
        forwarded = {k: v for k, v in options.items() if k in _FORWARDED or k == "n"}
        sync = HostEngine(name)
        super().__init__(
            model=f"{PREFIX}{name}",
            model_type="chat",
            cache=False,  # the host answers every call; nothing is kept
            num_retries=0,  # a host's failure is its own answer, not a transient error
            engine=sync,
            async_engine=AsyncHostEngine(sync),
            **forwarded,
        )
        self.name = name

    def __repr__(self) -> str:
        return f"HostLM({self.name!r})"
