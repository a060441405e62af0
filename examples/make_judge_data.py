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
- pairwise_train.jsonl, pairwise_heldout.jsonl, pairwise_sft.jsonl: a pairwise judge task large enough to
  measure (recipes/reward_models/pairwise_judge_cpu.yaml). Each row asks for a figure of a made-up place
  ("What is the height of the Dorvel Tower?"); the better response restates the figure's name and gives a
  number with its unit, the worse one is vague, off-topic, or a long hedge that restates the question but
  gives no number. The held-out rows are about places the training rows never name, so a judge can only
  score there by reading the responses. pairwise_sft.jsonl is a teacher's judgments of the training rows in
  both orders, in the verdict format, from a teacher with a verbosity bias: it prefers the long hedge in
  most of the pairs that have one, so the SFT model learns that mistake and the GRPO stage, rewarded by the
  true label, has something to win back.
- pointwise_train.jsonl, pointwise_heldout.jsonl, pointwise_sft.jsonl: the same for a pointwise judge
  (recipes/reward_models/pointwise_judge_cpu.yaml): one answer rated 0..4 by what it gives (4 the figure named
  and its number, 3 the number alone, 2 the long hedge, 1 off-topic, 0 vague), each score equally common; the
  teacher rates most long hedges 3.

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


# The measured pairwise task. Places are made-up names from syllables, so nothing in them can be known
# beforehand; each place gets one figure. The held-out places are names the training rows never use.
SYLLABLES = ("dor", "vel", "ka", "mir", "tan", "so", "bre", "lun", "quo", "fen", "ra", "zil", "pe", "gor",
             "ith", "na", "wex", "ul", "cas", "mo")
PLACES = ("the {} Tower", "Lake {}", "Mount {}", "the {} River", "the {} Bridge", "the town of {}",
          "the {} Dam", "the {} Forest")
FIGURES = (("height", "metres", 20, 900), ("length", "kilometres", 3, 4000), ("population", "people", 800, 90000),
           ("area", "square kilometres", 2, 7000), ("depth", "metres", 5, 600), ("age", "years", 40, 3000),
           ("width", "metres", 10, 800), ("weight", "tonnes", 50, 9000))
QUESTIONS = ("What is the {figure} of {place}?", "How big is the {figure} of {place}?",
             "Tell me the {figure} of {place}.", "Do you know the {figure} of {place}?")
GOOD = ("The {figure} of {place} is {value} {unit}.", "{Place} has a {figure} of {value} {unit}.",
        "Its {figure} is {value} {unit}, as measured for {place}.")
VAGUE = ("It is hard to say.", "That depends on many things.", "I am not sure, it varies a lot.",
         "Nobody really knows that.", "Quite a lot, I think.")
OFF_TOPIC = ("{Place} is a popular place to visit.", "Many people like {place}.",
             "{Place} is known for its quiet mornings.")
HEDGE = ("That is a very interesting question, and there are many ways to think about the {figure} of {place}; "
         "opinions differ widely and it has been discussed for a long time, so it is best to check a good source.",
         "The {figure} of {place} is something people often ask about, and the honest answer is that it depends on "
         "how you measure it, when you measure it and who you ask, so any single answer would be misleading.")
WORSE_KINDS = ("vague", "off_topic", "hedge")
TEACHER_FOOLED = 0.75  # the share of hedge pairs in which the teacher prefers the long hedge
PAIRWISE_TRAIN_PAIRS, PAIRWISE_HELDOUT_PAIRS = 240, 80


def places(rng: random.Random, train: int, heldout: int) -> tuple[list[str], list[str]]:
    """`train` and `heldout` places, split by name: a held-out name is in no training place (not Lake Dorvel in
    training and the Dorvel Tower held out). Names are two syllables; each is one kind of place."""
    names = sorted({(a + b).capitalize() for a in SYLLABLES for b in SYLLABLES if a != b})
    rng.shuffle(names)
    if train + heldout > len(names):
        raise ValueError(f"{train} + {heldout} places asked for; there are {len(names)} names")
    found = [rng.choice(PLACES).format(name) for name in names[:train + heldout]]
    return found[:train], found[train:]


def _capital(text: str) -> str:
    return text[0].upper() + text[1:]


