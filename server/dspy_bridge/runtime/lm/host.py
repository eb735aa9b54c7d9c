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
"""

from __future__ import annotations

import asyncio
import re
import time
import types
import uuid
from typing import Any

import dspy
import grpc
from dspy.clients.call_result import AttributeDict, attributes

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

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_\-]{0,63}")
#: Options forwarded to the host (the rest of DSPy's call kwargs are its own business).
_FORWARDED = ("temperature", "max_tokens", "top_p", "n", "stop", "seed")


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


class HostResponse(AttributeDict):  # type: ignore[misc]
    """An OpenAI chat-completion-shaped response (what DSPy's BaseLM expects)."""

    _hidden_params = types.MappingProxyType({"response_cost": 0.0})


class HostLM(dspy.BaseLM):  # type: ignore[misc]
    """The LM `host:<name>` (module docstring)."""

    def __init__(self, name: str, **options: Any) -> None:
        forwarded = {k: v for k, v in options.items() if k in _FORWARDED}
        super().__init__(model=f"{PREFIX}{name}", model_type="chat", cache=False, **forwarded)
        self.name = name

    def __repr__(self) -> str:
        return f"HostLM({self.name!r})"

    def _request(
        self, prompt: str | None, messages: list[Any] | None, kwargs: dict[str, Any]
    ) -> LMCall:
        chat = list(messages) if messages else [{"role": "user", "content": prompt or ""}]
        merged = {**self.kwargs, **kwargs}
        options = {k: merged[k] for k in _FORWARDED if merged.get(k) is not None}
        plain = [{k: v for k, v in dict(m).items() if isinstance(k, str)} for m in chat]
        return LMCall(self.name, plain, options)

    def _response(self, reply: HostReply) -> HostResponse:
        assert isinstance(reply, LMReply)
        if reply.error:
            raise BridgeError(
                grpc.StatusCode.UNKNOWN,
                Reason.EXECUTION_FAILED,
                f"the host LM {PREFIX}{self.name} failed: {reply.error[:500]}",
                {"lm": f"{PREFIX}{self.name}"},
            )
        return HostResponse(
            id=f"host-{uuid.uuid4().hex[:16]}",
            object="chat.completion",
            created=int(time.time()),
            model=self.model,
            choices=[
                attributes(
                    {
                        "index": 0,
                        "finish_reason": "stop",
                        "message": {"role": "assistant", "content": reply.text},
                    }
                )
            ],
            usage=attributes(
                {
                    "prompt_tokens": reply.prompt_tokens,
                    "completion_tokens": reply.completion_tokens,
                    "total_tokens": reply.prompt_tokens + reply.completion_tokens,
                }
            ),
        )

    def forward(
        self, prompt: str | None = None, messages: list[Any] | None = None, **kwargs: Any
    ) -> HostResponse:
        request = self._request(prompt, messages, kwargs)
        session = CURRENT_SESSION.get() or PROCESS_HOST.session_id
        caller = PROCESS_HOST.caller
        if caller is not None:  # a job process: through its channel to the front
            return self._response(caller.call_host_sync(session, request, remaining_s()))
        execution_host = CURRENT_HOST.get()
        thread_calls = THREAD_HOST_CALLS.get()
        if execution_host is None or thread_calls is None:
            raise host_disconnected("lm", self.name)
        # A sync-only module's thread: the call runs on the execution's loop.
        reply = thread_calls.call(execution_host, session, request, remaining_s())
        return self._response(reply)

    async def aforward(
        self, prompt: str | None = None, messages: list[Any] | None = None, **kwargs: Any
    ) -> HostResponse:
        request = self._request(prompt, messages, kwargs)
        caller = CURRENT_HOST.get()
        session = CURRENT_SESSION.get() or PROCESS_HOST.session_id
        if caller is not None:
            return self._response(await caller.call_host(session, request, remaining_s()))
        sync = PROCESS_HOST.caller
        if sync is None:
            raise host_disconnected("lm", self.name)
        reply = await asyncio.to_thread(sync.call_host_sync, session, request, remaining_s())
        return self._response(reply)
