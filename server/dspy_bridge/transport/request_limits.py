"""Bounds on every field a host sets, checked on the request message before anything else runs.

Every RPC's request is walked once, field by field, against `RequestLimits.rules`: numbers must lie
in their documented range, texts within their length, maps and lists within their counts, config
Structs within their depth and size, enums among the values the proto defines. A request that
breaks one is INVALID_ARGUMENT `INVALID_REQUEST` with a field violation naming the field (e.g.
`writes[2].expected_version`), before it is logged with its ids, checked for ownership, or seen by
a service — so it can change nothing and no oversized id reaches a log line or a status trailer.

Rules are keyed by `Message.field`, or by a field name alone for the names many messages share
(`session_id`, `module_id`, `reason`, ...). Every field a request can reach must have a rule:
`tests/unit/test_request_limits.py` walks the proto descriptors, so a new RPC or field without
one fails the tests instead of going unchecked. The one exception is the `Connect` stream, whose
messages the host hub bounds itself (`host_max_*` settings), failing one call and not the stream;
only its first message's `hello.session_id` is checked here, before the ownership check.
Values (`dspy_bridge.v1.Value`) are bounded by
`max_value_bytes` and the message size where they are used; inside them only tensor shapes and
dtypes are checked here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from dspy_bridge.config import Settings
from dspy_bridge.errors import Reason, invalid_argument

__all__ = ["RequestLimits", "Rule"]

INT64_MAX = 2**63 - 1
INT32_MAX = 2**31 - 1
#: Config nesting a host may send (protobuf parsers stop at 100 nested messages, ~33 Struct levels).
MAX_STRUCT_DEPTH = 20
MAX_TENSOR_RANK = 32
#: Session, module and job ids and variable names (their grammars allow no more).
ID_CHARS = 128


@dataclass(frozen=True)
class Rule:
    """What one field may hold. Exactly one kind applies:

    - `ints=(low, high)`: a whole number in [low, high] (each element, for a repeated field);
    - `finite`: a double that is not NaN or infinite;
    - `chars`: a string of at most that many characters;
    - `entries`: a map of at most that many entries, keys up to `key_chars`, string values up to
      `chars` (message values are walked);
    - `struct_bytes`: a `google.protobuf.Struct` of at most that many serialized bytes and
      `MAX_STRUCT_DEPTH` levels;
    - `walk`: a message whose own fields have rules;
    - `free`: bounded elsewhere (the value size limit, the message size, a service check).

    `items` bounds a repeated field's length on top of its element rule.
    """

    ints: tuple[int, int] | None = None
    finite: bool = False
    chars: int | None = None
    entries: int | None = None
    key_chars: int = 128
    struct_bytes: int | None = None
    walk: bool = False
    free: bool = False
    items: int | None = None
    doc: str = ""


FREE = Rule(free=True)
WALK = Rule(walk=True)
FINITE = Rule(finite=True)


def _ints(low: int, high: int, doc: str = "") -> Rule:
    return Rule(ints=(low, high), doc=doc)


def _text(chars: int) -> Rule:
    return Rule(chars=chars)


def build_rules(s: Settings) -> dict[str, Rule]:
    """The rule of every field a request can reach (see module docstring)."""
    ident = _text(ID_CHARS)
    metadata = Rule(
        entries=s.max_metadata_entries,
        key_chars=s.max_metadata_key_chars,
        chars=s.max_metadata_value_chars,
    )
    values = Rule(entries=256, key_chars=ID_CHARS, walk=True)  # map<string, Value>
    config = Rule(struct_bytes=s.max_config_bytes)
    examples = Rule(walk=True, items=s.max_dataset_examples)
    version = _ints(0, INT64_MAX, "0 = the current version")
    expected = _ints(0, INT64_MAX)
    return {
        # -- names shared by many messages --------------------------------------------------
        "session_id": ident,
        "module_id": ident,
        "job_id": ident,
        "name": ident,
        "source": _text(min(128, s.max_reason_chars)),
        "reason": _text(s.max_reason_chars),
        "page_token": _text(256),
        "page_size": _ints(0, INT32_MAX, "each List RPC says what 0 and large sizes mean"),
        "expected_version": expected,
        "metadata": metadata,
        "description": _text(s.max_description_chars),
        "inputs": values,
        "labels": values,
        "variable_overrides": values,
        "options": WALK,  # ExecuteOptions (LMConfig.options and MetricSpec.options are listed)
        # -- per message ------------------------------------------------------------------------
        "PingRequest.message": _text(1_024),
        "CreateSessionRequest.ttl_seconds": _ints(
            0, s.max_session_ttl_seconds, "0 = the server default"
        ),
        "ConfigureLMRequest.lm": WALK,
        "LMConfig.model": _text(256),
        "LMConfig.api_base": _text(2_048),
        "LMConfig.api_key_env": _text(128),
        "LMConfig.options": Rule(entries=64, key_chars=128, chars=4_096),
        "RegisterVariableRequest.type": FREE,  # enum: `convert` names the allowed values
        "RegisterVariableRequest.initial_value": WALK,
        "RegisterVariableRequest.constraints": WALK,
        "VariableConstraints.min": FINITE,
        "VariableConstraints.max": FINITE,
        "VariableConstraints.step": FINITE,
        "VariableConstraints.choices": Rule(chars=1_024, items=1_000),
        "VariableConstraints.pattern": _text(1_024),
        "VariableConstraints.min_length": _ints(0, INT64_MAX),
        "VariableConstraints.max_length": _ints(0, INT64_MAX),
        "VariableConstraints.dims": Rule(ints=(0, INT32_MAX), items=MAX_TENSOR_RANK),
        "VariableConstraints.dtype": _text(16),
        "Value.float_value": FREE,
        "Value.int_value": FREE,
        "Value.string_value": FREE,  # max_value_bytes where stored; the message size elsewhere
        "Value.bool_value": FREE,
        "Value.json_value": FREE,  # depth: validation.MAX_JSON_DEPTH where stored
        "Value.tensor_value": WALK,
        "Tensor.dtype": _text(16),
        "Tensor.shape": Rule(ints=(0, INT64_MAX), items=MAX_TENSOR_RANK),
        "Tensor.data": FREE,
        "ListVariablesRequest.pattern": _text(256),
        "UpdateVariableRequest.value": WALK,
        "BatchUpdateVariablesRequest.writes": Rule(walk=True, items=1_000),
        "VariableWrite.value": WALK,
        "BatchUpdateVariablesRequest.atomic": FREE,
        "WatchVariablesRequest.names": Rule(chars=ID_CHARS, items=1_000),
        "WatchVariablesRequest.include_initial": FREE,
        "WatchVariablesRequest.resume_token": _text(256),  # watch.MAX_TOKEN_CHARS
        "GetVariableHistoryRequest.limit": _ints(0, INT32_MAX, "0 = every kept version"),
        "RollbackVariableRequest.target_version": _ints(1, INT64_MAX),
        "CreateModuleRequest.module_type": _text(128),
        "CreateModuleRequest.signature": WALK,
        "Signature.text": _text(s.max_instructions_chars),
        "Signature.fields": Rule(walk=True, items=128),
        "SignatureField.role": FREE,  # enum: the signature check names the allowed roles
        "SignatureField.type": _text(256),
        "Signature.instructions": _text(s.max_instructions_chars),
        "CreateModuleRequest.config": config,
        "CreateModuleRequest.variable_bindings": Rule(entries=128, key_chars=128, chars=ID_CHARS),
        "CreateModuleRequest.lm": WALK,
        "GetModuleRequest.version": version,
        "ExecuteOptions.timeout_ms": _ints(0, 86_400_000, "0 = no timeout beyond the deadline"),
        "ExecuteOptions.include_trace": FREE,
        "ExecuteRequest.options": WALK,
        "ExecuteBatchRequest.items": Rule(walk=True, items=10_000),
        "ExecuteBatchRequest.max_concurrency": _ints(0, 256, "0 = the default (8)"),
        "ExportModuleStateRequest.version": version,
        "ImportModuleStateRequest.state_json": FREE,  # the message size and the session budget
        "RevertModuleRequest.to_version": _ints(1, INT64_MAX),
        "EvaluateRequest.dataset": examples,
        "EvaluateRequest.metric": WALK,
        "MetricSpec.options": config,
        "EvaluateRequest.num_threads": _ints(0, 64, "0 = the default"),
        "EvaluateRequest.module_version": version,
        "EvaluateStreamRequest.evaluation": WALK,
        "StartOptimizationRequest.optimizer": _text(128),
        "StartOptimizationRequest.config": config,
        "StartOptimizationRequest.trainset": examples,
        "StartOptimizationRequest.valset": examples,
        "StartOptimizationRequest.metric": WALK,
        "StartOptimizationRequest.apply": FREE,
        "StartOptimizationRequest.variable_search": WALK,
        "VariableSearchSpec.variables": Rule(walk=True, items=64),
        "SearchVariable.low": FINITE,
        "SearchVariable.high": FINITE,
        "SearchVariable.step": FINITE,
        "SearchVariable.log": FREE,
        "SearchVariable.choices": Rule(walk=True, items=1_000),
        "VariableSearchSpec.sampler": FREE,  # enum: the search check names the samplers
        "VariableSearchSpec.n_trials": _ints(0, 1_000, "0 = the default (20)"),
        "VariableSearchSpec.objectives": Rule(walk=True, items=16),
        "SearchObjective.direction": FREE,  # enum: the search check names the directions
        "VariableSearchSpec.seed": _ints(0, 2**32 - 1),
        "ApplyOptimizationRequest.trial_number": _ints(0, INT32_MAX),
        # -- Connect: only the first message's `hello.session_id` (what it offers and every
        # later message are bounded by the host hub, `host_max_*`)
        "ConnectRequest.hello": WALK,
        "HostHello.tools": FREE,
        "HostHello.metrics": FREE,
        "HostHello.lms": FREE,
    }


def _show_key(key: object) -> str:
    text = repr(key)
    return text if len(text) <= 40 else f"{text[:37]}..."


def _bad(path: str, message: str) -> Exception:
    return invalid_argument(Reason.INVALID_REQUEST, f"{path}: {message}", path)


class RequestLimits:
    """Checks whole request messages against the rules built from `settings`."""

    def __init__(self, settings: Settings) -> None:
        self.rules = build_rules(settings)
        self._by_field: dict[str, Rule | None] = {}

    def rule(self, message: Descriptor | Any, field: FieldDescriptor) -> Rule | None:
        """The rule of `message.field` (its own, else the shared one of its name)."""
        key = f"{message.name}.{field.name}"
        if key not in self._by_field:
            self._by_field[key] = self.rules.get(key) or self.rules.get(field.name)
        return self._by_field[key]

    def check(self, request: Message) -> None:
        """Raises INVALID_ARGUMENT for the first field outside its bounds."""
        self._message(request, "")

    def _message(self, message: Message, prefix: str) -> None:
        descriptor = message.DESCRIPTOR
        for field, value in message.ListFields():
            rule = self.rule(descriptor, field)
            path = f"{prefix}{field.name}"
            if rule is None:
                # A field added without a rule: the descriptor test fails; never a crash here.
                continue
            if rule.free:
                continue
            if field.message_type is not None and field.message_type.GetOptions().map_entry:
                self._map(value, field, rule, path)
            elif field.is_repeated:
                if rule.items is not None and len(value) > rule.items:
                    raise _bad(path, f"has {len(value)} items; at most {rule.items} are allowed")
                for i, item in enumerate(value):
                    self._one(item, field, rule, f"{path}[{i}]")
            else:
                self._one(value, field, rule, path)

    def _map(self, value: Mapping[Any, Any], field: FieldDescriptor, rule: Rule, path: str) -> None:
        if rule.entries is not None and len(value) > rule.entries:
            raise _bad(path, f"has {len(value)} entries; at most {rule.entries} are allowed")
        entry = field.message_type
        assert entry is not None  # a map field's entry type
        value_field = entry.fields_by_name["value"]
        for key, item in value.items():
            if isinstance(key, str) and not 1 <= len(key) <= rule.key_chars:
                raise _bad(
                    f"{path}[{_show_key(key)}]",
                    f"a key must be 1 to {rule.key_chars} characters, got {len(key)}",
                )
            if value_field.message_type is not None:
                self._message(item, f"{path}[{_show_key(key)}].")
            elif rule.chars is not None and len(item) > rule.chars:
                raise _bad(
                    f"{path}[{_show_key(key)}]",
                    f"is {len(item)} characters long; at most {rule.chars} are allowed",
                )

    def _one(self, value: Any, field: FieldDescriptor, rule: Rule, path: str) -> None:
        if rule.ints is not None:
            low, high = rule.ints
            if not low <= value <= high:
                raise _bad(path, f"{value} is outside the allowed range {low} to {high}")
        elif rule.finite:
            if not math.isfinite(value):
                raise _bad(path, f"{value!r} is not allowed; it must be a finite number")
        elif rule.chars is not None:
            if len(value) > rule.chars:
                raise _bad(
                    path, f"is {len(value)} characters long; at most {rule.chars} are allowed"
                )
        elif rule.struct_bytes is not None:
            _check_struct(value, rule.struct_bytes, path)
        elif rule.walk and field.message_type is not None:
            self._message(value, f"{path}.")


def _check_struct(struct: Message, max_bytes: int, path: str) -> None:
    size = struct.ByteSize()
    if size > max_bytes:
        raise _bad(path, f"is {size:,} bytes serialized; at most {max_bytes:,} are allowed")
    if _depth(struct, 0) > MAX_STRUCT_DEPTH:
        raise _bad(path, f"is nested deeper than {MAX_STRUCT_DEPTH} levels")


def _depth(node: Any, level: int) -> int:
    """Nesting levels of a Struct/ListValue/Value tree (stops counting past the limit)."""
    if level > MAX_STRUCT_DEPTH:
        return level
    name = node.DESCRIPTOR.name
    if name == "Struct":
        children: Any = node.fields.values()
    elif name == "ListValue":
        children = node.values
    else:  # Value
        kind = node.WhichOneof("kind")
        if kind == "struct_value":
            return _depth(node.struct_value, level)
        if kind == "list_value":
            return _depth(node.list_value, level)
        return level
    deepest = level + 1
    for child in children:
        deepest = max(deepest, _depth(child, level + 1))
        if deepest > MAX_STRUCT_DEPTH:
            break
    return deepest


Check = Callable[[Message], None]
