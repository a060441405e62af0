"""bench/hostile_input.py at its quick size: it prints the regex against the tag scan, the .json element against
its .jsonl row, the billion-laughs file's refusal and the three targets."""

from __future__ import annotations

import re

from tests.bench.conftest import run_bench


def test_the_quick_run_prints_each_comparison_and_its_target():
    out = run_bench("hostile_input.py", "--quick")
    rows = re.findall(r"^\| ([\d,]+) \| ([^|]+) \| ([\d.]+) \|$", out, re.M)
    assert [n for n, _, _ in rows] == ["500", "1,000", "2,000", "100,000"], out
    assert rows[-1][1].strip() == "not run (minutes)" and all(float(r) >= 0 for _, r, _ in rows[:-1]), out
    assert re.search(r"^\| read_rows \| [\d.]+ \| [\d.]+ \| [\d.]+x \|$", out, re.M), out
    assert re.search(r"billion laughs .* refused in [\d.]+ s, peak memory \+\d+ MB", out), out
    assert len(re.findall(r"^target: .*: (PASS|FAIL)$", out, re.M)) == 3, out
