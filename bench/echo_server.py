"""A bare grpc.aio echo service: the ceiling of Python gRPC on this machine.

Run as `python -m bench.echo_server PORT_FILE`; it writes its port to PORT_FILE when serving.
It runs on the same event loop as the sidecar (uvloop when installed), so the comparison is
between the two services, not between event loops.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import grpc

from dspy_bridge.loop import run

METHOD = "/bench.Echo/Echo"


async def _echo(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
    return request


async def main(port_file: str) -> None:
    server = grpc.aio.server()
    handler = grpc.method_handlers_generic_handler(
        "bench.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(_echo)}
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    await asyncio.to_thread(Path(port_file).write_text, str(port))
    await server.wait_for_termination()


if __name__ == "__main__":
    run(main(sys.argv[1]))
