"""Errors about job records shared by every store backend."""

from __future__ import annotations

import grpc

from dspy_bridge.errors import BridgeError, Reason, already_exists, not_found
from dspy_bridge.model import JobStatus


def job_not_found(session_id: str, job_id: str) -> BridgeError:
    return not_found(
        Reason.JOB_NOT_FOUND,
        f"job {job_id!r} does not exist in session {session_id!r}",
        session_id=session_id,
        job_id=job_id,
    )


def job_exists(session_id: str, job_id: str) -> BridgeError:
    return already_exists(
        Reason.JOB_ALREADY_EXISTS,
        f"job {job_id!r} already exists in session {session_id!r}",
        session_id=session_id,
        job_id=job_id,
    )


def job_state_conflict(job_id: str, current: JobStatus) -> BridgeError:
    return BridgeError(
        grpc.StatusCode.ABORTED,
        Reason.JOB_STATE_CONFLICT,
        f"job {job_id!r} is {current.name}; the change does not apply to it",
        {"job_id": job_id, "current_status": current.name},
    )
