"""bench/grpo_step_time.py: its smoke run trains both sides (posttrain's GRPO stage and plain TRL) and prints the
comparison. Step times on a shared CI machine are noise, so the test holds the table, not the timing verdict."""

from __future__ import annotations

import re

from tests.bench.conftest import run_bench


def test_the_smoke_run_trains_both_sides_and_prints_the_comparison(tmp_path):
    out = run_bench("grpo_step_time.py", "--quick", "--no-context", "--threads", "1", "--workdir", str(tmp_path))
    rows = [row.split("|")[1].strip() for row in out.splitlines() if row.startswith("| ") and "---" not in row]
    assert "posttrain grpo stage (pipeline.run)" in rows and any(r.startswith("TRL GRPOTrainer") for r in rows), out
    assert "problem:" not in out, out
    assert re.search(r"target: posttrain 1.5x TRL.s defaults .*: \d+\.\d\d \(\d+ ms / \d+ ms\)", out), out
