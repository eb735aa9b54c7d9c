"""Bad StartOptimization requests are INVALID_ARGUMENT before any work starts: no job record,
no process, no module version. Other job RPC errors have their documented codes."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2 as pb
from dspy_bridge_client._proto.dspy_bridge.v1 import job_pb2
from tests.integration.rpc import expect_error
from tests.jobs.helpers import Stub, setup, start_request, wait_done
from tests.jobs.task import TRAINSET

INVALID = grpc.StatusCode.INVALID_ARGUMENT


def _case(optimizer: str, config: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
    return {"optimizer": optimizer, "config": config, **kw}


CASES: list[tuple[str, dict[str, Any], str, str]] = [
    ("unknown optimizer", _case("Nope"), "UNKNOWN_OPTIMIZER", "optimizer"),
    ("no optimizer", _case(""), "UNKNOWN_OPTIMIZER", "optimizer"),
    ("unknown metric", _case("LabeledFewShot", metric="bleu"), "UNKNOWN_METRIC", "metric.name"),
    ("empty trainset", _case("LabeledFewShot", trainset=[]), "INVALID_DATASET", "trainset"),
    (
        "label not an output",
        _case("LabeledFewShot", trainset=[({"text": "a b"}, {"answer": "x"})]),
        "INVALID_DATASET",
        "trainset[0].labels.answer",
    ),
    (
        "label is an input",
        _case("LabeledFewShot", valset=[({"text": "a b"}, {"text": "x"})]),
        "INVALID_DATASET",
        "valset[0].labels.text",
    ),
    (
        "unknown config key",
        _case("BootstrapFewShot", {"max_demos": 2}),
        "INVALID_OPTIMIZER_CONFIG",
        "config.max_demos",
    ),
    (
        "wrong config type",
        _case("BootstrapFewShot", {"max_bootstrapped_demos": "four"}),
        "INVALID_OPTIMIZER_CONFIG",
        "config.max_bootstrapped_demos",
    ),
    (
        "config out of range",
        _case("LabeledFewShot", {"k": -1}),
        "INVALID_OPTIMIZER_CONFIG",
        "config.k",
    ),
    (
        "fractional integer",
        _case("COPRO", {"depth": 1.5}),
        "INVALID_OPTIMIZER_CONFIG",
        "config.depth",
    ),
    (
        "bad choice",
        _case("MIPROv2", {"auto": "extreme"}),
        "INVALID_OPTIMIZER_CONFIG",
        "config.auto",
    ),
    (
        "MIPROv2 without a budget",
        _case("MIPROv2", {"auto": None, "num_trials": 2}),
        "INVALID_OPTIMIZER_CONFIG",
        "config.num_candidates",
    ),
    (
        "GEPA with two budgets",
        _case("GEPA", {"auto": "light", "max_metric_calls": 5}),
        "INVALID_OPTIMIZER_CONFIG",
        "config.max_metric_calls",
    ),
    (
        "SIMBA batch larger than the trainset",
        _case("SIMBA", {"bsize": 1000}),
        "INVALID_OPTIMIZER_CONFIG",
        "config.bsize",
    ),
    (
        "COPRO breadth 1",
        _case("COPRO", {"breadth": 1}),
        "INVALID_OPTIMIZER_CONFIG",
        "config.breadth",
    ),
]


@pytest.mark.parametrize(
    ("case", "request_kw", "reason", "field"), CASES, ids=[c[0] for c in CASES]
)
async def test_bad_start_is_invalid_argument_before_any_work(
    stub: Stub, case: str, request_kw: dict[str, Any], reason: str, field: str
) -> None:
    sid = await setup(stub)
    kw = dict(request_kw)
    request = start_request(sid, kw.pop("optimizer"), kw.pop("config"), **kw)
    error = await expect_error(stub.StartOptimization(request), INVALID, reason)
    assert field in error.fields, (error.fields, error.message)
    listed = await stub.ListOptimizations(pb.ListOptimizationsRequest(session_id=sid))
    assert list(listed.jobs) == []
    module = (await stub.GetModule(pb.GetModuleRequest(session_id=sid, module_id="clf"))).module
    assert module.version == 1


async def test_variable_search_spec_needs_variable_search(stub: Stub) -> None:
    sid = await setup(stub)
    request = start_request(sid, "LabeledFewShot")
    request.variable_search.n_trials = 2
    await expect_error(stub.StartOptimization(request), INVALID)
    listed = await stub.ListOptimizations(pb.ListOptimizationsRequest(session_id=sid))
    assert list(listed.jobs) == []


async def test_unknown_ids(stub: Stub) -> None:
    sid = await setup(stub)
    not_found = grpc.StatusCode.NOT_FOUND
    await expect_error(
        stub.StartOptimization(start_request(sid, "LabeledFewShot", module_id="nope")),
        not_found,
        "MODULE_NOT_FOUND",
    )
    await expect_error(
        stub.StartOptimization(start_request("no-such-session", "LabeledFewShot")),
        not_found,
        "SESSION_NOT_FOUND",
    )
    for call in (stub.GetOptimization, stub.CancelOptimization):
        await expect_error(
            call(pb.GetOptimizationRequest(session_id=sid, job_id="job_x")),  # same fields
            not_found,
            "JOB_NOT_FOUND",
        )
    await expect_error(
        stub.ApplyOptimization(pb.ApplyOptimizationRequest(session_id=sid, job_id="job_x")),
        not_found,
        "JOB_NOT_FOUND",
    )
    await expect_error(
        stub.RevertModule(pb.RevertModuleRequest(session_id=sid, module_id="clf", to_version=7)),
        not_found,
        "VERSION_NOT_FOUND",
    )
    await expect_error(
        stub.RevertModule(pb.RevertModuleRequest(session_id=sid, module_id="clf", to_version=0)),
        INVALID,
    )


async def test_apply_needs_a_succeeded_job(stub: Stub) -> None:
    sid = await setup(stub)
    job = (
        await stub.StartOptimization(
            start_request(sid, "LabeledFewShot", trainset=TRAINSET[:2], metric="exact_match")
        )
    ).job
    await stub.CancelOptimization(pb.CancelOptimizationRequest(session_id=sid, job_id=job.job_id))
    done = await wait_done(stub, sid, job.job_id)
    if done.status == job_pb2.JOB_STATUS_CANCELLED:
        await expect_error(
            stub.ApplyOptimization(pb.ApplyOptimizationRequest(session_id=sid, job_id=job.job_id)),
            grpc.StatusCode.FAILED_PRECONDITION,
            "JOB_NOT_SUCCEEDED",
        )
