"""Reward throughput: sample_size_estimation scores/s and study-search queries/s on a 100,000-abstract index.

Why it exists: GRPO scores every completion of every step, and VERL calls the
same functions from many workers; a slow reward is a slow run. Targets
(issue: RL with verifiable rewards): sample_size_estimation >= 100,000
scores/s; study search on a local 100,000-abstract index >= 200 queries/s on
one core. The corpus and the completions are generated here, seeded.

    .venv/bin/python bench/rewards_throughput.py            # 100,000 abstracts
    .venv/bin/python bench/rewards_throughput.py --docs 20000
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

from posttrain.rewards import search
from posttrain.rewards.clinical import sample_size_estimation, study_search
from posttrain.rewards.search.index import build_index

TARGET_SCORES, TARGET_QUERIES = 100_000, 200
TERMS = ("heart failure statin aspirin stroke diabetes insulin metformin cancer chemotherapy radiotherapy asthma "
         "copd hypertension placebo randomized cohort trial children adults elderly pregnancy vaccine influenza "
         "covid depression anxiety sleep obesity exercise diet surgery anesthesia pain opioid dementia").split()


def completions(n: int, rng: random.Random) -> list[tuple[str, dict]]:
    out = []
    for _ in range(n):
        target = rng.randint(20, 2000)
        guess = int(target * rng.uniform(0.5, 1.5))
        text = rng.choice([f"<think>{rng.randint(2, 6)} arms, so about {guess}.</think><answer>{guess:,}</answer>",
                           f"<answer>{guess}</answer>", "I am not sure.", "<think>x</think><answer>n/a</answer>"])
        out.append((text, {"target": target}))
    return out


def corpus(path: Path, n: int, rng: random.Random) -> None:
    """Abstracts of ~150 words drawn Zipf-like from 20,000 filler words, each with a few topic terms, so a
    topic term is in a few percent of the corpus, as in PubMed (a flat vocabulary would match half of it)."""
    filler = [f"w{i}" for i in range(20_000)]
    weights = [1 / (rank + 1) for rank in range(len(filler))]
    topic_weights = [1 / (rank + 1) ** 0.5 for rank in range(len(TERMS))]
    with open(path, "w") as f:
        for pmid in range(1, n + 1):
            topics = rng.choices(TERMS, weights=topic_weights, k=4)
            words = rng.choices(filler, weights=weights, k=150) + topics
            rng.shuffle(words)
            f.write(json.dumps({"pmid": str(pmid), "title": " ".join(topics[:2] + words[:8]),
                                "abstract": " ".join(words[8:]), "mesh": topics[:2]}) + "\n")


def queries(n: int, rng: random.Random) -> list[str]:
    out = []
    for _ in range(n):
        a, b, c, d = rng.sample(TERMS, 4)
        out.append(rng.choice([f"({a}[tiab] OR {b}[tiab]) AND {c}", f'"{a} {b}" AND {c}*[ti]',
                               f"({a} AND {b}) NOT {c}", f"{a}[mh] AND ({b} OR {c} OR {d})"]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--scores", type=int, default=200_000)
    parser.add_argument("--queries", type=int, default=1_000)
    args = parser.parse_args()
    rng = random.Random(42)

    cases = completions(args.scores, rng)
    started = time.perf_counter()
    for text, truth in cases:
        sample_size_estimation(text, truth)
    scores_per_s = len(cases) / (time.perf_counter() - started)

    with tempfile.TemporaryDirectory() as folder:
        corpus_path, index = Path(folder) / "corpus.jsonl", Path(folder) / "index.db"
        corpus(corpus_path, args.docs, rng)
        started = time.perf_counter()
        build_index(corpus_path, index, progress=False)
        build_s = time.perf_counter() - started
        search.configure(index=index)
        texts = queries(args.queries, rng)
        truth = {"relevant_pmids": [str(rng.randint(1, args.docs)) for _ in range(20)]}
        search.search(texts[0])  # open the index outside the timing
        started = time.perf_counter()
        results = [study_search(f"<answer>{q}</answer>", truth) for q in texts]
        queries_per_s = len(texts) / (time.perf_counter() - started)
        hits = sum(len(search.search(q)) for q in texts[:50]) / 50

    print(f"sample_size_estimation: {scores_per_s:,.0f} scores/s over {len(cases):,} completions "
          f"(target >= {TARGET_SCORES:,})")
    print(f"study_search: {queries_per_s:,.0f} queries/s over {len(texts):,} queries on {args.docs:,} abstracts, "
          f"one thread (target >= {TARGET_QUERIES}); index built in {build_s:.1f} s; "
          f"{hits:.0f} hits per query on average; mean reward {sum(results) / len(results):.3f}")
    ok = scores_per_s >= TARGET_SCORES and queries_per_s >= TARGET_QUERIES
    print(("PASS" if ok else "FAIL") + ": both targets met" * ok)


if __name__ == "__main__":
    main()
