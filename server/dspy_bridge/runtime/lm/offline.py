"""`offline`: a deterministic language model for tests, demos and benchmarks.

It is a test/demo double, not a model: it never calls a provider and knows nothing. What it
does is read the prompt a DSPy adapter built and answer in that adapter's format, so that every
DSPy code path (Predict, ChainOfThought, few-shot demos, optimizers, streaming, usage tracking)
runs for real without a network or a key:

- **Format.** The system message says which adapter made the prompt: ChatAdapter's
  `[[ ## completed ## ]]` marker, JSONAdapter's "Outputs will be a JSON object" or
  XMLAdapter's `<field>` tags. The output fields and their types come from the
  "Your output fields are:" list every adapter writes. The answer is rendered with the same
  adapter's own formatting code, so the adapter always parses it back.
- **Well-typed.** Every output field gets a value of its declared type (int, float, bool,
  list[...], dict[...], tuple, Literal, Optional; str otherwise).
- **Few-shot aware.** When the prompt holds demonstrations (user/assistant pairs before the last
  user message), it answers with the outputs of the demonstration whose inputs overlap most
  with the current inputs (Jaccard similarity of word sets). So an optimizer that adds demos
  measurably changes its answers, and a demo for the same question makes it answer correctly.
  Output fields a demo lacks, or no overlap at all, fall back to the next rule.
- **Deterministic.** Without a usable demo, values derive from a hash of the inputs: the same
  inputs always give the same outputs, different inputs (usually) different ones; a str answer
  is a short text built from the input's words.
- **Tool use.** A ReAct module's prompts are steered through one call of its first tool, with
  arguments derived from the inputs, then `finish` (see `offline_react.py`).
- **Provider-like.** `latency_ms` simulates a slow provider (`asyncio.sleep` in the async
  engine, so a cancelled call stops at once); `n > 1` returns n choices (the n best demos, or n
  hashes); usage reports whitespace-split token counts; when DSPy streaming is active the
  completion is streamed as token-like deltas of a few characters, as a provider streams, so
  `StreamListener`s yield real per-field chunks (for JSONAdapter those are DSPy's raw JSON
  fragments, quotes included, as with any provider). Sampling options are accepted and
  ignored.

How: `OfflineLM` is a `dspy.LM` whose engine is `OfflineEngine` — DSPy's engine API
(`complete(Request) -> Response`, `stream(Request)` -> events; DSPy 3.5's only LM contract), so
DSPy's own execution path runs unchanged: caching (off), usage, history, callbacks, streaming
to listeners. Nothing imports LiteLLM (~7 s), so a sidecar that only runs `offline` never pays
for it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hashlib
import json
import re
import threading
import time
import types
import typing
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import dspy
from dspy.adapters.chat_adapter import ChatAdapter
from dspy.adapters.json_adapter import JSONAdapter
from dspy.adapters.xml_adapter import XMLAdapter
from dspy.clients.engines.base import validate_request
from dspy.lm15 import (
    Message,
    Request,
    Response,
    StreamDeltaEvent,
    TextDelta,
    TextPart,
    Usage,
    response_to_events,
)
from dspy.signatures.signature import make_signature

from dspy_bridge.runtime.lm.offline_react import steer
from dspy_bridge.runtime.signatures import resolve_type

__all__ = ["OFFLINE_MODEL", "AsyncOfflineEngine", "OfflineEngine", "OfflineLM", "complete_messages"]

OFFLINE_MODEL = "offline"

Format = Literal["chat", "json", "xml", "plain"]

_ADAPTERS: dict[str, Any] = {"chat": ChatAdapter(), "json": JSONAdapter(), "xml": XMLAdapter()}
_FIELD_LINE_RE = re.compile(r"^\d+\. `(\w+)` \((.*)$")
_HEADER_RE = re.compile(r"^\[\[ ## (\w+) ## \]\]\s*$")
# What `format_user_message_content(main_request=True)` appends after the last input field.
_REQUIREMENTS_RE = re.compile(
    r"\n\s*Respond with (?:the corresponding output fields|a JSON object in the following order)"
)
_WORD_RE = re.compile(r"\w+")
# Stream chunks look like LLM tokens: a word or a run of punctuation, with the whitespace before
# it (" What", " ##", "]]"). DSPy's StreamListener is tuned for such chunks.
_TOKEN_RE = re.compile(r"\s*[^\w\s]+|\s*\w+|\s+")
_NOT_SUPPLIED = "Not supplied for this"
StreamEvent = Any  # dspy.lm15's stream event union
_MASK64 = (1 << 64) - 1


# --------------------------------------------------------------------------------------------
# Reading the prompt


@dataclass(frozen=True)
class _Layout:
    """What the system message says: the adapter format and the fields with their types."""

    fmt: Format
    inputs: tuple[str, ...] = ()
    outputs: tuple[tuple[str, Any], ...] = ()
    # A signature with the output fields, used to render answers with the adapter's own code.
    signature: Any = None
    single: dict[str, Any] = field(default_factory=dict)


def _field_types(block: str) -> list[tuple[str, Any]]:
    """(name, type) from an adapter's numbered field list; unknown types read as str."""
    found: list[tuple[str, Any]] = []
    for line in block.splitlines():
        match = _FIELD_LINE_RE.match(line)
        if not match:
            continue
        name, rest = match.group(1), match.group(2)
        tp: Any = str
        # The type ends at a "):" followed by the description; descriptions may hold "):" too,
        # so take the first cut that is a type this bridge can resolve.
        for cut in (m.start() for m in re.finditer(r"\):", rest)):
            text = rest[:cut].replace("Ellipsis", "...")
            try:
                tp = resolve_type(text)
                break
            except ValueError:
                continue
        found.append((name, tp))
    return found


