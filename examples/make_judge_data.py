"""Write examples/data/judges/: schema-true samples for the judge recipes (seeds 002 and 004).

- rm_gallery_pairwise.jsonl: RM-Gallery rows (`input` messages, `output[i].answer` {content, label},
  `metadata.preferred`, `source`); the label is in `metadata.preferred` for most rows, only in
  `is_preferred` or `preference_score` for some, and a few pairs are ties. The better response
  answers the question completely and correctly; the worse one is vague or wrong.
- rm_gallery_pointwise.jsonl: RM-Gallery rows whose outputs carry `label.helpfulness` 0..4.
- finetune.jsonl: DataEva agent-evaluation rows (`conversations` human/gpt, `metadata` {model_name,
  provider, task_id, evaluation_type clip|category|final, clip_number, category, timestamp}) for three
  models and four tasks, the gpt turn being the seed's JSON evaluation of its type.
- the variants of finetune.jsonl and their dataset_info.json, as `posttrain data variants
  finetune.jsonl examples/data/judges --split-eval` writes them (recipes/agent_judge reads them).

Nothing here is real data. Run it to regenerate; the output is deterministic.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

OUT = Path(__file__).parent / "data" / "judges"

FACTS = [
    ("What is the boiling point of water at sea level in Celsius?", "Water boils at 100 degrees Celsius at sea level.",
     "Water boils at about 50 degrees."),
    ("How many continents are there?", "There are seven continents: Africa, Antarctica, Asia, Australia, Europe, "
     "North America and South America.", "There are a few continents."),
    ("What gas do plants take in for photosynthesis?", "Plants take in carbon dioxide and release oxygen.",
     "Plants breathe in oxygen only."),
    ("Who wrote Romeo and Juliet?", "William Shakespeare wrote Romeo and Juliet, around 1595.",
     "It was written by Charles Dickens."),
    ("What is the capital of Japan?", "Tokyo is the capital of Japan.", "Japan has no capital."),
    ("How many days are in a leap year?", "A leap year has 366 days; February gets a 29th day.",
     "A leap year has 365 days."),
    ("What is 12 times 12?", "12 times 12 is 144.", "12 times 12 is 124."),
    ("Which planet is closest to the sun?", "Mercury is the planet closest to the sun.", "Mars is closest."),
    ("What is the chemical symbol for gold?", "The chemical symbol for gold is Au, from the Latin aurum.",
     "Gold is Go."),
    ("How do vaccines protect people?", "Vaccines train the immune system to recognise a pathogen, so the body "
     "responds faster and more strongly if exposed later.", "Vaccines are medicine."),
    ("Why is the sky blue?", "Air molecules scatter short blue wavelengths of sunlight more than red ones "
     "(Rayleigh scattering), so blue light reaches us from all directions.", "Because the ocean reflects it."),
    ("What is the largest ocean?", "The Pacific Ocean is the largest ocean on Earth.", "The Atlantic, probably."),
]
TIES = [
    ("Name a primary colour.", "Red is a primary colour.", "Blue is a primary colour."),
    ("Give an even number.", "Four is an even number.", "Ten is an even number."),
    ("Name a mammal.", "A dog is a mammal.", "A whale is a mammal."),
]


def _answer(content: str, label: dict) -> dict:
    return {"answer": {"role": "assistant", "content": content, "label": label}}


def pairwise_rows(rng: random.Random) -> list[dict]:
    rows = []
    for i, (query, good, bad) in enumerate(FACTS):
        good_first = rng.random() < 0.5
        first, second = (good, bad) if good_first else (bad, good)
        preferred = "A" if good_first else "B"
        style = i % 4  # 0, 1: metadata.preferred; 2: is_preferred only; 3: preference_score only
        labels = [{}, {}]
        metadata = {"preferred": preferred}
        if style == 2:
            labels = [{"is_preferred": good_first}, {"is_preferred": not good_first}]
            metadata = {}
        elif style == 3:
            labels = [{"preference_score": 0.9 if good_first else 0.2}, {"preference_score": 0.2 if good_first else 0.9}]
            metadata = {}
        rows.append({"unique_id": f"pair-{i:03d}", "input": [{"role": "user", "content": query}],
                     "output": [_answer(first, labels[0]), _answer(second, labels[1])],
                     "metadata": metadata, "source": "synthetic_helpfulness"})
    for j, (query, a, b) in enumerate(TIES):
        rows.append({"unique_id": f"tie-{j:03d}", "input": [{"role": "user", "content": query}],
                     "output": [_answer(a, {}), _answer(b, {})], "metadata": {"preferred": "tie"},
                     "source": "synthetic_helpfulness"})
    return rows


def pointwise_rows() -> list[dict]:
    rows = []
    for i, (query, good, bad) in enumerate(FACTS):
        partial = good.split(",")[0].split(";")[0].rstrip(".") + "."
        rows.append({"unique_id": f"point-{i:03d}", "input": [{"role": "user", "content": query}],
                     "output": [_answer(good, {"helpfulness": 4}), _answer(bad, {"helpfulness": i % 2}),
                                _answer(partial, {"helpfulness": 3 if partial != good else 4})],
                     "metadata": {}, "source": "synthetic_helpfulness"})
    return rows


MODELS = [("gpt-4o", "openai"), ("claude-3.5-sonnet", "anthropic"), ("qwen2.5-72b", "alibaba")]
TASKS = {
    "task_001": "Find the population of the three largest cities in Canada.",
    "task_002": "Summarise the latest release notes of a Python library.",
    "task_003": "Compute the average temperature in Paris last week from a weather site.",
    "task_004": "List the authors of a given research paper and their affiliations.",
}
CATEGORIES = ["web_search", "browser", "python_execution"]
CLIP_PROMPT = ("Evaluate one step of an agent's trajectory.\nTask: {task}\nStep {clip} used the tool {category}.\n"
               "Action: {action}\nObservation: {observation}\nRate how reasonable this step is for the task. "
               'Answer in JSON: {{"reasonableness_score": 0.0-1.0, "summary": "..."}}')
CATEGORY_PROMPT = ("Evaluate how the agent used the tool category {category} across its steps.\nTask: {task}\n"
                   "Steps: {steps}\nAnswer in JSON: {{\"scores\": {{\"tool_use_quality\", \"information_relevance\", "
                   "\"content_extraction\", \"goal_achievement\"}} each 0.0-1.0, \"summary\": \"...\", "
                   "\"reasoning\": \"...\"}}")
FINAL_PROMPT = ("Evaluate the agent's whole trajectory.\nTask: {task}\nFinal answer: {answer}\nAnswer in JSON: "
                "{{\"scores\": {{\"task_completion\", \"tool_use_quality\", \"reasoning_coherence\", "
                "\"problem_resolution\", \"answer_correctness\"}} each 0.0-1.0, \"summary\": \"...\", "
                "\"reasoning\": \"...\"}}")


def _s(rng: random.Random, quality: float) -> float:
    return round(min(1.0, max(0.0, quality + rng.uniform(-0.15, 0.15))), 2)


def agent_eval_rows(rng: random.Random) -> list[dict]:
    rows = []
    stamp = 1_735_689_600  # 2025-01-01, advanced per row
    for m, (model, provider) in enumerate(MODELS):
        quality = (0.85, 0.7, 0.55)[m]
        for t, (task_id, task) in enumerate(TASKS.items()):
            meta = {"model_name": model, "provider": provider, "task_id": task_id}
            for clip in range(1, 3):
                category = CATEGORIES[(t + clip) % len(CATEGORIES)]
                good = rng.random() < quality
                human = CLIP_PROMPT.format(task=task, clip=clip, category=category,
                                           action=f"{category}(query='{task.split()[1]} {task.split()[-1]}')",
                                           observation="relevant results returned" if good else "an error page")
                answer = {"reasonableness_score": _s(rng, 0.9 if good else 0.3),
                          "summary": "The step moves the task forward." if good else "The step did not help."}
                rows.append(_row(human, answer, {**meta, "evaluation_type": "clip", "clip_number": clip,
                                                 "category": category}, stamp := stamp + 60))
            category = CATEGORIES[t % len(CATEGORIES)]
            names = ("tool_use_quality", "information_relevance", "content_extraction", "goal_achievement")
            answer = {"scores": {k: _s(rng, quality) for k in names},
                      "summary": f"{category} was used {'well' if quality > 0.6 else 'unevenly'}.",
                      "reasoning": "Queries were specific and the results were read."}
            human = CATEGORY_PROMPT.format(category=category, task=task, steps="step 1, step 2")
            rows.append(_row(human, answer, {**meta, "evaluation_type": "category", "clip_number": None,
                                             "category": category}, stamp := stamp + 60))
            names = ("task_completion", "tool_use_quality", "reasoning_coherence", "problem_resolution",
                     "answer_correctness")
            answer = {"scores": {k: _s(rng, quality) for k in names},
                      "summary": "The task was completed." if quality > 0.6 else "The task was partly completed.",
                      "reasoning": "The final answer follows from the observations."}
            human = FINAL_PROMPT.format(task=task, answer="A short answer citing the sources found.")
            rows.append(_row(human, answer, {**meta, "evaluation_type": "final", "clip_number": None,
                                             "category": None}, stamp := stamp + 60))
    return rows


def _row(human: str, answer: dict, metadata: dict, stamp: int) -> dict:
    return {"conversations": [{"from": "human", "value": human}, {"from": "gpt", "value": json.dumps(answer)}],
            "metadata": {**metadata, "timestamp": stamp}}


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def main() -> None:
    from posttrain.data.variants import write_variants

    rng = random.Random(4)
    OUT.mkdir(parents=True, exist_ok=True)
    _write_jsonl(OUT / "rm_gallery_pairwise.jsonl", pairwise_rows(rng))
    _write_jsonl(OUT / "rm_gallery_pointwise.jsonl", pointwise_rows())
    _write_jsonl(OUT / "finetune.jsonl", agent_eval_rows(rng))
    write_variants(OUT / "finetune.jsonl", OUT, split_eval=True)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
