"""LabeledFewShot and BootstrapFewShot raise the held-out score of the shipped task by a clear
margin, through real RPCs; the result becomes a new module version (applied up front or
explicitly) that GetModule shows beside the previous one, and RevertModule undoes it."""

from __future__ import annotations

import pytest

from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2 as pb
from dspy_bridge_client._proto.dspy_bridge.v1 import job_pb2
from tests.jobs.helpers import Stub, held_out_score, setup, start_request, wait_done

SUCCEEDED = job_pb2.JOB_STATUS_SUCCEEDED


@pytest.mark.parametrize(
    ("optimizer", "config"),
    [("LabeledFewShot", {"k": 12}), ("BootstrapFewShot", {"max_labeled_demos": 12})],
)
async def test_optimizer_raises_the_held_out_score(
    stub: Stub, optimizer: str, config: dict[str, int]
) -> None:
    sid = await setup(stub)
    before = await held_out_score(stub, sid)
    started = (await stub.StartOptimization(start_request(sid, optimizer, config, apply=True))).job
    assert started.status in (job_pb2.JOB_STATUS_QUEUED, job_pb2.JOB_STATUS_RUNNING)
    job = await wait_done(stub, sid, started.job_id)
    assert job.status == SUCCEEDED, job.error.message
    assert job.applied
    result = job.module_result
    assert (result.previous_version, result.module_version) == (1, 2)
    assert result.score_after >= result.score_before + 0.5
    assert result.demo_count > 0
    after = await held_out_score(stub, sid)
    assert after >= before + 0.5, (before, after)
    assert after >= 0.75

    current = (await stub.GetModule(pb.GetModuleRequest(session_id=sid, module_id="clf"))).module
    previous = (
        await stub.GetModule(pb.GetModuleRequest(session_id=sid, module_id="clf", version=1))
    ).module
    assert (current.version, current.demo_count) == (2, result.demo_count)
    assert (previous.version, previous.demo_count) == (1, 0)

    reverted = (
        await stub.RevertModule(
            pb.RevertModuleRequest(session_id=sid, module_id="clf", to_version=1)
        )
    ).module
    assert (reverted.version, reverted.demo_count) == (3, 0)
    assert await held_out_score(stub, sid) == before


async def test_result_is_a_candidate_until_applied(stub: Stub) -> None:
    sid = await setup(stub)
    started = (await stub.StartOptimization(start_request(sid, "LabeledFewShot"))).job
    job = await wait_done(stub, sid, started.job_id)
    assert job.status == SUCCEEDED, job.error.message
    assert not job.applied and job.module_result.module_version == 0
    assert job.module_result.state_json
    module = (await stub.GetModule(pb.GetModuleRequest(session_id=sid, module_id="clf"))).module
    assert module.version == 1

    applied = await stub.ApplyOptimization(
        pb.ApplyOptimizationRequest(session_id=sid, job_id=job.job_id)
    )
    assert applied.job.applied and applied.job.module_result.module_version == 2
    assert applied.module.version == 2 and applied.module.demo_count > 0
    again = await stub.ApplyOptimization(
        pb.ApplyOptimizationRequest(session_id=sid, job_id=job.job_id)
    )
    assert again.module.version == 2  # applying twice changes nothing
    listed = await stub.ListOptimizations(pb.ListOptimizationsRequest(session_id=sid))
    assert [j.job_id for j in listed.jobs] == [job.job_id]
