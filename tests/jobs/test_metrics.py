"""Built-in metrics: scores, options validation, pickling, the provider seam."""

from __future__ import annotations

import pickle
from collections.abc import Mapping, Sequence
from typing import Any

import dspy
import grpc
import pytest

from dspy_bridge.errors import BridgeError, Reason
from dspy_bridge.jobs.metrics import (
    METRIC_NAMES,
    Metric,
    MetricInputError,
    judge_score,
    metric_names,
    register_metric_provider,
    resolve_metric,
    unregister_metric_provider,
)
from dspy_bridge.runtime.lm.offline import OfflineLM
from dspy_bridge.runtime.signatures import SignatureSpec, parse_signature

SIG = parse_signature("question -> answer")
RAG = parse_signature("question -> context: list[str], answer")
NUM = parse_signature("question -> value: float")


def score(
    name: str,
    predicted: Any,
    label: Any,
    sig: SignatureSpec = SIG,
    field: str = "answer",
    **options: Any,
) -> float:
    metric = resolve_metric(name, options, sig, OfflineLM())
    example = dspy.Example(question="q", **{field: label}).with_inputs("question")
    return metric(example, dspy.Prediction(**{field: predicted}))


def test_names() -> None:
    assert METRIC_NAMES == [
        "exact_match",
        "answer_exact_match",
        "answer_passage_match",
        "f1",
        "contains",
        "regex",
        "numeric_close",
        "semantic_f1",
        "llm_judge",
    ]


def test_exact_match() -> None:
    assert score("exact_match", " Paris ", "Paris") == 1.0
    assert score("exact_match", "paris", "Paris") == 0.0
    assert score("exact_match", "paris", "Paris", case_sensitive=False) == 1.0
    assert score("exact_match", "The Paris!", "paris", normalize=True) == 1.0
    assert score("exact_match", "Lyon", ["Paris", "Lyon"]) == 1.0  # any of a list
    assert score("exact_match", 3.0, 3, sig=NUM, field="value") == 1.0


def test_dspy_metrics() -> None:
    assert score("answer_exact_match", "The Eiffel Tower", "Eiffel Tower") == 1.0
    assert score("answer_exact_match", "Eiffel Tower in Paris", "Eiffel Tower") == 0.0
    assert score("answer_exact_match", "Eiffel Tower Paris", "Eiffel Tower", frac=0.5) == 1.0
    assert score("f1", "Eiffel Tower is in Paris", "Paris") == pytest.approx(1 / 3)
    metric = resolve_metric("answer_passage_match", {}, RAG)
    example = dspy.Example(question="q", answer="Eiffel Tower")
    assert metric(example, dspy.Prediction(context=["The Eiffel Tower is in Paris."])) == 1.0
    assert metric(example, dspy.Prediction(context=["Louvre"])) == 0.0


def test_f1_threshold_applies_with_trace() -> None:
    metric = resolve_metric("f1", {"threshold": 0.5}, SIG)
    example = dspy.Example(answer="w x y z")
    pred = dspy.Prediction(answer="w x")
    assert metric(example, pred) == pytest.approx(2 / 3)
    assert metric(example, pred, trace=[]) == 1.0
    assert metric(example, dspy.Prediction(answer="w"), trace=[]) == 0.0


def test_contains_regex_numeric() -> None:
    assert score("contains", "It is PARIS.", "paris") == 1.0
    assert score("contains", "It is PARIS.", "paris", case_sensitive=True) == 0.0
    assert score("regex", "order #123", None, pattern=r"#\d+") == 1.0
    assert score("regex", "order #123", None, pattern=r"#\d+", mode="fullmatch") == 0.0
    assert score("regex", "ABC", None, pattern="abc", case_sensitive=False) == 1.0
    # A pattern is data: Python code in it is just characters to match.
    assert score("regex", "x", None, pattern="__import__('os')") == 0.0
    num: dict[str, Any] = {"sig": NUM, "field": "value"}
    assert score("numeric_close", 3.1, 3.0, **num) == 0.0
    assert score("numeric_close", 3.1, 3.0, tolerance=0.2, **num) == 1.0
    assert score("numeric_close", 105.0, 100.0, tolerance=0.1, relative=True, **num) == 1.0
    assert score("numeric_close", "about 42.0 units", "42", **num) == 1.0
    assert score("numeric_close", "none", 42.0, **num) == 0.0


def test_lm_judged_metrics_with_offline_lm() -> None:
    cases: list[tuple[str, dict[str, Any]]] = [
        ("semantic_f1", {}),
        ("llm_judge", {"rubric": "Is it correct?"}),
    ]
    for name, options in cases:
        first = score(name, "Paris", "Paris", **options)
        assert 0.0 <= first <= 1.0
        assert score(name, "Paris", "Paris", **options) == first  # deterministic


