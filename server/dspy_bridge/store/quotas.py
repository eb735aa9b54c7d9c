"""The per-caller shares a store enforces (#10: one caller must not fill the server), and the
errors a caller past its share gets, the same from every store.

- Sessions: `create_session(..., max_per_owner=N)` refuses a named caller's session when it
  already owns N live (unexpired) sessions. Every store counts in the same step as the create
  (a sqlite transaction, the memory store's event loop, one Redis script), so the count holds
  across replicas on Redis.
- Jobs: `create_job(..., owner=O, max_active_per_owner=N)` — a shared store refuses the job
  when O has N jobs QUEUED or RUNNING on any replica, counted in the same script from the job
  records whose lease is live (a dead replica's jobs stop counting when their lease lapses). A
  single-server store leaves it to the `JobManager`, which sees every job of its server.
"""

from __future__ import annotations

from dspy_bridge.errors import BridgeError, Reason, resource_exhausted


def session_quota_exceeded(owned: int, limit: int) -> BridgeError:
    """RESOURCE_EXHAUSTED `SESSION_QUOTA_EXCEEDED` (with `limit`)."""
    return resource_exhausted(
        Reason.SESSION_QUOTA_EXCEEDED,
        f"you own {owned} live sessions, the most one caller may "
        f"(--max-sessions-per-caller {limit}); delete one or let one expire",
        limit=str(limit),
    )


def job_quota_exceeded(active: int, limit: int) -> BridgeError:
    """RESOURCE_EXHAUSTED `JOB_QUOTA_EXCEEDED` (with `limit` and `active`)."""
    return resource_exhausted(
        Reason.JOB_QUOTA_EXCEEDED,
        f"{active} of your jobs are queued or running, the most one caller may have "
        f"(--max-queued-jobs-per-caller {limit}); wait for one to finish or cancel one",
        limit=str(limit),
        active=str(active),
    )
