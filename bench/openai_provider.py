"""A minimal, fast OpenAI-compatible provider for the LM-path bench (its own process).

`python -m bench.openai_provider <port_file> [latency_ms]` serves `POST /v1/chat/completions`
on 127.0.0.1 over HTTP/1.1 keep-alive with asyncio streams: every request is answered after
`latency_ms` with the same ChatAdapter-formatted completion (`reasoning` and `answer` fields, so
Predict and ChainOfThought both parse it) and its usage, or as server-sent events with a usage
chunk when `stream` is set. Unlike the tests' fake it does no prompt reading and no threads:
it must cost the machine as little as possible, since it shares the CPUs with what it measures.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

CONTENT = (
    "[[ ## reasoning ## ]]\nA sidecar runs next to the application.\n\n"
    "[[ ## answer ## ]]\nIt serves the application's requests.\n\n[[ ## completed ## ]]"
)
USAGE = {"prompt_tokens": 120, "completion_tokens": 20, "total_tokens": 140}
BODY = json.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 0,
        "model": "bench-model",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": CONTENT},
                "finish_reason": "stop",
            }
        ],
        "usage": USAGE,
    }
).encode()


def _sse() -> bytes:
    def event(payload: dict[str, object]) -> str:
        return f"data: {json.dumps(payload)}\n\n"

    base = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 0}
    parts = [CONTENT[i : i + 16] for i in range(0, len(CONTENT), 16)]
    out = [event({**base, "choices": [{"index": 0, "delta": {"role": "assistant"}}]})]
    out += [event({**base, "choices": [{"index": 0, "delta": {"content": p}}]}) for p in parts]
    out.append(event({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}))
    out.append(event({**base, "choices": [], "usage": USAGE}))
    out.append("data: [DONE]\n\n")
    return "".join(out).encode()


STREAM = _sse()


async def _serve_connection(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, latency_s: float
) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            body = await reader.readexactly(length) if length else b""
            if latency_s:
                await asyncio.sleep(latency_s)
            if b'"stream": true' in body or b'"stream":true' in body:
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                    + f"content-length: {len(STREAM)}\r\n\r\n".encode()
                    + STREAM
                )
            else:
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                    + f"content-length: {len(BODY)}\r\n\r\n".encode()
                    + BODY
                )
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
        pass
    finally:
        writer.close()


async def main(port_file: Path, latency_ms: float) -> None:
    latency_s = latency_ms / 1000

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _serve_connection(reader, writer, latency_s)

    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=4096)
    port = server.sockets[0].getsockname()[1]
    await asyncio.to_thread(port_file.write_text, str(port))
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), float(sys.argv[2]) if len(sys.argv) > 2 else 0.0))
