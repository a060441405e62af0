"""RM-Gallery rows: the preferred response from is_preferred, preference scores or metadata.preferred; ties kept."""

import pytest

from posttrain.data.formats import rm_gallery
from posttrain.errors import RecordError

INPUT = [{"role": "user", "content": "What is BP?"}]


def row(labels=({}, {}), preferred=None):
    out = [{"answer": {"role": "assistant", "content": text, "label": dict(label)}}
           for text, label in zip(("first", "second"), labels)]
    return {"input": INPUT, "output": out, "metadata": {"preferred": preferred} if preferred else {}}


@pytest.mark.parametrize("labels, preferred, chosen, tie", [
    (({"is_preferred": True}, {"is_preferred": False}), None, "first", False),
    (({"is_preferred": False}, {"is_preferred": True}), None, "second", False),
    (({"preference_score": 0.2}, {"preference_score": 0.9}), None, "second", False),
    (({"preference_strength": 3}, {"preference_strength": 1}), None, "first", False),
    (({}, {}), "B", "second", False),
    (({}, {}), "tie", "first", True),
    (({"preference_score": 1}, {"preference_score": 1}), None, "first", True),
])
def test_which_response_is_chosen(labels, preferred, chosen, tie):
    record = rm_gallery.to_record(row(labels, preferred))
    assert record["prompt"] == INPUT
    assert record["chosen"][0]["content"] == chosen and record["tie"] is tie
    assert record["rejected"][0]["content"] == ("second" if chosen == "first" else "first")


def test_no_label_says_what_is_expected():
    with pytest.raises(RecordError, match="is_preferred, preference_score"):
        rm_gallery.to_record(row())


def test_one_response_is_not_a_pair():
    bad = row(({"is_preferred": True}, {"is_preferred": False}))
    bad["output"] = bad["output"][:1]
    with pytest.raises(RecordError) as e:
        rm_gallery.to_record(bad)
    assert e.value.field == "output"


def test_round_trip_keeps_ties():
    for tie in (False, True):
        record = rm_gallery.to_record(row(({"is_preferred": True}, {"is_preferred": tie})))
        assert rm_gallery.to_record(rm_gallery.from_record(record)) == record
