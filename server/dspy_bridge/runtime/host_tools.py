"""Host tools: `host:<name>` entries of a ReAct module's `tools`, served over `Connect`.

`HostTools` is a `ToolProvider` (see `tools.py`) over a catalog of `HostToolSpec`s — in the
front, what the session's host connections offer right now; in a worker, the specs the front
sent with the execution request. Each tool is a `dspy.Tool` whose `args` are the host's JSON
Schema properties, so DSPy's tool list (and the LM) shows the real parameter names, types and
descriptions, and DSPy validates the LM's arguments against that schema before the call.

Calling it sends the arguments to the host through a `HostCaller` and returns the host's output
as the observation. A host error and a call past its deadline are observations too (the agent
can react: other arguments, another tool); a host that is gone ends the execution UNAVAILABLE
`HOST_DISCONNECTED` (see `host_calls.HostUnavailable`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import dspy

from dspy_bridge.errors import BridgeError, Reason
from dspy_bridge.runtime.host_calls import (
    EXECUTION_MODULE,
    PREFIX,
    HostCaller,
    HostReply,
    HostToolSpec,
    HostUnavailable,
    SyncHostCaller,
    ToolCall,
    ToolReply,
    host_disconnected,
    host_name,
    remaining_s,
)
from dspy_bridge.runtime.tools import ToolConfigError

if TYPE_CHECKING:  # registry imports this module
    from dspy_bridge.runtime.registry import BuildContext


class HostToolUnavailable(ToolConfigError):
    """A `host:` tool that no connection of the session offers; `connected` lists those that
    are offered (CreateModule turns this into FAILED_PRECONDITION `HOST_TOOL_UNAVAILABLE`)."""

    def __init__(self, name: str, connected: Sequence[str]) -> None:
        self.name = name
        self.connected = list(connected)
        offered = ", ".join(f"{PREFIX}{n}" for n in connected) or "none"
        super().__init__(
            f"no host connection of this session offers tool {PREFIX}{name} "
            f"(connected tools: {offered})"
        )


def _failed(reference: str, exc: BridgeError) -> str:
    """The observation for a call that got no answer; a host that is gone ends the run."""
    if exc.reason == Reason.HOST_DISCONNECTED:
        raise HostUnavailable(exc) from None
    if exc.reason == Reason.HOST_CALL_TIMEOUT:
        return f"Error: the tool {reference} timed out: {exc.message}"
    return f"Error: the tool {reference} failed: {exc.message}"


def _answered(reference: str, reply: HostReply) -> Any:
    assert isinstance(reply, ToolReply)
    if reply.error is not None:
        return f"Error from {reference}: {reply.error}"
    return reply.output


def tool_from_spec(
    spec: HostToolSpec,
    session_id: str,
    caller: HostCaller | None,
    sync_caller: SyncHostCaller | None = None,
    module_id: str = "",
    job_id: str = "",
) -> dspy.Tool:
    """A `dspy.Tool` named `host:<name>` that forwards calls to the host (module docstring).

    With `sync_caller` (a job process: DSPy's optimizers call tools from their threads) the
    tool is sync; otherwise async through `caller`. `module_id`: the module the calls are for
    when no execution says, `job_id` the job calling (an optimization)."""
    reference = f"{PREFIX}{spec.name}"
    properties = dict(spec.parameters.get("properties") or {})

    def request(arguments: dict[str, Any]) -> ToolCall:
        return ToolCall(spec.name, arguments, EXECUTION_MODULE.get() or module_id, job_id)

    async def call_host_tool(**arguments: Any) -> Any:
        if caller is None:
            raise HostUnavailable(host_disconnected("tool", spec.name))
        try:
            reply = await caller.call_host(session_id, request(arguments), remaining_s())
        except BridgeError as exc:
            return _failed(reference, exc)
        return _answered(reference, reply)

    def call_host_tool_sync(**arguments: Any) -> Any:
        assert sync_caller is not None
        try:
            reply = sync_caller.call_host_sync(session_id, request(arguments), remaining_s())
        except BridgeError as exc:
            return _failed(reference, exc)
        return _answered(reference, reply)

    return dspy.Tool(
        call_host_tool if sync_caller is None else call_host_tool_sync,
        name=reference,
        desc=spec.description or f"The host's tool {spec.name}.",
        args=properties,
    )


class HostTools:
    """`host:<name>` tools of a session (module docstring). `catalog(session_id)` gives the
    specs offered to that session now."""

    def __init__(
        self,
        catalog: Callable[[str], Mapping[str, HostToolSpec]],
        caller: HostCaller | None,
        sync_caller: SyncHostCaller | None = None,
        module_id: str = "",
        job_id: str = "",
    ) -> None:
        self._catalog = catalog
        self._caller = caller
        self._sync_caller = sync_caller
        self._module_id = module_id
        self._job_id = job_id

    def names(self, session_id: str) -> Sequence[str]:
        return [f"{PREFIX}{name}" for name in sorted(self._catalog(session_id))]

    def claims(self, name: str) -> bool:
        """Every `host:` name is this provider's, offered or not (so an unknown one is
        reported as unavailable, not as an unknown tool)."""
        return host_name(name) is not None

    def validate(self, name: str, options: Mapping[str, Any], session_id: str) -> None:
        bare = host_name(name) or name
        offered = self._catalog(session_id)
        if bare not in offered:
            raise HostToolUnavailable(bare, sorted(offered))
        if options:
            raise ToolConfigError(f"tool {name!r} takes no options")

    def make(self, name: str, options: Mapping[str, Any], session_id: str) -> dspy.Tool:
        bare = host_name(name) or name
        spec = self._catalog(session_id).get(bare)
        if spec is None:  # offered at validation, gone since: the execution cannot run
            raise HostUnavailable(host_disconnected("tool", bare))
        return tool_from_spec(
            spec, session_id, self._caller, self._sync_caller, self._module_id, self._job_id
        )


def with_host_tools(
    ctx: BuildContext,
    specs: Sequence[HostToolSpec],
    caller: HostCaller | None,
    sync_caller: SyncHostCaller | None = None,
    module_id: str = "",
    job_id: str = "",
) -> BuildContext:
    """`ctx` whose tools include `specs` (the ones offered when an execution or an
    optimization was dispatched), called through `caller` or `sync_caller`."""
    if not specs:
        return ctx
    offered = {spec.name: spec for spec in specs}
    provider = HostTools(lambda _: offered, caller, sync_caller, module_id, job_id)
    return replace(ctx, tools=ctx.tools.with_provider(provider))


def host_tool_names(config: Mapping[str, Any]) -> list[str]:
    """The bare names of the `host:` tools a module config lists."""
    names: list[str] = []
    for entry in config.get("tools") or ():
        raw = (
            entry
            if isinstance(entry, str)
            else entry.get("name")
            if isinstance(entry, Mapping)
            else None
        )
        bare = host_name(raw) if isinstance(raw, str) else None
        if bare is not None:
            names.append(bare)
    return names
