"""What the benchmark smoke tests share: running a bench/ script as a user does, in a process of its own."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"


def run_bench(script: str, *args) -> str:
    """The script's printed output; exit status 1 (a timing target missed, noise on a shared machine) is fine."""
    done = subprocess.run([sys.executable, str(BENCH / script), *map(str, args)], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode in (0, 1), done.stderr[-3000:]
    return done.stdout
