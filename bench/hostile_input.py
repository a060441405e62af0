"""Hostile input in bounded time: the figures the bad-input work claims, each against what it replaced, in one run.

Why it exists: a reward runs on whatever a model writes, and a data or pipeline file is whatever a user (or a
tool) wrote; one pathological input must not stall a run or a check. Three comparisons:

- unclosed answer tags: posttrain's tag scan (rewards/formatting.tag_contents) against the lazy regex the
  rewards used before (`re.findall(r"<answer>(.*?)</answer>", text, re.DOTALL)`), which retries every unclosed
  tag to the end of the text. The regex runs up to --regex-max tags (it takes minutes beyond); the scan runs
  all sizes;
- one huge element of a `.json` array against the same row as a `.jsonl` line: reading the element once
  (data/jsontext.py) keeps the two within a small factor, where decoding it again on every 64 KiB read grew with
  the square of its size;
- a billion-laughs pipeline file (nine levels of nine-fold aliases): the time and peak memory until load_config
  refuses it, where the expansion grew past 1.3 GB.

Targets: the scan of 100,000 unclosed tags in <= 0.5 s; the .json element within 5x the .jsonl row; the
billion-laughs file refused in <= 1 s with <= 100 MB more memory. The script exits 1 when one is missed.

    .venv/bin/python bench/hostile_input.py            # 10,000 tags through the regex, a 50 MB element
    .venv/bin/python bench/hostile_input.py --quick    # 2,000 tags, a 4 MB element (a few seconds)
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import sys
import tempfile
import time
from pathlib import Path

from posttrain.config import load_config
from posttrain.data.io import read_rows
from posttrain.errors import ConfigError
from posttrain.rewards.formatting import tag_contents

OLD_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
TARGET_SCAN, TARGET_RATIO, TARGET_LAUGHS_S, TARGET_LAUGHS_MB = 0.5, 5.0, 1.0, 100


def timed(function, *args) -> tuple[float, object]:
    started = time.perf_counter()
    result = function(*args)
    return time.perf_counter() - started, result


def tags(regex_max: int) -> float:
    print("| unclosed <answer> tags | old regex (s) | tag_contents (s) |\n|---|---|---|")
    scan = 0.0
    for n in sorted({regex_max // 4, regex_max // 2, regex_max, 100_000}):
        text = "<answer>" * n
        scan, found = timed(tag_contents, text, "answer")
        regex = f"{timed(OLD_ANSWER.findall, text)[0]:.3f}" if n <= regex_max else "not run (minutes)"
        assert found == [] and (n > regex_max or OLD_ANSWER.findall(text) == found)
        print(f"| {n:,} | {regex} | {scan:.4f} |")
    return scan  # the largest


def big_element(folder: Path, megabytes: int) -> float:
    row = {"instruction": "Summarise.", "input": "x" * (megabytes << 20), "output": "A summary."}
    as_json, as_jsonl = folder / "big.json", folder / "big.jsonl"
    as_json.write_text(json.dumps([row, {"instruction": "q", "output": "a"}]))
    as_jsonl.write_text(json.dumps(row) + "\n" + json.dumps({"instruction": "q", "output": "a"}) + "\n")
    json_s, json_rows = timed(lambda: list(read_rows(as_json)))
    jsonl_s, jsonl_rows = timed(lambda: list(read_rows(as_jsonl)))
    assert [r for _, r in json_rows] == [r for _, r in jsonl_rows]
    print(f"\n| a {megabytes} MB element | .json array (s) | same rows as .jsonl (s) | ratio |\n|---|---|---|---|\n"
          f"| read_rows | {json_s:.2f} | {jsonl_s:.2f} | {json_s / jsonl_s:.1f}x |")
    return json_s / jsonl_s


def laughs(folder: Path) -> tuple[float, float]:
    lines = ["  a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for previous, name in zip("abcdefgh", "bcdefghi"):
        lines.append(f"  {name}: &{name} [" + ", ".join([f"*{previous}"] * 9) + "]")
    path = folder / "laughs.yaml"
    path.write_text("name: x\nmodel: m\nanchors:\n" + "\n".join(lines)
                    + "\nstages:\n  - name: s\n    type: sft\n    data: d.jsonl\n    trainer: {run_name: *i}\n")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    try:
        load_config(path)
        raise SystemExit("the billion-laughs file was read: it must be refused")
    except ConfigError as e:
        seconds, message = time.perf_counter() - started, str(e)
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before
    print(f"\nbillion laughs (9 levels of 9-fold aliases, 387,420,489 values): refused in {seconds:.3f} s, "
          f"peak memory +{grown:.0f} MB: {message.splitlines()[0][-90:]}")
    return seconds, grown


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2,000 tags through the regex, a 4 MB element")
    parser.add_argument("--regex-max", type=int, default=None, help="the most unclosed tags the old regex gets")
    parser.add_argument("--megabytes", type=int, default=None, help="the size of the huge .json element")
    args = parser.parse_args()
    regex_max = args.regex_max or (2_000 if args.quick else 10_000)
    megabytes = args.megabytes or (4 if args.quick else 50)
    with tempfile.TemporaryDirectory() as folder:
        laughs_s, laughs_mb = laughs(Path(folder))  # first: its peak memory is measured from here
        scan = tags(regex_max)
        ratio = big_element(Path(folder), megabytes)
    verdicts = [(f"100,000 unclosed tags scanned in <= {TARGET_SCAN} s", scan <= TARGET_SCAN),
                (f"a .json element within {TARGET_RATIO:g}x its .jsonl row", ratio <= TARGET_RATIO),
                (f"billion laughs refused in <= {TARGET_LAUGHS_S:g} s, <= {TARGET_LAUGHS_MB} MB more",
                 laughs_s <= TARGET_LAUGHS_S and laughs_mb <= TARGET_LAUGHS_MB)]
    print()
    for what, ok in verdicts:
        print(f"target: {what}: {'PASS' if ok else 'FAIL'}")
    return 0 if all(ok for _, ok in verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
