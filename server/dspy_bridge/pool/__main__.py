"""`python -m dspy_bridge.pool <fd> <log_level> <log_format> [<event_loop> [<gc_young_threshold>]]`:
a worker process (see worker.py)."""

from __future__ import annotations

import sys

from dspy_bridge.pool.worker import main

main(sys.argv[1:])
