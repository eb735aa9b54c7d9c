"""A local OpenAI-compatible server for tests of the real `dspy.LM` -> LiteLLM -> HTTP path.

`FakeOpenAI` listens on 127.0.0.1 (a free port) and serves `POST /v1/chat/completions`, plain
and `stream: true` (server-sent events), with scripted behaviours:

- `ANSWER` (the default): answers like the offline LM, in the format of the adapter that built
  the prompt (ChatAdapter `[[ ## field ## ]]` sections for the requested output fields, or
  JSON / XML), with usage; `text(...)` answers a fixed text instead;
- `RATE_LIMITED` (429), `UNAUTHORIZED` (401, echoing the bearer key back like careless
  providers do), `UNAUTHORIZED_ENCODED` (401 echoing it reversed, hex- and base64-encoded),
  `LOCAL_SERVICE` (403 with another local service's private page, as when `api_base` points
  at something that is not an LM provider), `CONTEXT_LENGTH` (400 with OpenAI's
  `context_length_exceeded` body), `BAD_REQUEST` (400), `SERVER_ERROR` (500), `UNAVAILABLE`
  (503), `MODEL_NOT_FOUND` (404);
- `HANG`: accepts the request and never answers, until the server stops or the client closes
  the connection (counted: `wait_for_disconnects`, to show a cancel reached the provider);
- `MALFORMED`: a 200 whose body is not JSON;
- `broken_stream(text)`: for `stream: true`, streams `text` in small pieces, then waits for
  `break_streams` (an event the test sets once it has seen output reach the host) and resets
  the connection (TCP RST): a provider failing mid-stream, after output went out.

Behaviours queued with `enqueue` are used one per request, then the default. Every request is
recorded (`requests`: path, lower-cased headers, JSON body) so tests can check what was sent;
`wait_for_requests(n)` blocks until n have arrived.

The server is a stdlib `ThreadingHTTPServer` speaking HTTP/1.0 (one request per connection,
so no idle keep-alive connection can hold a thread). `stop()` wakes every hanging request,
shuts the server down and joins the accept thread and every handler thread: nothing outlives
the test.
"""

from __future__ import annotations

import base64
import contextlib
import json
import select
import socket
import struct
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

import pytest

from dspy_bridge.runtime.lm.offline import complete_messages

THREAD_PREFIX = "fake-openai"


@dataclass(frozen=True)
class Behaviour:
    """What the server does with one request."""

    kind: str  # "answer" | "text" | "raw" | "error" | "auth" | "auth_encoded" | "hang"
    status: int = 200
    body: Mapping[str, Any] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    text: str = ""


