"""bench/convert_throughput.py on a few thousand records: every conversion writes every record on both sides,
and the script prints its table, the data doctor's rate and the three targets (their verdicts are for 1 M
records on a quiet machine, not for CI)."""

from __future__ import annotations

import re

from tests.bench.conftest import run_bench


def test_a_small_run_converts_every_record_and_prints_the_targets(tmp_path):
    out = run_bench("convert_throughput.py", "--records", "2000", "--doctor-records", "500",
                    "--workdir", str(tmp_path))
    rows = [row for row in out.splitlines() if row.startswith("| ") and "---" not in row][1:]
    assert [row.split("|")[1].strip() for row in rows] == ["alpaca → openai", "alpaca → openai",
                                                            "sharegpt → openai", "openai → sharegpt"], out
    assert [row.split("|")[3].strip() for row in rows] == ["1"] * 4, out  # a small file: one process by default
    assert re.search(r"data doctor .*: 500 records in", out), out
    assert re.search(r"^the tokenizer alone .*: [\d,]+ records/s$", out, re.M), out
    assert len(re.findall(r"^target: .* (PASS|FAIL)$", out, re.M)) == 3, out
    assert sum(1 for _ in open(tmp_path / "alpaca-posttrain.jsonl")) == 2000
