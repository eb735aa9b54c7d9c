"""The processes of the host-callback benchmark (`bench/host_calls.py`), one role each:

- `echo-server PORT_FILE` — a bare grpc.aio bidirectional echo stream (the baseline's server);
- `host TARGET SESSION` — a Python host: `session.serve` with an async `echo` tool;
- `caller echo TARGET` / `caller host FD SESSION` — the measuring side: round trips over the
  bare echo stream, or host tool calls sent exactly as a worker process sends them
  (`WorkerHostChannel` on a socket whose other end the front serves with `FrontHostCalls`).
  It prints its figures as one JSON line.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc

from bench.harness import LoadResult
from dspy_bridge.loop import run

SERVICE, METHOD = "bench.Echo", "/bench.Echo/Stream"
SEQUENTIAL = 2_000
WARMUP = 300
IN_FLIGHT = 64
IN_FLIGHT_CALLS = 8_000
AT_ONCE = 1_000


async def _echo(requests: AsyncIterator[bytes], context: Any) -> AsyncIterator[bytes]:
    async for request in requests:
        yield request


async def echo_server(port_file: str) -> None:
    server = grpc.aio.server()
    handler = grpc.method_handlers_generic_handler(
        SERVICE, {"Stream": grpc.stream_stream_rpc_method_handler(_echo)}
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    await asyncio.to_thread(Path(port_file).write_text, str(port))
    await server.wait_for_termination()


async def host(target: str, session_id: str) -> None:
    from dspy_bridge_client import AsyncBridgeClient

    async def echo(text: str) -> str:
        """Return the text."""
        return text

    async with AsyncBridgeClient(target) as client:
        serving = await client.session(session_id).serve(
            tools={"echo": echo}, max_concurrency={"echo": 2 * AT_ONCE}
        )
        await serving.wait_connected(60)
        print("ready", flush=True)
        await asyncio.Event().wait()  # until killed


Call = Callable[[], Awaitable[object]]


async def _measure(call: Call) -> dict[str, Any]:
    for _ in range(WARMUP):
        await call()
    latencies = []
    for _ in range(SEQUENTIAL):
        t0 = time.perf_counter()
        await call()
        latencies.append((time.perf_counter() - t0) * 1000)
    sequential = LoadResult(SEQUENTIAL, 0, sum(latencies) / 1000, latencies).summary()

    errors = 0
    remaining = IN_FLIGHT_CALLS

    async def lane() -> None:
        nonlocal remaining, errors
        while remaining > 0:
            remaining -= 1
            try:
                await call()
            except Exception:
                errors += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(IN_FLIGHT)))
    seconds = time.perf_counter() - t0
    t1 = time.perf_counter()
    burst = await asyncio.gather(*(call() for _ in range(AT_ONCE)), return_exceptions=True)
    burst_s = time.perf_counter() - t1
    return {
        "sequential": sequential,
        "in_flight_64": {
            "calls": IN_FLIGHT_CALLS,
            "errors": errors,
            "per_s": round(IN_FLIGHT_CALLS / seconds, 1),
        },
        "at_once_1000": {
            "completed": sum(not isinstance(r, BaseException) for r in burst),
            "errors": sum(isinstance(r, BaseException) for r in burst),
            "seconds": round(burst_s, 3),
        },
    }


async def caller_echo(target: str) -> None:
    async with grpc.aio.insecure_channel(target) as channel:
        stream = channel.stream_stream(METHOD)()
        waiting: deque[asyncio.Future[bytes]] = deque()

        async def read() -> None:  # the echo answers in order: first waiting, first answered
            while True:
                message = await stream.read()
                if message is grpc.aio.EOF:
                    return
                waiting.popleft().set_result(message)

        reader = asyncio.create_task(read())
        writing = asyncio.Lock()  # one write at a time on a stream, as the host's client does

        async def call() -> bytes:
            future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
            async with writing:
                waiting.append(future)
                await stream.write(b"\x0a\x05hello")
            return await future

        figures = await _measure(call)
        reader.cancel()
        stream.cancel()
    print(json.dumps(figures), flush=True)


async def caller_host(fd: int, session_id: str) -> None:
    from dspy_bridge.pool.host_channel import WorkerHostChannel
    from dspy_bridge.pool.protocol import encode, read_message
    from dspy_bridge.runtime.host_calls import ToolCall

    reader, writer = await asyncio.open_unix_connection(sock=socket.socket(fileno=fd))
    channel = WorkerHostChannel(lambda message: writer.write(encode(message)))

    async def replies() -> None:
        while True:
            channel.answered(await read_message(reader))

    pump = asyncio.create_task(replies())

    async def call() -> object:
        return await channel.call_host(session_id, ToolCall("echo", {"text": "hello"}), 30.0)

    figures = await _measure(call)
    pump.cancel()
    print(json.dumps(figures), flush=True)


if __name__ == "__main__":
    role, *rest = sys.argv[1:]
    if role == "echo-server":
        run(echo_server(rest[0]))
    elif role == "host":
        run(host(rest[0], rest[1]))
    elif rest[0] == "echo":
        run(caller_echo(rest[1]))
    else:
        run(caller_host(int(rest[1]), rest[2]))
