"""Built-in metrics and the seam for host-defined ones.

A metric scores one prediction against one example: `metric(example, prediction, trace=None)`
returns a float in [0, 1]. `resolve_metric(name, options, signature, lm)` validates the options
up front (unknown metric → INVALID_ARGUMENT `UNKNOWN_METRIC`, bad options → INVALID_ARGUMENT
`INVALID_METRIC_OPTIONS`, with the option's path as a field violation) and returns a callable
that is picklable: it pickles as `(name, options, signature, lm)` and is rebuilt (and validated
again) by `resolve_metric` on the other side, so job processes can receive it as is.

Built-ins (DSPy's own implementations where DSPy has one):

- `exact_match`: prediction == label (strings stripped); `case_sensitive` (true), `normalize`.
- `answer_exact_match`: DSPy's `answer_exact_match`; `frac` (1.0 = EM, else F1 >= frac).
- `answer_passage_match`: DSPy's `answer_passage_match`; `field` names the passages.
- `f1`: DSPy's token F1 (`dspy.evaluate.metrics.F1`); `threshold`.
- `contains`: the label text occurs in the prediction; `case_sensitive` (false), `normalize`.
- `regex`: `pattern` (required) matches the prediction text, never evaluated as code; `mode`
  (`search` or `fullmatch`), `case_sensitive` (true).
- `numeric_close`: abs(pred - label) <= `tolerance` (1e-6; times abs(label) when `relative`).
- `semantic_f1`: DSPy's SemanticF1 signatures (LM-judged recall/precision); `question`,
  `decompositional`, `threshold`.
- `llm_judge`: an LM grades the prediction by `rubric` (required), parsed to [0, 1];
  `question`, `threshold`.

`field` is the output field read from the prediction (default: the signature's first output);
`label` is the example's label field (default: `field`). A label that is a list while the field
is not list-typed is a set of acceptable answers (any one matches; the best score counts).
`threshold` applies when DSPy calls a metric with a trace (bootstrapping): a continuous score
then becomes 1.0 when ≥ threshold, else 0.0.

Host metrics over `Connect` are `host:<name>` (see `host_metrics.py`). Plugin metrics: a
`MetricProvider` registered with `register_metric_provider` answers
for the names it lists; `resolve_metric` consults the providers for any name that is not a
built-in. The `Connect` stream (a host registering metrics) will register one provider per host
connection, whose metrics forward each call to the host by `call_id`. A provider's metric must
be picklable in the same sense (rebuildable by name in the job process, e.g. by calling back to
the front); a provider that cannot do that must say so in `remote_only`, and jobs then evaluate
it in the front process.
"""

from __future__ import annotations

import json
import math
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import dspy
import re2
from dspy.evaluate import auto_evaluation
from dspy.evaluate import metrics as dspy_metrics

from dspy_bridge.errors import BridgeError, Reason, failed_precondition, invalid_argument
from dspy_bridge.jobs.host_metrics import HostMetric
from dspy_bridge.model.patterns import MAX_PATTERN_CHARS, HostPattern, PatternError, compile_pattern
from dspy_bridge.runtime.host_calls import HostCaller, host_name
from dspy_bridge.runtime.signatures import SignatureSpec

__all__ = [
    "METRIC_NAMES",
    "Metric",
    "MetricInputError",
    "MetricProvider",
    "metric_names",
    "register_metric_provider",
    "resolve_metric",
    "unregister_metric_provider",
]

Metric = Callable[..., float]
"""`(example: dspy.Example, prediction: dspy.Prediction, trace: Any = None) -> float`."""

MAX_RUBRIC_CHARS = 10_000


class MetricInputError(ValueError):
    """An example or prediction the metric cannot score (e.g. the label field is missing).
    Evaluation records it as that example's error and scores it 0."""


# --------------------------------------------------------------------------------------------
# Host-defined metrics (the Connect seam)


@runtime_checkable
class MetricProvider(Protocol):
    """A source of metrics that are not built in (a host over `Connect`, a plugin)."""

    remote_only: bool
    """True when its metrics only work in the process that registered the provider."""

    def names(self) -> Sequence[str]:
        """The metric names this provider answers for."""
        ...

    def resolve(
        self,
        name: str,
        options: Mapping[str, Any],
        signature: SignatureSpec,
        lm: dspy.BaseLM | None,
    ) -> Metric:
        """A metric for `name`; raise BridgeError INVALID_ARGUMENT for bad options."""
        ...


