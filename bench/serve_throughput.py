"""Serving throughput: `posttrain serve` batching concurrent requests against the same server answering one at a
time (`--max-batch-size 1`, what it did before it batched), in one run.

Why it exists: several users (or an evaluation harness, or an agent fanning
out calls) talk to one server at once. A server that generates for one
request at a time makes them wait in a line; one that batches answers them
together for little more than the cost of one. This script measures what
batching buys, as a client sees it:

- each side is a real `posttrain serve` process on 127.0.0.1 (a free port),
  serving the same ~2 M-parameter model (`posttrain.models.tiny`, size
  "small", weights spread so that answers differ from prompt to prompt);
- 1, 4 and 16 clients, each a thread with its own `openai.OpenAI` client,
  each sending a fixed number of chat requests one after the other (bounded
  loops, greedy decoding, `max_tokens` 48; every fourth client sends short
  requests of 8 tokens, every other client streams);
- aggregate completion tokens/s (the tokens the server reported in `usage`,
  or counted from the stream, over the wall time of the level), and the median
  and p95 latency of a request, of all and of the short ones.

Every prompt is sent to both servers, and the script checks that each greedy
answer is the same from both: batching must not change an answer.

Targets: at 16 clients, >= 3x the one-at-a-time server's aggregate tokens/s,
and a short request's p95 latency no worse than there. The script exits 1 when
one is missed, or when an answer differs.

    .venv/bin/python bench/serve_throughput.py            # 1, 4 and 16 clients (~1 min)
    .venv/bin/python bench/serve_throughput.py --quick    # smoke test: 1 and 4 clients, short answers
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from machine import cpu_seconds

ROOT = Path(__file__).resolve().parent.parent
SPEEDUP_TARGET = 3.0
WORDS = ("trial", "dose", "placebo", "arm", "cohort", "endpoint", "patient", "blood", "pressure", "heart", "rate",
         "protocol", "randomised", "outcome", "adverse", "event", "baseline", "week", "month", "risk")
NAME = "bench-model"


def build_model(work: Path) -> Path:
    """The tiny model with its weights spread (a fresh one answers every prompt alike), so answers can differ."""
    from posttrain.models.tiny import init_model, with_spread_weights

    rng = random.Random(0)
    corpus = work / "corpus.txt"
    corpus.write_text("\n".join(" ".join(rng.choice(WORDS) for _ in range(12)) for _ in range(2000)))
    base = init_model(work / "base", [corpus], size="small", seed=0)
    return with_spread_weights(base, work / "model", std=0.1)


class Server:
    """`posttrain serve` in a process of its own, stopped on exit."""

    def __init__(self, model: Path, max_batch_size: int, threads: int | None):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        if threads:
            env["OMP_NUM_THREADS"] = str(threads)
        posttrain = Path(sys.executable).parent / "posttrain"
        command = [str(posttrain)] if posttrain.exists() else [sys.executable, "-m", "posttrain.cli"]
        self.process = subprocess.Popen(
            command + ["serve", "--model", str(model), "--port", str(self.port), "--served-model-name", NAME,
                       "--max-batch-size", str(max_batch_size)], env=env, cwd=ROOT,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "Server":
        import urllib.request

        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"the server did not start:\n{self.process.stderr.read()[-3000:]}")
            try:
                urllib.request.urlopen(f"{self.url}/health", timeout=1).read()
                return self
            except OSError:
                time.sleep(0.2)
        raise SystemExit("the server did not answer /health in 120 s")

    def __exit__(self, *exc) -> None:
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()


def prompts(clients: int, per_client: int, seed: int) -> list[list[str]]:
    rng = random.Random(seed)
    return [[" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 20))) for _ in range(per_client)]
            for _ in range(clients)]


def short(client: int) -> bool:
    return client % 4 == 3


def run_level(url: str, questions: list[list[str]], long_tokens: int, short_tokens: int) -> dict:
    """Every client asks its questions one after the other, all clients at once: answers, latencies, tokens/s."""
    import openai

    results: dict[tuple[int, int], tuple[str, int, float]] = {}
    start_together = threading.Barrier(len(questions))

    def client(i: int) -> None:
        api = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=600)
        max_tokens = short_tokens if short(i) else long_tokens
        start_together.wait()
        for j, question in enumerate(questions[i]):
            began = time.perf_counter()
            messages = [{"role": "user", "content": question}]
            if i % 2:
                text, tokens = "", 0
                for part in api.chat.completions.create(model=NAME, messages=messages, max_tokens=max_tokens,
                                                        temperature=0, stream=True,
                                                        stream_options={"include_usage": True}):
                    if part.choices:
                        text += part.choices[0].delta.content or ""
                    if part.usage:
                        tokens = part.usage.completion_tokens
            else:
                answer = api.chat.completions.create(model=NAME, messages=messages, max_tokens=max_tokens,
                                                     temperature=0)
                text, tokens = answer.choices[0].message.content, answer.usage.completion_tokens
            results[i, j] = (text, tokens, time.perf_counter() - began)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(questions))]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - began
    if len(results) != sum(map(len, questions)):
        raise SystemExit(f"{sum(map(len, questions)) - len(results)} requests got no answer")
    latencies = [latency for _, _, latency in results.values()]
    shorts = [latency for (i, _), (_, _, latency) in results.items() if short(i)]
    return {"answers": {key: text for key, (text, _, _) in results.items()},
            "tokens": sum(tokens for _, tokens, _ in results.values()), "wall": wall,
            "median": statistics.median(latencies), "p95": percentile(latencies, 95),
            "short_p95": percentile(shorts, 95) if shorts else float("nan")}


def seconds(value: float) -> str:
    return "-" if value != value else f"{value:.2f}"  # NaN: no short request at this level


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke test: 1 and 4 clients, 12-token answers")
    parser.add_argument("--threads", type=int, help="torch threads of each server (default: torch's, every core)")
    parser.add_argument("--workdir", type=Path, help="where the model goes (default: a new temp dir)")
    opts = parser.parse_args()
    levels = {1: 2, 4: 2} if opts.quick else {1: 6, 4: 4, 16: 6}
    long_tokens, short_tokens = (12, 4) if opts.quick else (48, 8)
    work = opts.workdir or Path(tempfile.mkdtemp(prefix="serve-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    model = build_model(work)

    print("## Serving: posttrain serve batching (--max-batch-size 16) vs one at a time (--max-batch-size 1)")
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPU cores, python {platform.python_version()}; "
          f"answers of {long_tokens} tokens, every fourth client's of {short_tokens}")
    sides = {"batching": 16, "one at a time": 1}
    measured: dict[str, dict[int, dict]] = {side: {} for side in sides}
    busy, clients_cpu = 0.0, 0.0
    for side, batch in sides.items():
        with Server(model, batch, opts.threads) as server:
            run_level(server.url, prompts(1, 1, seed=99), long_tokens, short_tokens)  # warm-up
            for clients, per_client in levels.items():
                wall0, machine0, own0 = cpu_seconds()
                measured[side][clients] = run_level(server.url, prompts(clients, per_client, seed=clients),
                                                    long_tokens, short_tokens)
                wall1, machine1, own1 = cpu_seconds()
                busy = max(busy, (machine1 - machine0) / (wall1 - wall0))
                clients_cpu = max(clients_cpu, (own1 - own0) / (wall1 - wall0))

    print("| clients | requests | side | tokens/s | median latency s | p95 latency s | short p95 s |")
    print("|---:|---:|---|---:|---:|---:|---:|")
    for clients, per_client in levels.items():
        for side in sides:
            m = measured[side][clients]
            print(f"| {clients} | {clients * per_client} | {side} | {m['tokens'] / m['wall']:.0f} | "
                  f"{m['median']:.2f} | {m['p95']:.2f} | {seconds(m['short_p95'])} |")
    print(f"\nmachine CPU busy during a level: up to {busy:.1f} of {os.cpu_count()} cores, the clients' share up "
          f"to {clients_cpu:.1f} (on a quiet machine the rest is the server)")

    differing = [(clients, key) for clients in levels for key, text in measured["batching"][clients]["answers"].items()
                 if text != measured["one at a time"][clients]["answers"][key]]
    total = sum(clients * per for clients, per in levels.items())
    print(f"greedy answers equal on both servers: {total - len(differing)}/{total}")
    top = max(levels)
    ours, theirs = measured["batching"][top], measured["one at a time"][top]
    speedup = (ours["tokens"] / ours["wall"]) / (theirs["tokens"] / theirs["wall"])
    ok_speed = speedup >= SPEEDUP_TARGET
    ok_latency = not ours["short_p95"] > theirs["short_p95"]
    print(f"target: batching >= {SPEEDUP_TARGET:.0f}x the tokens/s at {top} clients: {speedup:.2f}x "
          f"{'PASS' if ok_speed else 'FAIL'}")
    print(f"target: a short request's p95 latency at {top} clients no worse: {ours['short_p95']:.2f} s vs "
          f"{theirs['short_p95']:.2f} s {'PASS' if ok_latency else 'FAIL'}")
    raise SystemExit(0 if ok_speed and ok_latency and not differing else 1)


if __name__ == "__main__":
    main()
