"""bench/serve_throughput.py --quick: two real `posttrain serve` processes answer every client, the greedy answers
are the same from both, and the script prints its table and both targets (their verdicts are for 16 clients on a
quiet machine, not for CI)."""

from __future__ import annotations

import re

from tests.bench.conftest import run_bench


def test_a_quick_run_answers_every_request_alike_on_both_servers(tmp_path):
    out = run_bench("serve_throughput.py", "--quick", "--workdir", str(tmp_path))
    rows = [row.split("|")[1:4] for row in out.splitlines() if re.match(r"\| \d", row)]
    assert [(c.strip(), side.strip()) for c, _, side in rows] == [
        ("1", "batching"), ("1", "one at a time"), ("4", "batching"), ("4", "one at a time")], out
    assert "greedy answers equal on both servers: 10/10" in out, out
    assert len(re.findall(r"^target: .* (PASS|FAIL)$", out, re.M)) == 2, out