def _section(text: str, start: str, end: str) -> str:
    begin = text.find(start)
    if begin < 0:
        return ""
    begin += len(start)
    stop = text.find(end, begin)
    return text[begin:] if stop < 0 else text[begin:stop]


@functools.lru_cache(maxsize=256)
def _layout(system: str) -> _Layout:
    """Parse a system message once; programs send the same one on every call."""
    inputs = _field_types(_section(system, "Your input fields are:", "Your output fields are:"))
    outputs = _field_types(
        _section(system, "Your output fields are:", "All interactions will be structured")
    )
    if not outputs:
        return _Layout("plain")
    fmt: Format
    if "Outputs will be a JSON object with the following fields." in system:
        fmt = "json"
    elif "[[ ## completed ## ]]" in system:
        fmt = "chat"
    elif re.search(rf"^<{re.escape(outputs[0][0])}>", system, re.MULTILINE):
        fmt = "xml"
    else:
        fmt = "chat"
    fields = {name: (tp, dspy.OutputField()) for name, tp in outputs}
    signature = make_signature(fields, "offline")
    single = {name: make_signature({name: spec}, "offline") for name, spec in fields.items()}
    return _Layout(fmt, tuple(name for name, _ in inputs), tuple(outputs), signature, single)


def _text_of(message: Any) -> str:
    """A message's text; multimodal content lists contribute their text parts."""
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(part.get("text", "")) for part in content if isinstance(part, dict)
        ).strip()
    return "" if content is None else str(content)


def _input_values(layout: _Layout, content: str) -> dict[str, str]:
    """The raw text of each input field in a user message (demo or current request)."""
    values: dict[str, str] = {}
    if layout.fmt == "xml":
        for name in layout.inputs:
            match = re.search(rf"<{name}>\n?(.*?)\n?</{name}>", content, re.DOTALL)
            if match:
                values[name] = match.group(1)
        return values
    current: str | None = None
    lines: list[str] = []
    for line in [*content.splitlines(), "[[ ## __end__ ## ]]"]:
        header = _HEADER_RE.match(line.strip())
        if header:
            if current is not None and current in layout.inputs:
                values[current] = "\n".join(lines).strip()
            current, lines = header.group(1), []
        else:
            lines.append(line)
    # The format reminder after the last field is not part of any input.
    return {k: _REQUIREMENTS_RE.split(v, maxsplit=1)[0].strip() for k, v in values.items()}


def _unwrapped_parse(adapter: Any) -> Any:
    """The adapter's `parse` without DSPy's callback wrapper: the LM must not fire callbacks."""
    parse = type(adapter).parse
    return getattr(parse, "__wrapped__", parse)


