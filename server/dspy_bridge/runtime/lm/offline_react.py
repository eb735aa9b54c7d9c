"""How the `offline` LM drives a ReAct module, deterministically, through one tool call.

So tests, the walkthrough and benchmarks show tools end to end without a provider, the offline
LM recognises the two prompts DSPy's `ReAct` makes and steers them instead of answering with
hash-derived values:

- **The step prompt** (outputs `next_thought`, `next_tool_name`, `next_tool_args`). With no
  observation in the trajectory yet, it calls the first tool listed (the module's first
  configured tool) with arguments derived from the inputs: each parameter of the tool's JSON
  Schema without a `default` (read from the tool list DSPy writes into the instructions)
  takes the input field of the same name when there is one, else — by its type — the first
  input's text, the first number in the inputs, `true`, a one-item list or an empty object.
  Once the trajectory holds an observation, it calls `finish`.
- **The extract prompt** (inputs include `trajectory`): every `str` output but `reasoning`
  answers with the last observation's text, and `reasoning` says which tool gave it, so the
  tool's result visibly reaches the prediction.

A demonstration that matches the inputs still wins (few-shot optimization keeps steering the
offline LM); everything else is left to its usual rules.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping, Sequence
from typing import Any

REACT_OUTPUTS = ("next_thought", "next_tool_name", "next_tool_args")
FINISH = "finish"
_TOOL_LINE_RE = re.compile(r"^\s*\(\d+\) ([^,\s]+?)(?:,| It takes| whose|\.)")
_ARGS_RE = re.compile(r"It takes arguments (\{.*\})\.\s*$")
_HEADER_RE = re.compile(r"^\[\[ ## (\w+) ## \]\]\s*$")
_NUMBER_RE = re.compile(r"-?\d+(?:\.\d+)?")
_MAX_ARGS_CHARS = 100_000


def _tools(system: str) -> list[tuple[str, dict[str, Any]]]:
    """(name, JSON Schema properties) of each tool DSPy's ReAct lists, in order."""
    found: list[tuple[str, dict[str, Any]]] = []
    for line in system.splitlines():
        name = _TOOL_LINE_RE.match(line)
        if name is None:
            continue
        args = _ARGS_RE.search(line)
        properties: dict[str, Any] = {}
        if args is not None and len(args.group(1)) <= _MAX_ARGS_CHARS:
            try:
                parsed = ast.literal_eval(args.group(1))  # a dict repr DSPy wrote, never code
            except (ValueError, SyntaxError):
                parsed = {}
            properties = parsed if isinstance(parsed, dict) else {}
        found.append((name.group(1), properties))
    return found


def _sections(text: str) -> list[tuple[str, str]]:
    """(field name, text) of each `[[ ## name ## ]]` section of a trajectory."""
    sections: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        header = _HEADER_RE.match(line)
        if header is not None:
            sections.append((header.group(1), []))
        elif sections:
            sections[-1][1].append(line)
    return [(name, "\n".join(lines).strip()) for name, lines in sections]


def _argument(schema: Any, name: str, inputs: Mapping[str, str]) -> Any:
    if name in inputs:
        return inputs[name]
    kind = schema.get("type") if isinstance(schema, Mapping) else None
    first = next(iter(inputs.values()), "")
    if kind in ("integer", "number"):
        numbers = [n for text in inputs.values() for n in _NUMBER_RE.findall(text)]
        number = float(numbers[0]) if numbers else 0.0
        return int(number) if kind == "integer" else number
    if kind == "boolean":
        return True
    if kind == "array":
        return [first]
    if kind == "object":
        return {}
    return first


def steer(
    outputs: Sequence[tuple[str, Any]], inputs: Mapping[str, str], system: str, request: str
) -> dict[str, Any] | None:
    """The values to answer a ReAct prompt with (module docstring); None for other prompts.
    `outputs` are the prompt's output fields with their types, `inputs` the input fields'
    texts, `request` the whole user message (the trajectory's own sections are in it)."""
    if "trajectory" not in inputs:
        return None
    own_inputs = {k: v for k, v in inputs.items() if k != "trajectory"}
    sections = _sections(request)
    observations = [text for name, text in sections if name.startswith("observation_")]
    called = [text for name, text in sections if name.startswith("tool_name_")]
    if tuple(name for name, _ in outputs) == REACT_OUTPUTS:
        tools = [(n, p) for n, p in _tools(system) if n != FINISH]
        if observations or "observation_0" in request or not tools:
            return {
                "next_thought": "I have what I need.",
                "next_tool_name": FINISH,
                "next_tool_args": {},
            }
        name, properties = tools[0]
        arguments = {
            key: _argument(schema, key, own_inputs)
            for key, schema in properties.items()
            if not (isinstance(schema, Mapping) and "default" in schema)  # optional: left out
        }
        return {
            "next_thought": f"I will ask {name}.",
            "next_tool_name": name,
            "next_tool_args": arguments,
        }
    if not observations:
        return None
    tool = next((t for t in called if t != FINISH), "the tool")
    steered: dict[str, Any] = {"reasoning": f"{tool} answered: {observations[0]}"}
    for name, tp in outputs:
        if name != "reasoning" and tp is str:
            steered[name] = observations[0]
    return steered
