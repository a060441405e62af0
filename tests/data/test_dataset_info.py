"""LLaMA-Factory dataset_info.json registries resolve and load unchanged."""

import json

import pytest

from posttrain.data.dataset_info import DataSource, load_source, resolve
from posttrain.errors import DataError, PosttrainError

INFO = {
    "a": {"file_name": "a.json"},
    "b": {
        "file_name": "b.jsonl",
        "formatting": "sharegpt",
        "columns": {"messages": "dialog", "system": "sys"},
        "tags": {"role_tag": "speaker", "content_tag": "text", "user_tag": "patient", "assistant_tag": "doctor"},
    },
    "hub": {"hf_hub_url": "someone/medical_qa", "split": "validation"},
    "prefs": {"file_name": "p.json", "ranking": True},
    "broken": {"file_name": "a.json", "formatting": "alpacca"},
}


@pytest.fixture
def dataset_dir(tmp_path):
    (tmp_path / "dataset_info.json").write_text(json.dumps(INFO))
    (tmp_path / "a.json").write_text(json.dumps([
        {"instruction": "What is BP?", "input": "", "output": "Blood pressure."},
        {"instruction": "Define", "input": "HR", "output": "Heart rate.", "system": "Be brief."},
    ]))
    (tmp_path / "b.jsonl").write_text(json.dumps({
        "sys": "You are a doctor.",
        "dialog": [{"speaker": "patient", "text": "My head hurts."}, {"speaker": "doctor", "text": "Since when?"}],
    }) + "\n")
    return tmp_path


def test_resolve_two_datasets_and_load_them(dataset_dir):
    a, b = resolve(str(dataset_dir), "a, b")
    assert a == DataSource(name="a", path=str(dataset_dir / "a.json"), format="alpaca")
    assert (b.format, b.columns["messages"], b.tags["user_tag"]) == ("sharegpt", "dialog", "patient")
    records = [r for source in (a, b) for _, r in load_source(source)]
    assert records == [
        {"messages": [{"role": "user", "content": "What is BP?"}, {"role": "assistant", "content": "Blood pressure."}]},
        {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Define\nHR"},
                      {"role": "assistant", "content": "Heart rate."}]},
        {"messages": [{"role": "system", "content": "You are a doctor."},
                      {"role": "user", "content": "My head hurts."}, {"role": "assistant", "content": "Since when?"}]},
    ]


def test_list_of_names_hub_entry_and_ranking(dataset_dir):
    hub, prefs = resolve(dataset_dir, ["hub", "prefs"])
    assert (hub.path, hub.split, hub.format) == ("someone/medical_qa", "validation", "alpaca")
    assert prefs.ranking is True and prefs.format == "preference"
    (dataset_dir / "p.json").write_text(json.dumps([{"instruction": "Hi", "input": "there", "chosen": "Hello!",
                                                      "rejected": "Go away."}]))
    [(_, record)] = list(load_source(prefs))
    assert record["prompt"] == [{"role": "user", "content": "Hi\nthere"}]
    assert (record["chosen"][0]["content"], record["rejected"][0]["content"]) == ("Hello!", "Go away.")


def test_bad_record_in_a_registered_file_names_file_and_line(dataset_dir):
    with open(dataset_dir / "b.jsonl", "a") as f:
        f.write(json.dumps({"dialog": [{"speaker": "nurse", "text": "hi"}]}) + "\n")
    (b,) = resolve(dataset_dir, "b")
    with pytest.raises(DataError) as info:
        list(load_source(b))
    assert str(info.value) == (f"{dataset_dir / 'b.jsonl'}:2: dialog[0].speaker: "
                               "expected one of patient, doctor, observation, function_call, system, got 'nurse'")


def test_unknown_name_suggests_the_closest(dataset_dir):
    with pytest.raises(PosttrainError) as info:
        resolve(dataset_dir, "a,hb")
    assert str(info.value) == f"{dataset_dir / 'dataset_info.json'}: no dataset named 'hb'; did you mean 'hub'?"


def test_unknown_formatting_is_named(dataset_dir):
    with pytest.raises(PosttrainError, match=r"dataset_info.json: broken.formatting: .*did you mean 'alpaca'"):
        resolve(dataset_dir, "broken")


def test_missing_registry(tmp_path):
    with pytest.raises(PosttrainError, match=r"dataset_info.json: not found"):
        resolve(tmp_path, "a")


def test_invalid_registry_json(tmp_path):
    (tmp_path / "dataset_info.json").write_text('{\n "a": {,}\n}')
    with pytest.raises(PosttrainError, match=r"dataset_info.json:2: invalid JSON"):
        resolve(tmp_path, "a")
