"""A seeded fuzzer over `convert`: every malformed input is a PosttrainError, in seconds, leaving no output behind.

It starts from one valid row of every registered format (test_no_silent_loss.SAMPLES, which holds every format to
having one), writes it as each file kind the reader takes (.jsonl, .json, .parquet, .txt for text, a saved
`datasets` directory for a few), and breaks it: truncation, a wrong type at each field, missing and extra keys,
duplicate keys, 100,000 levels of nesting, NUL bytes, a BOM, invalid UTF-8, an empty file, a directory where a file
goes, huge elements, corrupt parquet. convert must succeed or raise PosttrainError (nothing else), each case must end
within seconds, and after an error no output and no .tmp file may remain. The seed makes a failure reproducible:
its message names the case (format, kind, mutation), which `_cases()` builds again the same way.
"""

from __future__ import annotations

import collections
import datetime
import functools
import json
import random
import signal
import time
from pathlib import Path

import pytest

from posttrain.data.convert import convert
from posttrain.data.formats import FORMATS, writer
from posttrain.errors import PosttrainError
from tests.data.test_no_silent_loss import SAMPLES

SEED = 1433
CASE_SECONDS = 5.0  # what one case may take; the alarm stops a hung case at twice that
MARK = "@@FUZZ@@"
DEEP = 100_000
HUGE = 4 << 20
SAVED = ("alpaca", "openai", "verl", "preference")  # formats also fuzzed as saved `datasets` directories
# values of the wrong type (or the right type and a wrong shape) for any field
WRONG = [None, 0, -1, 1.5, True, False, "", " ", "x", [], {}, [{"x": 1}, 2], {"a": {}}, [None], [[]], {"role": {}},
         float("nan"), float("inf"), 10 ** 30, "\u0000", [""], ["111", {"x": 1}], {"content": 1}, [1, 2]]
# values only parquet (or a saved dataset) hands back: bytes, dates
WRONG_ARROW = [b"\x00\xff", datetime.datetime(2020, 1, 1), datetime.date(2020, 1, 1)]
# the same, as JSON text no Python value serialises to; nesting just under, just over and far over the limit
RAW = ["NaN", "-Infinity", "1e999", "1" + "0" * 5000, '"\\ud800"', '"\\udfff x"', "[" * DEEP + "]" * DEEP,
       '{"a":' * DEEP + "1" + "}" * DEEP, "[" * 90 + "]" * 90, "[" * 150 + "]" * 150, '{"a":' * 600 + "1" + "}" * 600]
