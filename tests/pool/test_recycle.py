"""Recycling starts the replacement first: the old worker keeps taking calls until its
successor is ready, so no call waits for a worker to start, then it drains and exits."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from dspy_bridge.model import LMSpec
from dspy_bridge.pool import PoolConfig, WorkerPool
from dspy_bridge.pool.pool import _Call
from dspy_bridge.runtime.executor import ExecutionRequest
from tests.runtime.module_helpers import make_record

pytestmark = pytest.mark.slow

# Every worker after the first blocks on a FIFO before it starts: the test decides when the
# replacement may become ready, so nothing depends on how fast a worker starts.
_GATED_WORKER = """
import os, sys
first, gate = sys.argv[1], sys.argv[2]
if os.path.exists(first):
    with open(gate) as fifo:
        fifo.read()
else:
    open(first, "w").close()
os.execv(sys.executable, [sys.executable, "-m", "dspy_bridge.pool", *sys.argv[3:]])
"""


def _request(question: str) -> ExecutionRequest:
    return ExecutionRequest(
        record=make_record("Predict"), lm=LMSpec(model="offline"), inputs={"question": question}
    )


async def test_recycled_worker_serves_until_its_successor_is_ready(tmp_path: Path) -> None:
    first, gate = tmp_path / "first", tmp_path / "gate"
    os.mkfifo(gate)
    pool = WorkerPool(
        PoolConfig(workers=1, max_requests=2, grace_seconds=20),
        worker_command=lambda fd: [
            sys.executable,
            "-c",
            _GATED_WORKER,
            str(first),
            str(gate),
            str(fd),
            "warning",
            "json",
        ],
    )
    await pool.start()
    try:
        old = pool.pids()[0]
        for i in range(2):  # the second call reaches max_requests: recycling starts
            assert (await pool.execute(_request(f"q{i}"))).outputs["answer"]
        assert pool.stats()["recycled"] == 1
        # The successor is held at the gate; calls still run, on the old worker, at once.
        for i in range(5):
            assert (await pool.execute(_request(f"during {i}"))).outputs["answer"]
        assert pool.pids() == [old]
        assert pool.stats()["recycled"] == 1  # one replacement, however many calls came since
        await asyncio.to_thread(gate.write_text, "go")
        await pool.wait_for(lambda: pool.pids() != [old], 60)
        assert (await pool.execute(_request("after"))).outputs["answer"]
        assert pool.stats()["crashes"] == 0
    finally:
        await pool.close()
    with pytest.raises(ProcessLookupError):  # the old worker drained, exited and was reaped
        os.kill(old, 0)


# A stand-in worker that does no DSPy at all: the Nth started (counted in a file) exits at once
# when N is listed in argv[3] (a start that fails), otherwise says ready and idles until drained.
_FAKE_WORKER = """
import os, pickle, socket, struct, sys
fd, counter, failing = int(sys.argv[1]), sys.argv[2], sys.argv[3].split(",")
n = int(open(counter).read()) + 1 if os.path.exists(counter) else 1
open(counter, "w").write(str(n))
if str(n) in failing:
    sys.exit(3)
sock = socket.socket(fileno=fd)
def send(message):
    data = pickle.dumps(message)
    sock.sendall(struct.pack("!I", len(data)) + data)
send(("ready", os.getpid()))
stream = sock.makefile("rb")
while True:
    header = stream.read(4)
    if len(header) < 4:
        break
    message = pickle.loads(stream.read(struct.unpack("!I", header)[0]))
    if message[0] == "drain":
        break
"""


def _fake_pool(tmp_path: Path, failing: str, backoff: float) -> WorkerPool:
    counter = tmp_path / "started"
    return WorkerPool(
        PoolConfig(
            workers=1, backoff_seconds=backoff, backoff_max_seconds=backoff, grace_seconds=5
        ),
        worker_command=lambda fd: [
            sys.executable,
            "-c",
            _FAKE_WORKER,
            str(fd),
            str(counter),
            failing,
        ],
    )


async def test_a_recycled_worker_dying_while_its_successor_backs_off_leaves_one_worker(
    tmp_path: Path,
) -> None:
    """Successor #2 fails; its retry waits out the backoff; the old worker dies in that wait.
    The retry alone takes the slot over: no second start, no worker outside the slot."""
    pool = _fake_pool(tmp_path, failing="2", backoff=3.0)
    await pool.start()
    try:
        slot = pool._slots[0]
        old = slot.current
        assert old is not None
        slot.failures = 1  # as after an earlier death, so the failed successor's retry backs off
        pool._recycle(slot, old)
        await pool.wait_for(lambda: pool.crashes == 1, 30)  # successor #2 failed
        assert pool.pids() == [old.pid]  # the old worker still serves, the retry is waiting
        os.kill(old.pid, signal.SIGKILL)
        await pool.wait_for(lambda: pool.crashes == 2 and slot.current is None, 30)
        await pool.wait_for(lambda: slot.current is not None and slot.current.ready, 30)
        assert pool.restarts == 2  # the successor and its one retry, not a third start
        assert [h.pid for h in pool._handles] == pool.pids()
        assert pool.pids() != [old.pid]
    finally:
        await pool.close()


async def test_a_recycled_workers_results_do_not_reset_its_successors_backoff(
    tmp_path: Path,
) -> None:
    pool = _fake_pool(tmp_path, failing="", backoff=1.0)
    await pool.start()
    try:
        slot = pool._slots[0]
        old = slot.current
        assert old is not None
        old.replaced = True  # recycled: its successor is (re)starting
        slot.failures = 3
        call = _Call(1, False, ("m", 1), _request("q"), {})
        old.in_flight[call.id] = call
        pool._on_message(slot, old, ("result", call.id, None))
        assert slot.failures == 3
        old.replaced = False
        old.in_flight[call.id] = call
        pool._on_message(slot, old, ("result", call.id, None))
        assert slot.failures == 0  # the slot's own worker serving: the slot is healthy
    finally:
        await pool.close()
