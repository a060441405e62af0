"""The measured pairwise judge task in examples/data/judges (pairwise_train, pairwise_heldout, pairwise_sft, from
examples/make_judge_data.py): the held-out pairs are new items, the labels are balanced so that naming one
position scores the majority baseline and no more, and the teacher's judgments are what the recipe's docs say."""

from __future__ import annotations

import importlib.util
import json
import re
from collections import Counter
from pathlib import Path

from posttrain.data.formats import load_records
from posttrain.rewards.judges import judge_metrics, parse_preference

ROOT = Path(__file__).resolve().parent.parent
JUDGES = ROOT / "examples" / "data" / "judges"


def _rows(name: str) -> list[dict]:
    return [json.loads(line) for line in (JUDGES / name).read_text(encoding="utf-8").splitlines()]


def _generator():
    spec = importlib.util.spec_from_file_location("examples_make_judge_data", ROOT / "examples" / "make_judge_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SYLLABLES = "|".join(_generator().SYLLABLES)
NAME = re.compile(rf"\b(?:{SYLLABLES})(?:{SYLLABLES})\b", re.IGNORECASE)


def _name(row: dict) -> str:
    """The made-up name of the place a row asks about (Dorvel in 'What is the height of the Dorvel Tower?')."""
    query = row["input"][0]["content"]
    names = [n for n in NAME.findall(query) if n[0].isupper()]
    assert len(names) == 1, query
    return names[0]


def test_the_held_out_pairs_are_about_places_training_never_names():
    train, heldout = _rows("pairwise_train.jsonl"), _rows("pairwise_heldout.jsonl")
    assert len(train) >= 200 and 60 <= len(heldout) <= 100
    train_names, heldout_names = {_name(r) for r in train}, {_name(r) for r in heldout}
    assert len(train_names) == len(train) and len(heldout_names) == len(heldout)  # one place per row
    assert not train_names & heldout_names
    # nor does any training text mention them: not the SFT chats, not the tokenizer's corpus (the same two files)
    seen = (JUDGES / "pairwise_train.jsonl").read_text() + (JUDGES / "pairwise_sft.jsonl").read_text()
    assert not [n for n in heldout_names if re.search(rf"\b{n}\b", seen)]
    queries = {r["input"][0]["content"] for r in train}
    assert not queries & {r["input"][0]["content"] for r in heldout}


def test_labels_are_balanced_so_one_position_scores_the_baseline_only():
    for name in ("pairwise_train.jsonl", "pairwise_heldout.jsonl"):
        rows = _rows(name)
        preferred = Counter(r["metadata"]["preferred"] for r in rows)
        assert preferred["A"] == preferred["B"] == len(rows) / 2, (name, preferred)
        # each kind of worse response is as often first as second, so no kind gives its position away
        by_kind = Counter((r["metadata"]["worse_kind"], r["metadata"]["preferred"]) for r in rows)
        assert all(abs(by_kind[(k, "A")] - by_kind[(k, "B")]) <= 1 for k in ("vague", "off_topic", "hedge")), by_kind
        records = [r for _, r in load_records(JUDGES / name, "rm-gallery-pairwise", record="rl_prompt")]
        assert len(records) == 2 * len(rows)
        for always in ("A", "B"):
            figures = judge_metrics([{**r, "output": f"<preference>{always}</preference>"} for r in records])
            assert figures["accuracy"] == figures["majority_baseline"] == 0.5


def test_the_better_response_gives_the_figure_and_the_worse_one_gives_none():
    for name in ("pairwise_train.jsonl", "pairwise_heldout.jsonl"):
        for row in _rows(name):
            answers = [o["answer"]["content"] for o in row["output"]]
            better = answers[0] if row["metadata"]["preferred"] == "A" else answers[1]
            worse = answers[1] if row["metadata"]["preferred"] == "A" else answers[0]
            assert re.search(r"\d", better) and not re.search(r"\d", worse), row["unique_id"]
            assert _name(row) in better


def test_the_teacher_judges_each_training_pair_in_both_orders_with_its_verbosity_bias():
    from posttrain.data.formats.judges import pairwise_prompt

    train, chats = _rows("pairwise_train.jsonl"), _rows("pairwise_sft.jsonl")
    assert len(chats) == 2 * len(train)
    records = [r for _, r in load_records(JUDGES / "pairwise_train.jsonl", "rm-gallery-pairwise", record="rl_prompt")]
    prompts = {r["prompt"][0]["content"]: r["ground_truth"]["preferred"] for r in records}
    wrong = Counter()
    for i, chat in enumerate(chats):
        user, verdict = chat["messages"][0]["content"], chat["messages"][1]["content"]
        # the prompt the SFT model learns from is the one GRPO and the eval stage give it
        assert user in prompts, i
        assert re.fullmatch(r"<reason>[^<]+</reason><preference>[AB]</preference>", verdict), verdict
        row = train[i // 2]
        assert user in (pairwise_prompt(row["input"][0]["content"], row["output"][0]["answer"]["content"],
                                        row["output"][1]["answer"]["content"]),
                        pairwise_prompt(row["input"][0]["content"], row["output"][1]["answer"]["content"],
                                        row["output"][0]["answer"]["content"]))
        if parse_preference(verdict) != prompts[user]:
            wrong[row["metadata"]["worse_kind"]] += 1
    # the teacher errs on the long hedge only, in most of those pairs (both orders alike), and nowhere else
    hedges = 2 * sum(r["metadata"]["worse_kind"] == "hedge" for r in train)
    assert set(wrong) == {"hedge"} and 0.6 * hedges <= wrong["hedge"] <= 0.9 * hedges, wrong


def test_the_pointwise_held_out_answers_are_new_and_every_score_is_as_common():
    train, heldout = _rows("pointwise_train.jsonl"), _rows("pointwise_heldout.jsonl")
    train_names, heldout_names = {_name(r) for r in train}, {_name(r) for r in heldout}
    assert len(train_names) == len(train) and len(heldout_names) == len(heldout) and not train_names & heldout_names
    seen = (JUDGES / "pointwise_train.jsonl").read_text() + (JUDGES / "pointwise_sft.jsonl").read_text()
    assert not [n for n in heldout_names if re.search(rf"\b{n}\b", seen)]
    for name in ("pointwise_train.jsonl", "pointwise_heldout.jsonl"):
        records = [r for _, r in load_records(JUDGES / name, "rm-gallery-pointwise", record="rl_prompt")]
        scores = Counter(r["ground_truth"]["score"] for r in records)
        assert sorted(scores) == [0, 1, 2, 3, 4] and len(set(scores.values())) == 1, (name, scores)
        # so any one score, always given, gets the majority baseline of 1/5 and no more
        for always in range(5):
            figures = judge_metrics([{**r, "output": f"<score>{always}</score>"} for r in records])
            assert figures["accuracy"] == figures["majority_baseline"] == 0.2
        # what sets the score is in the answer's text: only 3 and 4 give a number
        for row in _rows(name):
            for out in row["output"]:
                text, level = out["answer"]["content"], out["answer"]["label"]["helpfulness"]
                assert bool(re.search(r"\d", text)) == (level >= 3), (text, level)


def test_the_pointwise_teacher_rates_most_long_hedges_3_and_every_other_answer_right():
    from posttrain.rewards.judges import parse_score

    records = [r for _, r in load_records(JUDGES / "pointwise_train.jsonl", "rm-gallery-pointwise", record="rl_prompt")]
    chats = _rows("pointwise_sft.jsonl")
    assert len(chats) == len(records)
    wrong = Counter()
    for record, chat in zip(records, chats):
        assert chat["messages"][0]["content"] == record["prompt"][0]["content"]
        verdict = chat["messages"][1]["content"]
        assert re.fullmatch(r"<reason>[^<]+</reason><score>[0-4]</score>", verdict), verdict
        true, given = record["ground_truth"]["score"], parse_score(verdict)
        if given != true:
            wrong[(true, given)] += 1
    hedges = sum(r["ground_truth"]["score"] == 2 for r in records)
    assert set(wrong) == {(2, 3)} and 0.6 * hedges <= wrong[(2, 3)] <= 0.9 * hedges, wrong


def _step(row: dict) -> dict:
    """The parts of an agent-judge row's clip prompt, by their labels (Task, Action, Observation), and its score."""
    human, answer = row["conversations"][0]["value"], json.loads(row["conversations"][1]["value"])
    parts = dict(line.split(": ", 1) for line in human.splitlines() if line.split(": ", 1)[0] in
                 ("Task", "Action", "Observation"))
    names = [n for n in NAME.findall(parts["Task"]) if n[0].isupper()]
    assert len(names) == 1, parts["Task"]
    return {**parts, "name": names[0], "score": answer["reasonableness_score"], "answer": answer}


def test_the_agent_judge_held_out_steps_are_about_tasks_and_places_training_never_names():
    train, heldout = _rows("agent_judge_train.jsonl"), _rows("agent_judge_heldout.jsonl")
    assert len(train) >= 400 and 100 <= len(heldout) <= 150
    train_ids, heldout_ids = ({r["metadata"]["task_id"] for r in rows} for rows in (train, heldout))
    assert len(train_ids) == len(train) and len(heldout_ids) == len(heldout) and not train_ids & heldout_ids
    train_names, heldout_names = {_step(r)["name"] for r in train}, {_step(r)["name"] for r in heldout}
    assert len(heldout_names) == len(heldout) and not train_names & heldout_names
    # nor does the training file (the tokenizer's corpus too) mention a held-out place anywhere
    seen = (JUDGES / "agent_judge_train.jsonl").read_text(encoding="utf-8")
    assert not [n for n in heldout_names if re.search(rf"\b{n}\b", seen, re.IGNORECASE)]
    assert not {r["conversations"][0]["value"] for r in train} & {r["conversations"][0]["value"] for r in heldout}


def test_the_agent_judge_scores_are_equally_common_and_set_by_the_observation():
    generator = _generator()
    for name in ("agent_judge_train.jsonl", "agent_judge_heldout.jsonl"):
        rows = _rows(name)
        assert {r["metadata"]["evaluation_type"] for r in rows} == {"clip"}
        scores = Counter(_step(r)["score"] for r in rows)
        assert sorted(scores) == sorted(generator.AGENT_SCORES.values()) and len(set(scores.values())) == 1, scores
        records = [r for _, r in load_records(JUDGES / name, "agent-eval-judge", record="rl_prompt")]
        assert len(records) == len(rows)
        # the reference answers score 1.0 and count as right; always giving one score gets the baseline, 1/4
        assert judge_metrics([{**r, "output": r["ground_truth"]["reference"]} for r in records])["accuracy"] == 1.0
        for score in scores:
            output = json.dumps({"reasonableness_score": score, "summary": "The step is fine."})
            figures = judge_metrics([{**r, "output": output} for r in records])
            assert figures["accuracy"] == figures["majority_baseline"] == 0.25 and figures["unparsable"] == 0
        for row in rows:
            step = _step(row)
            figure = re.search(r"the (\w+) of", step["Task"]).group(1)
            observation = step["Observation"]
            units = "|".join(unit for _, unit, _, _ in generator.FIGURES)
            gives_a_number = bool(re.search(rf"\d[\d,]* (?:{units})\b", observation))
            # relevant: the asked figure and a number; partial: the place without that figure's number
            # (possibly another figure's, written the same way); off-topic and errors: not the place at all
            assert (step["score"] == 0.9) == (gives_a_number and bool(re.search(rf"\b{figure}\b", observation, re.IGNORECASE))), observation
            assert (step["score"] in (0.9, 0.6)) == (step["name"] in observation), observation
            assert set(step["answer"]) == {"reasonableness_score", "summary"}

