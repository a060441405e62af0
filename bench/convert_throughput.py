"""Data conversion throughput: `posttrain data convert` against the datasets library's path, in one run.

Why it exists: a user converts and checks whole datasets, often millions of
records, many times while preparing a run. posttrain's converter streams
(one record in memory at a time) and checks every record and every field it
does not read (formats/fields.py). This script measures what that costs, on
seeded synthetic files of each input format:

- alpaca (instruction/input/output, some with history) → openai jsonl;
- sharegpt (conversations of 2-6 turns) → openai jsonl;
- openai (messages) → sharegpt jsonl.

Each conversion runs in a process of its own, which reports its wall time and
its peak resident memory (getrusage). The peer is what a user of the datasets
library writes for the same job: `Dataset.from_json`, `map` to the target
shape, `to_json` (its Arrow cache in the work dir). It checks nothing, so it
is the speed of reading and writing alone.

The data doctor (`posttrain data check FILE --model DIR`: schema, duplicates
and token lengths of every record) is timed on the openai file's first
records, in records/s.

Targets: 1 M alpaca records converted in <= 20 s with <= 500 MB peak memory;
the data doctor >= 20,000 records/s. The script exits 1 when one is missed.

    .venv/bin/python bench/convert_throughput.py            # 1,000,000 records per format (~3 min)
    .venv/bin/python bench/convert_throughput.py --quick    # 20,000 records, a smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TIME_TARGET, MEMORY_TARGET_MB, DOCTOR_TARGET = 20.0, 500.0, 20_000
WORDS = ("trial", "dose", "placebo", "arm", "cohort", "endpoint", "patient", "blood", "pressure", "heart", "rate",
         "protocol", "randomised", "outcome", "adverse", "event", "baseline", "follow-up", "week", "month")

# One child process per measurement: it prints {"seconds", "peak_mb", "count"} as its last line.
POSTTRAIN_CHILD = """
import json, resource, sys, time
from posttrain.data import convert_pool
from posttrain.data.convert import convert
requested = None if sys.argv[5] == "auto" else int(sys.argv[5])
workers = convert_pool.workers_for(sys.argv[1], sys.argv[2], requested)
began = time.perf_counter()
count = convert(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], progress=False, workers=requested)
seconds = time.perf_counter() - began
parent = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
worker = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024 if workers > 1 else 0  # the largest
print(json.dumps({"seconds": seconds, "count": count, "workers": workers, "peak_mb": parent + workers * worker}))
"""
DATASETS_CHILD = """
import json, resource, sys, time
import datasets
datasets.disable_progress_bars()
src, out, fmt, to, cache, procs = sys.argv[1:7]
procs = int(procs) if int(procs) > 1 else None
def alpaca(row):
    turns = [m for pair in row["history"] or [] for m in ({"role": "user", "content": pair[0]},
                                                         {"role": "assistant", "content": pair[1]})]
    prompt = "\\n".join(part for part in (row["instruction"], row["input"]) if part)
    return {"messages": turns + [{"role": "user", "content": prompt}, {"role": "assistant", "content": row["output"]}]}
NAMES = {"human": "user", "gpt": "assistant", "system": "system"}
def sharegpt(row):
    return {"messages": [{"role": NAMES[t["from"]], "content": t["value"]} for t in row["conversations"]]}
BACK = {"user": "human", "assistant": "gpt", "system": "system"}
def openai(row):
    return {"conversations": [{"from": BACK[m["role"]], "value": m["content"]} for m in row["messages"]]}
began = time.perf_counter()
data = datasets.Dataset.from_json(src, cache_dir=cache, num_proc=procs)
data = data.map({"alpaca": alpaca, "sharegpt": sharegpt, "openai": openai}[fmt], remove_columns=data.column_names,
                num_proc=procs)
data.to_json(out, lines=True, force_ascii=False, num_proc=procs)
seconds = time.perf_counter() - began
workers = procs or 0  # worker processes beside the parent
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
peak += workers * resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
print(json.dumps({"seconds": seconds, "count": len(data), "peak_mb": peak}))
"""
DOCTOR_CHILD = """
import json, sys, time
from posttrain.data.check import check
began = time.perf_counter()
report = check(sys.argv[1], fmt="openai", model=sys.argv[2], max_length=512)
seconds = time.perf_counter() - began
print(json.dumps({"seconds": seconds, "count": report.stats.get("records", 0), "valid": report.stats.get("valid")}))
"""
# The floor under the doctor: the same records' texts, rendered by the chat template beforehand, through the Rust
# tokenizer's encode_batch alone (every core), with nothing read, checked or rendered while it is timed.
TOKENIZER_CHILD = """
import json, sys, time
from posttrain.data.formats import load_conversations
from posttrain.models.loading import load_tokenizer
tokenizer = load_tokenizer(sys.argv[2])
texts = tokenizer.apply_chat_template([r["messages"] for _, r in load_conversations(sys.argv[1], "openai")],
                                      tokenize=False)
