"""Issue-14 suite: the real LM path against a local OpenAI-compatible provider.

The provider is `bench/openai_provider.py` in its own process (zero latency unless said). All
figures of one comparison come from the same run, measured side by side:

(a) CPU per LM call, from process CPU time (user + system, /proc): DSPy's own `dspy.LM` in a
    child process calling `Predict.acall` back to back, against the sidecar (front + its one
    worker) serving the same calls from a client in this process (whose CPU is not counted).
    Both on DSPy's native engine (`engine=auto`, the default of both) and on LiteLLM, with a
    model name DSPy's model table does not list (`bench-model`, as a self-hosted endpoint's);
    and on the native engine with one it lists (`gpt-4o-mini`, the provider ignores the name),
    where the sidecar's memo of DSPy's model lookups (runtime/lm/metadata.py) saves nothing.
(b) Execute throughput at zero provider latency: the sidecar (workers = CPU count) against
    DSPy's FastAPI deployment recipe (uvicorn + `dspy.asyncify`, bench/fastapi_baseline.py)
    with the same provider and engine, each at its best of several concurrencies, alternating.
(c) 200 concurrent Executes against a 300 ms provider: throughput against
    min(ideal = 200 / 0.3 s, the CPU bound measured in (b)).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
import httpx

from bench.fastapi_baseline import baseline_server
from bench.harness import bridge_server, closed_loop
from bench.harness import cpu_seconds as _cpu_seconds
from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2 as pb
from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2_grpc as pb_grpc
from dspy_bridge_client._proto.dspy_bridge.v1 import lm_pb2, module_pb2, value_pb2

SECONDS = float(os.environ.get("BENCH_SECONDS", "4"))
CPU_CALLS = int(os.environ.get("BENCH_CPU_CALLS", "300"))
KEY_ENV = "BENCH_PROVIDER_API_KEY"
#: A model name DSPy's model table does not list (a self-hosted endpoint's), and one it lists.
UNLISTED_MODEL = "openai/bench-model"
LISTED_MODEL = "openai/gpt-4o-mini"
QUESTION = "What does a sidecar process do next to an application?"
CONCURRENCIES = (16, 64)
SLOW_MS = 300
SLOW_CONCURRENCY = 200
WARM_CALLS = 8
#: Which comparisons to run (a, b, c); the default is all three.
PARTS = os.environ.get("BENCH_LM_PARTS", "abc")


@contextmanager
def provider(latency_ms: float = 0.0, pids: list[int] | None = None) -> Iterator[str]:
    """The bench provider in a child process; yields its `api_base` (its pid into `pids`)."""
    with tempfile.TemporaryDirectory() as tmp:
        port_file = Path(tmp) / "port"
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench.openai_provider", str(port_file), str(latency_ms)]
        )
        if pids is not None:
            pids.append(proc.pid)
        try:
            deadline = time.monotonic() + 60
            while not port_file.exists() or not port_file.read_text():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the bench provider did not start")
                time.sleep(0.05)  # polling a child's file: no event crosses processes
            yield f"http://127.0.0.1:{port_file.read_text()}/v1"
        finally:
            proc.kill()
            proc.wait()


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        out.extend(int(child) for child in text)
    return out


def _server_cpu(pid: int) -> float:
    return sum(_cpu_seconds(p) for p in [pid, *_children(pid)])


# -- (a) CPU per call ---------------------------------------------------------------------------


def _dspy_cpu_child(api_base: str, engine: str, calls: int, model: str) -> None:
    """Runs in a child: `calls` Predict calls through dspy.LM; prints CPU seconds per call."""
    import dspy
    from dspy.clients import costs, model_metadata

    # DSPy as users run it: none of the sidecar's process-wide set-up is in this process.
    assert costs.model_info is model_metadata.model_info
    lm = dspy.LM(model, api_base=api_base, api_key="bench", engine=engine, cache=False)
    predict = dspy.Predict("question -> answer")

    async def run(n: int) -> None:
        with dspy.context(lm=lm):
            for _ in range(n):
                await predict.acall(question=QUESTION)

    asyncio.run(run(20))  # warm up: imports, connection pool, first-call caches
    start = time.process_time()
    asyncio.run(run(calls))
    print(json.dumps({"cpu_ms_per_call": (time.process_time() - start) * 1000 / calls}))


def _dspy_cpu(api_base: str, engine: str, model: str) -> float:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.lm_path",
            "dspy-cpu",
            api_base,
            engine,
            str(CPU_CALLS),
            model,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(json.loads(out.stdout.strip().splitlines()[-1])["cpu_ms_per_call"])


def _module(
    stub: Any,
    api_base: str,
    module_type: str = "Predict",
    engine: str = "auto",
    model: str = UNLISTED_MODEL,
) -> str:
    sid = stub.CreateSession(pb.CreateSessionRequest()).session.session_id
    lm = lm_pb2.LMConfig(
        model=model,
        api_base=api_base,
        api_key_env=KEY_ENV,
        options={"engine": engine},
    )
    stub.CreateModule(
        pb.CreateModuleRequest(
            session_id=sid,
            module_id="m",
            module_type=module_type,
            signature=module_pb2.Signature(text="question -> answer"),
            lm=lm,
        )
    )
    return str(sid)


def _sidecar_cpu(api_base: str, engine: str, model: str) -> float:
    pids: list[int] = []
    env = {KEY_ENV: "bench"}
    args = ("--workers", "1", "--lm-allowed-api-bases", api_base)
    with (
        bridge_server(*args, env=env, pids=pids) as (target, _),
        grpc.insecure_channel(target) as channel,
    ):
        stub = pb_grpc.BridgeServiceStub(channel)
        sid = _module(stub, api_base, engine=engine, model=model)
        request = pb.ExecuteRequest(
            session_id=sid,
            module_id="m",
            inputs={"question": value_pb2.Value(string_value=QUESTION)},
        )
        for _ in range(20):
            stub.Execute(request)
        before = _server_cpu(pids[0])
        for _ in range(CPU_CALLS):
            stub.Execute(request)
        return (_server_cpu(pids[0]) - before) * 1000 / CPU_CALLS


def _cpu_per_call(api_base: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, engine, model in (
        ("auto", "auto", UNLISTED_MODEL),
        ("litellm", "litellm", UNLISTED_MODEL),
        ("auto_listed_model", "auto", LISTED_MODEL),
    ):
        dspy_ms = _dspy_cpu(api_base, engine, model)
        sidecar_ms = _sidecar_cpu(api_base, engine, model)
        out[name] = {
            "model": model,
            "dspy_in_process_cpu_ms_per_call": round(dspy_ms, 3),
            "sidecar_cpu_ms_per_call": round(sidecar_ms, 3),
            "ratio": round(sidecar_ms / dspy_ms, 2),
            "target_ratio": 1.5,
        }
    return out


# -- (b), (c) throughput ----------------------------------------------------------------------


class _CpuMeter:
    """CPU seconds per completed call of each process taking part in a load (the server, the
    provider, and this process as the load generator) over one closed loop, warm-up included;
    from them, how many calls per second the machine's cores could carry at most."""

    def __init__(self, servers: list[int], provider_pid: int, one_process: bool) -> None:
        self.servers = servers
        self.provider_pid = provider_pid
        self.one_process = one_process  # the server is one process: at most one core
        self.calls = 0
        self._start: tuple[float, float, float] = (0.0, 0.0, 0.0)
        self.figures: dict[str, float] = {}

    def _now(self) -> tuple[float, float, float]:
        server = sum(_server_cpu(pid) for pid in self.servers)
        return server, _cpu_seconds(self.provider_pid), time.process_time()

    def counted(self, call: Callable[[], Awaitable[Any]]) -> Callable[[], Awaitable[Any]]:
        async def counting() -> Any:
            result = await call()
            self.calls += 1
            return result

        return counting

    def start(self) -> None:
        self.calls = 0
        self._start = self._now()

    def stop(self) -> None:
        end = self._now()
        calls = max(self.calls, 1)
        server, prov, client = (
            (b - a) * 1000 / calls for a, b in zip(self._start, end, strict=True)
        )
        cores = os.cpu_count() or 1
        ceiling = cores * 1000 / max(server + prov + client, 1e-9)
        if self.one_process:
            ceiling = min(ceiling, 1000 / max(server, 1e-9))
        self.figures = {
            "server_cpu_ms_per_call": round(server, 3),
            "provider_cpu_ms_per_call": round(prov, 3),
            "load_generator_cpu_ms_per_call": round(client, 3),
            "cpu_ceiling_per_s": round(ceiling, 1),
        }


