"""bench/grpo_step_time.py: its smoke run trains both sides (posttrain's GRPO stage and plain TRL) and prints the
comparison. Step times on a shared CI machine are noise, so the test holds the table, not the timing verdict."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"


def test_the_smoke_run_trains_both_sides_and_prints_the_comparison(tmp_path):
    done = subprocess.run([sys.executable, str(BENCH / "grpo_step_time.py"), "--quick", "--no-context", "--threads",
                           "1", "--workdir", str(tmp_path)], capture_output=True, text=True, timeout=600)
    out = done.stdout
    assert done.returncode in (0, 1), done.stderr[-3000:]
    rows = [row.split("|")[1].strip() for row in out.splitlines() if row.startswith("| ") and "---" not in row]
    assert "posttrain grpo stage (pipeline.run)" in rows and any(r.startswith("TRL GRPOTrainer") for r in rows), out
    assert "problem:" not in out, out
    assert re.search(r"target: posttrain not slower than TRL .*: \d+\.\d\d \(\d+ ms / \d+ ms\)", out), out
