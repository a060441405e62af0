"""convert: exact output, atomic on bad input, and flat memory on a large file."""

import json
import sys
import time
import tracemalloc

import pytest

from posttrain.data.convert import convert
from posttrain.data.io import read_rows
from posttrain.errors import DataError, PosttrainError


def _jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


ALPACA = [
    {"instruction": "Dose?", "input": "child, 20 kg", "output": "200 mg", "system": "Pharmacist"},
    {"instruction": "Next?", "output": "Rest.", "history": [["Fever?", "Yes."]]},
]


@pytest.mark.parametrize("to,expected", [
    ("openai", [
        {"messages": [{"role": "system", "content": "Pharmacist"}, {"role": "user", "content": "Dose?\nchild, 20 kg"},
                      {"role": "assistant", "content": "200 mg"}]},
        {"messages": [{"role": "user", "content": "Fever?"}, {"role": "assistant", "content": "Yes."},
                      {"role": "user", "content": "Next?"}, {"role": "assistant", "content": "Rest."}]},
    ]),
    ("sharegpt", [
        {"conversations": [{"from": "system", "value": "Pharmacist"}, {"from": "human", "value": "Dose?\nchild, 20 kg"},
                           {"from": "gpt", "value": "200 mg"}]},
        {"conversations": [{"from": "human", "value": "Fever?"}, {"from": "gpt", "value": "Yes."},
                           {"from": "human", "value": "Next?"}, {"from": "gpt", "value": "Rest."}]},
    ]),
    ("alpaca", [
        {"instruction": "Dose?\nchild, 20 kg", "input": "", "output": "200 mg", "system": "Pharmacist"},
        {"instruction": "Next?", "input": "", "output": "Rest.", "history": [["Fever?", "Yes."]]},
    ]),
])
@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".parquet"])
def test_convert_exact_records(tmp_path, to, expected, suffix, request):
    src = _jsonl(tmp_path / "in.jsonl", ALPACA)
    out = tmp_path / f"out{suffix}"
    assert convert(src, out, "alpaca", to, progress=False) == 2
    rows = [row for _, row in read_rows(out)]
    if suffix == ".parquet":  # parquet fills absent columns with None
        rows = [{k: v for k, v in row.items() if v is not None} for row in rows]
    assert rows == expected


def test_columns_are_passed_through(tmp_path):
    src = _jsonl(tmp_path / "in.jsonl", [{"q": "a", "a": "b"}])
    convert(src, tmp_path / "o.jsonl", "alpaca", columns={"prompt": "q", "response": "a"}, progress=False)
    assert [r for _, r in read_rows(tmp_path / "o.jsonl")] == [
        {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}]


@pytest.mark.parametrize("bad,message", [
    ("{not json", "2: json: invalid JSON (Expecting property name enclosed in double quotes at column 2)"),
    ({"instruction": "q"}, "2: output: missing; expected a string"),
])
def test_bad_input_leaves_no_output(tmp_path, bad, message):
    src = _jsonl(tmp_path / "in.jsonl", [ALPACA[0], bad, ALPACA[1]])
    out = tmp_path / "out" / "o.jsonl"
    with pytest.raises(DataError) as info:
        convert(src, out, "alpaca", progress=False)
    assert str(info.value) == f"{src}:{message}"
    assert not out.exists() and list(out.parent.iterdir()) == []


def test_a_target_that_cannot_hold_the_record(tmp_path):
    tool = {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "c"},
                         {"role": "tool", "content": "r"}, {"role": "assistant", "content": "b"}]}
    src = _jsonl(tmp_path / "in.jsonl", [tool])
    with pytest.raises(DataError, match=r"in.jsonl:1: messages: alpaca cannot hold tool messages"):
        convert(src, tmp_path / "o.json", None, "alpaca", progress=False)
    assert not (tmp_path / "o.json").exists()


def test_progress_bar_on_a_terminal_only(tmp_path, capsys, monkeypatch):
    src = _jsonl(tmp_path / "in.jsonl", ALPACA)
    convert(src, tmp_path / "a.jsonl", "alpaca")
    assert capsys.readouterr().err == ""  # not a terminal: no bar
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    convert(src, tmp_path / "b.jsonl", "alpaca")
    assert "2 records" in capsys.readouterr().err
    convert(src, tmp_path / "c.jsonl", "alpaca", progress=False)
    assert capsys.readouterr().err == ""


def test_unknown_target_fails_before_reading(tmp_path):
    with pytest.raises(PosttrainError, match="did you mean 'openai'"):
        convert(tmp_path / "missing.jsonl", tmp_path / "o.jsonl", "alpaca", "opnai")


def test_memory_does_not_grow_with_the_file(tmp_path):
    src = tmp_path / "big.jsonl"
    # long rows keep the record count (and tracemalloc's per-allocation cost) down for a 12 MB file
    row = {"instruction": "Summarise the trial protocol " + "x" * 300, "input": "", "output": "y" * 300}
    with open(src, "w") as f:
        for i in range(18_000):
            row["input"] = str(i)
            f.write(json.dumps(row) + "\n")
    size = src.stat().st_size
    start = time.perf_counter()
    tracemalloc.start()
    try:
        count = convert(src, tmp_path / "out.jsonl", "alpaca", progress=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 18_000
    assert size > 10_000_000
    assert peak < size / 20, f"peak {peak} bytes for a {size}-byte file"
    assert time.perf_counter() - start < 10


@pytest.mark.parametrize("row, kind", [
    ({"prompt": "Q", "chosen": "A", "rejected": "B"}, "preference"),
    ({"prompt": "1+1?", "completions": ["2."], "labels": [True]}, "steps"),
    ({"prompt": "Q", "completion": "A", "label": True}, "unpaired_preference"),
    ({"text": "A document."}, "text"),
])
def test_a_record_for_another_writer_is_refused_by_its_type(tmp_path, row, kind):
    src = _jsonl(tmp_path / "in.jsonl", [row])
    with pytest.raises(PosttrainError, match=rf"--to: verl holds rl_prompt records; .*in.jsonl holds {kind} records"):
        convert(src, tmp_path / "out.parquet", None, "verl", progress=False)
    assert not (tmp_path / "out.parquet").exists()