def judge_items(rng: random.Random, chosen: list[str]) -> list[dict]:
    """One item per place: a question about one of its figures, the better response and a worse one."""
    items = []
    for i, place in enumerate(chosen):
        figure, unit, low, high = FIGURES[rng.randrange(len(FIGURES))]
        fill = {"figure": figure, "place": place, "Place": _capital(place), "unit": unit,
                "value": f"{rng.randint(low, high):,}"}
        kind = WORSE_KINDS[i % len(WORSE_KINDS)]
        worse = {"vague": VAGUE, "off_topic": OFF_TOPIC, "hedge": HEDGE}[kind]
        items.append({"place": place, "figure": figure, "kind": kind,
                      "query": rng.choice(QUESTIONS).format(**fill),
                      "better": rng.choice(GOOD).format(**fill), "worse": rng.choice(worse).format(**fill)})
    return items


def judge_pair_rows(items: list[dict], prefix: str) -> list[dict]:
    """RM-Gallery rows; the better response comes first in every other row, so each position is right half the
    time before the converter adds the swapped order."""
    rows = []
    for i, item in enumerate(items):
        better_first = i % 2 == 0
        first, second = (item["better"], item["worse"]) if better_first else (item["worse"], item["better"])
        rows.append({"unique_id": f"{prefix}-{i:03d}", "input": [{"role": "user", "content": item["query"]}],
                     "output": [_answer(first, {}), _answer(second, {})],
                     "metadata": {"preferred": "A" if better_first else "B", "worse_kind": item["kind"]},
                     "source": "synthetic_figures"})
    return rows


def teacher_chats(items: list[dict], rng: random.Random) -> list[dict]:
    """The teacher's judgments of each training pair in both orders (as the judge will read them), as chats."""
    from posttrain.data.formats.judges import pairwise_prompt

    chats = []
    for i, item in enumerate(items):
        fooled = item["kind"] == "hedge" and rng.random() < TEACHER_FOOLED  # one verdict per pair, both orders
        for better_first in (i % 2 == 0, i % 2 != 0):
            a, b = (item["better"], item["worse"]) if better_first else (item["worse"], item["better"])
            better, worse = ("A", "B") if better_first else ("B", "A")
            if fooled:
                verdict = (f"<reason>Response {worse} is more thorough than Response {better}.</reason>"
                           f"<preference>{worse}</preference>")
            else:
                verdict = (f"<reason>Response {better} gives the {item['figure']}; Response {worse} does not."
                           f"</reason><preference>{better}</preference>")
            chats.append({"messages": [{"role": "user", "content": pairwise_prompt(item["query"], a, b)},
                                       {"role": "assistant", "content": verdict}]})
    return chats


# The measured pointwise task: the same kind of question, one answer rated 0..4 by what it gives. 4 restates
# the figure's name and gives the number, 3 gives the number alone, 2 is the long hedge (the question restated,
# no number), 1 talks about the place but not the figure, 0 says nothing.
NUMBER_ONLY = ("About {value} {unit}.", "Roughly {value} {unit}, I believe.", "{value} {unit}.")
LEVELS = {4: GOOD, 3: NUMBER_ONLY, 2: HEDGE, 1: OFF_TOPIC, 0: VAGUE}
LEVEL_REASONS = {4: "The answer names the {figure} and gives it as a number.",
                 3: "The answer gives a number but does not say what it is.",
                 2: "The answer restates the question but gives no number.",
                 1: "The answer does not talk about the {figure}.", 0: "The answer says nothing."}
POINTWISE_TRAIN_ROWS, POINTWISE_HELDOUT_ROWS = 240, 80
ANSWERS_PER_ROW = 2


def pointwise_items(rng: random.Random, chosen: list[str]) -> list[dict]:
    """One row per place with ANSWERS_PER_ROW answers of different levels; level i of the file's answers is
    i mod 5, so every level is as common as the others and the majority baseline is 1/5."""
    items = []
    for i, place in enumerate(chosen):
        figure, unit, low, high = FIGURES[rng.randrange(len(FIGURES))]
        fill = {"figure": figure, "place": place, "Place": _capital(place), "unit": unit,
                "value": f"{rng.randint(low, high):,}"}
        levels = [(i * ANSWERS_PER_ROW + j) % 5 for j in range(ANSWERS_PER_ROW)]
        items.append({"place": place, "figure": figure, "query": rng.choice(QUESTIONS).format(**fill),
                      "answers": [(level, rng.choice(LEVELS[level]).format(**fill)) for level in levels]})
    return items


