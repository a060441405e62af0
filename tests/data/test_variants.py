"""`posttrain data variants`: the seed's variant files and counts, a dataset_info.json posttrain reads, clean errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from posttrain.cli import app
from posttrain.data.dataset_info import load_source, resolve
from posttrain.data.variants import split_rows, write_variants
from posttrain.errors import PosttrainError

SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "data" / "judges" / "finetune.jsonl"


def _rows(n_models=2):
    rows = []
    for m, model in enumerate(["gpt-4o", "qwen2.5-7b"][:n_models]):
        for t in ("t1", "t2"):
            for kind in ("clip", "clip", "category", "final"):
                rows.append({"conversations": [{"from": "human", "value": f"judge {model} {t} {kind}"},
                                               {"from": "gpt", "value": "{}"}],
                             "metadata": {"model_name": model, "task_id": t, "evaluation_type": kind,
                                          "category": "web" if kind != "final" else None}})
    return rows


def _write(tmp_path, rows):
    path = tmp_path / "finetune.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_all_variants_with_counts_and_posttrain_reads_them(tmp_path):
    out = tmp_path / "out"
    counts = write_variants(_write(tmp_path, _rows()), out)
    assert {k: v["train"] for k, v in counts.items()} == {
        "reward_model_full": 16, "reward_model_clip": 8, "reward_model_category": 4, "reward_model_final": 4,
        "reward_model_gpt_4o": 8, "reward_model_qwen2_5_7b": 8, "reward_model_task_t1": 8, "reward_model_task_t2": 8}
    info = json.loads((out / "dataset_info.json").read_text())
    assert info["reward_model_full"] == {"file_name": "reward_model_full_train.json",
                                         "columns": {"prompt": "instruction", "response": "output"}}
    for source in resolve(out, list(info)):
        records = [r for _, r in load_source(source)]
        assert len(records) == counts[source.name]["train"]
        assert records[0]["messages"][0]["content"].startswith("[EVAL_TYPE: ")


def test_split_and_custom(tmp_path):
    out = tmp_path / "out"
    path = _write(tmp_path, _rows())
    counts = write_variants(path, out, split_eval=True, model_names=["gpt-4o"], evaluation_types=["clip", "final"],
                            with_metadata=False)
    # gpt-4o clip+final: 6 rows -> eval max(1, int(6 * 0.15)) = 1
    assert counts == {"reward_model_custom": {"train": 5, "eval": 1}}
    info = json.loads((out / "dataset_info.json").read_text())
    assert info["reward_model_custom"]["file_name_eval"] == "reward_model_custom_eval.json"
    held = [r for _, r in load_source(resolve(out, "reward_model_custom_eval")[0])]
    assert len(held) == 1 and not held[0]["messages"][0]["content"].startswith("[")
    # a variant under min_samples stays whole
    assert split_rows(list(range(4)), eval_ratio=0.15, min_samples=5, seed=42) == ([0, 1, 2, 3], [])
    train, held = split_rows(list(range(40)), eval_ratio=0.15, min_samples=5, seed=42)
    assert len(held) == 6 and sorted(train + held) == list(range(40))


def test_errors_name_the_line_and_write_nothing(tmp_path):
    rows = _rows()
    rows[5]["metadata"]["evaluation_type"] = "trajectory"
    out = tmp_path / "out"
    with pytest.raises(PosttrainError, match=r"finetune.jsonl:6: metadata.evaluation_type"):
        write_variants(_write(tmp_path, rows), out)
    assert not out.exists()
    with pytest.raises(PosttrainError, match="no record matches"):
        write_variants(_write(tmp_path, _rows()), out, task_ids=["nope"])
    with pytest.raises(PosttrainError, match="--eval-ratio"):
        write_variants(_write(tmp_path, _rows()), out, eval_ratio=1.5)


def test_cli_on_the_sample(tmp_path):
    result = CliRunner().invoke(app, ["data", "variants", str(SAMPLE), str(tmp_path), "--split-eval",
                                      "--model-names", "gpt-4o,qwen2.5-72b", "--evaluation-types", "final"])
    assert result.exit_code == 0, result.output
    assert "reward_model_custom: 7 train + 1 eval" in result.output
    bad = CliRunner().invoke(app, ["data", "variants", str(SAMPLE), str(tmp_path), "--evaluation-types", "step"])
    assert bad.exit_code == 2 and "--evaluation-types: unknown step" in bad.output
