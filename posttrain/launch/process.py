"""A process that must not outlive the `posttrain` process that started it: workers, a vLLM server.

`die_with_parent` runs in the child before exec (Linux's parent-death signal); `start_time` tells a live parent
from a new process that reused its pid, for the workers' own watch.
"""

from __future__ import annotations

import ctypes
import os
import signal
from pathlib import Path


def start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        try:
            os.kill(pid, 0)
        except (ProcessLookupError, PermissionError):
            return None
        return "alive"  # no /proc (macOS): the pid answers; reuse cannot be told apart there
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] == "Z" else fields[19]  # field 22 of stat: start time since boot


def die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the parent dies (Linux; elsewhere the workers' watch suffices)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
