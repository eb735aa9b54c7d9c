"""Signatures as the bridge holds them, parsed from host text without ever evaluating it.

A host describes a DSPy signature either in DSPy's string form
(`"context: list[str], question -> answer, confidence: float"`) or as a list of fields with
role, type and description. Both become one `SignatureSpec`: a frozen, hashable,
JSON-able value that the store keeps and that `to_dspy_signature` turns into a real
`dspy.Signature` class.

Why not hand the text to `dspy.Signature(...)`: DSPy's own parser resolves unknown type names by
importing modules (`x: os -> y` imports `os`), follows attribute access on them (`os.system`),
and walks the caller's stack frames looking for names. None of that may run on host text
(no RPC ever executes code sent by a host). Here a type is parsed with `ast` into a
syntax tree and resolved by a walker that knows exactly the names in `_SCALARS`/`_GENERICS`;
attribute access, calls, comprehensions and every other node are rejected before anything is
built. Only constants (inside `Literal[...]`) are taken from the text as values.

Errors are INVALID_ARGUMENT with reason INVALID_SIGNATURE; the message starts with the request
path of the offending part (`signature.text`, `signature.fields[2].type`, ...) and says what is
allowed, and the same path is sent as a `BadRequest` field violation.
"""

from __future__ import annotations

import ast
import functools
import keyword
import re
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import dspy
import grpc
from dspy.signatures.signature import make_signature

from dspy_bridge.errors import BridgeError, FieldViolation, Reason

__all__ = [
    "MAX_FIELDS",
    "MAX_SIGNATURE_CHARS",
    "MAX_TYPE_DEPTH",
    "MODULE_RESERVED_FIELDS",
    "RESERVED_FIELD_NAMES",
    "FieldSpec",
    "SignatureSpec",
    "check_fields_for_module",
    "parse_signature",
    "resolve_type",
    "to_dspy_signature",
]

Role = Literal["input", "output"]

# Limits that keep a hostile request from costing much: the whole text, the number of fields and
# the nesting of one type (`list[list[list[...]]]`).
MAX_SIGNATURE_CHARS = 10_000
MAX_FIELDS = 100
MAX_TYPE_DEPTH = 8
MAX_DESCRIPTION_CHARS = 10_000

_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")

_SCALARS: dict[str, Any] = {
    "str": str,
    "int": int,
    "float": float,
    "bool": bool,
    "Any": Any,
}
_NONE_NAMES = frozenset({"None", "NoneType"})
# Generic containers: name -> (origin, how many type arguments; -1 means "tuple rules").
_GENERICS: dict[str, tuple[Any, int]] = {
    "list": (list, 1),
    "List": (list, 1),
    "dict": (dict, 2),
    "Dict": (dict, 2),
    "tuple": (tuple, -1),
    "Tuple": (tuple, -1),
}
_SPECIAL_FORMS = frozenset({"Optional", "Union", "Literal"})
# Key types a dict may have: a JSON object's keys are strings, and DSPy formats keys with str().
_DICT_KEY_TYPES: tuple[Any, ...] = (str, int, float, bool)

_SUPPORTED_HINT = (
    "use str, int, float, bool, Any, list[T], dict[K, V], tuple[T, ...], "
    "Literal['a', 'b'], Optional[T] or T | None"
)


def _reserved_names() -> dict[str, str]:
    """Names a field may not have, with the reason shown to the host.

    Computed from DSPy's classes where possible so that the list follows the pinned version:
    a field may not shadow an attribute of `dspy.Signature` (pydantic refuses it) or a method of
    `dspy.Prediction` (the result could not be read back), nor be a keyword `Predict.__call__`
    takes for itself, nor a name DSPy's adapters or ChainOfThought add to every signature.
    """
    reserved: dict[str, str] = {}
    for cls, why in (
        (dspy.Signature, "an attribute of dspy.Signature"),
        (type(dspy.Signature), "an attribute of dspy.Signature"),
        (dspy.Prediction, "a method of dspy.Prediction"),
    ):
        for attr in dir(cls):
            if not attr.startswith("_"):
                reserved.setdefault(attr, why)
    for attr in ("lm", "config", "demos", "signature", "new_signature", "prediction"):
        reserved.setdefault(attr, "a keyword dspy.Predict takes for itself")
    reserved["completed"] = "the end marker of DSPy's ChatAdapter ([[ ## completed ## ]])"
    reserved["reasoning"] = "the field ChainOfThought adds (it is returned as an output already)"
    return reserved