async def _sidecar_load(
    target: str, api_base: str, concurrency: int, meter: _CpuMeter
) -> dict[str, float]:
    options = [("grpc.max_concurrent_streams", 10_000)]
    async with grpc.aio.insecure_channel(target, options=options) as channel:
        stub = pb_grpc.BridgeServiceStub(channel)
        sids = []
        for _ in range(16):
            sid = (await stub.CreateSession(pb.CreateSessionRequest())).session.session_id
            lm = lm_pb2.LMConfig(model=UNLISTED_MODEL, api_base=api_base, api_key_env=KEY_ENV)
            await stub.CreateModule(
                pb.CreateModuleRequest(
                    session_id=sid,
                    module_id="cot",
                    module_type="ChainOfThought",
                    signature=module_pb2.Signature(text="question -> answer"),
                    lm=lm,
                )
            )
            sids.append(sid)
        counter = itertools.count()

        def call() -> Any:
            n = next(counter)
            return stub.Execute(
                pb.ExecuteRequest(
                    session_id=sids[n % len(sids)],
                    module_id="cot",
                    inputs={"question": value_pb2.Value(string_value=f"What is {n} + 1?")},
                )
            )

        # Every worker imports DSPy's engines and builds the program on its first call, which
        # takes seconds on a busy machine: warm them all before anything is measured.
        await asyncio.gather(*(call() for _ in range(4 * WARM_CALLS)))
        meter.start()
        result = await closed_loop(
            meter.counted(call), concurrency=concurrency, seconds=SECONDS, warmup=1.0
        )
        meter.stop()
    return {**result.summary(), **meter.figures}