def _demo_outputs(layout: _Layout, content: str) -> dict[str, Any]:
    """Output values in a demo's assistant message; fields that are missing are left out."""
    adapter = _ADAPTERS[layout.fmt]
    parse = _unwrapped_parse(adapter)
    try:
        values = dict(parse(adapter, layout.signature, content))
    except Exception:
        values = {}
        for signature in layout.single.values():
            try:
                values.update(parse(adapter, signature, content))
            except Exception:
                continue
    return {
        k: v
        for k, v in values.items()
        if v is not None and not (isinstance(v, str) and v.startswith(_NOT_SUPPLIED))
    }


# --------------------------------------------------------------------------------------------
# Making values


def _mix(seed: int, salt: int) -> int:
    """A cheap deterministic 64-bit mix (splitmix64 step) for derived seeds."""
    z = (seed + 0x9E3779B97F4A7C15 * (salt + 1)) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def _seed_of(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


def _phrase(name: str, words: Sequence[str], seed: int) -> str:
    if not words:
        return f"offline {name}"
    size = min(len(words), 6)
    start = seed % (len(words) - size + 1)
    return f"{name}: {' '.join(words[start : start + size])}"


def _value(tp: Any, name: str, words: Sequence[str], seed: int, depth: int = 0) -> Any:
    """A deterministic value of type `tp` (the grammar of `signatures.resolve_type`)."""
    if depth > 10:
        return None
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is bool:
        return seed % 2 == 0
    if tp is int:
        return seed % 100
    if tp is float:
        return round((seed % 1000) / 1000, 3)
    if tp is type(None):
        return None
    if origin is Literal:
        return args[seed % len(args)]
    if origin in (typing.Union, types.UnionType):
        members = [a for a in args if a is not type(None)] or [type(None)]
        return _value(members[0], name, words, seed, depth + 1)
    if tp is list or origin is list:
        item = args[0] if args else str
        return [_value(item, name, words, _mix(seed, i), depth + 1) for i in range(1 + seed % 3)]
    if tp is tuple or origin is tuple:
        if not args:
            return (_phrase(name, words, seed),)
        if len(args) == 2 and args[1] is Ellipsis:
            count = 1 + seed % 3
            return tuple(
                _value(args[0], name, words, _mix(seed, i), depth + 1) for i in range(count)
            )
        return tuple(_value(a, name, words, _mix(seed, i), depth + 1) for i, a in enumerate(args))
    if tp is dict or origin is dict:
        key_tp, value_tp = args if args else (str, str)
        out: dict[Any, Any] = {}
        for i in range(1 + seed % 2):
            key = _key(key_tp, words, _mix(seed, 100 + i), i)
            out[key] = _value(value_tp, name, words, _mix(seed, i), depth + 1)
        return out
    return _phrase(name, words, seed)


def _key(tp: Any, words: Sequence[str], seed: int, index: int) -> Any:
    if typing.get_origin(tp) is Literal:
        choices = typing.get_args(tp)
        return choices[(seed + index) % len(choices)]
    if tp is int:
        return index
    if tp is float:
        return float(index)
    if tp is bool:
        return index % 2 == 0
    word = words[seed % len(words)].lower() if words else "key"
    return f"{word}_{index}"


# --------------------------------------------------------------------------------------------
# Answering


def _jaccard(a: set[str], b: set[str]) -> float:
    if not a and not b:
        return 0.0
    return len(a & b) / len(a | b)


def _words(values: dict[str, str]) -> list[str]:
    return [w for name in sorted(values) for w in _WORD_RE.findall(values[name])]


def complete_messages(messages: Sequence[Any], n: int = 1) -> list[str]:
    """The offline completion texts (n choices) for chat messages, as `OfflineLM` answers them.

    Public so test doubles (the fake OpenAI server) answer exactly like the offline LM.
    """
    n = max(1, n)
    system = next((_text_of(m) for m in messages if m.get("role") == "system"), "")
    layout = _layout(system)
    rest = [m for m in messages if m.get("role") != "system"]
    last_user = next((i for i in range(len(rest) - 1, -1, -1) if rest[i].get("role") == "user"), -1)
    current_text = _text_of(rest[last_user]) if last_user >= 0 else ""

    if layout.fmt == "plain":
        words = _WORD_RE.findall(current_text)
        seed = _seed_of(current_text)
        return [f"offline response ({_phrase('text', words, _mix(seed, i))})" for i in range(n)]

    current = _input_values(layout, current_text)
    words = _words(current)
    current_tokens = {w.lower() for w in words}
    seed = _seed_of(json.dumps(current, sort_keys=True))

    # Demonstrations: user/assistant pairs before the current request, best match first.
    ranked: list[tuple[float, int, dict[str, Any]]] = []
    before = rest[:last_user] if last_user >= 0 else rest
    for i in range(len(before) - 1):
        if before[i].get("role") != "user" or before[i + 1].get("role") != "assistant":
            continue
        demo_inputs = _input_values(layout, _text_of(before[i]))
        tokens = {w.lower() for w in _words(demo_inputs)}
        score = _jaccard(tokens, current_tokens)
        if score > 0:
            outputs = _demo_outputs(layout, _text_of(before[i + 1]))
            if outputs:
                ranked.append((score, i, outputs))
    ranked.sort(key=lambda item: (-item[0], item[1]))

    adapter = _ADAPTERS[layout.fmt]
    steered = (
        steer(layout.outputs, current, system, current_text) or {}
    )  # ReAct: one tool call, then finish
    texts: list[str] = []
    for choice in range(n):
        demo = ranked[choice % len(ranked)][2] if ranked else {}
        choice_seed = _mix(seed, choice) if choice else seed
        values: dict[str, Any] = {}
        for k, (name, tp) in enumerate(layout.outputs):
            if name in demo:
                values[name] = demo[name]
                continue
            if name in steered:
                values[name] = steered[name]
                continue
            value = _value(tp, name, words, _mix(choice_seed, k))
            if choice and isinstance(value, str):
                value = f"{value} (variant {choice + 1})"
            values[name] = value
        texts.append(adapter.format_assistant_message_content(layout.signature, values))
    return texts


def _count_tokens(text: str) -> int:
    return len(text.split())


def request_messages(request: Request) -> list[dict[str, str]]:
    """The chat messages a canonical request carries (system first), as the adapter wrote them."""
    messages: list[dict[str, str]] = []
    if request.system is not None:
        system = request.system
        text = (
            system if isinstance(system, str) else "".join(getattr(p, "text", "") for p in system)
        )
        messages.append({"role": "system", "content": text})
    messages.extend({"role": m.role, "content": m.text or ""} for m in request.messages)
    return messages


class OfflineEngine:
    """The offline LM as a DSPy engine: one canonical `Request` in, one `Response` out.

    DSPy asks a canonical engine once per candidate (`n`), with the same request object; the
    engine numbers the candidates by that object (the k-th ask gets choice k), keeping the last
    `_RECENT` requests alive so an id cannot be reused meanwhile."""

    _RECENT = 1024

    def __init__(self, latency_ms: float = 0.0) -> None:
        if latency_ms < 0:
            raise ValueError("latency_ms must be >= 0")
        self.latency_ms = float(latency_ms)
        self._asked: OrderedDict[int, tuple[Request, int]] = OrderedDict()
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        # Pickled with the LM (metrics and payloads travel to job processes): the candidate
        # numbering is per process and starts afresh.
        return {"latency_ms": self.latency_ms}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(float(state["latency_ms"]))  # type: ignore[misc]

    def _choice(self, request: Request) -> int:
        with self._lock:
            seen = self._asked.get(id(request))
            choice = seen[1] + 1 if seen is not None and seen[0] is request else 0
            self._asked[id(request)] = (request, choice)
            self._asked.move_to_end(id(request))
            while len(self._asked) > self._RECENT:
                self._asked.popitem(last=False)
        return choice

    def respond(self, request: Request) -> Response:
        """The answer, without the simulated latency."""
        validate_request(request)
        messages = request_messages(request)
        choice = self._choice(request)
        text = complete_messages(messages, n=choice + 1)[choice]
        prompt_tokens = sum(_count_tokens(m["content"]) for m in messages)
        completion_tokens = _count_tokens(text)
        return Response(
            id=f"offline-{uuid.uuid4().hex[:16]}",
            model=OFFLINE_MODEL,
            message=Message.assistant([TextPart(text)]),
            finish_reason="stop",
            usage=Usage(
                input_tokens=prompt_tokens,
                output_tokens=completion_tokens,
                total_tokens=prompt_tokens + completion_tokens,
            ),
        )

    def complete(self, request: Request) -> Response:
        if self.latency_ms:
            time.sleep(self.latency_ms / 1000)
        return self.respond(request)

    def stream(self, request: Request) -> Iterator[StreamEvent]:
        if self.latency_ms:
            time.sleep(self.latency_ms / 1000)
        return _token_events(self.respond(request))

    def close(self) -> None:
        return None

    def dump_state(self) -> dict[str, Any]:
        return {"latency_ms": self.latency_ms}

    @classmethod
    def load_state(cls, state: dict[str, Any]) -> OfflineEngine:
        return cls(float(state.get("latency_ms", 0.0)))


class AsyncOfflineEngine:
    """`OfflineEngine` for async calls: the latency is an `asyncio.sleep`, so a cancel stops it."""

    def __init__(self, sync: OfflineEngine) -> None:
        self.sync = sync

    async def complete(self, request: Request) -> Response:
        if self.sync.latency_ms:
            await asyncio.sleep(self.sync.latency_ms / 1000)
        return self.sync.respond(request)

    async def stream(self, request: Request) -> AsyncIterator[StreamEvent]:
        if self.sync.latency_ms:
            await asyncio.sleep(self.sync.latency_ms / 1000)
        for event in _token_events(self.sync.respond(request)):
            yield event

    async def aclose(self) -> None:
        return None

    def dump_state(self) -> dict[str, Any]:
        return self.sync.dump_state()

    @classmethod
    def load_state(cls, state: dict[str, Any]) -> AsyncOfflineEngine:
        return cls(OfflineEngine.load_state(state))


def _token_events(response: Response) -> Iterator[StreamEvent]:
    """The response as a provider streams it: its text in token-like deltas (a word or a run of
    punctuation with the whitespace before it), which DSPy's StreamListener is tuned for."""
    for event in response_to_events(response):
        delta = getattr(event, "delta", None)
        if isinstance(event, StreamDeltaEvent) and isinstance(delta, TextDelta):
            for index, token in enumerate(_TOKEN_RE.findall(delta.text)):
                if index == 0:
                    yield dataclasses.replace(event, delta=dataclasses.replace(delta, text=token))
                else:
                    plain = TextDelta(text=token, part_index=delta.part_index)
                    yield dataclasses.replace(event, delta=plain)
        else:
            yield event


class OfflineLM(dspy.LM):  # type: ignore[misc]
    """The `offline` LM: deterministic, typed, few-shot aware. A test/demo double.

    Args:
        latency_ms: simulated provider latency per call.
        **kwargs: sampling options (temperature, max_tokens, top_p, stop, seed, ...) are
            accepted and ignored, except `n`, which sets the number of choices.
    """

    def __init__(
        self,
        model: str = OFFLINE_MODEL,
        model_type: str = "chat",
        temperature: float | None = None,
        max_tokens: int | None = None,
        cache: bool = False,
        num_retries: int = 0,
        latency_ms: float = 0.0,
        engine: Any = None,
        async_engine: Any = None,
        **kwargs: Any,
    ) -> None:
        # Nothing to cache (answering is cheaper than a lookup, and a hit would skip the
        # simulated latency and streaming) and nothing to retry (it never fails).
        sync = engine if isinstance(engine, OfflineEngine) else OfflineEngine(latency_ms)
        super().__init__(
            model=model,
            model_type=model_type,
            temperature=temperature,
            max_tokens=max_tokens,
            cache=False,
            num_retries=0,
            engine=sync,
            async_engine=(
                async_engine
                if isinstance(async_engine, AsyncOfflineEngine)
                else AsyncOfflineEngine(sync)
            ),
            **kwargs,
        )

    @property
    def latency_ms(self) -> float:
        return float(self._engine_spec.latency_ms)

    def __repr__(self) -> str:
        return f"OfflineLM(latency_ms={self.latency_ms:g})"
