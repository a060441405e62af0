"""A seeded fuzzer over pipeline files: every mutated recipe is read, or refused with a ConfigError, in bounded time.

It starts from the shipped recipes (recipes/**/*.yaml, LLaMA-Factory recipes among the test fixtures) and breaks
them as bytes (truncation, invalid UTF-8, NUL, a BOM, flipped bytes) and as values (a wrong type at any key, a
duplicate key, aliases of aliases, deep nesting, NaN, huge numbers, empty mappings). load_config must return a
config or raise ConfigError, nothing else, within seconds each. The seed makes a failure reproducible.
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import pytest
import yaml

from posttrain.config import load_config
from posttrain.errors import PosttrainError

ROOT = Path(__file__).parents[2]
SOURCES = sorted(ROOT.glob("recipes/**/*.yaml")) + sorted(
    (ROOT / "tests/integrations/llamafactory/examples").rglob("*.yaml"))
# a longer run: POSTTRAIN_FUZZ_CASES=4000 POSTTRAIN_FUZZ_SEED=4 pytest tests/config/test_fuzz_yaml.py
SEED, CASES = int(os.environ.get("POSTTRAIN_FUZZ_SEED", 19)), int(os.environ.get("POSTTRAIN_FUZZ_CASES", 400))
CASE_SECONDS = 3.0
WRONG = [None, 0, -1, 0.0, 1e308, float("nan"), float("inf"), 10 ** 40, True, "", "x" * 5000, [], {}, [[]],
         {"a": {}}, [None], "\x00", "${oops}", "../../etc/passwd"]
LAUGHS = ("a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
          "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
          "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\n")


def _paths(node, prefix=()):
    """Every key path of a parsed recipe, lists by index."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
    for key, value in items:
        yield (*prefix, key)
        yield from _paths(value, (*prefix, key))


def _set(node, path, value):
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value


def _mutate(text: str, rng: random.Random) -> bytes:
    kind = rng.randrange(9)
    data = text.encode()
    if kind == 0:
        return data[:rng.randrange(len(data) + 1)]
    if kind == 1:
        at = rng.randrange(len(data) + 1)
        return data[:at] + rng.choice([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\x00", b"\t\x01"]) + data[at:]
    if kind == 2:
        return b"\xef\xbb\xbf" + data
    if kind == 3:
        flipped = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            flipped[rng.randrange(len(flipped))] = rng.randrange(256)
        return bytes(flipped)
    raw = yaml.safe_load(text)
    paths = list(_paths(raw))
    if kind == 4 and paths:
        _set(raw, rng.choice(paths), rng.choice(WRONG))
        return yaml.safe_dump(raw, allow_unicode=True).encode()
    if kind == 5:  # a key again, further down: the last one used to win without a word
        lines = text.splitlines()
        keyed = [line for line in lines if ":" in line and not line.lstrip().startswith("#")]
        return (text + "\n" + rng.choice(keyed or ["name: x"]) + "\n").encode()
    if kind == 6:
        return (LAUGHS + text).encode()
    if kind == 7 and paths:
        depth = rng.choice([50, 101, 5000])
        _set(raw, rng.choice(paths), "@DEEP@")
        return yaml.safe_dump(raw).replace("'@DEEP@'", "[" * depth + "]" * depth).replace(
            "@DEEP@", "[" * depth + "]" * depth).encode()
    return b"" if rng.random() < 0.5 else b"- just\n- a list\n"


def test_every_mutated_pipeline_file_is_read_or_refused_with_a_config_error(tmp_path):
    for source in SOURCES:  # the stage modules' first imports (transformers, TRL) are not the reading's time
        try:
            load_config(source)
        except PosttrainError:
            pass
    rng = random.Random(SEED)
    outcomes = {"read": 0, "refused": 0}
    slowest = 0.0
    for case in range(CASES):
        source = rng.choice(SOURCES)
        path = tmp_path / f"case{case}.yaml"
        path.write_bytes(_mutate(source.read_text(encoding="utf-8"), rng))
        started = time.perf_counter()
        try:
            load_config(path)
            outcomes["read"] += 1
        except PosttrainError:
            outcomes["refused"] += 1
        except Exception as e:  # the point of the fuzzer
            pytest.fail(f"case {case} (from {source.relative_to(ROOT)}, seed {SEED}): {type(e).__name__}: "
                        f"{str(e)[:300]}")
        took = time.perf_counter() - started
        slowest = max(slowest, took)
        assert took < CASE_SECONDS, f"case {case} (from {source.relative_to(ROOT)}) took {took:.1f} s"
    assert outcomes["refused"] > CASES // 2 and outcomes["read"] > 0, outcomes  # the mutations do break things