began = time.perf_counter()
encoded = tokenizer.backend_tokenizer.encode_batch(texts, add_special_tokens=False)
print(json.dumps({"seconds": time.perf_counter() - began, "count": len(encoded)}))
"""


def sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."


def write_inputs(work: Path, n: int, seed: int = 0) -> dict[str, Path]:
    """Seeded files of each format, `n` records each."""
    rng = random.Random(seed)
    paths = {fmt: work / f"{fmt}.jsonl" for fmt in ("alpaca", "sharegpt", "openai")}
    with open(paths["alpaca"], "w", encoding="utf-8") as alpaca, \
            open(paths["sharegpt"], "w", encoding="utf-8") as sharegpt, \
            open(paths["openai"], "w", encoding="utf-8") as openai:
        for i in range(n):
            history = [[sentence(rng, 6), sentence(rng, 10)]] if i % 4 == 0 else []
            alpaca.write(json.dumps({"instruction": sentence(rng, 8), "input": sentence(rng, 4) if i % 2 else "",
                                     "output": sentence(rng, 16), "history": history}) + "\n")
            turns = [sentence(rng, 8 if j % 2 == 0 else 14) for j in range(2 * rng.randint(1, 3))]
            sharegpt.write(json.dumps({"conversations": [{"from": "human" if j % 2 == 0 else "gpt", "value": t}
                                                         for j, t in enumerate(turns)]}) + "\n")
            openai.write(json.dumps({"messages": [{"role": "user" if j % 2 == 0 else "assistant", "content": t}
                                                  for j, t in enumerate(turns)]}) + "\n")
    return paths


def child(code: str, *args) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, env=env,
                          cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"a measurement failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, help="records per format (default 1,000,000)")
    parser.add_argument("--doctor-records", type=int, help="records the data doctor checks (default 50,000)")
    parser.add_argument("--quick", action="store_true", help="smoke test: 20,000 records, 5,000 for the doctor")
    parser.add_argument("--workdir", type=Path, help="where the files go (default: a new temp dir)")
    opts = parser.parse_args()
    n = opts.records or (20_000 if opts.quick else 1_000_000)
    doctor_n = opts.doctor_records or (5_000 if opts.quick else 50_000)
    work = opts.workdir or Path(tempfile.mkdtemp(prefix="convert-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    paths = write_inputs(work, n)
    sizes = {fmt: path.stat().st_size / 1e6 for fmt, path in paths.items()}

    print(f"## Data conversion: posttrain data convert vs datasets (from_json, map, to_json), {n:,} records each")
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPU cores, python {platform.python_version()}")
    print("(processes: posttrain's default, every core for a .jsonl file over 64 MB, or --workers 1; datasets gets "
          "the same count as num_proc. Peak MB: every process's, the parent's plus each worker's)")
    print("| conversion | MB in | processes | posttrain s | posttrain records/s | posttrain peak MB | datasets s | "
          "datasets peak MB | datasets / posttrain time |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    results = {}
    for fmt, to, workers in (("alpaca", "openai", "auto"), ("alpaca", "openai", "1"), ("sharegpt", "openai", "auto"),
                             ("openai", "sharegpt", "auto")):
        ours = child(POSTTRAIN_CHILD, paths[fmt], work / f"{fmt}-posttrain.jsonl", fmt, to, workers)
        # each run gets a cache of its own: a second one would read the first one's Arrow files
        theirs = child(DATASETS_CHILD, paths[fmt], work / f"{fmt}-datasets.jsonl", fmt, to,
                       work / f"hf-cache-{fmt}-{workers}", ours["workers"])
        if ours["count"] != n or theirs["count"] != n:
            raise SystemExit(f"{fmt}: {ours['count']} and {theirs['count']} records written, expected {n}")
        results.setdefault(fmt, ours)  # the default's figure: what a user gets
        print(f"| {fmt} → {to} | {sizes[fmt]:.0f} | {ours['workers']} | {ours['seconds']:.1f} | "
              f"{n / ours['seconds']:,.0f} | {ours['peak_mb']:.0f} | {theirs['seconds']:.1f} | "
              f"{theirs['peak_mb']:.0f} | {theirs['seconds'] / ours['seconds']:.2f} |", flush=True)

    from posttrain.models.tiny import init_model

    sample = work / "doctor.jsonl"
    with open(paths["openai"], encoding="utf-8") as src, open(sample, "w", encoding="utf-8") as out:
        for _, line in zip(range(doctor_n), src):
            out.write(line)
    model = init_model(work / "model", [sample], size="tiny", seed=0)  # its tokenizer learned on the sample
    doctor = child(DOCTOR_CHILD, sample, model)
    rate = doctor["count"] / doctor["seconds"]
    print(f"\ndata doctor (posttrain data check --model, token lengths included): {doctor['count']:,} records in "
          f"{doctor['seconds']:.1f} s, {rate:,.0f} records/s")
    floor = child(TOKENIZER_CHILD, sample, model)
    print(f"the tokenizer alone on the same records' rendered texts (tokenizers' encode_batch, every core): "
          f"{floor['count'] / floor['seconds']:,.0f} records/s")

    scale = 1_000_000 / n  # the targets are for 1 M records; a smaller run is scaled, and says so
    seconds, peak = results["alpaca"]["seconds"] * scale, results["alpaca"]["peak_mb"]
    ok_time, ok_memory, ok_doctor = seconds <= TIME_TARGET, peak <= MEMORY_TARGET_MB, rate >= DOCTOR_TARGET
    scaled = "" if n == 1_000_000 else f" (scaled from {n:,} records)"
    print(f"\ntarget: 1 M alpaca records in <= {TIME_TARGET:.0f} s{scaled}: {seconds:.1f} s "
          f"{'PASS' if ok_time else 'FAIL'}")
    print(f"target: peak memory <= {MEMORY_TARGET_MB:.0f} MB: {peak:.0f} MB {'PASS' if ok_memory else 'FAIL'}")
    print(f"target: data doctor >= {DOCTOR_TARGET:,} records/s: {rate:,.0f} {'PASS' if ok_doctor else 'FAIL'}")
    print(f"work dir: {work}")
    raise SystemExit(0 if ok_time and ok_memory and ok_doctor else 1)


if __name__ == "__main__":
    main()