def test_lm_judge_without_lm_is_failed_precondition() -> None:
    metric = resolve_metric("llm_judge", {"rubric": "r"}, SIG, None)
    with pytest.raises(BridgeError) as err:
        metric(dspy.Example(answer="a"), dspy.Prediction(answer="a"))
    assert err.value.reason == Reason.NO_LM_CONFIGURED


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("0.8", 0.8), ("8/10", 0.8), ("80%", 0.8), ("4 out of 5", 0.8), ("7", 0.7), ("x", 0.0)],
)
def test_judge_score(raw: str, expected: float) -> None:
    assert judge_score(raw) == pytest.approx(expected)


def test_missing_label_is_a_metric_input_error() -> None:
    metric = resolve_metric("exact_match", {}, SIG)
    with pytest.raises(MetricInputError):
        metric(dspy.Example(question="q"), dspy.Prediction(answer="a"))


@pytest.mark.parametrize(
    ("name", "options", "reason", "field"),
    [
        ("nope", {}, Reason.UNKNOWN_METRIC, "metric.name"),
        ("", {}, Reason.UNKNOWN_METRIC, "metric.name"),
        ("exact_match", {"bogus": 1}, Reason.INVALID_METRIC_OPTIONS, "metric.options.bogus"),
        (
            "exact_match",
            {"field": "question"},
            Reason.INVALID_METRIC_OPTIONS,
            "metric.options.field",
        ),
        ("f1", {"label": "nope"}, Reason.INVALID_METRIC_OPTIONS, "metric.options.label"),
        ("regex", {}, Reason.INVALID_METRIC_OPTIONS, "metric.options.pattern"),
        ("regex", {"pattern": "("}, Reason.INVALID_METRIC_OPTIONS, "metric.options.pattern"),
        (
            "regex",
            {"pattern": "a", "mode": "x"},
            Reason.INVALID_METRIC_OPTIONS,
            "metric.options.mode",
        ),
        (
            "numeric_close",
            {"tolerance": -1},
            Reason.INVALID_METRIC_OPTIONS,
            "metric.options.tolerance",
        ),
        (
            "numeric_close",
            {"relative": "maybe"},
            Reason.INVALID_METRIC_OPTIONS,
            "metric.options.relative",
        ),
        ("answer_exact_match", {"frac": 2}, Reason.INVALID_METRIC_OPTIONS, "metric.options.frac"),
        ("llm_judge", {}, Reason.INVALID_METRIC_OPTIONS, "metric.options.rubric"),
        ("llm_judge", {"rubric": " "}, Reason.INVALID_METRIC_OPTIONS, "metric.options.rubric"),
        (
            "semantic_f1",
            {"question": "answer"},
            Reason.INVALID_METRIC_OPTIONS,
            "metric.options.question",
        ),
    ],
)
def test_bad_metric_requests(name: str, options: dict[str, Any], reason: str, field: str) -> None:
    with pytest.raises(BridgeError) as err:
        resolve_metric(name, options, SIG)
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.reason == reason
    assert [v.field for v in err.value.violations] == [field]


def test_options_from_strings() -> None:
    """Options may arrive as strings (e.g. from a map<string, string>)."""
    assert score("contains", "PARIS", "paris", case_sensitive="false") == 1.0
    assert score("numeric_close", 3.1, 3.0, sig=NUM, field="value", tolerance="0.5") == 1.0


def test_pickles_and_rebuilds() -> None:
    metric = resolve_metric("regex", {"pattern": r"\d+"}, SIG, OfflineLM())
    again = pickle.loads(pickle.dumps(metric))
    assert again(dspy.Example(), dspy.Prediction(answer="n=5")) == 1.0


class _Provider:
    remote_only = False

    def names(self) -> Sequence[str]:
        return ["host_len"]

    def resolve(
        self,
        name: str,
        options: Mapping[str, Any],
        signature: SignatureSpec,
        lm: dspy.BaseLM | None,
    ) -> Metric:
        return lambda example, prediction, trace=None: float(len(prediction.answer) > 2)


def test_metric_provider_seam() -> None:
    provider = _Provider()
    register_metric_provider(provider)
    try:
        assert "host_len" in metric_names()
        metric = resolve_metric("host_len", {}, SIG)
        assert metric(dspy.Example(), dspy.Prediction(answer="long")) == 1.0
    finally:
        unregister_metric_provider(provider)
    with pytest.raises(BridgeError):
        resolve_metric("host_len", {}, SIG)
