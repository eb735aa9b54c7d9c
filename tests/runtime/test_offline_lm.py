"""The `offline` LM: typed, deterministic, few-shot aware, slow on request, streaming, metered."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import dspy
import pytest
from dspy.streaming import StreamListener, StreamResponse
from dspy.teleprompt import LabeledFewShot

from dspy_bridge.runtime.lm.offline import OFFLINE_MODEL, OfflineLM, complete_messages
from dspy_bridge.runtime.signatures import parse_signature, to_dspy_signature

# DSPy 3.4 warns once per call site that the BaseLM.forward interface is deprecated (3.5).

ADAPTERS = {"chat": dspy.ChatAdapter, "json": dspy.JSONAdapter, "xml": dspy.XMLAdapter}
MODULES = {"Predict": dspy.Predict, "ChainOfThought": dspy.ChainOfThought}

TYPED = (
    "context: list[str], question -> answer, confidence: float, count: int, ok: bool, "
    "tags: list[str], label: Literal['yes', 'no', 'maybe'], scores: dict[str, int], "
    "maybe: Optional[int], pair: tuple[int, str], nested: list[dict[str, float]]"
)


@pytest.fixture(params=list(ADAPTERS))
def adapter(request: pytest.FixtureRequest) -> dspy.Adapter:
    return ADAPTERS[request.param]()


@pytest.fixture
def lm() -> OfflineLM:
    return OfflineLM()


@pytest.fixture
def use(lm: OfflineLM, adapter: dspy.Adapter) -> Iterator[None]:
    with dspy.context(lm=lm, adapter=adapter):
        yield


def _typed_module(kind: str) -> dspy.Module:
    return MODULES[kind](to_dspy_signature(parse_signature(TYPED)))


def _check_types(out: dspy.Prediction) -> None:
    assert isinstance(out.answer, str) and out.answer
    assert isinstance(out.confidence, float)
    assert isinstance(out.count, int) and not isinstance(out.count, bool)
    assert isinstance(out.ok, bool)
    assert isinstance(out.tags, list) and all(isinstance(t, str) for t in out.tags)
    assert out.label in ("yes", "no", "maybe")
    assert isinstance(out.scores, dict)
    assert all(isinstance(k, str) and isinstance(v, int) for k, v in out.scores.items())
    assert out.maybe is None or isinstance(out.maybe, int)
    assert isinstance(out.pair, tuple) and isinstance(out.pair[0], int)
    assert isinstance(out.pair[1], str)
    assert all(isinstance(v, float) for d in out.nested for v in d.values())


# -- typed outputs ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(MODULES))
@pytest.mark.usefixtures("use")
def test_every_output_field_is_well_typed(kind: str) -> None:
    out = _typed_module(kind)(context=["Paris is in France."], question="Where is Paris?")
    _check_types(out)
    if kind == "ChainOfThought":
        assert isinstance(out.reasoning, str) and out.reasoning


@pytest.mark.parametrize("kind", list(MODULES))
@pytest.mark.usefixtures("use")
async def test_async_calls_are_well_typed_too(kind: str) -> None:
    out = await _typed_module(kind).acall(context=["x"], question="Where is Paris?")
    _check_types(out)


@pytest.mark.usefixtures("use")
def test_str_answers_are_built_from_the_input() -> None:
    out = dspy.Predict("question -> answer")(question="Where is the Eiffel Tower?")
    assert out.answer.startswith("answer: ")
    assert "Eiffel" in out.answer


@pytest.mark.usefixtures("use")
def test_markers_in_inputs_do_not_break_the_answer() -> None:
    tricky = 'a [[ ## answer ## ]] "quote" <answer>x</answer> {"answer": 1} & more'
    out = dspy.Predict("question -> answer, n: int")(question=tricky)
    assert isinstance(out.answer, str) and isinstance(out.n, int)


# -- deterministic -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(MODULES))
@pytest.mark.usefixtures("use")
def test_same_inputs_give_the_same_outputs(kind: str) -> None:
    module = _typed_module(kind)
    first = module(context=["a", "b"], question="What is two plus two?")
    again = _typed_module(kind)(context=["a", "b"], question="What is two plus two?")
    assert dict(first) == dict(again)


@pytest.mark.usefixtures("use")
def test_different_inputs_give_different_outputs() -> None:
    module = _typed_module("Predict")
    answers = {
        repr(dict(module(context=["c"], question=f"Question number {i}?"))) for i in range(5)
    }
    assert len(answers) == 5


def test_the_answer_does_not_depend_on_sampling_options(lm: OfflineLM) -> None:
    predict = dspy.Predict("question -> answer, n: int")
    with dspy.context(lm=lm):
        cold = predict(question="Why?", config={"temperature": 0.0})
        hot = predict(question="Why?", config={"temperature": 1.5, "top_p": 0.3, "seed": 7})
    assert dict(cold) == dict(hot)


# -- demonstrations --------------------------------------------------------------------------

CAPITALS = [
    ("What is the capital of France?", "Paris"),
    ("What is the capital of Spain?", "Madrid"),
    ("Which river flows through Cairo?", "The Nile"),
]


def _with_demos(module: Any) -> Any:
    demos = [dspy.Example(question=q, answer=a, count=len(a)) for q, a in CAPITALS]
    for predictor in module.predictors():
        predictor.demos = demos
    return module


@pytest.mark.parametrize("kind", list(MODULES))
@pytest.mark.usefixtures("use")
def test_answers_with_the_most_similar_demo(kind: str) -> None:
    module = _with_demos(MODULES[kind]("question -> answer, count: int"))

    spain = module(question="capital of Spain, please?")
    assert (spain.answer, spain.count) == ("Madrid", 6)
    nile = module(question="Which river flows through the city of Cairo?")
    assert (nile.answer, nile.count) == ("The Nile", 8)
    if kind == "ChainOfThought":
        # The demos carry no reasoning: that field is made up, well typed.
        assert isinstance(nile.reasoning, str) and nile.reasoning


@pytest.mark.usefixtures("use")
def test_no_overlap_with_any_demo_falls_back_to_the_hash_answer() -> None:
    module = _with_demos(dspy.Predict("question -> answer, count: int"))
    plain = dspy.Predict("question -> answer, count: int")
    out = module(question="zzz qqq")
    assert out.answer not in {a for _, a in CAPITALS}
    assert dict(out) == dict(plain(question="zzz qqq"))


@pytest.mark.usefixtures("use")
def test_fields_a_demo_lacks_are_filled_with_typed_values() -> None:
    predict = dspy.Predict("question -> answer, count: int, tags: list[str]")
    predict.demos = [dspy.Example(question="What is the capital of France?", answer="Paris")]
    out = predict(question="What is the capital of France?")
    assert out.answer == "Paris"
    assert isinstance(out.count, int)
    assert isinstance(out.tags, list)


@pytest.mark.usefixtures("use")
def test_few_shot_optimization_measurably_changes_answers() -> None:
    trainset = [dspy.Example(question=q, answer=a).with_inputs("question") for q, a in CAPITALS]
    program = dspy.Predict("question -> answer")
    evaluate = dspy.Evaluate(devset=trainset, metric=dspy.evaluate.answer_exact_match)

    before = evaluate(program).score
    compiled = LabeledFewShot(k=3).compile(program, trainset=trainset)
    after = evaluate(compiled).score

    assert before == 0.0
    assert after == 100.0


def test_n_returns_n_choices(lm: OfflineLM) -> None:
    with dspy.context(lm=lm):
        out = dspy.Predict("question -> answer, k: int", n=3)(question="Hello there")
    answers = out.completions.answer
    assert len(answers) == 3
    assert len(set(answers)) == 3
    assert all(isinstance(k, int) for k in out.completions.k)


def test_n_with_demos_returns_the_best_demos_in_order(lm: OfflineLM) -> None:
    predict = _with_demos(dspy.Predict("question -> answer, count: int", n=2))
    with dspy.context(lm=lm):
        out = predict(question="What is the capital of Spain?")
    assert out.completions.answer == ["Madrid", "Paris"]


# -- latency ---------------------------------------------------------------------------------


async def test_latency_is_simulated_in_async_calls() -> None:
    with dspy.context(lm=OfflineLM(latency_ms=150)):
        start = time.perf_counter()
        await dspy.Predict("question -> answer").acall(question="slow?")
        assert time.perf_counter() - start >= 0.15


def test_latency_is_simulated_in_sync_calls() -> None:
    with dspy.context(lm=OfflineLM(latency_ms=100)):
        start = time.perf_counter()
        dspy.Predict("question -> answer")(question="slow?")
        assert time.perf_counter() - start >= 0.1


async def test_a_cancelled_call_stops_at_once() -> None:
    with dspy.context(lm=OfflineLM(latency_ms=60_000)):
        start = time.perf_counter()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(dspy.Predict("question -> answer").acall(question="x"), 0.05)
        assert time.perf_counter() - start < 30  # far below the 60 s LM, even under load


def test_negative_latency_is_refused() -> None:
    with pytest.raises(ValueError, match="latency_ms"):
        OfflineLM(latency_ms=-1)


# -- usage -------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(MODULES))
@pytest.mark.usefixtures("use")
def test_usage_is_tracked_by_dspy(kind: str, lm: OfflineLM) -> None:
    with dspy.context(track_usage=True):
        out = MODULES[kind]("question -> answer")(question="Count my tokens")
    usage = out.get_lm_usage()[OFFLINE_MODEL]
    assert usage["prompt_tokens"] > 0
    assert usage["completion_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_usage_counts_whitespace_separated_tokens(lm: OfflineLM) -> None:
    response = lm.forward(messages=[{"role": "user", "content": "one two  three"}])
    assert response.usage.prompt_tokens == 3
    assert response.usage.completion_tokens == len(response.choices[0].message.content.split())


def test_history_records_no_cost(lm: OfflineLM) -> None:
    # No price is known for `offline`: DSPy records none, and executions report cost_usd 0.
    with dspy.context(lm=lm):
        dspy.Predict("question -> answer")(question="Free?")
    assert lm.history[-1]["cost"] is None
    assert lm.history[-1]["usage"]["prompt_tokens"] > 0


# -- streaming -------------------------------------------------------------------------------


async def _stream(
    program: dspy.Module, fields: list[str], *, is_async: bool = True, **inputs: Any
) -> tuple[dict[str, list[str]], dspy.Prediction]:
    listeners = [StreamListener(f) for f in fields]
    streamed = dspy.streamify(program, stream_listeners=listeners, is_async_program=is_async)
    chunks: dict[str, list[str]] = {}
    final: dspy.Prediction | None = None
    async for value in streamed(**inputs):
        if isinstance(value, StreamResponse):
            chunks.setdefault(value.signature_field_name, []).append(value.chunk)
        elif isinstance(value, dspy.Prediction):
            final = value
    assert final is not None
    return chunks, final


@pytest.mark.parametrize("adapter_name", ["chat", "xml"])
@pytest.mark.parametrize("is_async", [True, False])
async def test_streaming_yields_per_field_chunks(adapter_name: str, is_async: bool) -> None:
    program = dspy.ChainOfThought("question -> answer, count: int")
    with dspy.context(lm=OfflineLM(), adapter=ADAPTERS[adapter_name]()):
        chunks, final = await _stream(
            program,
            ["reasoning", "answer"],
            is_async=is_async,
            question="What is the capital of France?",
        )
    for field in ("reasoning", "answer"):
        assert len(chunks[field]) > 3, chunks
        assert "".join(chunks[field]) == final[field]


async def test_streaming_with_the_json_adapter_yields_json_fragments() -> None:
    program = dspy.Predict("question -> answer")
    with dspy.context(lm=OfflineLM(), adapter=dspy.JSONAdapter()):
        chunks, final = await _stream(program, ["answer"], question="What is the capital?")
    # DSPy's JSON listener passes the value's JSON text through, quotes included.
    assert len(chunks["answer"]) > 3
    assert "".join(chunks["answer"]).strip().startswith(f'"{final.answer}"')


async def test_streaming_a_demo_answer() -> None:
    program = _with_demos(dspy.Predict("question -> answer, count: int"))
    with dspy.context(lm=OfflineLM()):
        chunks, final = await _stream(program, ["answer"], question="capital of Spain?")
    assert final.answer == "Madrid"
    assert "".join(chunks["answer"]) == "Madrid"


async def test_no_chunks_without_streaming(lm: OfflineLM) -> None:
    # Without streamify nothing is sent anywhere (and nothing fails for lack of a stream).
    with dspy.context(lm=lm):
        out = await dspy.Predict("question -> answer").acall(question="quiet")
    assert out.answer


# -- the raw interface -------------------------------------------------------------------------


def test_a_plain_prompt_gets_a_deterministic_text(lm: OfflineLM) -> None:
    first = lm("hello offline world")
    assert first == lm("hello offline world")
    assert isinstance(first[0], str) and "hello" in first[0]


@pytest.mark.parametrize("adapter_name", list(ADAPTERS))
def test_completions_parse_with_the_adapter_that_made_the_prompt(adapter_name: str) -> None:
    adapter = ADAPTERS[adapter_name]()
    signature = to_dspy_signature(parse_signature(TYPED))
    messages = adapter.format(signature, [], {"context": ["a"], "question": "b?"})
    (text,) = complete_messages(messages)
    parsed = adapter.parse(signature, text)
    assert set(parsed) == set(signature.output_fields)


def test_state_round_trips(lm: OfflineLM) -> None:
    slow = OfflineLM(latency_ms=25, temperature=0.3)
    state = slow.dump_state()
    assert state["model"] == OFFLINE_MODEL
    loaded = dspy.BaseLM.load_state(state, allow_custom_lm_class=True)
    assert isinstance(loaded, OfflineLM)
    assert loaded.latency_ms == 25
    assert loaded.kwargs["temperature"] == 0.3


def test_repr_is_short(lm: OfflineLM) -> None:
    assert repr(OfflineLM(latency_ms=5)) == "OfflineLM(latency_ms=5)"


def test_literal_outputs_pick_a_declared_value(lm: OfflineLM) -> None:
    with dspy.context(lm=lm):
        predict = dspy.Predict(
            "question -> verdict: Literal['guilty', 'innocent'], n: Literal[1, 2]"
        )
        values = {predict(question=f"case {i}").verdict for i in range(12)}
    assert values <= {"guilty", "innocent"}
    assert len(values) == 2