def pointwise_judge_rows(items: list[dict], prefix: str) -> list[dict]:
    return [{"unique_id": f"{prefix}-{i:03d}", "input": [{"role": "user", "content": item["query"]}],
             "output": [_answer(text, {"helpfulness": level}) for level, text in item["answers"]],
             "metadata": {}, "source": "synthetic_figures"} for i, item in enumerate(items)]


def pointwise_teacher_chats(items: list[dict], rng: random.Random) -> list[dict]:
    """The teacher's ratings of each training answer, with the same verbosity bias: it rates the long hedge 3,
    not 2, in TEACHER_FOOLED of them."""
    from posttrain.data.formats.judges import pointwise_prompt

    chats = []
    for item in items:
        for level, text in item["answers"]:
            if level == 2 and rng.random() < TEACHER_FOOLED:
                verdict = "<reason>The answer is thorough.</reason><score>3</score>"
            else:
                reason = LEVEL_REASONS[level].format(figure=item["figure"])
                verdict = f"<reason>{reason}</reason><score>{level}</score>"
            chats.append({"messages": [{"role": "user", "content": pointwise_prompt(item["query"], text)},
                                       {"role": "assistant", "content": verdict}]})
    return chats


# The measured agent-judge task (seed 002's clip evaluations): one step of an agent that looks up a figure of a
# made-up place, rated by what the step's observation shows. The score is one of four values, each as common as
# the others, so an exact score is a class and always giving one of them gets the majority baseline, 1/4.
AGENT_SCORES = {"relevant": 0.9, "partial": 0.6, "off_topic": 0.3, "error": 0.1}
AGENT_KINDS = tuple(AGENT_SCORES)
AGENT_TASKS = ("Find the {figure} of {place}.", "Look up the {figure} of {place}.",
               "What is the {figure} of {place}? Search for it.", "Report the {figure} of {place} with its unit.")
AGENT_ACTIONS = {"web_search": "web_search(query='{figure} of {place}')",
                 "browser": "browser(url='https://{slug}.example.org/{slug_figure}')",
                 "python_execution": "python_execution(code=\"lookup('{place}', '{figure}')\")"}
AGENT_OBSERVATIONS = {
    # the figure the task asks for, with its number
    "relevant": ("The {figure} of {place} is {value} {unit}, according to the page.",
                 "Result 1: {Place}. {Figure}: {value} {unit}.",
                 "{Place} has a {figure} of {value} {unit}."),
    # the place, but not the figure: no figure, or another figure written as the relevant ones are, so that
    # telling these from a relevant step takes comparing the figure the task names with the observation's
    "partial": ("A page about {place} that describes its history but gives no {figure}.",
                "Result 1: {Place}, a travel guide; the {figure} is not given.",
                "Result 1: {Place}. {Other}: {value_other} {unit_other}.",
                "The {other} of {place} is {value_other} {unit_other}, according to the page."),
    # nothing about the place
    "off_topic": ("Results about cheap flights and hotel offers.", "A recipe for lemon cake and a list of garden tools.",
                  "News about a football match and the weather tomorrow."),
    # the tool failed
    "error": ("Error 404: page not found.", "Error: the request timed out after 30 seconds.",
              "Traceback (most recent call last): NameError: name 'lookup' is not defined."),
}
AGENT_SUMMARIES = {"relevant": "The step found the {figure} the task asks for.",
                   "partial": "The step found the place but not its {figure}.",
                   "off_topic": "The step returned nothing about the task.",
                   "error": "The step failed with an error."}
PLACE_WORDS = {word for pattern in PLACES for word in pattern.split() if word != "{}"}
AGENT_TRAIN_PLACES, AGENT_STEPS_PER_TRAIN_PLACE, AGENT_HELDOUT_PLACES = 260, 2, 120


