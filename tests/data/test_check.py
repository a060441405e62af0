"""check: every problem at its line (schema, role order, empty turns, duplicates, overlap, length)."""

import json
import sys

import pytest

from posttrain import stages
from posttrain.data.check import check
from posttrain.errors import PosttrainError


def _jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def _conv(*pairs):
    return {"conversations": [{"from": f, "value": v} for f, v in pairs]}


GOOD = _conv(("human", "What is a cohort study?"), ("gpt", "A study following a group over time."))
OTHER = _conv(("human", "Define incidence."), ("gpt", "New cases per population per time."))


def _found(report):
    return [(f.line, f.level, f.kind, f.message) for f in report.findings]


def test_every_bad_record_is_reported_and_checking_goes_on(tmp_path):
    path = _jsonl(tmp_path / "train.jsonl", [
        GOOD,                                                         # 1
        _conv(("gpt", "hi"), ("human", "hello")),                     # 2 role order
        "{broken",                                                    # 3 bad JSON
        _conv(("human", "q"), ("gpt", "   ")),                        # 4 empty turn
        OTHER,                                                        # 5
        GOOD,                                                         # 6 duplicate of 1
        _conv(("human", "q"), ("human", "q2"), ("gpt", "a")),         # 7 role order
        {"conversations": [{"from": "doctor", "value": "x"}]},        # 8 unknown role
        GOOD,                                                         # 9 duplicate of 1
    ])
    report = check(path)
    assert _found(report) == [
        (2, "error", "schema", "conversations[0].from: expected system or user first, got assistant"),
        (3, "error", "json", "json: invalid JSON (Expecting property name enclosed in double quotes at column 2)"),
        (4, "error", "schema", "conversations[1].value: empty; expected text"),
        (6, "warning", "duplicate", "duplicate of line 1"),
        (7, "error", "schema", "conversations[1].from: expected assistant after user, got user"),
        (8, "error", "schema", "conversations[0].from: expected one of human, gpt, observation, function_call, "
                               "system, user, assistant, tool, got 'doctor'"),
        (9, "warning", "duplicate", "duplicate of line 1"),
    ]
    assert not report.ok
    assert report.stats == {"records": 9, "valid": 4, "invalid": 5, "duplicates": 2}
    text = report.to_text()
    assert f"{path}:2: error: conversations[0].from" in text and text.endswith("FAILED")


def test_clean_file_is_ok(tmp_path):
    report = check(_jsonl(tmp_path / "d.jsonl", [GOOD, OTHER]))
    assert report.ok and report.findings == []
    assert report.to_text().endswith("OK")


def test_a_progress_bar_on_a_terminal_only(tmp_path, capsys, monkeypatch):
    path = _jsonl(tmp_path / "d.jsonl", [GOOD, OTHER, GOOD])
    check(path)
    assert capsys.readouterr().err == ""  # not a terminal: no bar
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    report = check(path)
    err = capsys.readouterr().err
    assert f"checking {path}" in err and "3 records" in err and report.stats["records"] == 3
    check(path, progress=False)
    assert capsys.readouterr().err == ""


def test_overlap_with_other_splits(tmp_path):
    train = _jsonl(tmp_path / "train.jsonl", [GOOD, OTHER, _conv(("human", "x"), ("gpt", "y"))])
    # the same conversation in another format still counts: records are compared in canonical form
    test = _jsonl(tmp_path / "test.jsonl", [
        {"conversations": [{"role": "user", "content": "Define incidence."},
                           {"role": "assistant", "content": "New cases per population per time."}]},
        _conv(("human", "x"), ("gpt", "other answer")),
    ])
    report = check(train, other_splits=[test])
    assert _found(report) == [(2, "error", "overlap", f"also in {test}:1; a record in two splits leaks evaluation "
                                                      "data into training")]
    assert report.stats["overlap"] == 1 and not report.ok


def test_alpaca_with_explicit_format_and_columns(tmp_path):
    path = _jsonl(tmp_path / "d.jsonl", [{"q": "a", "r": "b"}, {"q": "a"}, {"q": "a", "r": "b"}])
    report = check(path, fmt="alpaca", columns={"prompt": "q", "response": "r"})
    assert _found(report) == [(2, "error", "schema", "r: missing; expected a string"),
                              (3, "warning", "duplicate", "duplicate of line 1")]


def test_undetectable_rows_and_json_array_errors(tmp_path):
    path = tmp_path / "d.json"
    path.write_text('[\n{"prompt": "a"},\n' + json.dumps(GOOD) + ',\n{"x": }\n]')
    assert [(f.line, f.kind) for f in check(path).findings] == [(2, "format"), (4, "json")]


def test_empty_file_and_unknown_stage(tmp_path):
    report = check(_jsonl(tmp_path / "d.jsonl", []))
    assert report.ok and _found(report) == [(None, "warning", "empty", "no records")]
    with pytest.raises(PosttrainError, match="stage: expected one of sft, grpo, .*got 'ppo'"):
        stages.reads("ppo")  # the record type a stage reads comes from the stage table


def test_token_lengths_and_records_the_max_length_cuts(tmp_path, tiny_model):
    tokenizer_dir = tiny_model  # the session's tiny model dir (tests/conftest.py), as `--model DIR` gets it
    from posttrain.data.chat import tokenize_conversation
    from posttrain.models.loading import load_tokenizer

    short = _conv(("human", "dose"), ("gpt", "one"))
    long_answer = _conv(("human", "dose"), ("gpt", " ".join(["the patient has a fever"] * 30)))
    long_prompt = _conv(("human", " ".join(["the patient has a fever"] * 30)), ("gpt", "one"))
    path = _jsonl(tmp_path / "d.jsonl", [short, long_answer, long_prompt])
    tok = load_tokenizer(str(tokenizer_dir))
    lengths = [len(tokenize_conversation(tok, [{"role": "user" if m["from"] == "human" else "assistant",
                                                "content": m["value"]} for m in r["conversations"]])["input_ids"])
               for r in (short, long_answer, long_prompt)]
    assert lengths[0] < 64 < min(lengths[1:])

    report = check(path, model=str(tokenizer_dir), max_length=64)
    assert _found(report) == [
        (2, "warning", "length", f"{lengths[1]} tokens, over max_length 64; it would be cut"),
        (3, "warning", "length", f"{lengths[2]} tokens, over max_length 64; it would be cut, leaving no assistant "
                                 "token to learn from"),
    ]
    assert report.ok
    low, mid, high = sorted(lengths)
    assert report.stats["tokens"] == {"min": low, "median": float(mid),
                                      "p95": pytest.approx(mid + 0.9 * (high - mid)),  # linear, index 1.9 of 3
                                      "max": high, "max_length": 64, "over_max_length": 2}
    assert check(path, model=str(tokenizer_dir)).stats["tokens"]["over_max_length"] == 0  # default 1024
