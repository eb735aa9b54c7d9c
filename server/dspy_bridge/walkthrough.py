"""`make run`: start the sidecar on embedded defaults and drive it with the Python client.

Every step prints what it sends and what comes back, so a newcomer sees the product work:
sessions, typed variables, a constraint violation, a version conflict, a watch stream,
history and rollback, then DSPy modules bound to those variables, evaluation and optimization,
and host callbacks: a ReAct module calling a Python function of this process as its tool, and
an optimization scored by a Python metric (`session.serve`).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from dspy_bridge_client import (
    BridgeClient,
    BridgeError,
    ExecuteResult,
    ExecutionStatus,
    OutputChunk,
    SessionEnded,
    SessionHandle,
    VariableChange,
    VersionConflictError,
    WatchResync,
    search_spec,
)


def say(title: str) -> None:
    print(f"\n\033[1m== {title}\033[0m" if sys.stdout.isatty() else f"\n== {title}")


def show(label: str, value: Any) -> None:
    print(f"   {label:<28} {value}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def sidecar() -> Iterator[str]:
    """Runs `dspy-bridge serve` with its defaults (memory store; `offline` LM without a key)."""
    target = f"127.0.0.1:{_free_port()}"
    env = {
        **os.environ,
        "DSPY_BRIDGE_LOG_LEVEL": os.environ.get("DSPY_BRIDGE_LOG_LEVEL", "warning"),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "dspy_bridge", "serve", "--port", target.rsplit(":", 1)[1]], env=env
    )
    try:
        yield target
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def variables_tour(session: SessionHandle) -> None:
    say("Typed variables")
    temperature = session.register_variable(
        "temperature", "float", 0.7, min=0.0, max=2.0, description="sampling temperature"
    )
    show("temperature", f"{temperature.value} (v{temperature.version}, {temperature.type})")
    tone = session.register_variable("tone", "choice", "formal", choices=["formal", "casual"])
    show("tone", f"{tone.value} choices={list(tone.constraints.choices)}")
    tokens = session.register_variable("max_tokens", "integer", 256, min=16, max=4096)
    show("max_tokens", tokens.value)
    strategy = session.register_variable(
        "strategy", "module", "Predict", choices=["Predict", "ChainOfThought"]
    )
    show("strategy", strategy.value)

    say("A value outside the constraints is refused, precisely, and changes nothing")
    try:
        session.update_variable("temperature", 3.5)
    except BridgeError as err:
        show("error", err)
        show("field violations", err.field_violations)
    show("temperature is still", session.get_variable("temperature").value)

    say("Optimistic concurrency: a stale expected_version is a VERSION_CONFLICT")
    current = session.update_variable("temperature", 0.9, expected_version=1, reason="warmer")
    show("updated", f"{current.value} now v{current.version}")
    try:
        session.update_variable("temperature", 0.1, expected_version=1)
    except VersionConflictError as err:
        show("error", err)
        show("current version", err.current_version)

    say("Watching: a stream receives every change, in version order")
    received: list[str] = []
    ready = threading.Event()
    done = threading.Event()

    with session.watch(["temperature"], include_initial=True) as stream:

        def consume() -> None:
            for event in stream:
                if isinstance(event, VariableChange):
                    received.append(
                        f"{event.kind} v{event.variable.version} = {event.variable.value}"
                    )
                    ready.set()
                    if event.variable.version >= 5:
                        done.set()
                        return
                elif isinstance(event, WatchResync | SessionEnded):
                    received.append(repr(event))

        thread = threading.Thread(target=consume, daemon=True)
        thread.start()
        ready.wait(10)
        for value in (1.0, 1.1, 1.2):
            session.update_variable("temperature", value, reason="tuning")
        done.wait(10)
    for line in received:
        show("watch event", line)

    say("History, newest first, and rollback (a new version equal to an old one)")
    for entry in session.history("temperature", limit=3):
        show(f"v{entry.version}", f"{entry.value} ({entry.source}: {entry.reason or '-'})")
    rolled = session.rollback("temperature", 2, reason="back to the good one")
    show("rolled back to v2 as", f"v{rolled.version} = {rolled.value}")


def modules_tour(session: SessionHandle) -> None:
    say("A DSPy module whose parameters are bound to variables")
    module = session.create_module(
        "Predict",
        "question: str -> answer: str",
        module_id="qa",
        bindings={"temperature": "temperature", "module_type": "strategy"},
    )
    show("module", f"{module.module_id} {module.module_type} v{module.version}")
    show("signature", module.signature.text)
    result = session.execute("qa", question="What does a sidecar do?")
    show("answer", result["answer"])
    show(
        "variables used", {k: f"{u.value} (v{u.version})" for k, u in result.variables_used.items()}
    )
    show("usage", f"{result.usage.lm_calls} LM call(s), {result.latency_ms:.1f} ms")

    say("Change a variable: the next execution reports the new version")
    session.update_variable("temperature", 0.2, reason="more deterministic")
    result = session.execute("qa", question="What does a sidecar do?")
    temperature = result.variables_used["temperature"]
    show("temperature used", f"{temperature.value} (v{temperature.version})")

    say("Switch strategy through a MODULE variable: Predict -> ChainOfThought")
    session.update_variable("strategy", "ChainOfThought")
    result = session.execute("qa", question="Why bind parameters to variables?")
    show("outputs", sorted(result.outputs))
    show("reasoning", str(result["reasoning"])[:70])

    say("Per-call override (validated, never stored)")
    result = session.execute("qa", question="Hi?", overrides={"temperature": 1.5})
    show("temperature used", result.variables_used["temperature"])

    say("Streaming execution: chunks per output field, then the result")
    chunks: dict[str, list[str]] = {}
    with session.execute_stream("qa", question="Stream me an answer") as stream:
        for event in stream:
            if isinstance(event, OutputChunk):
                chunks.setdefault(event.field, []).append(event.text)
            elif isinstance(event, ExecutionStatus):
                show("status", event.message)
            elif isinstance(event, ExecuteResult):
                show("result", {k: str(v)[:40] for k, v in event.outputs.items()})
    for field_name, pieces in chunks.items():
        show(f"{len(pieces)} chunks of {field_name!r}", "".join(pieces).strip()[:60])

    say("State export in DSPy's own format (loads with plain dspy .load_state())")
    state = session.export_state("qa")
    show("state", state[:70] + "...")


# A tiny keyword -> topic task. Under the `offline` LM an unoptimized module answers from a
# hash of its inputs; with demonstrations it answers like the most word-overlapping one.
TRAIN = [
    ("the striker scored a goal in the football match", "sports"),
    ("heavy rain and thunder storm expected tomorrow", "weather"),
    ("bake the bread dough in a hot oven", "cooking"),
    ("the stock market fell as interest rates rose", "finance"),
    ("the team won the basketball game in overtime", "sports"),
    ("snow and freezing wind forecast for the weekend", "weather"),
    ("simmer the tomato sauce with garlic and basil", "cooking"),
    ("investors sold shares after weak quarterly earnings", "finance"),
]
HELD_OUT = [
    ("the goalkeeper saved a penalty in the football match", "sports"),
    ("thunder storm and rain tonight", "weather"),
    ("bake the cake in the oven", "cooking"),
    ("interest rates and the stock market", "finance"),
]


def _dataset(rows: list[tuple[str, str]]) -> list[dict[str, dict[str, str]]]:
    return [{"inputs": {"text": text}, "labels": {"topic": topic}} for text, topic in rows]


def optimization_tour(session: SessionHandle) -> None:
    say("Evaluate a module on a held-out set")
    session.create_module(
        "Predict",
        "text -> topic",
        module_id="topic",
        bindings={"temperature": "temperature", "module_type": "strategy"},
    )
    session.update_variable("strategy", "Predict")
    before = session.evaluate("topic", _dataset(HELD_OUT), "exact_match")
    show("held-out exact_match", f"{before.score:.2f}")

    say("Optimize it with BootstrapFewShot (a job in its own process), watched live")
    job = session.start_optimization(
        "topic",
        "BootstrapFewShot",
        _dataset(TRAIN),
        "exact_match",
        config={"max_bootstrapped_demos": 8, "max_labeled_demos": 8},
        apply=True,
    )
    with session.watch_optimization(job.job_id) as updates:
        for update in updates:
            progress = update.progress
            if progress.message:
                show(f"{update.status}", f"{progress.phase}: {progress.message}")
    module = session.get_module("topic")
    show("applied as", f"module v{module.version} with {module.demo_count} demos")
    after = session.evaluate("topic", _dataset(HELD_OUT), "exact_match")
    show("held-out before -> after", f"{before.score:.2f} -> {after.score:.2f}")

    say("VariableSearch over temperature and strategy (Optuna grid, two objectives)")
    search = session.start_optimization(
        "topic",
        "VariableSearch",
        _dataset(TRAIN),
        "exact_match",
        valset=_dataset(HELD_OUT),
        variable_search=search_spec(
            {"temperature": {"low": 0.0, "high": 1.0, "step": 0.5}, "strategy": None},
            sampler="grid",
            objectives={"metric": "maximize", "tokens": "minimize"},
        ),
    )
    search = session.wait_optimization(search.job_id, max_wait=300)
    found = search.variable_search_result
    if found is not None:
        for trial in found.trials:
            show(f"trial {trial.number}", f"{trial.values} -> {trial.objectives}")
        show("pareto front", [t.number for t in found.pareto_front])
        applied = session.apply_optimization(search.job_id)
        for variable in applied.variables:
            show("applied", f"{variable.name} = {variable.value} (source {variable.source})")


ORDERS = {"42": "shipped on Monday, arriving Thursday", "7": "waiting for payment"}


def lookup_order(order_id: str) -> str:
    """Where an order is: its shipping status."""
    return ORDERS.get(order_id.strip(), f"no order {order_id!r}")


def topic_quality(
    inputs: dict[str, Any], labels: dict[str, Any], prediction: dict[str, Any]
) -> tuple[float, str]:
    """1 for the right topic, else 0, with feedback an optimizer like GEPA can learn from."""
    if prediction.get("topic") == labels.get("topic"):
        return 1.0, "right topic"
    return 0.0, f"expected {labels.get('topic')!r}, got {prediction.get('topic')!r}"


def host_tour(session: SessionHandle) -> None:
    say("Host callbacks: lend Python functions to the session over Connect")
    calls: list[str] = []

    def scored(inputs: dict[str, Any], labels: dict[str, Any], prediction: dict[str, Any]) -> Any:
        calls.append("metric")
        return topic_quality(inputs, labels, prediction)

    with session.serve(tools={"lookup_order": lookup_order}, metrics={"topic_quality": scored}):
        show("serving", "host:lookup_order (tool), host:topic_quality (metric)")
        session.create_module(
            "ReAct",
            "order_id -> answer",
            module_id="support",
            config={"tools": ["host:lookup_order"], "max_iters": 3},
        )
        result = session.execute("support", order_id="42")
        trajectory = result["trajectory"]
        show("ReAct called", f"{trajectory['tool_name_0']}({trajectory['tool_args_0']})")
        show("the host answered", trajectory["observation_0"])
        show("answer", result["answer"])

        say("An optimization scored by the host metric (LabeledFewShot, in its own process)")
        job = session.start_optimization(
            "topic", "LabeledFewShot", _dataset(TRAIN), "host:topic_quality", config={"k": 8}
        )
        done = session.wait_optimization(job.job_id, max_wait=300)
        outcome = done.module_result
        if outcome is not None:
            show("status", done.status)
            show("score before -> after", f"{outcome.score_before} -> {outcome.score_after}")
        show("host metric calls", len(calls))


def main() -> int:
    with sidecar() as target, BridgeClient(target) as client:
        client.wait_until_ready(timeout=60)
        say("Connected")
        pong = client.ping("hello")
        info = client.server_info()
        show("ping", f"{pong.message!r} in {pong.round_trip_ms:.1f} ms, server {pong.version}")
        show("dspy", info.dspy_version)
        show("store / default LM", f"{info.store_backend} / {info.default_lm_model}")
        show("module types", ", ".join(info.module_types))
        session = client.create_session(metadata={"app": "walkthrough"}, ttl_seconds=600)
        show("session", session.session_id)
        session.configure_lm(info.default_lm_model)
        variables_tour(session)
        modules_tour(session)
        optimization_tour(session)
        host_tour(session)
        session.delete()
        say("Done: the sidecar is stopped. `make serve` keeps one running.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
