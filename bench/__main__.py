"""`python -m bench [suite ...]` runs benchmark suites and prints their figures as JSON.

Suites: variables (issue 2), execute (issue 3), pool (issue 4), elixir (issue 12), scale_out
(issue 13: the Redis store against memory, replicas), host (issue 11), lm (issue 14: the real
LM path against a local OpenAI-compatible provider). Results are also written to
bench/results/<suite>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import elixir, execute, host_calls, lm_path, pool, scale_out, variables

SUITES: dict[str, Callable[[], dict[str, Any]]] = {
    "variables": variables.run,
    "pool": pool.run,
    "execute": execute.run,
    # The Elixir client against the Python client (clients/elixir; skipped without mix).
    "elixir": elixir.run,
    # The Redis store (two replicas on one real redis-server) against the memory store.
    "scale_out": scale_out.run,
    # Host callbacks over Connect: a host tool round trip from a worker vs a bare bidi echo.
    "host": host_calls.run,
    # The real LM path against a local OpenAI-compatible provider (issue 14).
    "lm": lm_path.run,
}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("suites", nargs="*", choices=[*SUITES, []], help="default: all")
    args = parser.parse_args()
    out_dir = Path(__file__).parent / "results"
    out_dir.mkdir(exist_ok=True)
    for name in args.suites or list(SUITES):
        started = time.time()
        result = {
            "suite": name,
            "when": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(started)),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
            **SUITES[name](),
        }
        result["seconds"] = round(time.time() - started, 1)
        text = json.dumps(result, indent=2)
        (out_dir / f"{name}.json").write_text(text)
        print(text)


if __name__ == "__main__":
    main()
