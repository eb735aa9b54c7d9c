"""The memo of DSPy's model-table lookups (runtime/lm/metadata.py): same answers, copies,
bounded, installed by the serving set-up."""

from __future__ import annotations

from dspy.clients import capabilities, costs, model_metadata

from dspy_bridge.runtime.executor import configure_runtime
from dspy_bridge.runtime.lm import metadata
from dspy_bridge.runtime.lm.metadata import MAX_MODELS, _Memo


def test_serving_setup_routes_dspy_lookups_through_the_memo() -> None:
    configure_runtime()
    assert isinstance(capabilities.model_info, _Memo)
    assert costs.model_info is capabilities.model_info


def test_answers_equal_dspys_own_for_listed_and_unlisted_models() -> None:
    memo = _Memo(model_metadata.model_info, model_metadata._load)
    for provider, model, namespaces in (
        ("openai", "gpt-4o-mini", None),
        ("openai", "not-a-listed-model", None),
        ("openai-chat", "gpt-4o", None),
        ("openai", "gpt-4o-mini", ("openai",)),
        ("openai", "gpt-4o-mini", ()),
    ):
        expected = model_metadata.model_info(provider, model, namespaces=namespaces)
        assert memo(provider, model, namespaces=namespaces) == expected
        assert memo(provider, model, namespaces=namespaces) == expected  # from the memo


def test_each_caller_gets_its_own_copy() -> None:
    memo = _Memo(model_metadata.model_info, model_metadata._load)
    first = memo("openai", "gpt-4o-mini")
    first["input_cost_per_token"] = -1.0
    assert memo("openai", "gpt-4o-mini")["input_cost_per_token"] != -1.0


def test_lookups_are_counted_once_per_model_and_bounded() -> None:
    calls: list[tuple[str, str]] = []

    def lookup(provider: str, model: str, *, namespaces: object = None) -> dict[str, object]:
        calls.append((provider, model))
        return {"model": model}

    table = object()
    memo = _Memo(lookup, lambda: table)
    for _ in range(3):
        assert memo("openai", "m") == {"model": "m"}
    assert calls == [("openai", "m")]
    for i in range(MAX_MODELS + 10):  # host-chosen names: the memo never grows past its bound
        memo("openai", f"model-{i}")
    assert len(memo._answers) == MAX_MODELS


def test_a_reloaded_table_empties_the_memo() -> None:
    calls: list[str] = []
    tables = [object()]

    def lookup(provider: str, model: str, *, namespaces: object = None) -> dict[str, object]:
        calls.append(model)
        return {}

    memo = _Memo(lookup, lambda: tables[0])
    memo("openai", "m")
    tables[0] = object()
    memo("openai", "m")
    assert calls == ["m", "m"]


def test_installing_twice_keeps_one_memo() -> None:
    metadata.memoize_model_metadata()
    installed = costs.model_info
    metadata.memoize_model_metadata()
    assert costs.model_info is installed
