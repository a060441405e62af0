"""study_search rewards on an embedded index, with recall@100 worked out by hand."""

from __future__ import annotations

import json

import pytest

from posttrain.rewards import search
from posttrain.rewards.clinical import study_search, study_search_think
from posttrain.rewards.search.index import build_index


@pytest.fixture(scope="module", autouse=True)
def index(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ss")
    docs = [{"pmid": str(i), "title": f"trial {i} of {'statin' if i % 2 else 'aspirin'}", "abstract": "heart"}
            for i in range(1, 201)]
    (folder / "c.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    build_index(folder / "c.jsonl", folder / "i.db", progress=False)
    search.configure(index=folder / "i.db")
    yield
    search.configure(None)


TRUTH = {"relevant_pmids": ["1", "3", "2", "9999"], "review_pmid": "77"}


@pytest.mark.parametrize("completion, expected", [
    ("<answer>statin</answer>", 0.1 + 2 / 4),                  # 1 and 3 are statin trials; 2 is not; 9999 absent
    ("<answer>statin OR aspirin</answer>", 0.1 + 3 / 4),
    ("<answer>insulin</answer>", 0.0),                          # nothing found: recall 0 scores 0
    ("<answer></answer>", 0.0),
    ("<answer>(statin</answer>", 0.0),                          # untranslatable
    ("statin", -2.0),
    ("<answer>statin</answer><answer>aspirin</answer>", -2.0),
    ("</answer>statin<answer>", -2.0),
])
def test_study_search(completion, expected):
    assert study_search(completion, TRUTH) == pytest.approx(expected)


def test_recall_counts_only_the_top_100():
    # 100 statin trials match; all rank equally (bm25 ties broken by index order), so pmids 1..199 odd are in
    truth = {"relevant_pmids": ["199"]}
    assert study_search("<answer>statin</answer>", truth) == pytest.approx(1.1)
    assert study_search("<answer>statin OR aspirin</answer>", truth) == 0.0   # 200 hits: 199 ranks past 100


@pytest.mark.parametrize("completion, expected", [
    ("<think>statins first</think><answer>statin</answer>", 0.6),
    ("<answer>statin</answer>", -2.0),
    ("<answer>statin</answer><think>late</think>", -2.0),
])
def test_study_search_think(completion, expected):
    assert study_search_think(completion, TRUTH) == pytest.approx(expected)


def test_ground_truth_as_json_string():
    assert study_search("<answer>statin</answer>", json.dumps(TRUTH)) == pytest.approx(0.6)