RESERVED_FIELD_NAMES: Mapping[str, str] = _reserved_names()

# Fields some module types add to the user's signature. `check_fields_for_module` rejects a
# signature that uses one of them for that module type; `parse_signature` does not, because
# `error` or `rationale` are fine names for every other module.
MODULE_RESERVED_FIELDS: Mapping[str, frozenset[str]] = {
    "ReAct": frozenset({"trajectory", "next_thought", "next_tool_name", "next_tool_args"}),
    "MultiChainComparison": frozenset({"rationale"}),
    "ProgramOfThought": frozenset(
        {"generated_code", "previous_code", "error", "final_generated_code", "code_output"}
    ),
    "Refine": frozenset({"hint_"}),
}
_MCC_ATTEMPT_RE = re.compile(r"reasoning_attempt_\d+\Z")


@dataclass(frozen=True)
class FieldSpec:
    """One signature field. `type` is DSPy's notation, canonicalised by `parse_signature`."""

    name: str
    role: Role
    type: str = "str"
    description: str = ""

    def to_dict(self) -> dict[str, str]:
        return {
            "name": self.name,
            "role": self.role,
            "type": self.type,
            "description": self.description,
        }


@dataclass(frozen=True)
class SignatureSpec:
    """A validated signature: fields in order (inputs and outputs) and task instructions.

    Frozen and hashable, so it can key caches (`to_dspy_signature`) and be compared for
    equality; only `parse_signature` should make one from host data.
    """

    fields: tuple[FieldSpec, ...]
    instructions: str = ""

    @property
    def inputs(self) -> tuple[FieldSpec, ...]:
        return tuple(f for f in self.fields if f.role == "input")

    @property
    def outputs(self) -> tuple[FieldSpec, ...]:
        return tuple(f for f in self.fields if f.role == "output")

    def field(self, name: str) -> FieldSpec | None:
        """The field called `name`, or None."""
        return next((f for f in self.fields if f.name == name), None)

    def text(self) -> str:
        """DSPy's string form, e.g. `context: list[str], question -> answer, confidence: float`.

        `str` types are left out, as DSPy writes them. Descriptions and instructions are not part
        of the string form; `to_dict` keeps them.
        """

        def one(f: FieldSpec) -> str:
            return f.name if f.type == "str" else f"{f.name}: {f.type}"

        inputs = ", ".join(one(f) for f in self.inputs)
        outputs = ", ".join(one(f) for f in self.outputs)
        return f"{inputs} -> {outputs}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form for the store; `from_dict` reverses it."""
        return {
            "fields": [f.to_dict() for f in self.fields],
            "instructions": self.instructions,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> SignatureSpec:
        """Rebuild a spec stored by `to_dict`, validating it again (stores outlive code)."""
        fields = [
            FieldSpec(
                name=str(f["name"]),
                role=f["role"],
                type=str(f.get("type", "str")),
                description=str(f.get("description", "")),
            )
            for f in raw.get("fields", [])
        ]
        return parse_signature(fields=fields, instructions=str(raw.get("instructions", "")))


# --------------------------------------------------------------------------------------------
# Errors


def _error(path: str, problem: str) -> BridgeError:
    """INVALID_SIGNATURE whose message starts with the request path of the offending part."""
    return BridgeError(
        grpc.StatusCode.INVALID_ARGUMENT,
        Reason.INVALID_SIGNATURE,
        f"{path}: {problem}",
        violations=(FieldViolation(path, problem),),
    )


class _TypeProblem(ValueError):
    """Raised by the type walker; `unknown` marks an unknown name (vs. a malformed type)."""

    def __init__(self, detail: str, *, unknown: bool = False) -> None:
        super().__init__(detail)
        self.detail = detail
        self.unknown = unknown


# --------------------------------------------------------------------------------------------
# Types


def _node_text(node: ast.AST) -> str:
    try:
        return ast.unparse(node)
    except Exception:  # pragma: no cover - unparse handles every node ast.parse makes
        return type(node).__name__


def _literal_value(node: ast.expr) -> Any:
    """A `Literal[...]` argument: a str, int or bool constant (negative ints allowed)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (str, int, bool)):
        return node.value
    if (
        isinstance(node, ast.UnaryOp)
        and isinstance(node.op, ast.USub)
        and isinstance(node.operand, ast.Constant)
        and type(node.operand.value) is int
    ):
        return -node.operand.value
    if isinstance(node, ast.Constant) and node.value is None:
        return None
    raise _TypeProblem(
        f"Literal values must be str, int or bool constants, got {_node_text(node)!r}"
    )


def _type_args(node: ast.Subscript) -> list[ast.expr]:
    sl = node.slice
    return list(sl.elts) if isinstance(sl, ast.Tuple) else [sl]


def _resolve(node: ast.expr, depth: int) -> Any:
    """The Python type for a type-annotation node, refusing everything outside the grammar."""
    if depth > MAX_TYPE_DEPTH:
        raise _TypeProblem(f"types may nest at most {MAX_TYPE_DEPTH} levels deep")
    if isinstance(node, ast.Name):
        name = node.id
        if name in _SCALARS:
            return _SCALARS[name]
        if name in _NONE_NAMES:
            return type(None)
        if name in _GENERICS:
            return _GENERICS[name][0]
        if name in _SPECIAL_FORMS:
            raise _TypeProblem(f"{name} needs arguments, e.g. {name}[...]")
        raise _TypeProblem(f"{name!r} is not a supported type ({_SUPPORTED_HINT})", unknown=True)
    if isinstance(node, ast.Constant) and node.value is None:
        return type(None)
    if isinstance(node, ast.Subscript):
        if not isinstance(node.value, ast.Name):
            raise _TypeProblem(f"{_node_text(node.value)!r} cannot take type arguments")
        base = node.value.id
        args = _type_args(node)
        if base == "Literal":
            values = tuple(_literal_value(a) for a in args)
            return Literal.__getitem__(values)
        if base == "Optional":
            if len(args) != 1:
                raise _TypeProblem("Optional takes exactly one type argument")
            return typing.Optional[_resolve(args[0], depth + 1)]  # noqa: UP045 - runtime form
        if base == "Union":
            if len(args) < 2:
                raise _TypeProblem("Union takes at least two type arguments")
            return typing.Union.__getitem__(tuple(_resolve(a, depth + 1) for a in args))
        if base in _GENERICS:
            origin, arity = _GENERICS[base]
            if origin is tuple:
                if len(args) == 2 and isinstance(args[1], ast.Constant) and args[1].value is ...:
                    return tuple[_resolve(args[0], depth + 1), ...]  # type: ignore[misc]
                if any(isinstance(a, ast.Constant) and a.value is ... for a in args):
                    raise _TypeProblem("'...' is only allowed as tuple[T, ...]")
                return tuple.__class_getitem__(tuple(_resolve(a, depth + 1) for a in args))
            if len(args) != arity:
                plural = "argument" if arity == 1 else "arguments"
                raise _TypeProblem(f"{base} takes exactly {arity} type {plural}")
            resolved = [_resolve(a, depth + 1) for a in args]
            if origin is dict and not _is_key_type(resolved[0]):
                raise _TypeProblem("dict keys must be str, int, float, bool or a Literal of those")
            if origin is list:
                return list[resolved[0]]  # type: ignore[valid-type]
            return dict[resolved[0], resolved[1]]  # type: ignore[valid-type]
        if base in _SCALARS or base in _NONE_NAMES:
            raise _TypeProblem(f"{base} takes no type arguments")
        raise _TypeProblem(f"{base!r} is not a supported type ({_SUPPORTED_HINT})", unknown=True)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        left = _resolve(node.left, depth + 1)
        right = _resolve(node.right, depth + 1)
        return typing.Union[left, right]  # noqa: UP007 - runtime form of `X | Y`
    if isinstance(node, ast.Attribute):
        raise _TypeProblem(f"attribute access ({_node_text(node)!r}) is not allowed in a type")
    if isinstance(node, ast.Call):
        raise _TypeProblem(f"calls ({_node_text(node)!r}) are not allowed in a type")
    if isinstance(node, ast.Constant):
        raise _TypeProblem(f"a constant ({_node_text(node)!r}) is not a type; use Literal[...]")
    raise _TypeProblem(f"{_node_text(node)!r} is not a type expression")


def _is_key_type(tp: Any) -> bool:
    if tp in _DICT_KEY_TYPES:
        return True
    if typing.get_origin(tp) is Literal:
        return all(isinstance(v, (str, int, bool)) for v in typing.get_args(tp))
    return False


def _parse_type_text(text: str) -> tuple[str, Any]:
    """(canonical text, Python type) for a type string; raises `_TypeProblem`."""
    stripped = text.strip()
    if not stripped:
        return "str", str
    if len(stripped) > MAX_SIGNATURE_CHARS:
        raise _TypeProblem(f"a type may be at most {MAX_SIGNATURE_CHARS} characters")
    try:
        tree = ast.parse(stripped, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        detail = exc.msg if isinstance(exc, SyntaxError) else type(exc).__name__
        raise _TypeProblem(f"not a valid type expression ({detail})") from None
    try:
        resolved = _resolve(tree.body, 1)
    except RecursionError:
        raise _TypeProblem(f"types may nest at most {MAX_TYPE_DEPTH} levels deep") from None
    return ast.unparse(tree.body), resolved


@functools.lru_cache(maxsize=1024)
def resolve_type(text: str) -> Any:
    """The Python type for DSPy type notation (`list[str]`, `Literal['a', 'b']`, ...).

    Only the restricted grammar is accepted; raises ValueError (with a readable message) for
    anything else. Cached: signatures repeat the same few types.
    """
    try:
        return _parse_type_text(text)[1]
    except _TypeProblem as exc:
        raise ValueError(exc.detail) from None


# --------------------------------------------------------------------------------------------
# The string form


class _Unbalanced(ValueError):
    """A bracket or quote in the signature text that is never closed (or closed twice)."""


def _split_top_level(text: str, sep: str) -> list[str]:
    """Split on `sep` outside brackets and string literals (types contain `,` and `->`)."""
    parts: list[str] = []
    stack: list[str] = []
    pairs = {")": "(", "]": "[", "}": "{"}
    quote = ""
    start = 0
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 2
                continue
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            stack.append(ch)
        elif ch in pairs:
            if not stack or stack[-1] != pairs[ch]:
                raise _Unbalanced(f"unexpected {ch!r} at position {i}")
            stack.pop()
        elif not stack and text.startswith(sep, i):
            parts.append(text[start:i])
            i += len(sep)
            start = i
            continue
        i += 1
    if quote:
        raise _Unbalanced("a quoted string is never closed")
    if stack:
        raise _Unbalanced(f"{stack[-1]!r} is never closed")
    parts.append(text[start:])
    return parts


def _fields_from_text(text: str, path: str) -> list[FieldSpec]:
    try:
        sides = _split_top_level(text, "->")
    except _Unbalanced as exc:
        raise _error(path, str(exc)) from None
    if len(sides) == 1:
        raise _error(path, "no '->': write inputs -> outputs, e.g. 'question -> answer'")
    if len(sides) > 2:
        raise _error(path, "more than one '->': write inputs -> outputs, e.g. 'question -> answer'")
    fields: list[FieldSpec] = []
    roles: tuple[tuple[str, Role], ...] = ((sides[0], "input"), (sides[1], "output"))
    for side, role in roles:
        if not side.strip():
            where = "before" if role == "input" else "after"
            raise _error(path, f"no {role} fields: put {role}s {where} '->'")
        for position, item in enumerate(_split_top_level(side, ","), start=1):
            item = item.strip()
            if not item:
                raise _error(path, f"empty {role} field #{position}: remove the extra ','")
            name_part, colon, type_part = item.partition(":")
            name = name_part.strip()
            if not colon and not re.fullmatch(r"\w+", name):
                raise _error(
                    path, f"{role} field #{position} {item!r} is not 'name' or 'name: type'"
                )
            if colon and not type_part.strip():
                raise _error(path, f"field {name!r} has ':' but no type")
            fields.append(FieldSpec(name, role, type_part.strip() or "str"))
    return fields


# --------------------------------------------------------------------------------------------
# Validation


def _check_name(name: str, path: str) -> None:
    if not name:
        raise _error(path, "a field needs a name")
    if not _NAME_RE.match(name):
        raise _error(
            path,
            f"field name {name!r} is not valid: use letters, digits and '_', "
            "starting with a letter",
        )
    if keyword.iskeyword(name):
        raise _error(path, f"field name {name!r} is a Python keyword")
    if name in RESERVED_FIELD_NAMES:
        raise _error(
            path, f"field name {name!r} clashes with DSPy: it is {RESERVED_FIELD_NAMES[name]}"
        )


def parse_signature(
    text: str = "",
    fields: Sequence[FieldSpec] = (),
    instructions: str = "",
) -> SignatureSpec:
    """A validated `SignatureSpec` from exactly one of DSPy's string form or a list of fields.

    Raises INVALID_ARGUMENT (reason INVALID_SIGNATURE) naming where the problem is: a path
    (`signature.text`, `signature.fields[i].name|role|type`) in the message and as the field
    violation. Types are canonicalised (`list[ str ]` -> `list[str]`), so equal signatures compare
    and hash equal.
    """
    if text.strip() and fields:
        raise _error("signature", "give either text or fields, not both")
    if not text.strip() and not fields:
        raise _error(
            "signature",
            "empty: give text such as 'question -> answer' or a list of input and output fields",
        )
    if len(instructions) > 100 * MAX_SIGNATURE_CHARS:
        raise _error("signature.instructions", "too long")

    from_text = bool(text.strip())
    if from_text:
        if len(text) > MAX_SIGNATURE_CHARS:
            raise _error("signature.text", f"longer than {MAX_SIGNATURE_CHARS} characters")
        raw_fields = _fields_from_text(text, "signature.text")
    else:
        raw_fields = list(fields)
    if len(raw_fields) > MAX_FIELDS:
        where = "signature.text" if from_text else "signature.fields"
        raise _error(where, f"{len(raw_fields)} fields; at most {MAX_FIELDS} are allowed")

    checked: list[FieldSpec] = []
    seen: dict[str, str] = {}
    for index, f in enumerate(raw_fields):
        base = "signature.text" if from_text else f"signature.fields[{index}]"
        name_path = base if from_text else f"{base}.name"
        _check_name(f.name, name_path)
        if f.name in seen:
            raise _error(
                name_path,
                f"field {f.name!r} appears twice (as {seen[f.name]} and {f.role}); "
                "names must be unique",
            )
        if f.role not in ("input", "output"):
            raise _error(
                f"{base}.role" if not from_text else base,
                f"role of field {f.name!r} must be 'input' or 'output', got {f.role!r}",
            )
        seen[f.name] = f.role
        type_path = base if from_text else f"{base}.type"
        try:
            canonical, _ = _parse_type_text(f.type)
        except _TypeProblem as exc:
            label = "unknown type" if exc.unknown else "invalid type"
            raise _error(
                type_path, f"{label} {f.type.strip()!r} for field {f.name!r}: {exc.detail}"
            ) from None
        if len(f.description) > MAX_DESCRIPTION_CHARS:
            raise _error(f"{base}.description", f"longer than {MAX_DESCRIPTION_CHARS} characters")
        checked.append(FieldSpec(f.name, f.role, canonical, f.description))

    where = "signature.text" if from_text else "signature.fields"
    if not any(f.role == "input" for f in checked):
        raise _error(
            where,
            "no input fields: put inputs before '->'"
            if from_text
            else "no input fields: add at least one field with role 'input'",
        )
    if not any(f.role == "output" for f in checked):
        raise _error(
            where,
            "no output fields: put outputs after '->'"
            if from_text
            else "no output fields: add at least one field with role 'output'",
        )
    return SignatureSpec(tuple(checked), instructions)


def check_fields_for_module(spec: SignatureSpec, module_type: str) -> None:
    """Reject a signature whose field names collide with fields `module_type` adds itself.

    ReAct, MultiChainComparison, ProgramOfThought and Refine extend the user's signature with
    their own fields; a user field with the same name would be overwritten or duplicated.
    """
    reserved = MODULE_RESERVED_FIELDS.get(module_type, frozenset())
    for index, f in enumerate(spec.fields):
        clash = f.name in reserved or (
            module_type == "MultiChainComparison" and _MCC_ATTEMPT_RE.match(f.name)
        )
        if clash:
            raise _error(
                f"signature.fields[{index}].name",
                f"field name {f.name!r} clashes with a field {module_type} adds; rename it",
            )


# --------------------------------------------------------------------------------------------
# DSPy


@functools.lru_cache(maxsize=512)
def to_dspy_signature(spec: SignatureSpec) -> type[dspy.Signature]:
    """The `dspy.Signature` class for a spec, with instructions and field descriptions.

    Cached by spec: DSPy treats signature classes as immutable values (`with_instructions` and
    friends return new classes), so modules built from equal specs can share one. Empty
    instructions get DSPy's default ("Given the fields ..., produce the fields ...").
    """
    fields: dict[str, tuple[Any, Any]] = {}
    for f in spec.fields:
        kwargs = {"desc": f.description} if f.description else {}
        info = dspy.InputField(**kwargs) if f.role == "input" else dspy.OutputField(**kwargs)
        fields[f.name] = (resolve_type(f.type), info)
    signature: type[dspy.Signature] = make_signature(fields, spec.instructions or None)
    return signature
