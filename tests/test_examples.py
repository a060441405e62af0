"""The sample data in examples/data: what the generators write, and fit for the recipes that use it."""

from __future__ import annotations

import importlib.util
import json
import statistics
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CLINICAL = ROOT / "examples" / "data" / "clinical_trials"


def _generator(name: str):
    spec = importlib.util.spec_from_file_location(f"examples_{name}", ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.mark.parametrize("name, folder", [("make_data", "data"), ("make_clinical_data", "data/clinical_trials"),
                                          ("make_judge_data", "data/judges"),
                                          ("make_medical_data", "data/medical_dialogue"),
                                          ("make_preference_data", "data/preference"),
                                          ("make_steps_data", "data/process_reward")])
def test_the_shipped_data_is_what_its_generator_writes(name, folder, tmp_path, monkeypatch):
    generator = _generator(name)
    monkeypatch.setattr(generator, "OUT", tmp_path)
    generator.main()
    shipped = ROOT / "examples" / folder
    for made in sorted(p for p in tmp_path.rglob("*") if p.is_file()):
        name = made.relative_to(tmp_path)
        assert made.read_bytes() == (shipped / name).read_bytes(), name


def test_sample_size_records_convert_and_their_answer_is_the_explanations_result():
    from posttrain.data.formats import load_records

    for split in ("train", "test"):
        path = CLINICAL / f"sample_size_{split}.jsonl"
        prompts = [r for _, r in load_records(path, "trialpanorama-sample-size", record="rl_prompt")]
        chats = [r for _, r in load_records(path, "trialpanorama-sample-size-sft", record="conversation")]
        assert len(prompts) == len(chats) == len(_rows(path)) > 0
        for source, prompt, chat in zip(_rows(path), prompts, chats):
            # the worked explanation ends on the total, which is the answer the reward checks
            assert source["explanation"].endswith(f"= {source['answer']}.")
            assert prompt["ground_truth"]["target"] == float(source["answer"])
            assert chat["messages"][-1]["content"].endswith(f"<answer>{source['answer']}</answer>")


def test_the_splits_are_disjoint():
    for task, key in (("sample_size", "trial_id"), ("study_search", "labels")):
        train = {json.dumps(r[key]) for r in _rows(CLINICAL / f"{task}_train.jsonl")}
        test = {json.dumps(r[key]) for r in _rows(CLINICAL / f"{task}_test.jsonl")}
        assert train and test and not train & test


@pytest.fixture
def study_search(tmp_path):
    """The study_search reward, searching the shipped corpus (indexed here); the previous backend afterwards."""
    from posttrain.rewards import get, search
    from posttrain.rewards.search.index import build_index

    build_index(CLINICAL / "pubmed_corpus.jsonl", tmp_path / "index.db", progress=False)
    previous = dict(search._configured)
    search.configure(index=tmp_path / "index.db")
    yield get("study_search")
    search.configure(**previous)


def _topic(generator, text: str) -> tuple[str, str]:
    """The (condition, intervention) a review's text is about."""
    condition = next(c for c in generator.CONDITIONS if f"adults with {c}." in text)
    intervention = next(i for i in generator.INTERVENTIONS if f"trials comparing {i} with" in text)
    return condition, intervention


def test_a_reviewers_query_finds_the_relevant_trials_and_a_vague_one_loses_recall(study_search):
    generator = _generator("make_clinical_data")
    precise, vague = [], []
    for row in _rows(CLINICAL / "study_search_test.jsonl"):
        condition, intervention = _topic(generator, row["inputs"]["selection criteria"])
        truth = {"relevant_pmids": row["labels"]}
        precise.append(study_search(f"<answer>{generator.reference_query(condition, intervention)}</answer>", truth))
        vague.append(study_search(f"<answer>{condition}</answer>", truth))
    assert statistics.mean(precise) == pytest.approx(1.1)  # recall@100 of 1, plus the 0.1 for a hit
    assert statistics.mean(vague) < 0.9  # the condition alone returns more than 100 studies


def test_stage_1_teaches_the_query_form_on_every_pairing_but_the_test_reviews():
    generator = _generator("make_clinical_data")
    stage_1 = json.loads((CLINICAL / "stage_1.json").read_text())
    assert stage_1 and all(r["output"].startswith("<answer>(") for r in stage_1)
    taught = [_topic(generator, r["instruction"]) for r in stage_1]
    tested = {_topic(generator, r["inputs"]["selection criteria"]) for r in _rows(CLINICAL / "study_search_test.jsonl")}
    trained = {_topic(generator, r["inputs"]["selection criteria"])
               for r in _rows(CLINICAL / "study_search_train.jsonl")}
    # each pairing once: the training reviews' and those no review asks about, never a test review's
    assert len(taught) == len(set(taught)) == len(generator.CONDITIONS) * len(generator.INTERVENTIONS) - len(tested)
    assert trained < set(taught) and not tested & set(taught)


def _share(flags) -> float:
    flags = list(flags)
    return sum(flags) / len(flags)


def test_the_stage_1_teacher_mostly_restricts_the_search_to_placebo_and_that_costs_recall(study_search):
    stage_1 = json.loads((CLINICAL / "stage_1.json").read_text())
    slipped = ["AND placebo[tiab]</answer>" in r["output"] for r in stage_1]
    assert 0.6 < _share(slipped) < 0.8  # most, so that greedy decoding copies the slip, but not all
    generator = _generator("make_clinical_data")
    labels = {_topic(generator, row["inputs"]["selection criteria"]): row["labels"]
              for row in _rows(CLINICAL / "study_search_train.jsonl")}
    # the training reviews' records (the others' pairings have no studies in the corpus to find)
    scored = [(r, labels[topic]) for r in stage_1 if (topic := _topic(generator, r["instruction"])) in labels]
    slipped = ["AND placebo[tiab]</answer>" in r["output"] for r, _ in scored]
    scores = [study_search(r["output"], {"relevant_pmids": relevant}) for r, relevant in scored]
    assert statistics.mean(v for v, s in zip(scores, slipped) if not s) == pytest.approx(1.1)
    assert statistics.mean(v for v, s in zip(scores, slipped) if s) < 0.5  # the format holds, the recall does not


def test_the_stage_2_teacher_mostly_leaves_the_think_tags_out_of_two_proportion_designs():
    from posttrain.rewards import get

    stage_2 = json.loads((CLINICAL / "stage_2.json").read_text())
    train = _rows(CLINICAL / "sample_size_train.jsonl")
    assert len(stage_2) == len(train)  # the training questions, in order; the test questions stay unseen
    reward = get("sample_size_estimation")
    binary, slipped = [], []
    for record, source in zip(stage_2, train):
        assert source["question"] in record["instruction"]
        assert record["output"].endswith(f"<answer>{source['answer']}</answer>")
        binary.append("two proportions" in source["explanation"])
        score = reward(record["output"], {"target": source["answer"]})
        assert score in (-2, 1.1)  # the format is all a slipped answer misses
        slipped.append(score == -2)
    assert _share(s for s, b in zip(slipped, binary) if b) > 0.7 > 0.2 > _share(s for s, b in zip(slipped, binary)
                                                                             if not b)


@pytest.mark.parametrize("source", ["flashcards", "chatdoctor"])
def test_the_medical_sft_teacher_signs_off_most_replies_and_the_references_never_do(source):
    from posttrain.rewards.dialogue import medical_dialogue_quality

    generator = _generator("make_medical_data")
    folder = ROOT / "examples" / "data" / "medical_dialogue" / source
    train, teacher = _rows(folder / "train.jsonl"), _rows(folder / "train_teacher.jsonl")
    assert [r["input"] for r in teacher] == [r["input"] for r in train]
    signed = [t for t, r in zip(teacher, train) if t["output"] == r["output"] + generator.SIGN_OFF]
    assert all(t in signed or t == r for t, r in zip(teacher, train))
    assert 0.7 <= len(signed) / len(train) <= 0.9
    for split in ("train", "validation", "test"):
        assert not any(generator.SIGN_OFF.strip() in r["output"] for r in _rows(folder / f"{split}.jsonl"))
    # what GRPO can win back: the sign-off costs a reply a good part of the reward it trains on
    cost = [medical_dialogue_quality(r["output"], r["output"])
            - medical_dialogue_quality(r["output"] + generator.SIGN_OFF, r["output"]) for r in train]
    assert statistics.mean(cost) > 0.4