BYTES = [b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xe2\x82", b"\x80\x80\x80", b"\xf8\x88\x80\x80\x80"]


def _targets() -> list[str]:
    return [name for name in _names() if writer(FORMATS[name]) is not None]


def _names() -> list[str]:
    """Each format once, by the first name it is registered under (aliases share a module)."""
    seen, names = set(), []
    for name, module in FORMATS.items():
        if id(module) not in seen:
            seen.add(id(module))
            names.append(name)
    return names


TARGETS = _targets()


def _paths(value, prefix=(), depth=0):
    """Every path into `value` (dict keys and list indexes), to a depth of four."""
    if depth > 4:
        return
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in items:
        yield prefix + (key,)
        yield from _paths(child, prefix + (key,), depth + 1)


def _copy(value):
    return json.loads(json.dumps(value))


def _at(row, path):
    for key in path:
        row = row[key]
    return row


def _set(row, path, value):
    row = _copy(row)
    if not path:
        return value
    _at(row, path[:-1])[path[-1]] = value
    return row


def _delete(row, path):
    row = _copy(row)
    parent = _at(row, path[:-1])
    del parent[path[-1]]
    return row


def _json_text(row, raw: str | None, indent: int | None = None) -> str:
    text = json.dumps(row, ensure_ascii=False, indent=indent)
    return text.replace(json.dumps(MARK), raw) if raw is not None else text


def _duplicated(value: dict, other) -> str:
    """A JSON object with its first key given twice, the second time with `other`."""
    key = next(iter(value))
    return json.dumps(value, ensure_ascii=False)[:-1] + f", {json.dumps(key)}: {json.dumps(other)}}}"


class Unbuildable(Exception):
    """The mutated rows are nothing pyarrow can write (a row that is not an object, an int past int64)."""


class Case:
    def __init__(self, name, kind, mutation, rows, *, sample=None, raw=None, edit=None, fmt="name", columns=None,
                 tags=None, out=".jsonl", to=None):
        self.name, self.kind, self.mutation, self.rows, self.sample = name, kind, mutation, rows, sample
        self.raw, self.edit, self.columns, self.tags, self.out, self.to = raw, edit, columns, tags, out, to
        self.fmt = name if fmt == "name" else fmt

    def __repr__(self):
        return f"{self.name}/{self.kind}/{self.mutation}->{self.to or ''}{self.out}"

    def build(self, folder: Path) -> Path:
        """The input file (or directory) of this case, under `folder`."""
        path = folder / f"in{self.kind}"
        if self.kind == ".datasets":
            return self._saved_dataset(path)
        if self.kind == ".parquet":
            _write_parquet(path, self.rows, self.sample)
            data = path.read_bytes()
        elif self.kind == ".txt":
            data = "".join(row["text"] + "\n" for row in self.rows).encode()
        elif self.kind == ".json":
            indent = 2 if len(self.mutation) % 2 else None  # elements over several lines, or one a line
            data = ("[\n" + ",\n".join(_json_text(r, self.raw, indent) for r in self.rows) + "\n]\n").encode(
                "utf-8", "surrogatepass")
        else:
            data = "".join(_json_text(r, self.raw) + "\n" for r in self.rows).encode("utf-8", "surrogatepass")
        if self.edit is not None:
            data = self.edit(data)
        if data is not None:
            path.write_bytes(data)
        return path

    def _saved_dataset(self, path: Path) -> Path:
        import datasets

        try:
            datasets.Dataset.from_list(self.rows).save_to_disk(str(path))
        except Exception:  # rows of two shapes, or not objects: nothing datasets can save
            raise Unbuildable from None
        if self.edit is not None:
            name = self.mutation.partition(" in ")[2] or "data-00000-of-00001.arrow"
            target = path / name
            target.write_bytes(self.edit(target.read_bytes()))
        return path


def _write_parquet(path: Path, rows, sample=None) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from posttrain.data.parquet import parquet_safe

    # rows of two shapes share no schema: then the bad row alone, which is the case
    for attempt in (rows, [r for r in rows if r != sample]):
        try:
            pq.write_table(pa.Table.from_struct_array(pa.array([parquet_safe(r) for r in attempt])), path)
            return
        except (pa.ArrowException, TypeError, ValueError, OverflowError):
            continue
    raise Unbuildable


def _byte_edits(rng: random.Random, kind: str):
    """(name, edit of the file's bytes) for the damage done to any file; each edit draws from its own seeded
    generator, so a case does the same damage whichever cases are built before it."""
    def at(data, r):
        return r.randrange(len(data) + 1) if data else 0

    def insert(piece):
        def edit(data, r):
            i = at(data, r)
            return data[:i] + piece + data[i:]
        return edit

    def flip(data, r):
        data = bytearray(data)
        for _ in range(r.randint(1, 8)):
            if data:
                data[r.randrange(len(data))] = r.randrange(256)
        return bytes(data)

    edits = [("truncated", lambda data, r: data[:at(data, r)]), ("empty", lambda data, r: b""),
             ("whitespace", lambda data, r: b" \n\t\r\n"), ("bom", lambda data, r: b"\xef\xbb\xbf" + data),
             ("nul", insert(b"\x00")), ("flipped", flip),
             ("garbage", lambda data, r: r.randbytes(r.randint(1, 64)))]
    edits += [(f"utf8-{piece.hex()}", insert(piece)) for piece in BYTES]
    if kind == ".parquet":
        edits += [("parquet-tail", lambda data, r: data[:-r.randint(1, 12)]),
                  ("parquet-middle", lambda data, r: data[:len(data) // 2] + data[len(data) // 2 + 8:])]
    return [(name, functools.partial(edit, r=random.Random(rng.random()))) for name, edit in edits]


def _cases() -> list[Case]:
    rng = random.Random(SEED)
    cases = []
    for name in _names():
        row = SAMPLES[name][0] if name in SAMPLES else next(SAMPLES[k][0] for k in SAMPLES if FORMATS[k] is
                                                            FORMATS[name])
        kinds = [".jsonl", ".json", ".parquet"] + ([".txt"] if name == "text" else []) + \
            ([".datasets"] if name in SAVED else [])
        paths = list(_paths(row))
        dicts = [()] + [p for p in paths if isinstance(_at(row, p), dict) and _at(row, p)]
        for kind in kinds:
            def case(mutation, rows, **kw):
                kw.setdefault("out", rng.choice([".jsonl", ".json", ".parquet"]))
                kw.setdefault("to", rng.choice([None, None, None, *TARGETS]))  # the canonical target, or any
                cases.append(Case(name, kind, mutation, rows, sample=row, **kw))

            def rows_with(bad):
                """2-3 rows, the bad one anywhere, so some output is written before it fails."""
                rows = [row] * rng.randint(1, 3)
                rows.insert(rng.randrange(len(rows) + 1), bad)
                return rows

            case("valid", [row, row], fmt=rng.choice([name, None]))
            if kind == ".datasets":
                for path in rng.sample(paths, min(len(paths), 3)):
                    case(f"wrong-type {path}", rows_with(_set(row, path, rng.choice(WRONG + WRONG_ARROW))))
                for mutation, edit in rng.sample(_byte_edits(rng, ".parquet"), 4):
                    case(mutation, [row, row], edit=edit)
                for target in ("state.json", "dataset_info.json"):
                    mutation, edit = rng.choice(_byte_edits(rng, ".json"))
                    case(f"{mutation} in {target}", [row, row], edit=edit)
                continue
            if kind == ".txt":
                for mutation, edit in _byte_edits(rng, kind):
                    case(mutation, [row, row], edit=edit)
                continue
            for path in rng.sample(paths, min(len(paths), 6)):
                value = rng.choice(WRONG + (WRONG_ARROW if kind == ".parquet" else []))
                case(f"wrong-type {path} = {value!r}", rows_with(_set(row, path, value)))
            for path in rng.sample(paths, min(len(paths), 2)):
                case(f"missing {path}", rows_with(_delete(row, path)))
            for path in rng.sample(dicts, min(len(dicts), 2)):
                case(f"extra key at {path}", rows_with(_set(row, path + ("zz_fuzz",), rng.choice(WRONG))))
            case("not an object", rows_with(rng.choice([1, "x", None, [row], []])))
            for mutation, edit in rng.sample(_byte_edits(rng, kind), 5):
                case(mutation, [row] * rng.randint(1, 3), edit=edit)
            if kind == ".parquet":
                case("huge element", rows_with(_set(row, rng.choice(paths), "x" * HUGE)))
                continue
            for path in rng.sample(paths, min(len(paths), 2)):
                raw = rng.choice(RAW)
                case(f"raw {path} = {raw[:12]}", rows_with(_set(row, path, MARK)), raw=raw)
            case("deep nesting", rows_with(MARK), raw="[" * DEEP + "]" * DEEP)
            case("huge element", rows_with(_set(row, rng.choice(paths), MARK)), raw=json.dumps("y" * HUGE))
            path = rng.choice(dicts)
            original = _at(row, path)
            case(f"duplicate key at {path}", rows_with(_set(row, path, MARK)),
                 raw=_duplicated(original, rng.choice(WRONG[:12])))
            if name in ("sharegpt", "alpaca", "openai", "preference", "unpaired_preference", "text", "steps"):
                case("columns", [row], columns={rng.choice(["messages", "prompt", "system", "tools", "query"]):
                                                rng.choice([1, None, [], {}, True])})
                case("tags", [row], tags={rng.choice(["role_tag", "user_tag", "content_tag"]): rng.choice([1, [], {}])})
    return cases


class _Hung(BaseException):
    """Raised by the alarm inside a case that runs too long (a BaseException, as a Ctrl-C is)."""


def _run(case: Case, folder: Path) -> tuple[str, float]:
    """('ok' | 'error' | 'raw: Type: message' | 'hung', seconds) for one case, and whether it left files behind."""
    folder.mkdir()
    (folder / "out").mkdir()
    try:
        source = case.build(folder)
    except Unbuildable:
        return "unbuildable", 0.0
    out = folder / "out" / f"out{case.out}"

    def alarm(signum, frame):
        raise _Hung

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, 2 * CASE_SECONDS)
    start = time.perf_counter()
    try:
        convert(source, out, case.fmt, case.to, columns=case.columns, tags=case.tags, progress=False)
        outcome = "ok"
    except PosttrainError:
        outcome = "error"
    except _Hung:
        outcome = "hung"
    except Exception as e:  # the failure this test is for
        outcome = f"raw: {type(e).__name__}: {str(e)[:120]}"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    seconds = time.perf_counter() - start
    left = sorted(p.name for p in (folder / "out").iterdir())
    if outcome != "ok" and left:
        outcome += f" (left {left})"
    elif outcome == "ok" and left != [out.name]:
        outcome = f"ok but left {left}"
    return outcome, seconds


def _env_cases(tmp_path: Path):
    """(name, input path, output path): inputs and outputs that are not files of records at all."""
    tmp_path.mkdir()
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps(SAMPLES["alpaca"][0]) + "\n")
    (tmp_path / "dir.jsonl").mkdir()
    (tmp_path / "dir.json").mkdir()
    (tmp_path / "dir.json" / "a.json").write_text("[]")
    (tmp_path / "out-dir.jsonl").mkdir()
    (tmp_path / "a-file").write_text("")
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    _write_parquet(mixed / "a.parquet", [{"text": "one"}])
    _write_parquet(mixed / "b.parquet", [{"text": 2}])
    (tmp_path / "empty-dir").mkdir()
    fake = tmp_path / "fake-dataset"
    fake.mkdir()
    (fake / "dataset_info.json").write_text("{not json")
    (fake / "state.json").write_text('{"_data_files": [{"filename": "missing.arrow"}]}')
    return [  # (what, input, output, whether it converts)
        ("a directory named .jsonl", tmp_path / "dir.jsonl", tmp_path / "o1.jsonl", False),
        ("a directory of .json files (LLaMA-Factory's)", tmp_path / "dir.json", tmp_path / "o2.jsonl", True),
        ("a missing file", tmp_path / "missing.jsonl", tmp_path / "o3.jsonl", False),
        ("an empty directory", tmp_path / "empty-dir", tmp_path / "o4.jsonl", False),
        ("parquet files of two schemas", mixed, tmp_path / "o5.jsonl", False),
        ("a broken saved dataset", fake, tmp_path / "o6.jsonl", False),
        ("output is a directory", good, tmp_path / "out-dir.jsonl", False),
        ("output under a file", good, tmp_path / "a-file" / "o.jsonl", False),
        ("a hub id, offline", "no-such-owner/no-such-dataset", tmp_path / "o7.jsonl", False),
    ]


def test_convert_refuses_every_malformed_input_with_a_posttrain_error(tmp_path):
    cases = _cases()
    assert len(cases) >= 300
    outcomes, slowest = collections.Counter(), (0.0, None)
    failures = []
    for i, case in enumerate(cases):
        outcome, seconds = _run(case, tmp_path / f"case{i}")
        outcomes[outcome.split(":")[0].split(" (")[0]] += 1
        slowest = max(slowest, (seconds, case), key=lambda s: s[0])
        if outcome not in ("ok", "error", "unbuildable") or seconds > CASE_SECONDS:
            failures.append(f"case {i} {case!r}: {outcome} in {seconds:.1f} s")
    cases_seen = dict(outcomes)
    outcomes = collections.Counter()
    for name, source, out, converts in _env_cases(tmp_path / "env"):
        try:
            convert(source, out, "alpaca", progress=False)
            outcomes["ok"] += 1
            if not converts:
                failures.append(f"{name}: converted")
        except PosttrainError:
            outcomes["error"] += 1
            if converts:
                failures.append(f"{name}: refused")
        except Exception as e:
            failures.append(f"{name}: raw {type(e).__name__}: {e}")
    left = [p.name for p in (tmp_path / "env").rglob("*.tmp")]
    if left:
        failures.append(f"environment cases left {left}")
    print(f"\nfuzz: {len(cases)} cases {cases_seen}; environment cases {dict(outcomes)}; slowest {slowest[0]:.2f} s "
          f"({slowest[1]!r})")
    assert not failures, f"{len(failures)} of {len(cases)} cases failed:\n" + "\n".join(failures)


@pytest.mark.parametrize("mutation,data", [
    ("invalid UTF-8", b'{"instruction": "q\xff", "output": "a"}\n'),
    ("deep nesting", b'{"instruction": ' + b"[" * DEEP + b"]" * DEEP + b', "output": "a"}\n'),
    ("duplicate key", b'{"instruction": "q", "output": "a", "output": "b"}\n'),
    ("truncated", b'{"instruction": "q", "outp'),
    ("wrong type", b'{"instruction": {"x": [1]}, "output": "a"}\n'),
])
def test_the_cli_exits_2_without_a_traceback(tmp_path, mutation, data):
    import typer
    from typer.testing import CliRunner

    from posttrain.cli.data import data_app

    app = typer.Typer()
    app.add_typer(data_app, name="data")
    source = tmp_path / "in.jsonl"
    source.write_bytes(data)
    result = CliRunner().invoke(app, ["data", "convert", str(source), str(tmp_path / "out" / "o.jsonl"),
                                      "--from", "alpaca"])
    assert result.exit_code == 2, (result.output, result.exception)
    assert "Traceback" not in result.output and f"{source}:1" in result.output
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []
