"""What an optimization job reports as it goes: examples scored out of the devset while
scoring, metric calls out of the optimizer's budget while optimizing."""

from __future__ import annotations

from typing import Any

from dspy_bridge.jobs.optimizers import _Progress


class _Recorder:
    def __init__(self) -> None:
        self.reports: list[tuple[str, int, int, str]] = []

    def progress(
        self,
        phase: str,
        completed: int = 0,
        total: int = 0,
        message: str = "",
        best_score: float | None = None,
    ) -> None:
        self.reports.append((phase, completed, total, message))


def _metric(example: Any, prediction: Any, trace: Any = None) -> float:
    return 1.0


def test_scoring_counts_examples_out_of_the_devset() -> None:
    recorder = _Recorder()
    progress = _Progress(recorder, "GEPA", budget=12)  # type: ignore[arg-type]
    scored = progress.scored_by(_metric)
    progress.scoring(3, "scoring the module before optimization")
    for _ in range(3):
        scored(None, None)
    assert recorder.reports == [
        ("scoring", 0, 3, "scoring the module before optimization"),
        ("scoring", 1, 3, "scored 1 of 3 examples"),
        ("scoring", 2, 3, "scored 2 of 3 examples"),
        ("scoring", 3, 3, "scored 3 of 3 examples"),
    ]


def test_optimizing_counts_metric_calls_out_of_the_budget() -> None:
    recorder = _Recorder()
    progress = _Progress(recorder, "GEPA", budget=12)  # type: ignore[arg-type]
    counted = progress.counted(_metric)
    progress.scoring(2, "before")
    progress.phase = "optimizing"
    counted(None, None)
    counted(None, None)
    assert recorder.reports[-1] == ("optimizing", 2, 12, "GEPA: 0 evaluations, 2 metric calls")
    progress.scoring(2, "after")  # a new scoring phase starts from zero again
    assert recorder.reports[-1] == ("scoring", 0, 2, "after")


def test_without_a_budget_the_total_is_unknown() -> None:
    recorder = _Recorder()
    progress = _Progress(recorder, "BootstrapFewShot", budget=0)  # type: ignore[arg-type]
    progress.phase = "optimizing"
    progress.counted(_metric)(None, None)
    assert recorder.reports[-1][1:3] == (1, 0)