def _error_body(message: str, type_: str, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


ANSWER = Behaviour("answer")
HANG = Behaviour("hang")
MALFORMED = Behaviour("raw", 200, text='{"id": "chatcmpl-1", "choices": [ this is not json')
UNAUTHORIZED = Behaviour("auth", 401)
UNAUTHORIZED_ENCODED = Behaviour("auth_encoded", 401)
#: What `LOCAL_SERVICE` answers; a test checks none of it reaches a host.
LOCAL_SERVICE_PAGE = "<html>admin console: db_password=hunter2-internal</html>"
LOCAL_SERVICE = Behaviour(
    "error", 403, {"error": {"message": LOCAL_SERVICE_PAGE, "type": "forbidden", "code": None}}
)
RATE_LIMITED = Behaviour(
    "error",
    429,
    _error_body("Rate limit reached for fake-model on requests per min.", "requests", None),
    {"retry-after": "0"},
)
CONTEXT_LENGTH = Behaviour(
    "error",
    400,
    _error_body(
        "This model's maximum context length is 16 tokens. However, your messages resulted in "
        "512 tokens. Please reduce the length of the messages.",
        "invalid_request_error",
        "context_length_exceeded",
    ),
)
BAD_REQUEST = Behaviour(
    "error",
    400,
    _error_body(
        "Unrecognized request argument supplied: frobnicate", "invalid_request_error", None
    ),
)
SERVER_ERROR = Behaviour(
    "error",
    500,
    _error_body("The server had an error processing your request.", "server_error", None),
)
UNAVAILABLE = Behaviour(
    "error",
    503,
    _error_body(
        "The engine is currently overloaded, please try again later.", "server_error", None
    ),
    {"retry-after": "0"},
)
MODEL_NOT_FOUND = Behaviour(
    "error",
    404,
    _error_body(
        "The model `fake-model` does not exist.", "invalid_request_error", "model_not_found"
    ),
)


def broken_stream(content: str) -> Behaviour:
    """Stream `content`, then reset the connection once `FakeOpenAI.break_streams` is set."""
    return Behaviour("broken_stream", text=content)


def text(content: str) -> Behaviour:
    """Answer with exactly `content` (e.g. something no adapter can parse)."""
    return Behaviour("text", text=content)


@dataclass(frozen=True)
class RecordedRequest:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


class _Server(ThreadingHTTPServer):
    """One named, tracked thread per request; `FakeOpenAI.stop` joins them all."""

    daemon_threads = False
    fake: FakeOpenAI

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self.process_request_thread,
            args=(request, client_address),
            name=f"{THREAD_PREFIX}-handler",
        )
        self.fake._track(thread)
        thread.start()


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.0"
    # A client that connects and sends nothing cannot hold a thread for long.
    timeout = 10

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_POST(self) -> None:
        fake = self.server.fake
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            self._json(400, _error_body("invalid JSON", "invalid_request_error", None))
            return
        fake._record(
            RecordedRequest(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
        )
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self._json(404, _error_body(f"no route {self.path}", "invalid_request_error", None))
            return
        behaviour = fake._next()
        if behaviour.kind == "hang":
            if self._wait_for_close(fake):
                fake._disconnected()
            return
        if behaviour.kind == "broken_stream":
            self._broken_stream(body, behaviour.text, fake)
            return
        if behaviour.kind == "raw":
            data = behaviour.text.encode()
            self.send_response(behaviour.status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        if behaviour.kind in ("auth", "auth_encoded"):
            token = self.headers.get("authorization", "").removeprefix("Bearer ").strip()
            if behaviour.kind == "auth":
                message = f"Incorrect API key provided: {token}. You can find your API key online."
            else:
                raw = f"Bearer {token}".encode()
                message = (
                    f"key {token[::-1]} rejected; hex {token.encode().hex()}; "
                    f"header {base64.b64encode(raw).decode()}"
                )
            self._json(401, _error_body(message, "invalid_request_error", "invalid_api_key"))
            return
        if behaviour.kind == "error":
            self._json(behaviour.status, dict(behaviour.body or {}), behaviour.headers)
            return
        n = int(body.get("n") or 1)
        if behaviour.kind == "text":
            texts = [behaviour.text] * n
        else:
            texts = complete_messages(body.get("messages") or [], n=n)
        if body.get("stream"):
            self._stream(body, texts[0])
        else:
            self._json(200, _completion(body, texts))

    def _broken_stream(self, body: Mapping[str, Any], content: str, fake: FakeOpenAI) -> None:
        """`content` as chunks with no end, then (once the test says) a reset connection."""
        model = str(body.get("model", "fake-model"))
        base = {"id": "chatcmpl-broken", "object": "chat.completion.chunk", "created": 0}
        try:
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.end_headers()
            for i in range(0, len(content), 5):
                delta = {"content": content[i : i + 5]}
                chunk = {**base, "model": model, "choices": [{"index": 0, "delta": delta}]}
                self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                self.wfile.flush()
        except (TimeoutError, BrokenPipeError, ConnectionResetError):
            return
        while not fake._stopping.is_set() and not fake.break_streams.wait(0.05):
            pass
        # SO_LINGER 0: close() sends RST, the failure a provider crashing mid-answer causes.
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.close()

    def _wait_for_close(self, fake: FakeOpenAI) -> bool:
        """Hangs until the client closes the connection (True) or the server stops (False)."""
        while not fake._stopping.is_set():
            readable, _, _ = select.select([self.connection], [], [], 0.05)
            if readable:
                try:
                    if not self.connection.recv(1, socket.MSG_PEEK):
                        return True
                except OSError:
                    return True
        return False

    def _json(
        self, status: int, payload: Mapping[str, Any], headers: Mapping[str, str] | None = None
    ) -> None:
        data = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except (TimeoutError, BrokenPipeError, ConnectionResetError):
            pass

    def _stream(self, body: Mapping[str, Any], content: str) -> None:
        model = str(body.get("model", "fake-model"))
        ident = f"chatcmpl-{uuid.uuid4().hex[:12]}"
        created = int(time.time())

        def event(choices: list[dict[str, Any]], **extra: Any) -> bytes:
            chunk = {
                "id": ident,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": choices,
                **extra,
            }
            return f"data: {json.dumps(chunk)}\n\n".encode()

        pieces = [content[i : i + 5] for i in range(0, len(content), 5)]
        try:
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("cache-control", "no-cache")
            self.end_headers()
            first = {"role": "assistant", "content": ""}
            self.wfile.write(event([{"index": 0, "delta": first, "finish_reason": None}]))
            for piece in pieces:
                delta = {"content": piece}
                self.wfile.write(event([{"index": 0, "delta": delta, "finish_reason": None}]))
                self.wfile.flush()
            self.wfile.write(event([{"index": 0, "delta": {}, "finish_reason": "stop"}]))
            if (body.get("stream_options") or {}).get("include_usage"):
                self.wfile.write(event([], usage=_usage(body, [content])))
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
        except (TimeoutError, BrokenPipeError, ConnectionResetError):
            pass


def _usage(body: Mapping[str, Any], texts: list[str]) -> dict[str, int]:
    prompt = sum(len(str(m.get("content", "")).split()) for m in body.get("messages") or [])
    completion = sum(len(t.split()) for t in texts)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _completion(body: Mapping[str, Any], texts: list[str]) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": str(body.get("model", "fake-model")),
        "choices": [
            {
                "index": i,
                "message": {"role": "assistant", "content": t},
                "finish_reason": "stop",
                "logprobs": None,
            }
            for i, t in enumerate(texts)
        ],
        "usage": _usage(body, texts),
    }


class FakeOpenAI:
    """The fake server; use as a context manager (or the `fake_openai` fixture)."""

    def __init__(self) -> None:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.fake = self
        self._lock = threading.Lock()
        self._script: deque[Behaviour] = deque()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._handlers: list[threading.Thread] = []
        self.default = ANSWER
        self.requests: list[RecordedRequest] = []
        self._changed = threading.Condition(self._lock)
        self.disconnects = 0
        #: Set by a test to let `broken_stream` requests fail (see the module docstring).
        self.break_streams = threading.Event()

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """The `api_base` to give LiteLLM."""
        return f"http://127.0.0.1:{self.port}/v1"

    def enqueue(self, *behaviours: Behaviour) -> None:
        """Behaviours for the next requests, in order; after them, `default`."""
        with self._lock:
            self._script.extend(behaviours)

    def start(self) -> FakeOpenAI:
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{THREAD_PREFIX}-accept",
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """End hanging requests, stop accepting, and join every thread the server started."""
        self._stopping.set()
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()
        with self._lock:
            handlers, self._handlers = self._handlers, []
        for thread in handlers:
            thread.join()

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _next(self) -> Behaviour:
        with self._lock:
            return self._script.popleft() if self._script else self.default

    def _track(self, thread: threading.Thread) -> None:
        with self._lock:
            self._handlers = [t for t in self._handlers if t.is_alive()]
            self._handlers.append(thread)

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)
            self._changed.notify_all()

    def _disconnected(self) -> None:
        with self._lock:
            self.disconnects += 1
            self._changed.notify_all()

    def wait_for_requests(self, count: int, timeout: float = 30.0) -> None:
        """Blocks until `count` requests have arrived (AssertionError after `timeout`)."""
        with self._lock:
            if not self._changed.wait_for(lambda: len(self.requests) >= count, timeout):
                raise AssertionError(f"{len(self.requests)} of {count} requests arrived")

    def wait_for_disconnects(self, count: int, timeout: float = 30.0) -> None:
        """Blocks until clients closed `count` hanging requests' connections."""
        with self._lock:
            if not self._changed.wait_for(lambda: self.disconnects >= count, timeout):
                raise AssertionError(f"{self.disconnects} of {count} connections were closed")


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    """A running `FakeOpenAI`, stopped (threads joined) after the test."""
    with FakeOpenAI() as server:
        yield server
