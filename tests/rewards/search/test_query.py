"""PubMed Boolean queries -> FTS5, and searches on a small index built by the test."""

from __future__ import annotations

import json

import pytest

from posttrain.errors import DataError
from posttrain.rewards.search.index import SearchIndex, build_index
from posttrain.rewards.search.query import QueryError, to_fts

CORPUS = [
    {"pmid": "1", "title": "Heart failure in older adults", "abstract": "A randomized trial of beta blockers.",
     "mesh": ["Heart Failure", "Aged"]},
    {"pmid": "2", "title": "Ischemic stroke prevention", "abstract": "Aspirin versus placebo in a cohort.",
     "mesh": ["Stroke"]},
    {"pmid": "3", "title": "Beta blockers after myocardial infarction", "abstract": "Heart outcomes were measured.",
     "keywords": ["cardiology"]},
    {"pmid": "4", "title": "COVID-19 vaccine trial", "abstract": "Ischaemia was rare; randomised design.",
     "mesh": ["COVID-19"]},
]


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    folder = tmp_path_factory.mktemp("index")
    corpus = folder / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(r) + "\n" for r in CORPUS))
    path = folder / "index.db"
    assert build_index(corpus, path, progress=False) == 4
    return SearchIndex(path)


@pytest.mark.parametrize("query, expected", [
    ("heart", {"1", "3"}),
    ("heart AND failure", {"1"}),
    ("heart failure", {"1"}),                       # adjacent words are ANDed
    ("stroke OR vaccine", {"2", "4"}),
    ("heart NOT failure", {"3"}),
    ('"beta blockers"', {"1", "3"}),
    ('"blockers beta"', set()),                     # a phrase keeps its order
    ("isch*", {"2", "4"}),                          # truncation
    ("heart[ti]", {"1"}),
    ("heart[ab]", {"3"}),
    ("heart[tiab]", {"1", "3"}),
    ('"heart failure"[mh]', {"1"}),
    ("cardiology[tw]", {"3"}),
    ("cardiology[tiab]", set()),
    ("aged[All Fields]", {"1"}),                    # an unknown tag searches every field
    ("(heart OR stroke) AND (trial OR cohort)", {"1", "2"}),
    ("COVID-19[ti]", {"4"}),
    ("(beta[ti] AND blockers) NOT (older OR aged)", {"3"}),
])
def test_queries(index, query, expected):
    assert set(index.search(query)) == expected


def test_ranking_is_deterministic(index):
    assert index.search("heart OR beta OR trial") == index.search("heart OR beta OR trial")


@pytest.mark.parametrize("query", ["", "   ", "(heart", "heart)", "AND heart", "NOT heart", "heart AND", "((((" * 200,
                                   "!!! ???", "x" * 30_000])
def test_untranslatable_queries_raise_query_error(query):
    with pytest.raises(QueryError):
        to_fts(query)


def test_a_record_without_pmid_names_its_line(tmp_path):
    corpus = tmp_path / "c.jsonl"
    corpus.write_text(json.dumps(CORPUS[0]) + "\n" + json.dumps({"title": "t", "abstract": "a"}) + "\n")
    with pytest.raises(DataError, match=r"c.jsonl:2: pmid: missing"):
        build_index(corpus, tmp_path / "i.db", progress=False)
    assert not (tmp_path / "i.db").exists()
