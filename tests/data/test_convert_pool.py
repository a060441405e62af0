"""convert on several processes: the same bytes, the same first error at the same FILE:LINE, one warning a field,
nothing half-written; and when it is used."""

import json
import logging

import pytest

from posttrain.data import convert_pool
from posttrain.data.convert import convert
from posttrain.data.formats import fields
from posttrain.errors import DataError, PosttrainError


def _row(i: int) -> dict:
    row = {"instruction": f"Question {i}?", "input": "context" if i % 2 else "", "output": f"Answer {i}."}
    if i % 3 == 0:
        row["history"] = [[f"Earlier {i}?", "Yes."]]
    if i % 5 == 0:
        row["system"] = "Be brief. é ✓"  # not ASCII: written as is, on both paths
    return row


def _write(path, lines: list[str], newline: str = "\n"):
    path.write_bytes("".join(line + newline for line in lines).encode("utf-8"))
    return path


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of ~2 KB, so a small file is cut into many, and no size floor for the parallel path."""
    monkeypatch.setattr(convert_pool, "BLOCK_BYTES", 2048)
    monkeypatch.setattr(convert_pool, "MIN_BYTES", 0)
    monkeypatch.setattr(fields, "_warned", {})


@pytest.mark.parametrize("to", ["openai", "sharegpt", "alpaca"])
@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_the_same_bytes_as_one_process(tmp_path, small_blocks, to, newline):
    lines = [json.dumps(_row(i), ensure_ascii=i % 2 == 0) for i in range(400)]
    lines[7] = ""  # a blank line is skipped on both paths
    src = _write(tmp_path / "in.jsonl", lines, newline)
    assert src.stat().st_size > 15 * convert_pool.BLOCK_BYTES  # many blocks
    one = convert(src, tmp_path / "one.jsonl", "alpaca", to, progress=False, workers=1)
    many = convert(src, tmp_path / "many.jsonl", None, to, progress=False, workers=2)
    assert one == many == 399
    assert (tmp_path / "many.jsonl").read_bytes() == (tmp_path / "one.jsonl").read_bytes()


def test_every_core_by_default_for_a_large_jsonl_file(tmp_path, small_blocks, monkeypatch):
    src = _write(tmp_path / "in.jsonl", [json.dumps(_row(i)) for i in range(50)])
    used = []
    real = convert_pool.convert
    monkeypatch.setattr(convert_pool, "convert", lambda *a, **k: used.append(k["workers"]) or real(*a, **k))
    assert convert(src, tmp_path / "o.jsonl", "alpaca", progress=False) == 50
    assert used == [convert_pool.workers_for(src, tmp_path / "o.jsonl", None)] and used[0] >= 1
    monkeypatch.setattr(convert_pool, "MIN_BYTES", src.stat().st_size + 1)
    assert convert_pool.workers_for(src, tmp_path / "o.jsonl", None) == 1  # a small file: one process
    assert convert_pool.workers_for(src, tmp_path / "o.json", None) == 1  # a JSON array out: one process


@pytest.mark.parametrize("bad,field", [
    ("{not json", "json"), (json.dumps({"instruction": "q"}), "output"),
    ('{"instruction": "q", "output": "a", "output": "b"}', "output"),  # the strict reader's errors, alike too
    ('{"instruction": ' + "[" * 200 + "]" * 200 + ', "output": "a"}', "json"),
])
def test_the_first_bad_line_is_named_as_one_process_names_it(tmp_path, small_blocks, bad, field):
    lines = [json.dumps(_row(i)) for i in range(300)]
    lines[211], lines[260] = bad, "[1, 2]"  # two bad lines, in different blocks: the first one is reported
    src = _write(tmp_path / "in.jsonl", lines)
    out = tmp_path / "out" / "o.jsonl"
    with pytest.raises(DataError) as one:
        convert(src, out, "alpaca", progress=False, workers=1)
    with pytest.raises(DataError) as many:
        convert(src, out, "alpaca", progress=False, workers=2)
    assert str(many.value) == str(one.value)
    assert (many.value.line, many.value.field) == (212, field)
    assert list(out.parent.iterdir()) == []  # no output, no temporary file


def test_invalid_utf8_names_its_line(tmp_path, small_blocks):
    lines = [json.dumps(_row(i)).encode() for i in range(200)]
    lines[150] = b'{"instruction": "caf\xe9", "output": "x"}'
    src = tmp_path / "in.jsonl"
    src.write_bytes(b"\n".join(lines) + b"\n")
    with pytest.raises(DataError, match=r"in.jsonl:151: encoding: invalid UTF-8 \(invalid continuation byte at "
                                        r"byte 21\)"):
        convert(src, tmp_path / "o.jsonl", "alpaca", progress=False, workers=2)
    assert not (tmp_path / "o.jsonl").exists()


def test_an_ignored_field_is_warned_about_once(tmp_path, small_blocks, caplog):
    src = _write(tmp_path / "in.jsonl", [json.dumps({**_row(i), "id": i}) for i in range(300)])
    with caplog.at_level(logging.WARNING, logger="posttrain"):
        assert convert(src, tmp_path / "o.jsonl", "alpaca", progress=False, workers=2) == 300
    assert [r.getMessage() for r in caplog.records] == [
        "alpaca: ignoring the field 'id' (bookkeeping, not trained on)"]


def test_a_line_longer_than_a_block_is_read_whole(tmp_path, small_blocks):
    long = {"instruction": "Summarise.", "output": "x" * 10 * convert_pool.BLOCK_BYTES}
    src = _write(tmp_path / "in.jsonl", [json.dumps(_row(0)), json.dumps(long), json.dumps(_row(1))])
    blocks = list(convert_pool._blocks(src))
    assert b"".join(blocks) == src.read_bytes() and all(block.endswith(b"\n") for block in blocks)
    assert convert(src, tmp_path / "o.jsonl", "alpaca", progress=False, workers=2) == 3
    assert (tmp_path / "o.jsonl").read_text().splitlines()[1] == json.dumps(
        {"messages": [{"role": "user", "content": "Summarise."}, {"role": "assistant", "content": long["output"]}]})


def test_workers_that_cannot_be_used_are_refused(tmp_path):
    src = tmp_path / "in.json"
    src.write_text(json.dumps([_row(0)]))
    with pytest.raises(PosttrainError, match=r"--workers 2: only .jsonl files into a .jsonl file"):
        convert(src, tmp_path / "o.jsonl", "alpaca", progress=False, workers=2)
    with pytest.raises(PosttrainError, match="--workers: expected 1 or more, got 0"):
        convert(src, tmp_path / "o.jsonl", "alpaca", progress=False, workers=0)
    assert convert(src, tmp_path / "o.jsonl", "alpaca", progress=False, workers=1) == 1


def test_a_progress_bar_counts_the_records_on_a_terminal(tmp_path, small_blocks, capsys, monkeypatch):
    src = _write(tmp_path / "in.jsonl", [json.dumps(_row(i)) for i in range(120)])
    convert(src, tmp_path / "a.jsonl", "alpaca", workers=2)
    assert capsys.readouterr().err == ""  # not a terminal: no bar
    monkeypatch.setattr("sys.stderr.isatty", lambda: True)
    convert(src, tmp_path / "b.jsonl", "alpaca", workers=2)
    assert "120 records" in capsys.readouterr().err


def test_a_missing_input_is_named_whatever_the_workers(tmp_path):
    with pytest.raises(PosttrainError, match="missing.jsonl: no such file"):
        convert(tmp_path / "missing.jsonl", tmp_path / "o.jsonl", "alpaca", progress=False, workers=2)


def test_a_leading_bom_is_no_data_on_both_paths(tmp_path, small_blocks):
    src = tmp_path / "in.jsonl"
    src.write_bytes(b"\xef\xbb\xbf" + "".join(json.dumps(_row(i)) + "\n" for i in range(300)).encode())
    assert convert(src, tmp_path / "one.jsonl", "alpaca", progress=False, workers=1) == 300
    assert convert(src, tmp_path / "many.jsonl", "alpaca", progress=False, workers=2) == 300
    assert (tmp_path / "many.jsonl").read_bytes() == (tmp_path / "one.jsonl").read_bytes()

