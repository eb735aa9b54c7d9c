"""Stopping when stdin closes: a sidecar run as a child (an Elixir port program, a supervisor's
pipe) learns that its parent died, even from SIGKILL, by reading end of file on stdin."""

from __future__ import annotations

import os
import select
import sys
import threading
from collections.abc import Callable

#: Bytes read (and discarded) at a time: the parent is not expected to write, but may.
_CHUNK = 64 * 1024


def watch_stdin_close(on_close: Callable[[], object]) -> threading.Thread:
    """Calls `on_close` (from a daemon thread) once stdin reaches end of file or fails.

    A blocking read on a thread works for any stdin (pipe, socket, file, /dev/null), where an
    event-loop reader would refuse regular files and /dev/null; the daemon thread never holds
    up the process's exit.
    """

    def read_to_end() -> None:
        try:
            fd = sys.stdin.fileno()
            while os.read(fd, _CHUNK):
                pass
        except (OSError, ValueError):  # closed or no stdin at all: nothing will come either
            pass
        silence_orphaned_output()
        on_close()

    thread = threading.Thread(target=read_to_end, name="stdin-close-watch", daemon=True)
    thread.start()
    return thread


def silence_orphaned_output() -> None:
    """Points stdout and stderr at /dev/null when they are pipes nobody reads any more.

    A parent that died usually held the other end of our output too (an Elixir port reads the
    sidecar's stdout and stderr): every log line of the drain would then fail with a broken
    pipe and stop the drain half-way. Output that still has a reader (a file, a live pipe) is
    left alone.
    """
    poller = select.poll()
    for fd in (1, 2):
        try:
            poller.register(fd, select.POLLOUT)
        except (OSError, ValueError):
            continue
    orphaned = [fd for fd, events in poller.poll(0) if events & select.POLLERR]
    if not orphaned:
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        for fd in orphaned:
            os.dup2(devnull, fd)
    finally:
        os.close(devnull)
