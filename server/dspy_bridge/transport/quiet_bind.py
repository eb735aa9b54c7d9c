"""Binding the gRPC port without gRPC's C core writing its own line to stderr.

When a bind fails, gRPC's C core prints `E... add_port.cc:83] Failed to add port ...` straight
to file descriptor 2, bypassing Python logging, before Python sees the error. The sidecar
reports a failed bind itself, as one line naming the setting, so that raw line only confuses
(and breaks JSON logs). Around the bind, descriptor 2 goes to a temporary file: on success
whatever the core wrote is passed on unchanged; on failure it is dropped.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def core_stderr_held() -> Iterator[None]:
    """Holds what is written to descriptor 2 inside the block; replays it unless it raised.
    Only for short single-threaded start-up steps: other threads' stderr is held too."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        held.seek(0)
        written = held.read()
    if written:
        os.write(2, written)