_providers: list[MetricProvider] = []
_providers_lock = threading.Lock()


def register_metric_provider(provider: MetricProvider) -> None:
    """Make a provider's metrics resolvable. Built-in names cannot be taken over."""
    clash = sorted(set(provider.names()) & set(METRIC_NAMES))
    if clash:
        raise ValueError(f"metric names {clash} are built in")
    with _providers_lock:
        _providers.append(provider)


def unregister_metric_provider(provider: MetricProvider) -> None:
    with _providers_lock:
        if provider in _providers:
            _providers.remove(provider)


def metric_names() -> list[str]:
    """Built-in names, then every registered provider's names."""
    with _providers_lock:
        extra = [n for p in _providers for n in p.names()]
    return [*METRIC_NAMES, *sorted(set(extra) - set(METRIC_NAMES))]


# --------------------------------------------------------------------------------------------
# Options


def _bad(name: str, option: str, message: str) -> BridgeError:
    return invalid_argument(
        Reason.INVALID_METRIC_OPTIONS,
        f"metric {name!r}: option {option!r}: {message}",
        f"metric.options.{option}",
        metadata={"metric": name, "option": option},
    )


def _as_bool(name: str, option: str, raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.strip().lower() in ("true", "1", "yes"):
        return True
    if isinstance(raw, str) and raw.strip().lower() in ("false", "0", "no"):
        return False
    if isinstance(raw, int) and raw in (0, 1):
        return bool(raw)
    raise _bad(name, option, f"must be a boolean, got {raw!r}")


def _as_float(name: str, option: str, raw: Any, lo: float, hi: float) -> float:
    try:
        if isinstance(raw, bool):
            raise ValueError
        value = float(raw)
    except (TypeError, ValueError):
        raise _bad(name, option, f"must be a number, got {raw!r}") from None
    if not math.isfinite(value) or not lo <= value <= hi:
        raise _bad(name, option, f"must be between {lo:g} and {hi:g}, got {value:g}")
    return value


def _as_str(name: str, option: str, raw: Any, limit: int) -> str:
    if not isinstance(raw, str):
        raise _bad(name, option, f"must be a string, got {raw!r}")
    if len(raw) > limit:
        raise _bad(name, option, f"must be at most {limit} characters")
    return raw


@dataclass(frozen=True)
class _Options:
    """Validated options shared by every built-in."""

    field: str
    label: str
    case_sensitive: bool
    normalize: bool
    threshold: float | None
    extra: Mapping[str, Any]


# Which options each built-in takes, with defaults for the flags.
_COMMON = ("field", "label")
_ALLOWED: dict[str, tuple[str, ...]] = {
    "exact_match": (*_COMMON, "case_sensitive", "normalize"),
    "answer_exact_match": (*_COMMON, "frac"),
    "answer_passage_match": _COMMON,
    "f1": (*_COMMON, "threshold"),
    "contains": (*_COMMON, "case_sensitive", "normalize"),
    "regex": ("field", "pattern", "mode", "case_sensitive"),
    "numeric_close": (*_COMMON, "tolerance", "relative"),
    "semantic_f1": (*_COMMON, "question", "decompositional", "threshold"),
    "llm_judge": (*_COMMON, "rubric", "question", "threshold"),
}
_CASE_DEFAULT = {"exact_match": True, "contains": False, "regex": True}

METRIC_NAMES: list[str] = list(_ALLOWED)
"""Built-in metric names, as GetServerInfo reports them."""


def _is_list_type(type_text: str) -> bool:
    return type_text.startswith(("list", "List", "tuple", "Tuple"))


def _validate(name: str, options: Mapping[str, Any], signature: SignatureSpec) -> _Options:
    allowed = _ALLOWED[name]
    for key in options:
        if key not in allowed:
            raise _bad(name, key, f"unknown option; {name} takes: {', '.join(allowed)}")
    outputs = [f.name for f in signature.outputs]
    inputs = [f.name for f in signature.inputs]
    if not outputs:
        raise _bad(name, "field", "the signature has no output field")
    default_field = outputs[0]
    if name == "answer_passage_match":
        lists = [f.name for f in signature.outputs if _is_list_type(f.type)]
        default_field = lists[0] if lists else outputs[0]
    field_name = _as_str(name, "field", options.get("field", default_field), 200)
    if field_name not in outputs:
        raise _bad(name, "field", f"{field_name!r} is not an output field (outputs: {outputs})")
    default_label = field_name
    if name == "answer_passage_match":
        others = [o for o in outputs if o != field_name]
        default_label = "answer" if "answer" in others else (others[0] if others else field_name)
    label = _as_str(name, "label", options.get("label", default_label), 200)
    if name != "regex" and label not in outputs:
        raise _bad(name, "label", f"{label!r} is not an output field (outputs: {outputs})")
    case = _as_bool(
        name, "case_sensitive", options.get("case_sensitive", _CASE_DEFAULT.get(name, False))
    )
    normalize = _as_bool(name, "normalize", options.get("normalize", False))
    threshold = (
        _as_float(name, "threshold", options["threshold"], 0.0, 1.0)
        if "threshold" in options
        else None
    )
    extra: dict[str, Any] = {}
    if name == "answer_exact_match":
        extra["frac"] = _as_float(name, "frac", options.get("frac", 1.0), 0.0, 1.0)
    elif name == "regex":
        if "pattern" not in options:
            raise _bad(name, "pattern", "is required")
        pattern = _as_str(name, "pattern", options["pattern"], MAX_PATTERN_CHARS)
        mode = _as_str(name, "mode", options.get("mode", "search"), 20)
        if mode not in ("search", "fullmatch"):
            raise _bad(name, "mode", f"must be 'search' or 'fullmatch', got {mode!r}")
        try:  # RE2, linear time: the pattern and the text it scores are the host's
            extra["regex"] = compile_pattern(pattern, ignore_case=not case)
        except PatternError as exc:
            raise _bad(name, "pattern", str(exc)) from None
        extra["mode"] = mode
    elif name == "numeric_close":
        extra["tolerance"] = _as_float(name, "tolerance", options.get("tolerance", 1e-6), 0, 1e300)
        extra["relative"] = _as_bool(name, "relative", options.get("relative", False))
    elif name in ("semantic_f1", "llm_judge"):
        question = options.get("question")
        if question is not None:
            question = _as_str(name, "question", question, 200)
            if question not in inputs:
                raise _bad(name, "question", f"{question!r} is not an input field ({inputs})")
        extra["question"] = question
        if name == "semantic_f1":
            extra["decompositional"] = _as_bool(
                name, "decompositional", options.get("decompositional", False)
            )
        else:
            if "rubric" not in options:
                raise _bad(name, "rubric", "is required")
            rubric = _as_str(name, "rubric", options["rubric"], MAX_RUBRIC_CHARS).strip()
            if not rubric:
                raise _bad(name, "rubric", "must not be empty")
            extra["rubric"] = rubric
    return _Options(field_name, label, case, normalize, threshold, extra)


# --------------------------------------------------------------------------------------------
# Reading examples and predictions


def _value(obj: Any, name: str, what: str) -> Any:
    try:
        value = obj[name]
    except (KeyError, TypeError, AttributeError):
        raise MetricInputError(f"the {what} has no field {name!r}") from None
    return value


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    try:
        return json.dumps(value, sort_keys=True, default=str)
    except (TypeError, ValueError):
        return str(value)


_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    match = _NUMBER.search(_text(value).replace(",", ""))
    return float(match.group(0)) if match else None


# --------------------------------------------------------------------------------------------
# The metric


class BuiltinMetric:
    """A built-in metric with validated options; call it like any DSPy metric."""

    def __init__(
        self,
        name: str,
        raw_options: Mapping[str, Any],
        signature: SignatureSpec,
        lm: dspy.BaseLM | None,
        options: _Options,
    ) -> None:
        self.name = name
        self.raw_options = dict(raw_options)
        self.signature = signature
        self.lm = lm
        self.options = options
        self._field_is_list = _is_list_type(
            next(f.type for f in signature.outputs if f.name == options.field)
        )
        self._judge: Any = None

    def __repr__(self) -> str:
        return f"BuiltinMetric({self.name!r}, {self.raw_options!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (resolve_metric, (self.name, self.raw_options, self.signature, self.lm))

    def __call__(self, example: Any, prediction: Any, trace: Any = None) -> float:
        o = self.options
        predicted = _value(prediction, o.field, "prediction")
        if self.name == "regex":
            score = self._regex(predicted)
        else:
            label = _value(example, o.label, "example")
            candidates = (
                list(label)
                if isinstance(label, (list, tuple)) and not self._field_is_list
                else [label]
            )
            if not candidates:
                raise MetricInputError(f"the example's label {o.label!r} is an empty list")
            score = self._score(example, predicted, candidates)
        score = min(1.0, max(0.0, float(score)))
        if trace is not None and o.threshold is not None:
            return 1.0 if score >= o.threshold else 0.0
        return score

    # -- per metric -------------------------------------------------------------------------

    def _score(self, example: Any, predicted: Any, labels: list[Any]) -> float:
        name = self.name
        if name == "exact_match":
            return float(any(self._equal(predicted, label) for label in labels))
        if name == "contains":
            text = self._prep(_text(predicted))
            return float(any(self._prep(_text(label)) in text for label in labels))
        if name == "answer_exact_match":
            ex = dspy.Example(answer=[_text(label) for label in labels])
            pred = dspy.Prediction(answer=_text(predicted))
            frac = float(self.options.extra["frac"])
            return float(dspy_metrics.answer_exact_match(ex, pred, frac=frac))
        if name == "answer_passage_match":
            passages = predicted if isinstance(predicted, (list, tuple)) else [predicted]
            ex = dspy.Example(answer=[_text(label) for label in labels])
            pred = dspy.Prediction(context=[_text(p) for p in passages])
            return float(dspy_metrics.answer_passage_match(ex, pred))
        if name == "f1":
            return float(dspy_metrics.F1(_text(predicted), [_text(label) for label in labels]))
        if name == "numeric_close":
            return self._numeric(predicted, labels)
        if name == "semantic_f1":
            return max(self._semantic_f1(example, predicted, label) for label in labels)
        if name == "llm_judge":
            return self._llm_judge(example, predicted, labels)
        raise AssertionError(name)  # pragma: no cover - _ALLOWED lists every name

    def _prep(self, text: str) -> str:
        text = text.strip()
        if self.options.normalize:
            return str(dspy_metrics.normalize_text(text))
        return text if self.options.case_sensitive else text.lower()

    def _equal(self, predicted: Any, label: Any) -> bool:
        if isinstance(predicted, str) or isinstance(label, str):
            return self._prep(_text(predicted)) == self._prep(_text(label))
        if isinstance(predicted, (int, float)) and isinstance(label, (int, float)):
            return float(predicted) == float(label)
        return bool(predicted == label)

    def _regex(self, predicted: Any) -> float:
        regex: HostPattern = self.options.extra["regex"]
        text = _text(predicted)
        if self.options.extra["mode"] == "fullmatch":
            return 1.0 if regex.fullmatch(text) else 0.0
        return 1.0 if regex.search(text) else 0.0

    def _numeric(self, predicted: Any, labels: list[Any]) -> float:
        got = _number(predicted)
        if got is None:
            return 0.0
        tol = float(self.options.extra["tolerance"])
        relative = bool(self.options.extra["relative"])
        for label in labels:
            want = _number(label)
            if want is None:
                raise MetricInputError(f"the label {label!r} is not a number")
            allowed = tol * abs(want) if relative else tol
            if abs(got - want) <= allowed + 1e-12:
                return 1.0
        return 0.0

    # -- LM-judged --------------------------------------------------------------------------

    def _context_lm(self) -> dspy.BaseLM:
        lm = self.lm or dspy.settings.lm
        if lm is None:
            raise failed_precondition(
                Reason.NO_LM_CONFIGURED, f"metric {self.name!r} needs an LM to judge with"
            )
        return lm

    def _question(self, example: Any) -> str:
        field_name = self.options.extra.get("question")
        if field_name:
            return _text(_value(example, field_name, "example"))
        parts = []
        for f in self.signature.inputs:
            try:
                parts.append(f"{f.name}: {_text(example[f.name])}")
            except (KeyError, TypeError):
                continue
        return "\n".join(parts)

    def _semantic_f1(self, example: Any, predicted: Any, label: Any) -> float:
        if self._judge is None:
            sig = (
                auto_evaluation.DecompositionalSemanticRecallPrecision
                if self.options.extra["decompositional"]
                else auto_evaluation.SemanticRecallPrecision
            )
            self._judge = dspy.ChainOfThought(sig)
        with dspy.context(lm=self._context_lm()):
            scores = self._judge(
                question=self._question(example),
                ground_truth=_text(label),
                system_response=_text(predicted),
            )
        precision = _number(scores.precision) or 0.0
        recall = _number(scores.recall) or 0.0
        return float(auto_evaluation.f1_score(precision, recall))

    def _llm_judge(self, example: Any, predicted: Any, labels: list[Any]) -> float:
        if self._judge is None:
            self._judge = dspy.ChainOfThought(_JudgeSignature)
        with dspy.context(lm=self._context_lm()):
            verdict = self._judge(
                rubric=self.options.extra["rubric"],
                task_inputs=self._question(example),
                reference=" | ".join(_text(label) for label in labels),
                response=_text(predicted),
            )
        return judge_score(verdict.score)


class _JudgeSignature(dspy.Signature):  # type: ignore[misc]
    """Grade the response to a task by the rubric. The reference is a correct answer, when
    given. Reply with a score between 0 (fails the rubric) and 1 (fully satisfies it)."""

    rubric: str = dspy.InputField()
    task_inputs: str = dspy.InputField()
    reference: str = dspy.InputField()
    response: str = dspy.InputField()
    score: str = dspy.OutputField(desc="a number between 0 and 1")


# RE2: the judge's reply is an LM's text (a host's LM, maybe), and this pattern backtracks
# quadratically in Python's `re` on a long run of digits.
_FRACTION = re2.compile(r"(?i)([-+]?\d+(?:\.\d+)?)\s*(?:/|out of)\s*(\d+(?:\.\d+)?)")


def judge_score(raw: Any) -> float:
    """An LM's score as a number in [0, 1]: `0.8`, `8/10`, `80%` and `4 out of 5` all work;
    a bare number above 1 is read on a 10 (≤ 10) or 100 (≤ 100) scale."""
    text = _text(raw).strip()
    fraction = _FRACTION.search(text)
    if fraction and float(fraction.group(2)) > 0:
        return min(1.0, max(0.0, float(fraction.group(1)) / float(fraction.group(2))))
    value = _number(text)
    if value is None:
        return 0.0
    if "%" in text:
        value /= 100
    elif value > 1:
        value = value / 10 if value <= 10 else value / 100
    return min(1.0, max(0.0, value))


# --------------------------------------------------------------------------------------------
# Resolving


def resolve_metric(
    name: str,
    options: Mapping[str, Any],
    signature: SignatureSpec,
    lm: dspy.BaseLM | None = None,
    *,
    session_id: str = "",
    host: HostCaller | None = None,
) -> Metric:
    """The metric called `name` with validated `options`, for a module with `signature`.

    `lm` is the judge for LM-judged metrics (default: the LM in DSPy's context at call time).
    `host:<name>` is the session's host metric (`host_metrics.py`; `host` is the way to it in
    the front, a job process finds its own). Raises BridgeError INVALID_ARGUMENT
    (`UNKNOWN_METRIC`, `INVALID_METRIC_OPTIONS`)."""
    bare = host_name(name)
    if bare is not None:
        return HostMetric(bare, options, session_id, async_caller=host)
    if name in _ALLOWED:
        validated = _validate(name, options, signature)
        return BuiltinMetric(name, options, signature, lm, validated)
    with _providers_lock:
        provider = next((p for p in _providers if name in p.names()), None)
    if provider is not None:
        return provider.resolve(name, options, signature, lm)
    known = ", ".join(metric_names())
    raise invalid_argument(
        Reason.UNKNOWN_METRIC,
        f"unknown metric {name!r}; known metrics: {known}"
        if name
        else f"metric.name is required; known metrics: {known}",
        "metric.name",
        metadata={"metric": name},
    )
