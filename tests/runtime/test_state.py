"""DSPy state both ways against plain Python DSPy (`save`/`load`/`load_state`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import dspy
import grpc
import pytest

from dspy_bridge.errors import BridgeError, Reason
from dspy_bridge.model import ModuleRecord
from dspy_bridge.runtime.executor import ExecutionRequest, InProcessExecutor
from dspy_bridge.runtime.lm.offline import OfflineLM
from dspy_bridge.runtime.program import build_program
from dspy_bridge.runtime.state import demo_count, export_record_state, export_state, import_state
from tests.runtime.module_helpers import OFFLINE, make_record

QUESTION = "What is the capital of France?"
DEMOS = [
    {"question": "What is the capital of France?", "answer": "Paris"},
    {"question": "What is the largest planet?", "answer": "Jupiter"},
]


def with_state(record: ModuleRecord, state: dict[str, Any]) -> ModuleRecord:
    return ModuleRecord(
        record.session_id, record.module_id, record.version + 1, record.spec, state, 1.0, 2.0
    )


async def run(record: ModuleRecord, question: str = QUESTION) -> dict[str, Any]:
    executor = InProcessExecutor()
    result = await executor.execute(ExecutionRequest(record, OFFLINE, {"question": question}))
    return result.outputs


def plain_predict() -> dspy.Predict:
    """A plain-DSPy Predict trained by hand: demos and new instructions."""
    module = dspy.Predict("question -> answer")
    module.demos = [dspy.Example(**d).with_inputs("question") for d in DEMOS]
    module.signature = module.signature.with_instructions("Answer with one word.")
    return module


async def test_a_plain_dspy_state_imports_and_changes_behaviour(tmp_path: Path) -> None:
    record = make_record("Predict")
    before = await run(record)
    assert before["answer"] != "Paris"

    path = tmp_path / "predict.json"
    plain_predict().save(str(path))
    state = import_state(record, path.read_text())
    assert demo_count(state) == 2
    assert state["signature"]["instructions"] == "Answer with one word."
    assert state["lm"] is None

    after = await run(with_state(record, state))
    assert after["answer"] == "Paris"
    # dump_state() JSON (without save()'s metadata) is accepted as well.
    assert import_state(record, json.dumps(plain_predict().dump_state())) == state


async def test_exported_state_loads_in_plain_dspy_and_behaves_the_same(tmp_path: Path) -> None:
    record = make_record("ChainOfThought")
    trained = dspy.ChainOfThought("question -> answer")
    trained.predict.signature = trained.predict.signature.with_instructions("Answer carefully.")
    trained.predict.demos = [
        dspy.Example(question=d["question"], reasoning="known", answer=d["answer"]) for d in DEMOS
    ]
    record = with_state(record, import_state(record, json.dumps(trained.dump_state())))

    text = export_record_state(record)
    saved = json.loads(text)
    assert set(saved) == {"predict", "metadata"}
    assert saved["metadata"]["dependency_versions"]["dspy"] == dspy.__version__

    # Plain DSPy, both ways of loading: load_state() of the JSON, and load() of a file.
    by_state = dspy.ChainOfThought("question -> answer")
    by_state.load_state(json.loads(text))
    path = tmp_path / "cot.json"
    path.write_text(text)
    by_file = dspy.ChainOfThought("question -> answer")
    by_file.load(str(path))
    assert by_state.predict.signature.instructions == "Answer carefully."
    assert len(by_file.predict.demos) == 2

    ours = await run(record)
    for plain in (by_state, by_file):
        with dspy.context(lm=OfflineLM()):
            theirs = plain(question=QUESTION)
        assert dict(theirs.items()) == ours
    assert ours["answer"] == "Paris"


def test_export_is_what_save_writes(tmp_path: Path) -> None:
    module = plain_predict()
    path = tmp_path / "saved.json"
    module.save(str(path))
    assert export_state(module) == path.read_text()


def test_export_round_trips_through_import() -> None:
    record = make_record("ReAct", config={"tools": ["calculator"]})
    text = export_record_state(record)
    state = import_state(record, text)
    assert set(state) == {"react", "extract.predict"}
    assert export_record_state(with_state(record, state)) == text


@pytest.mark.parametrize(
    ("module_type", "state_json", "problem"),
    [
        ("Predict", "not json", "not valid JSON"),
        ("Predict", "[1, 2]", "must be a JSON object"),
        ("ChainOfThought", '{"predict": {}, "extra": {}}', "unknown predictor 'extra'"),
        ("ReAct", '{"react": {}}', "missing predictor 'extract.predict'"),
        ("Predict", '{"predict": {"demos": []}}', "predictors predict"),
        ("ChainOfThought", '{"demos": [], "signature": {}}', "state of a single Predict"),
        ("ChainOfThought", '{"predict": {"demos": {}}}', "'demos' must be a list"),
        ("ChainOfThought", '{"predict": {"demos": [1]}}', "demos\\[0\\] must be an object"),
        ("ChainOfThought", '{"predict": {"demos": []}}', "'signature' must be an object"),
    ],
)
def test_malformed_states_are_invalid_state(
    module_type: str, state_json: str, problem: str
) -> None:
    with pytest.raises(BridgeError, match=problem) as caught:
        import_state(make_record(module_type), state_json)
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.reason == Reason.INVALID_STATE


def test_a_state_for_another_signature_is_rejected() -> None:
    other = dspy.ChainOfThought("question, context -> answer")
    with pytest.raises(BridgeError, match=r"4 fields|3 fields") as caught:
        import_state(make_record("ChainOfThought"), json.dumps(other.dump_state()))
    assert caught.value.reason == Reason.INVALID_STATE


def test_lm_settings_in_a_state_are_dropped() -> None:
    module = plain_predict()
    module.lm = dspy.LM("openai/gpt-4o-mini", api_base="http://attacker.invalid")
    state = import_state(make_record("Predict"), json.dumps(module.dump_state()))
    assert state["lm"] is None
    assert build_program(with_state(make_record("Predict"), state)).module.lm is None
