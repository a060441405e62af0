"""RM-Gallery rows -> judge prompts: the seed's layout, labels from any of RM-Gallery's fields, swapped pairs."""

from __future__ import annotations

import json

import pytest

from posttrain.data.formats import load_records
from posttrain.errors import DataError

ROW = {"unique_id": "p1", "input": [{"role": "user", "content": "Capital of Japan?"}],
       "output": [{"answer": {"content": "Tokyo.", "label": {}}}, {"answer": {"content": "Kyoto.", "label": {}}}],
       "metadata": {"preferred": "A"}, "source": "s"}


def _write(tmp_path, rows, name="rows.jsonl"):
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_each_pair_becomes_original_and_swapped(tmp_path):
    tie = {**ROW, "unique_id": "p2", "metadata": {"preferred": "tie"}}
    records = [r for _, r in load_records(_write(tmp_path, [ROW, tie]), "rm-gallery-pairwise")]
    assert len(records) == 4
    original, swapped = records[0], records[1]
    text = original["prompt"][0]["content"]
    # task, query, Response A, Response B, output requirement, in that order
    order = [text.index(s) for s in ("# Task Description", "Capital of Japan?", "# Response A\nTokyo.",
                                     "# Response B\nKyoto.", "<reason>", "<preference>")]
    assert order == sorted(order)
    assert "# Response A\nKyoto.\n\n# Response B\nTokyo." in swapped["prompt"][0]["content"]
    assert [r["ground_truth"]["preferred"] for r in records] == ["A", "B", "tie", "tie"]
    assert [(r["extra_info"]["pair_id"], r["extra_info"]["swapped"]) for r in records] == \
        [("p1", False), ("p1", True), ("p2", False), ("p2", True)]
    assert {r["data_source"] for r in records} == {"pairwise_preference"}
    assert "<|im_start|>" not in text


@pytest.mark.parametrize("labels, preferred", [
    ([{"is_preferred": False}, {"is_preferred": True}], "B"),
    ([{"preference_score": 0.9}, {"preference_score": 0.1}], "A"),
    ([{"preference_score": 0.5}, {"preference_score": 0.5}], "tie"),
])
def test_label_from_the_outputs_when_metadata_has_none(tmp_path, labels, preferred):
    row = {**ROW, "metadata": json.dumps({}),  # parquet stores metadata as a JSON string
           "output": [{"answer": {"content": c, "label": lab}} for c, lab in zip(("x", "y"), labels)]}
    records = [r for _, r in load_records(_write(tmp_path, [row]), "rm-gallery-pairwise")]
    assert records[0]["ground_truth"] == {"preferred": preferred}


def test_bad_rows_name_line_and_field(tmp_path):
    rows = [ROW, {**ROW, "metadata": {"preferred": "C"}}]
    with pytest.raises(DataError, match=r"rows.jsonl:2: metadata.preferred: expected A, B or tie"):
        list(load_records(_write(tmp_path, rows), "rm-gallery-pairwise"))
    with pytest.raises(DataError, match=r":1: output: 1 responses; expected at least 2"):
        list(load_records(_write(tmp_path, [{**ROW, "output": ROW["output"][:1]}]), "rm-gallery-pairwise"))


def test_pointwise_one_record_per_scored_output(tmp_path):
    row = {**ROW, "output": [{"answer": {"content": "Tokyo.", "label": {"helpfulness": 4}}},
                             {"answer": {"content": "Kyoto.", "label": {"helpfulness": 1}}},
                             {"answer": {"content": "unlabelled", "label": {}}}]}
    records = [r for _, r in load_records(_write(tmp_path, [row]), "rm-gallery-pointwise")]
    assert [r["ground_truth"] for r in records] == [{"score": 4}, {"score": 1}]
    assert "<score>" in records[0]["prompt"][0]["content"] and "# Answer\nTokyo." in records[0]["prompt"][0]["content"]
    bad = {**ROW, "output": [{"answer": {"content": "x", "label": {"helpfulness": 7}}}]}
    with pytest.raises(DataError, match=r":1: output\[0\].answer.label.helpfulness: expected an integer 0-4"):
        list(load_records(_write(tmp_path, [bad]), "rm-gallery-pointwise"))


def test_max_samples_counts_records(tmp_path):
    path = _write(tmp_path, [ROW, {**ROW, "unique_id": "p2"}])
    assert len(list(load_records(path, "rm-gallery-pairwise", max_samples=3))) == 3


def test_convert_cli_doubles_the_pairs(tmp_path):
    from typer.testing import CliRunner

    from posttrain.cli import app

    out = tmp_path / "out.jsonl"
    result = CliRunner().invoke(app, ["data", "convert", str(_write(tmp_path, [ROW] * 3)), str(out),
                                      "--from", "rm-gallery-pairwise"])
    assert result.exit_code == 0, result.output
    assert "wrote 6 records" in result.output
    assert len(out.read_text().splitlines()) == 6


@pytest.mark.parametrize("fmt", ["rm-gallery-pairwise", "rm-gallery-pointwise"])
@pytest.mark.parametrize("message, field", [
    ({"role": {}, "content": "Capital of Japan?"}, "input[0].role"),
    ({"role": "judge", "content": "Capital of Japan?"}, "input[0].role"),
    ({"role": "user", "content": {"text": "x"}}, "input[0].content"),
    ("Capital of Japan?", "input[0]"),
])
def test_a_query_message_of_the_wrong_shape_names_its_field(tmp_path, fmt, message, field):
    row = {**ROW, "input": [message]}
    if fmt == "rm-gallery-pointwise":
        row = {"input": [message], "output": [{"answer": {"content": "Tokyo.", "label": {"helpfulness": 4}}}]}
    with pytest.raises(DataError) as info:
        list(load_records(_write(tmp_path, [row]), fmt))
    assert (info.value.line, info.value.field) == (1, field)


@pytest.mark.parametrize("flag", [[{"x": 1}, 2], "yes", 1.5, float("inf")])
def test_an_is_preferred_that_is_not_a_boolean_is_refused(tmp_path, flag):
    row = {**ROW, "metadata": {}, "output": [{"answer": {"content": "Tokyo.", "label": {"is_preferred": flag}}},
                                             {"answer": {"content": "Kyoto.", "label": {"is_preferred": False}}}]}
    with pytest.raises(DataError) as info:
        list(load_records(_write(tmp_path, [row]), "rm-gallery-pairwise"))
    assert info.value.field == "output[0].answer.label.is_preferred"


def test_a_boolean_helpfulness_is_no_score(tmp_path):
    row = {"input": ROW["input"], "output": [{"answer": {"content": "Tokyo.", "label": {"helpfulness": True}}}]}
    with pytest.raises(DataError) as info:
        list(load_records(_write(tmp_path, [row]), "rm-gallery-pointwise"))
    assert info.value.field == "output[0].answer.label.helpfulness"
