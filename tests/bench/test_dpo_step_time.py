"""bench/dpo_step_time.py: its smoke run trains every side (posttrain, posttrain with precomputed reference
log-probs, plain TRL), evaluates each on the held-out pairs and prints the comparison. Step times on a shared CI
machine are noise, so the test holds the accuracy target and the table, not the timing verdict."""

from __future__ import annotations

import re

from tests.bench.conftest import run_bench


def test_the_smoke_run_prints_both_sides_trained_and_the_accuracy_target(tmp_path):
    out = run_bench("dpo_step_time.py", "--quick", "--no-context", "--threads", "1", "--workdir", str(tmp_path))
    rows = {row.split("|")[1].strip(): row for row in out.splitlines() if row.startswith("| ") and "---" not in row}
    assert {"posttrain dpo stage (pipeline.run)", "posttrain dpo stage + precompute_ref_log_probs"} <= set(rows), out
    assert any(name.startswith("TRL DPOTrainer defaults") for name in rows), out
    assert "problem:" not in out, out
    assert re.search(r"target: posttrain's held-out reward accuracy .* PASS", out), out
    assert re.search(r"target: posttrain 1.2x TRL's steps .*: \d+\.\d\d \(\d+ ms / \d+ ms\)", out), out
