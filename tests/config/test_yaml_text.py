"""Pipeline files are read in bounded time and memory: aliases, nesting, bytes and duplicate keys are errors."""

from __future__ import annotations

import time

import pytest

from posttrain.config import load_config, parse_yaml
from posttrain.errors import ConfigError

STAGE = "stages:\n  - name: s\n    type: sft\n    data: d.jsonl\n"


def laughs(levels: int = 9) -> str:
    lines = ["  a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for previous, name in zip("abcdefghij", "bcdefghijk"[:levels - 1]):
        lines.append(f"  {name}: &{name} [" + ", ".join([f"*{previous}"] * 9) + "]")
    last = "abcdefghijk"[levels - 1]
    return "name: x\nmodel: m\nanchors:\n" + "\n".join(lines) + f"\n{STAGE}    trainer: {{run_name: *{last}}}\n"


def test_a_billion_laughs_is_an_error_in_well_under_a_second(tmp_path):
    path = tmp_path / "laughs.yaml"
    path.write_text(laughs())
    started = time.perf_counter()
    with pytest.raises(ConfigError, match=r"laughs.yaml: invalid YAML: more than 100,000 values once its aliases"):
        load_config(path)
    assert time.perf_counter() - started < 0.5


def test_a_few_aliases_still_work():
    value = parse_yaml("base: &base {lr: 1e-5, steps: 3}\nstage:\n  <<: *base\n  steps: 5\nagain: *base\n")
    assert value["stage"] == {"lr": 1e-5, "steps": 5} and value["again"] == {"lr": 1e-5, "steps": 3}


@pytest.mark.parametrize("text", ["a: " + "[" * 20_000 + "]" * 20_000, "a: " + "[" * 150 + "]" * 150,
                                  "".join(" " * i + "k:\n" for i in range(150))])
def test_deep_nesting_is_an_error(text):
    with pytest.raises(ConfigError, match=r"nested too deeply \(at most 100 levels\)"):
        parse_yaml(text)


def test_an_alias_inside_itself_is_an_error():
    with pytest.raises(ConfigError, match="an alias refers to the value that holds it"):
        parse_yaml("a: &a [1, *a]")


def test_invalid_utf8_names_the_line_and_byte_offset(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_bytes(b"name: x\nmodel: m\x00\nrun: \xff\xfe\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:3: invalid UTF-8 at byte offset 23 \(byte 0xff\)"):
        load_config(path)


def test_a_bom_and_a_nul_byte(tmp_path):
    path = tmp_path / "bom.yaml"
    path.write_text("\ufeffname: x\nmodel: m\n" + STAGE, encoding="utf-8")
    assert load_config(path).name == "x"
    path.write_text("name: x\x00\nmodel: m\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bom.yaml: invalid YAML: .*special characters are not allowed"):
        load_config(path)


def test_a_duplicate_key_names_the_key_and_both_lines(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text("name: x\nmodel: m\n" + STAGE + "    trainer:\n      max_steps: 3\n      max_steps: 5\n")
    with pytest.raises(ConfigError, match=r"dup.yaml:9: key 'max_steps' is given twice, on lines 8 and 9; keep one"):
        load_config(path)


def test_a_directory_is_no_config(tmp_path):
    with pytest.raises(ConfigError, match="a directory; expected a pipeline YAML file"):
        load_config(tmp_path)


def test_an_override_value_is_checked_too():
    with pytest.raises(ConfigError, match=r"override name: invalid YAML: nested too deeply"):
        load_config({"name": "x", "model": "m", "stages": [{"name": "s", "type": "sft", "data": "d.jsonl"}]},
                    ["name=" + "[" * 200 + "]" * 200])


def test_a_long_value_is_cut_in_the_error():
    long = "x" * 100_000
    with pytest.raises(ConfigError) as error:
        load_config({"name": "x", "model": "m", "stages": [{"name": "s", "type": long, "data": "d.jsonl"}]})
    assert len(str(error.value)) < 2_000 and "(100,002 characters); known: sft" in str(error.value)
