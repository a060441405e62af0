"""The harness catches a reward that raises, returns NaN, is slow or varies; `posttrain rewards test` exits 2 then."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from posttrain.cli import app
from posttrain.rewards.harness import run_cases, run_probes

BAD = '''
import random, time
def raises(solution_str, ground_truth, extra_info=None):
    return 1 / len(solution_str)
def nan(solution_str, ground_truth, extra_info=None):
    return float("nan") if "NaN" in solution_str else 0.0
def noisy(solution_str, ground_truth, extra_info=None):
    return random.random()
SLEPT = []
def slow(solution_str, ground_truth, extra_info=None):
    if len(solution_str) > 1000 and not SLEPT:  # once: the harness must notice a single slow call
        SLEPT.append(1)
        time.sleep(1.1)
    return 0.0
import re
def quadratic(solution_str, ground_truth, extra_info=None):  # answer_tags as it was: a regex over unclosed tags
    return float(len(re.findall(r"<answer>(.*?)</answer>", solution_str, re.DOTALL)) == 1)
def overflows(solution_str, ground_truth, extra_info=None):  # float(10**400) raises
    return float(ground_truth["target"]) if isinstance(ground_truth, dict) and "target" in ground_truth else 0.0
def swallows(solution_str, ground_truth, extra_info=None):  # a blanket except, as VERL's math reward has
    try:
        return quadratic(solution_str, ground_truth)
    except Exception:
        return 0.0
def wrong_info(solution_str, ground_truth, extra_info=None):
    return float((extra_info or {}).get("rtol", 0))
'''


def test_probes_catch_bad_rewards(tmp_path):
    path = tmp_path / "bad.py"
    path.write_text(BAD)
    found = {}
    for name in ("raises", "nan", "noisy", "slow"):
        found[name] = " | ".join(c.detail for c in run_probes(f"{path}:{name}") if not c.ok)
    assert "raised ZeroDivisionError" in found["raises"]
    assert "not finite (nan)" in found["nan"]
    assert "not deterministic" in found["noisy"]
    assert "took 1." in found["slow"]


def test_probes_stop_a_reward_that_hangs_and_catch_huge_targets_and_wrong_extra_info(tmp_path, monkeypatch):
    from posttrain.rewards import harness

    monkeypatch.setattr(harness, "HANG_LIMIT", 1.0)
    path = tmp_path / "bad.py"
    path.write_text(BAD)
    failed = {name: {c.name: c.detail for c in run_probes(f"{path}:{name}") if not c.ok}
              for name in ("quadratic", "swallows", "overflows", "wrong_info")}
    assert failed["quadratic"]["100,000 unclosed tags / target 200"].startswith("raised ProbeTimeout: still running")
    assert failed["quadratic"]["100,000 unclosed tags / pmids"] == ("not run: the reward hung on "
                                                                   "100,000 unclosed tags / target 200")
    assert "10,000 unclosed tags / target 200" in failed["quadratic"]  # 12 s once, so slow or stopped
    assert failed["swallows"]["100,000 unclosed tags / pmids"] == ("not run: the reward hung on "
                                                                  "100,000 unclosed tags / target 200")
    assert "raised OverflowError" in failed["overflows"]["well formed / target 10**400"]
    assert "raised AttributeError" in failed["wrong_info"]["well formed / none / extra_info text"]


def test_cases_and_cli(tmp_path):
    cases = tmp_path / "cases.jsonl"
    rows = [{"completion": "<think>t</think><answer>200</answer>", "ground_truth": {"target": 200}, "expected": 1.1},
            {"completion": "<answer>200</answer>", "ground_truth": {"target": 200}, "expected": 1.1}]  # wrong: -2
    cases.write_text("".join(json.dumps(r) + "\n" for r in rows))
    checks = run_cases("sample_size_estimation", [json.loads(line) for line in cases.read_text().splitlines()])
    assert [c.ok for c in checks] == [True, False]
    result = CliRunner().invoke(app, ["rewards", "test", "sample_size_estimation", "--cases", str(cases)])
    assert result.exit_code == 2
    assert "1 failed" in result.output
    cases.write_text(json.dumps(rows[0]) + "\n")
    result = CliRunner().invoke(app, ["rewards", "test", "sample_size_estimation", "--cases", str(cases)])
    assert result.exit_code == 0, result.output
    assert " 0 failed" in result.output


def test_a_malformed_case_file_names_its_line(tmp_path):
    cases = tmp_path / "cases.jsonl"
    cases.write_text('{"completion": "x", "expected": 1}\n{"completion": "y"}\n')
    result = CliRunner().invoke(app, ["rewards", "test", "exact_match", "--cases", str(cases)])
    assert result.exit_code == 2
    assert f"{cases}:2: expected: missing" in result.output
