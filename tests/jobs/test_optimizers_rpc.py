"""Every DSPy optimizer the bridge offers runs to completion on the shipped task, through real
RPCs, each in its own job process, with tiny budgets."""

from __future__ import annotations

from typing import Any

import pytest

from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2 as pb
from dspy_bridge_client._proto.dspy_bridge.v1 import job_pb2
from tests.jobs.helpers import Stub, setup, start_request, wait_done
from tests.jobs.task import HELD_OUT, TRAINSET

BUDGETS: dict[str, dict[str, Any]] = {
    "LabeledFewShot": {"k": 4},
    "BootstrapFewShot": {"max_bootstrapped_demos": 2, "max_labeled_demos": 2},
    "BootstrapFewShotWithRandomSearch": {"num_candidate_programs": 1, "max_bootstrapped_demos": 1},
    "KNNFewShot": {"k": 2, "max_bootstrapped_demos": 1},
    "COPRO": {"breadth": 2, "depth": 1},
    "MIPROv2": {"auto": None, "num_trials": 2, "num_candidates": 2, "max_bootstrapped_demos": 1},
    "SIMBA": {"bsize": 4, "max_steps": 1, "num_candidates": 2},
    "GEPA": {"max_metric_calls": 12, "reflection_minibatch_size": 2, "reflection_lm": "offline"},
}


async def test_server_info_lists_the_optimizers(stub: Stub) -> None:
    info = await stub.GetServerInfo(pb.GetServerInfoRequest())
    assert set(BUDGETS) <= set(info.optimizers)


@pytest.mark.parametrize("optimizer", list(BUDGETS))
async def test_optimizer_runs_to_completion(stub: Stub, optimizer: str) -> None:
    sid = await setup(stub)
    request = start_request(
        sid, optimizer, BUDGETS[optimizer], trainset=TRAINSET[:8], valset=HELD_OUT[:4]
    )
    job = (await stub.StartOptimization(request)).job
    done = await wait_done(stub, sid, job.job_id, wait_s=120)
    assert done.status == job_pb2.JOB_STATUS_SUCCEEDED, done.error.message
    assert done.optimizer == optimizer
    assert done.HasField("module_result") and done.HasField("best_score")
    result = done.module_result
    assert result.previous_version == 1 and result.module_version == 0
    assert result.HasField("score_before") and result.HasField("score_after")
    assert result.instructions and result.state_json
    assert done.progress.phase == "done"
    assert done.HasField("start_time") and done.HasField("end_time")
