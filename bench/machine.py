"""What the benchmarks share about the machine they run on: CPU time used, by this process and by others.

A benchmark run beside other work measures that work too; the scripts print
how much CPU other processes took, so a reader can tell a quiet run from a
noisy one. Imported by the scripts in bench/ (run as `python bench/NAME.py`,
which puts this folder on sys.path).
"""

from __future__ import annotations

import os
import time


def cpu_seconds() -> tuple[float, float, float]:
    """(wall clock, CPU seconds the whole machine has used, CPU seconds this process has used); Linux."""
    try:
        with open("/proc/stat") as f:
            ticks = [int(x) for x in f.readline().split()[1:]]
        machine = (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait
    except OSError:
        machine = float("nan")
    return time.perf_counter(), machine, sum(os.times()[:2])