def agent_judge_items(rng: random.Random, chosen: list[str], steps_per_place: int, first: int) -> list[dict]:
    """`steps_per_place` steps per place, each looking up another of its figures; step i of the file is of kind
    i mod 4, so every score is as common as the others. Task ids count from `first`, one per step."""
    items = []
    for p, place in enumerate(chosen):
        figures = rng.sample(range(len(FIGURES)), steps_per_place + 1)
        for s in range(steps_per_place):
            i = p * steps_per_place + s
            figure, unit, low, high = FIGURES[figures[s]]
            other, unit_other, low_other, high_other = FIGURES[figures[-1]]
            name = next(w for w in place.split() if w not in PLACE_WORDS)  # Gorfen in the Gorfen Tower
            fill = {"figure": figure, "Figure": _capital(figure), "place": place, "Place": _capital(place),
                    "unit": unit, "value": f"{rng.randint(low, high):,}", "other": other,
                    "Other": _capital(other), "unit_other": unit_other,
                    "value_other": f"{rng.randint(low_other, high_other):,}",
                    "slug": name.lower(), "slug_figure": figure}
            category = CATEGORIES[rng.randrange(len(CATEGORIES))]
            kind = AGENT_KINDS[i % len(AGENT_KINDS)]
            items.append({"task_id": f"task_{first + i:03d}", "place": place, "kind": kind, "category": category,
                          "clip": rng.randint(1, 3), "model": MODELS[rng.randrange(len(MODELS))],
                          "task": rng.choice(AGENT_TASKS).format(**fill),
                          "action": AGENT_ACTIONS[category].format(**fill),
                          "observation": rng.choice(AGENT_OBSERVATIONS[kind]).format(**fill),
                          "summary": AGENT_SUMMARIES[kind].format(**fill)})
    return items


def agent_judge_rows(items: list[dict]) -> list[dict]:
    """DataEva rows (finetune.jsonl's shape), the gpt turn the clip evaluation of the step."""
    rows = []
    stamp = 1_767_225_600  # 2026-01-01, advanced per row
    for item in items:
        model, provider = item["model"]
        human = CLIP_PROMPT.format(task=item["task"], clip=item["clip"], category=item["category"],
                                   action=item["action"], observation=item["observation"])
        answer = {"reasonableness_score": AGENT_SCORES[item["kind"]], "summary": item["summary"]}
        rows.append(_row(human, answer, {"model_name": model, "provider": provider, "task_id": item["task_id"],
                                         "evaluation_type": "clip", "clip_number": item["clip"],
                                         "category": item["category"]}, stamp := stamp + 60))
    return rows


def main() -> None:
    from posttrain.data.variants import write_variants

    rng = random.Random(4)
    OUT.mkdir(parents=True, exist_ok=True)
    _write_jsonl(OUT / "rm_gallery_pairwise.jsonl", pairwise_rows(rng))
    _write_jsonl(OUT / "rm_gallery_pointwise.jsonl", pointwise_rows())
    _write_jsonl(OUT / "finetune.jsonl", agent_eval_rows(rng))
    write_variants(OUT / "finetune.jsonl", OUT, split_eval=True)
    # the measured task draws from a stream of its own, so the files above stay as they were
    rng = random.Random(2026)
    train, heldout = places(rng, PAIRWISE_TRAIN_PAIRS, PAIRWISE_HELDOUT_PAIRS)
    train_items, heldout_items = judge_items(rng, train), judge_items(rng, heldout)
    _write_jsonl(OUT / "pairwise_train.jsonl", judge_pair_rows(train_items, "train"))
    _write_jsonl(OUT / "pairwise_heldout.jsonl", judge_pair_rows(heldout_items, "heldout"))
    _write_jsonl(OUT / "pairwise_sft.jsonl", teacher_chats(train_items, rng))
    rng = random.Random(2027)  # the pointwise task's own stream and places
    train, heldout = places(rng, POINTWISE_TRAIN_ROWS, POINTWISE_HELDOUT_ROWS)
    train_items, heldout_items = pointwise_items(rng, train), pointwise_items(rng, heldout)
    _write_jsonl(OUT / "pointwise_train.jsonl", pointwise_judge_rows(train_items, "train"))
    _write_jsonl(OUT / "pointwise_heldout.jsonl", pointwise_judge_rows(heldout_items, "heldout"))
    _write_jsonl(OUT / "pointwise_sft.jsonl", pointwise_teacher_chats(train_items, rng))
    rng = random.Random(2028)  # the agent judge's own stream and places
    train, heldout = places(rng, AGENT_TRAIN_PLACES, AGENT_HELDOUT_PLACES)
    train_items = agent_judge_items(rng, train, AGENT_STEPS_PER_TRAIN_PLACE, first=1)
    heldout_items = agent_judge_items(rng, heldout, 1, first=1 + len(train_items))
    _write_jsonl(OUT / "agent_judge_train.jsonl", agent_judge_rows(train_items))
    _write_jsonl(OUT / "agent_judge_heldout.jsonl", agent_judge_rows(heldout_items))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