async def _fastapi_load(url: str, concurrency: int, meter: _CpuMeter) -> dict[str, float]:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
        counter = itertools.count()

        async def call() -> None:
            r = await client.post("/predict", json={"text": f"What is {next(counter)} + 1?"})
            r.raise_for_status()

        await asyncio.gather(*(call() for _ in range(WARM_CALLS)))  # as the sidecar's warm-up
        meter.start()
        result = await closed_loop(
            meter.counted(call), concurrency=concurrency, seconds=SECONDS, warmup=1.0
        )
        meter.stop()
    return {**result.summary(), **meter.figures}


def _versus_fastapi(api_base: str, provider_pid: int) -> dict[str, Any]:
    args = ("--lm-allowed-api-bases", api_base)
    sidecar: dict[str, Any] = {}
    fastapi: dict[str, Any] = {}
    sidecar_pids: list[int] = []
    fastapi_pids: list[int] = []
    with (
        bridge_server(*args, env={KEY_ENV: "bench"}, pids=sidecar_pids) as (target, _),
        baseline_server(api_base=api_base, pids=fastapi_pids) as url,
    ):
        for concurrency in CONCURRENCIES:  # alternating: drift hits both alike
            meter = _CpuMeter(sidecar_pids, provider_pid, one_process=False)
            sidecar[str(concurrency)] = asyncio.run(
                _sidecar_load(target, api_base, concurrency, meter)
            )
            meter = _CpuMeter(fastapi_pids, provider_pid, one_process=True)
            fastapi[str(concurrency)] = asyncio.run(_fastapi_load(url, concurrency, meter))
    best_sidecar = max(float(v["throughput_per_s"]) for v in sidecar.values())
    best_fastapi = max(float(v["throughput_per_s"]) for v in fastapi.values())
    # What the cores allow each side at most, from the CPU each call cost every process in the
    # same run (best over concurrencies): the ratio no tuning of the sidecar's own code could
    # beat on this machine at these per-call costs.
    ceiling_sidecar = max(float(v["cpu_ceiling_per_s"]) for v in sidecar.values())
    ceiling_fastapi = max(float(v["cpu_ceiling_per_s"]) for v in fastapi.values())
    return {
        "cpu_ceiling_sidecar_per_s": ceiling_sidecar,
        "cpu_ceiling_fastapi_per_s": ceiling_fastapi,
        "ratio_of_cpu_ceilings": round(ceiling_sidecar / max(ceiling_fastapi, 1e-9), 2),
        "sidecar": sidecar,
        "fastapi_uvicorn_asyncify": fastapi,
        "best_sidecar_per_s": best_sidecar,
        "best_fastapi_per_s": best_fastapi,
        "ratio": round(best_sidecar / max(best_fastapi, 1e-9), 2),
        "target_ratio": 2.5,
    }


def _slow_provider(cpu_bound: float) -> dict[str, Any]:
    provider_pids: list[int] = []
    with provider(SLOW_MS, pids=provider_pids) as api_base:
        args = ("--lm-allowed-api-bases", api_base)
        server_pids: list[int] = []
        with bridge_server(*args, env={KEY_ENV: "bench"}, pids=server_pids) as (target, _):
            meter = _CpuMeter(server_pids, provider_pids[0], one_process=False)
            figures: dict[str, Any] = asyncio.run(
                _sidecar_load(target, api_base, SLOW_CONCURRENCY, meter)
            )
    ideal = SLOW_CONCURRENCY / (SLOW_MS / 1000)
    goal = min(ideal, cpu_bound)
    figures["ideal_per_s"] = round(ideal, 1)
    figures["cpu_bound_per_s"] = round(cpu_bound, 1)
    figures["fraction_of_min_ideal_cpu_bound"] = round(figures["throughput_per_s"] / goal, 2)
    figures["target_fraction"] = 0.8
    return figures


def run() -> dict[str, Any]:
    out: dict[str, Any] = {"seconds_per_measurement": SECONDS, "cpu_calls": CPU_CALLS}
    provider_pids: list[int] = []
    with provider(pids=provider_pids) as api_base:
        if "a" in PARTS:
            out["a_cpu_per_lm_call"] = _cpu_per_call(api_base)
        if "b" in PARTS or "c" in PARTS:
            out["b_zero_latency_vs_fastapi"] = _versus_fastapi(api_base, provider_pids[0])
    if "c" in PARTS:
        cpu_bound = float(out["b_zero_latency_vs_fastapi"]["best_sidecar_per_s"])
        out["c_300ms_200_concurrent"] = _slow_provider(cpu_bound)
    return out


if __name__ == "__main__":
    if sys.argv[1:2] == ["dspy-cpu"]:
        _dspy_cpu_child(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5])
