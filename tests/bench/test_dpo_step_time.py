"""bench/dpo_step_time.py: its smoke run trains every side (posttrain, posttrain with precomputed reference
log-probs, plain TRL), evaluates each on the held-out pairs and prints the comparison. Step times on a shared CI
machine are noise, so the test holds the accuracy target and the table, not the timing verdict."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"


def test_the_smoke_run_prints_both_sides_trained_and_the_accuracy_target(tmp_path):
    done = subprocess.run([sys.executable, str(BENCH / "dpo_step_time.py"), "--quick", "--no-context", "--threads",
                           "1", "--workdir", str(tmp_path)], capture_output=True, text=True, timeout=600)
    out = done.stdout
    assert done.returncode in (0, 1), done.stderr[-3000:]
    rows = {row.split("|")[1].strip(): row for row in out.splitlines() if row.startswith("| ") and "---" not in row}
    assert {"posttrain dpo stage (pipeline.run)", "posttrain dpo stage + precompute_ref_log_probs"} <= set(rows), out
    assert any(name.startswith("TRL DPOTrainer defaults") for name in rows), out
    assert "problem:" not in out, out
    assert re.search(r"target: posttrain's held-out reward accuracy .* PASS", out), out
    assert re.search(r"target: posttrain's steps not slower than TRL's .*: \d+\.\d\d \(\d+ ms / \d+ ms\)", out), out
