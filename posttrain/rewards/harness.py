"""The reward test harness: a reward's own cases, then probes it did not choose.

A reward runs inside a trainer on whatever a model writes, millions of
times. Before that, `posttrain rewards test NAME` checks the cases a user
wrote (completion, ground_truth, expected) and then meets every reward with
hostile probes: empty, 1 MB, 10,000 nested or repeated tags, 10,000 and
100,000 unclosed tags, unicode junk, NaN / inf / 1e308 / 10**400 / negative /
zero targets, and extra_info of the wrong type. Each probe must give a finite
number, without raising, within 1 s, the same value twice, and the same
value through the TRL and the VERL adapters.
"""

from __future__ import annotations

import contextlib
import json
import math
import signal
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from posttrain.data.io import read_rows
from posttrain.errors import DataError
from posttrain.rewards import search
from posttrain.rewards.adapters import compute_score, trl_reward
from posttrain.rewards.registry import get, names, score_value
from posttrain.rewards.search.index import build_index

COMPLETIONS = {
    "empty": "",
    "1 MB": "x" * (1 << 20),
    "1 MB of words": "<think>" + "dose arm trial " * 70_000 + "</think><answer>200</answer>",
    "10,000 nested tags": "<answer>" * 10_000 + "200" + "</answer>" * 10_000,
    "10,000 repeated tags": "<think>t</think><answer>1</answer>" * 10_000,
    "10,000 unclosed tags": "<answer>" * 10_000,
    "100,000 unclosed tags": "<think><answer><score><preference>" * 25_000,
    "100,000 closing tags": "</answer></think>" * 50_000,
    "10,000 parentheses": "<answer>" + "(" * 10_000 + "heart" + ")" * 10_000 + "</answer>",
    "unicode junk": "<answer>\ud800\x00\u202e\uffff 🧪 \u0000</answer>",
    "NaN": "<think>t</think><answer>NaN</answer>",
    "inf": "<think>t</think><answer>inf</answer>",
    "1e308": "<think>t</think><answer>1e308</answer>",
    "400 digits": "<think>t</think><answer>" + "9" * 400 + "</answer>",
    "well formed": "<think>2 arms of 100</think><answer>200</answer>",
}
TRUTHS = {
    "target 200": {"target": 200}, "target 0": {"target": 0}, "target -5": {"target": -5},
    "target NaN": {"target": float("nan")}, "target inf": {"target": float("inf")}, "target 1e308": {"target": 1e308},
    "target 10**400": {"target": 10**400}, "answer 10**400": {"answer": 10**400},
    "pmids": {"relevant_pmids": ["1", "2"]}, "no pmids": {"relevant_pmids": []}, "text": "Rest and drink fluids.",
    "empty dict": {}, "none": None,
}
EXTRA_INFOS = {"extra_info text": "rtol", "extra_info list": [1, 2], "extra_info rtol text": {"rtol": "wide"},
               "extra_info rtol 10**400": {"rtol": 10**400}}
TIME_LIMIT = 1.0
HANG_LIMIT = 10.0  # a probe still running then is stopped and failed, so `rewards test` itself never hangs


class ProbeTimeout(BaseException):
    """A BaseException, as a Ctrl-C is: a reward's own `except Exception` (VERL's math reward has one) must not
    swallow it and leave the probe running."""


@contextlib.contextmanager
def deadline(seconds: float):
    """Raise ProbeTimeout in the block after `seconds` (a SIGALRM timer: the main thread only, else no limit)."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield
        return

    def stop(signum, frame):
        raise ProbeTimeout(f"still running after {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


def run_cases(reward: str, cases: list[dict], tolerance: float = 1e-9) -> list[Check]:
    function = get(reward)
    checks = []
    for i, case in enumerate(cases, 1):
        got = score_value(function(case["completion"], case.get("ground_truth"), case.get("extra_info")))
        ok = math.isclose(got, float(case["expected"]), rel_tol=0, abs_tol=tolerance)
        checks.append(Check(f"case {i}", ok, f"expected {case['expected']}, got {got}"))
    return checks


def run_probes(reward: str) -> list[Check]:
    function, trl = get(reward), trl_reward(reward)
    verl = reward in names()  # a custom reward is not reachable by data_source
    checks = []
    with probe_index():
        for truth in TRUTHS.values():  # one-time costs (a lazy import, a model loaded) are not the reward's speed
            with contextlib.suppress(Exception):
                function(COMPLETIONS["well formed"], truth, None)
        for completion_name, completion in COMPLETIONS.items():
            hung = None
            for truth_name, truth in TRUTHS.items():
                name = f"{completion_name} / {truth_name}"
                if hung:  # each of these would take HANG_LIMIT again
                    checks.append(Check(name, False, f"not run: the reward hung on {hung}"))
                    continue
                checks.append(_probe(function, trl, reward if verl else None, completion, truth, name))
                hung = name if "ProbeTimeout" in checks[-1].detail else None
        for info_name, info in EXTRA_INFOS.items():
            for truth_name, truth in TRUTHS.items():
                checks.append(_probe(function, trl, reward if verl else None, COMPLETIONS["well formed"], truth,
                                     f"well formed / {truth_name} / {info_name}", info))
    return checks


def _probe(function, trl, source, completion, truth, name, info=None) -> Check:
    if info is None:  # a TRL reward's own columns get the truth
        info = {column: truth for column in function.columns} or None
    try:
        started = time.perf_counter()
        with deadline(HANG_LIMIT):
            value = score_value(function(completion, truth, info))
        seconds = time.perf_counter() - started
        again = score_value(function(completion, truth, info))
        via_trl = trl([completion], ground_truth=[truth], extra_info=[info])[0]
        via_verl = score_value(compute_score(source, completion, truth, info)) if source else value
    except (Exception, ProbeTimeout) as e:  # the point of a probe: any exception is a failure to report
        return Check(name, False, f"raised {type(e).__name__}: {str(e)[:200]}")
    problems = []
    if not math.isfinite(value):
        problems.append(f"not finite ({value})")
    if seconds > TIME_LIMIT:
        problems.append(f"took {seconds:.2f} s")
    if again != value and not (math.isnan(again) and math.isnan(value)):
        problems.append(f"not deterministic ({value} then {again})")
    if via_trl != value or via_verl != value:
        problems.append(f"adapters differ (direct {value}, TRL {via_trl}, VERL {via_verl})")
    return Check(name, not problems, "; ".join(problems) or f"{value:g} in {seconds * 1000:.1f} ms")


@contextlib.contextmanager
def probe_index():
    """A three-document search index, so study-search probes reach a real query."""
    with tempfile.TemporaryDirectory() as folder:
        corpus = Path(folder) / "corpus.jsonl"
        corpus.write_text("".join(json.dumps({"pmid": str(i), "title": f"heart trial {i}", "abstract": "dose arm"})
                                  + "\n" for i in range(1, 4)))
        build_index(corpus, Path(folder) / "index.db", progress=False)
        previous = dict(search._configured)
        search.configure(index=Path(folder) / "index.db")
        try:
            yield
        finally:
            search.configure(**previous)


def read_cases(path: str | Path) -> list[dict]:
    cases = []
    for line, row in read_rows(path):
        for field in ("completion", "expected"):
            if not isinstance(row, dict) or field not in row:
                raise DataError(path, line, field, "missing; a case is {completion, ground_truth, expected}")
        if not isinstance(row["expected"], (int, float)):
            raise DataError(path, line, "expected", f"expected a number, got {type(row['expected']).__name__}")
        cases.append(row)
    return cases
