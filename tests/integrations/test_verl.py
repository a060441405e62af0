"""The VERL bridge (posttrain/integrations/verl/): parquet splits VERL reads, a launch script mapped from the stage's GRPOConfig,
and posttrain's compute_score, loaded by path as VERL loads it, scoring every prepared row."""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import stat
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

import posttrain.rewards.adapters as adapters
from posttrain.cli import app
from posttrain.errors import PosttrainError
from posttrain.integrations.verl import prepare
from tests.conftest import write_jsonl

runner = CliRunner()
N = 40
COLUMNS = {"data_source", "prompt", "ability", "reward_model", "extra_info"}


def records(n=N):
    return [{"prompt": [{"role": "system", "content": "Answer in tags."},
                        {"role": "user", "content": f"Trial {i}: 2 arms of {10 * (i + 1)} patients. Total?"}],
             "data_source": "sample_size_estimation", "ground_truth": {"target": 20 * (i + 1), "trial_id": f"T{i}"},
             "extra_info": {"pmid": str(1000 + i)}} for i in range(n)]


def pipeline(tmp_path, base=None, **stage) -> Path:
    data = write_jsonl(tmp_path / "rl.jsonl", records())
    grpo = {"name": "rl", "type": "grpo", "data": {"path": str(data), "format": "rl_prompt"},
            "rewards": ["sample_size_estimation"],
            "trainer": {"per_device_train_batch_size": 4, "num_generations": 4, "max_completion_length": 64,
                        "learning_rate": 1e-5}}
    for key, value in stage.items():
        grpo[key] = {**grpo[key], **value} if isinstance(value, dict) and key == "trainer" else value
    config = {"name": "trials", "model": str(base or tmp_path / "base"), "output_dir": str(tmp_path / "run"),
              "seed": 7,
              "stages": [{"name": "sft", "type": "sft", "data": {"path": str(data), "format": "openai"}}, grpo]}
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def rows(out: Path, split: str) -> list[dict]:
    return pq.read_table(out / f"{split}.parquet").to_pylist()


def overrides(script: Path) -> dict[str, str]:
    """The Hydra overrides of run_verl.sh's main_ppo command (and of its REWARD array), as key -> value."""
    lines = script.read_text().splitlines()
    start = lines.index("python3 -m verl.trainer.main_ppo \\") + 1
    items = [shlex.split(line.rstrip(" \\"))[0] for line in lines[start:] if line.strip()[:1] not in ("", '"')]
    reward = [shlex.split(line)[0] for line in lines[lines.index("REWARD=(") + 1:lines.index(")")]]
    modules = next((shlex.split(line[len("MODULES=("):-1]) for line in lines if line.startswith("MODULES=(")), [])
    return dict(item.split("=", 1) for item in items + reward + modules)


# every key the script may write, as checked against VERL 0.9.1's verl/trainer/config/_generated_ppo_trainer.yaml
# (`++` keys are newer than some older releases; runtime_env.env_vars is a Ray mapping, open to any name)
VERL_KEYS = {
    "algorithm.adv_estimator", "algorithm.norm_adv_by_std_in_grpo", "data.train_files", "data.val_files",
    "data.prompt_key", "data.train_batch_size", "data.max_prompt_length", "data.max_response_length",
    "data.truncation", "data.shuffle", "++data.seed", "actor_rollout_ref.model.path",
    "actor_rollout_ref.model.trust_remote_code", "actor_rollout_ref.actor.optim.lr",
    "actor_rollout_ref.actor.optim.weight_decay", "actor_rollout_ref.actor.ppo_mini_batch_size",
    "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu", "actor_rollout_ref.actor.ppo_epochs",
    "actor_rollout_ref.actor.use_kl_loss", "actor_rollout_ref.actor.kl_loss_coef",
    "actor_rollout_ref.actor.kl_loss_type",
    "actor_rollout_ref.actor.clip_ratio_low", "actor_rollout_ref.actor.clip_ratio_high",
    "actor_rollout_ref.actor.loss_agg_mode", "actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu",
    "actor_rollout_ref.rollout.name", "actor_rollout_ref.rollout.n", "actor_rollout_ref.rollout.temperature",
    "actor_rollout_ref.rollout.top_p", "actor_rollout_ref.rollout.top_k",
    "actor_rollout_ref.rollout.tensor_model_parallel_size",
    "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu",
    "++actor_rollout_ref.actor.loss_scale_factor", "actor_rollout_ref.actor.entropy_coeff",
    "actor_rollout_ref.actor.optim.clip_grad", "actor_rollout_ref.actor.optim.betas",
    "actor_rollout_ref.model.enable_gradient_checkpointing", "++actor_rollout_ref.actor.optim.lr_scheduler_type",
    "actor_rollout_ref.actor.optim.lr_warmup_steps", "actor_rollout_ref.actor.optim.lr_warmup_steps_ratio",
    "trainer.total_epochs", "trainer.total_training_steps", "trainer.save_freq", "trainer.test_freq",
    "trainer.max_actor_ckpt_to_keep", "trainer.default_local_dir", "trainer.n_gpus_per_node", "trainer.nnodes",
    "trainer.project_name", "trainer.experiment_name", "trainer.logger", "actor_rollout_ref.model.lora_rank",
    "actor_rollout_ref.model.lora_alpha", "actor_rollout_ref.model.target_modules",
    "++ray_kwargs.ray_init.runtime_env.env_vars.POSTTRAIN_SEARCH_INDEX",
    "++ray_kwargs.ray_init.runtime_env.env_vars.POSTTRAIN_SEARCH_BACKEND",
    "++ray_kwargs.ray_init.runtime_env.env_vars.POSTTRAIN_SEARCH_CACHE", "custom_reward_function.path",
    "custom_reward_function.name",
}


def load_by_path():
    """What VERL does with custom_reward_function.path: a standalone module under a name of its own."""
    spec = importlib.util.spec_from_file_location("verl_custom_reward_fn", adapters.__file__)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---- the parquet files ---------------------------------------------------------------------------------------------

def test_prepare_writes_disjoint_reproducible_splits_in_verl_schema(tmp_path):
    out = tmp_path / "verl"
    result = prepare(pipeline(tmp_path), "rl", out, max_prompt_length=256)
    assert result.counts == {"train": 32, "val": 4, "test": 4}
    by_split = {split: rows(out, split) for split in ("train", "val", "test")}
    for split, split_rows in by_split.items():
        assert set(pq.read_schema(out / f"{split}.parquet").names) == COLUMNS
        assert [r["extra_info"]["index"] for r in split_rows] == list(range(len(split_rows)))
        for row in split_rows:
            assert row["data_source"] == f"sample_size_estimation_{split}"
            assert row["ability"] == "sample_size_estimation"
            assert row["prompt"][0] == {"role": "system", "content": "Answer in tags."}  # messages, not templated
            assert row["reward_model"]["style"] == "rule"
            assert row["extra_info"]["split"] == split
            assert "posttrain_rewards" not in row["extra_info"]  # one reward: compute_score dispatches on data_source
    trials = {split: {r["reward_model"]["ground_truth"]["trial_id"] for r in rs} for split, rs in by_split.items()}
    assert not trials["train"] & trials["val"] and not trials["train"] & trials["test"]
    assert not trials["val"] & trials["test"]
    assert set().union(*trials.values()) == {f"T{i}" for i in range(N)}
    assert by_split["val"][0]["extra_info"]["pmid"]  # the record's own extra_info is kept

    before = {split: (out / f"{split}.parquet").read_bytes() for split in ("train", "val", "test")}
    prepare(pipeline(tmp_path), "rl", out, max_prompt_length=256, force=True)
    assert before == {split: (out / f"{split}.parquet").read_bytes() for split in ("train", "val", "test")}
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no scratch left behind


def test_the_split_is_the_one_data_split_makes_with_the_pipeline_seed(tmp_path):
    from posttrain.data.split import split

    out = tmp_path / "verl"
    prepare(pipeline(tmp_path), "rl", out, val_size=0.2, test_size=0.1, max_prompt_length=256)
    counts = split(tmp_path / "rl.jsonl", tmp_path / "split", ratios=(0.7, 0.2, 0.1), seed=7)
    assert counts == {"train": 28, "validation": 8, "test": 4}
    expected = [json.loads(line)["ground_truth"]["trial_id"] for line in (tmp_path / "split/validation.jsonl").open()]
    assert [r["reward_model"]["ground_truth"]["trial_id"] for r in rows(out, "val")] == expected


def test_no_test_split_writes_no_test_file_and_removes_an_old_one(tmp_path):
    out = tmp_path / "verl"
    prepare(pipeline(tmp_path), "rl", out, max_prompt_length=256)
    result = prepare(pipeline(tmp_path), "rl", out, test_size=0, max_prompt_length=256, force=True)
    assert result.counts == {"train": 36, "val": 4, "test": 0}
    assert not (out / "test.parquet").exists()


# ---- the reward, loaded by path ------------------------------------------------------------------------------------

def test_compute_score_loaded_by_path_scores_every_prepared_row(tmp_path):
    out = tmp_path / "verl"
    prepare(pipeline(tmp_path), "rl", out, max_prompt_length=256)
    compute_score = load_by_path().compute_score
    scored = 0
    for split in ("train", "val", "test"):
        for row in rows(out, split):
            truth, target = row["reward_model"]["ground_truth"], row["reward_model"]["ground_truth"]["target"]
            call = dict(data_source=row["data_source"], ground_truth=truth, extra_info=row["extra_info"])
            assert compute_score(solution_str=f"<think>2 arms</think><answer>{target}</answer>", **call) == 1.1
            assert compute_score(solution_str=f"<think>2 arms</think><answer>{target * 3}</answer>", **call) == 0.0
            assert compute_score(solution_str=f"{target}", **call) == -2.0
            scored += 1
    assert scored == N


def test_weighted_rewards_travel_in_extra_info_and_compute_score_sums_them(tmp_path):
    out = tmp_path / "verl"
    prepare(pipeline(tmp_path, rewards=["sample_size_estimation", {"name": "answer_tags", "weight": 0.5}]), "rl", out,
            max_prompt_length=256)
    compute_score = load_by_path().compute_score
    for row in rows(out, "val"):
        assert row["extra_info"]["posttrain_rewards"] == [{"name": "sample_size_estimation", "weight": 1.0},
                                                          {"name": "answer_tags", "weight": 0.5}]
        truth = row["reward_model"]["ground_truth"]
        call = dict(data_source=row["data_source"], ground_truth=truth, extra_info=row["extra_info"])
        good = compute_score(solution_str=f"<think>x</think><answer>{truth['target']}</answer>", **call)
        assert good == pytest.approx({"score": 1.6, "sample_size_estimation": 1.1, "answer_tags": 1.0})
        wrong = compute_score(solution_str="<think>x</think><answer>1</answer>", **call)
        assert wrong == pytest.approx({"score": 0.5, "sample_size_estimation": 0.0, "answer_tags": 1.0})
        assert compute_score(solution_str="no tags", **call) == {"score": -2.0, "sample_size_estimation": -2.0,
                                                                 "answer_tags": 0.0}


def test_a_reward_data_source_does_not_name_is_listed_too(tmp_path):
    out = tmp_path / "verl"
    prepare(pipeline(tmp_path, rewards=["answer_tags"]), "rl", out, max_prompt_length=256)
    row = rows(out, "train")[0]
    assert row["extra_info"]["posttrain_rewards"] == [{"name": "answer_tags", "weight": 1.0}]
    result = load_by_path().compute_score(data_source=row["data_source"], solution_str="<answer>7</answer>",
                                          ground_truth=row["reward_model"]["ground_truth"],
                                          extra_info=row["extra_info"])
    assert result == {"score": 1.0, "answer_tags": 1.0}


# ---- run_verl.sh ---------------------------------------------------------------------------------------------------

def test_script_maps_the_grpo_config(tmp_path):
    out = tmp_path / "verl"
    trainer = {"per_device_train_batch_size": 4, "gradient_accumulation_steps": 2, "steps_per_generation": 4,
               "num_generations": 4, "beta": 0.04, "epsilon_high": 0.28, "learning_rate": 3e-6, "max_steps": 10,
               "save_steps": 4, "temperature": 0.6, "top_p": 0.95, "loss_type": "grpo", "scale_rewards": "none"}
    result = prepare(pipeline(tmp_path, trainer=trainer), "rl", out, gpus=2, max_prompt_length=300)
    script = out / "run_verl.sh"
    assert script.stat().st_mode & stat.S_IXUSR
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    text = script.read_text()
    assert text.startswith("#!/usr/bin/env bash\n") and "set -euo pipefail" in text
    assert text.rstrip().endswith('"${REWARD[@]}" \\\n    "$@"')
    o = overrides(script)
    # TRL: 4 per device x 2 accumulation x 2 GPUs = 16 completions per optimizer step = 4 prompts of 4;
    # one generation round is 4 x 2 GPUs x 4 steps_per_generation = 32 completions = 8 prompts, 2 optimizer steps
    assert o["data.train_batch_size"] == "8" and o["actor_rollout_ref.actor.ppo_mini_batch_size"] == "4"
    assert o["actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu"] == "4"
    assert o["actor_rollout_ref.rollout.n"] == "4"
    assert o["trainer.total_training_steps"] == "5" and o["trainer.save_freq"] == "2"  # TRL steps / 2
    assert o["actor_rollout_ref.actor.use_kl_loss"] == "true" and o["actor_rollout_ref.actor.kl_loss_coef"] == "0.04"
    assert o["actor_rollout_ref.actor.kl_loss_type"] == "low_var_kl"
    assert o["actor_rollout_ref.actor.clip_ratio_low"] == "0.2"
    assert o["actor_rollout_ref.actor.clip_ratio_high"] == "0.28"
    assert o["actor_rollout_ref.actor.loss_agg_mode"] == "seq-mean-token-mean"
    assert o["algorithm.norm_adv_by_std_in_grpo"] == "false" and o["algorithm.adv_estimator"] == "grpo"
    assert o["actor_rollout_ref.actor.optim.lr"] == "3e-06"
    assert o["actor_rollout_ref.actor.optim.weight_decay"] == "0.0"  # TRL's default, not VERL's 0.01
    assert o["actor_rollout_ref.rollout.temperature"] == "0.6" and o["actor_rollout_ref.rollout.top_p"] == "0.95"
    assert o["actor_rollout_ref.rollout.name"] == "vllm"
    assert o["data.max_prompt_length"] == "300" and o["data.max_response_length"] == "64"
    assert o["data.train_files"] == str(out / "train.parquet") and o["data.val_files"] == str(out / "val.parquet")
    assert o["trainer.n_gpus_per_node"] == "2" and o["trainer.nnodes"] == "1" and o["trainer.test_freq"] == "-1"
    assert o["trainer.project_name"] == "trials" and o["trainer.experiment_name"] == "rl"
    assert o["trainer.logger"] == "[console]" and o["++data.seed"] == "7"
    assert o["actor_rollout_ref.model.path"] == str((tmp_path / "base").resolve())
    assert Path(o["custom_reward_function.path"]) == Path(adapters.__file__).resolve()
    assert Path(o["custom_reward_function.path"]).exists() and o["custom_reward_function.name"] == "compute_score"
    assert "lora_rank" not in text and not result.warnings


@pytest.mark.parametrize("loss_type,mode", [("dapo", "token-mean"), ("bnpo", "token-mean"),
                                            ("grpo", "seq-mean-token-mean"), ("dr_grpo", "seq-mean-token-sum-norm")])
def test_loss_types_map_to_verl_aggregation(tmp_path, loss_type, mode):
    prepare(pipeline(tmp_path, trainer={"loss_type": loss_type}), "rl", tmp_path / "verl", max_prompt_length=64)
    o = overrides(tmp_path / "verl" / "run_verl.sh")
    assert o["actor_rollout_ref.actor.loss_agg_mode"] == mode
    assert o["actor_rollout_ref.actor.use_kl_loss"] == "false"  # TRL's default beta is 0
    assert ("++actor_rollout_ref.actor.loss_scale_factor" in o) == (loss_type == "dr_grpo")


def test_lora_search_index_and_settings_without_a_counterpart(tmp_path):
    stage = {"finetuning": "lora", "lora": {"r": 16, "target_modules": "q_proj,v_proj"},
             "search_index": str(tmp_path / "index.sqlite"), "trainer": {"min_p": 0.1, "num_train_epochs": 2}}
    result = prepare(pipeline(tmp_path, **stage), "rl", tmp_path / "verl", max_prompt_length=64)
    text = (tmp_path / "verl" / "run_verl.sh").read_text()
    o = overrides(tmp_path / "verl" / "run_verl.sh")
    assert o["actor_rollout_ref.model.lora_rank"] == "16" and o["actor_rollout_ref.model.lora_alpha"] == "32"
    assert o["actor_rollout_ref.model.target_modules"] == "[q_proj,v_proj]"  # VERL 0.9's list
    assert o["trainer.total_epochs"] == "2" and "trainer.total_training_steps" not in o
    assert f"export POSTTRAIN_SEARCH_INDEX={tmp_path / 'index.sqlite'}" in text
    assert o["++ray_kwargs.ray_init.runtime_env.env_vars.POSTTRAIN_SEARCH_INDEX"] == str(tmp_path / "index.sqlite")
    assert result.warnings == ["min_p (set in stages.rl.trainer) has no VERL counterpart in this mapping; "
                               "it is not carried over"]


def test_every_key_written_is_a_checked_verl_key(tmp_path):
    trainer = {"max_grad_norm": 0.5, "adam_beta1": 0.8, "entropy_coef": 0.01, "activation_checkpointing": True,
               "lr_scheduler_type": "cosine", "warmup_steps": 3, "top_k": 20, "loss_type": "dr_grpo", "max_steps": 5,
               "report_to": ["wandb"], "eval_strategy": "steps", "eval_steps": 2, "beta": 0.1}
    prepare(pipeline(tmp_path, finetuning="lora", search_index="idx.sqlite", trainer=trainer), "rl", tmp_path / "verl",
            max_prompt_length=64)
    o = overrides(tmp_path / "verl" / "run_verl.sh")
    assert set(o) - VERL_KEYS == set()
    assert o["trainer.logger"] == "[console,wandb]" and o["trainer.test_freq"] == "2"
    assert o["actor_rollout_ref.actor.optim.lr_warmup_steps"] == "3" and o["actor_rollout_ref.rollout.top_k"] == "20"
    assert o["actor_rollout_ref.actor.optim.betas"] == "[0.8,0.999]"
    assert o["actor_rollout_ref.model.target_modules"] == "all-linear"


def test_the_script_runs_main_ppo_with_the_users_overrides_last(tmp_path):
    """run_verl.sh with a stand-in python3 that records its arguments: what VERL's Hydra would receive."""
    out = tmp_path / "my verl"  # a space: quoted for bash and for Hydra
    prepare(pipeline(tmp_path), "rl", out, max_prompt_length=64)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "python3"
    fake.write_text(f"#!{sys.executable}\nimport json, sys\n"
                    "if sys.argv[1] == '-c':\n    sys.exit(0)  # as if VERL's config had reward/reward.yaml\n"
                    "json.dump(sys.argv[1:], open(sys.argv[0] + '.args', 'w'))\n")
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(["bash", str(out / "run_verl.sh"), "trainer.total_epochs=3"], env=env)
    assert done.returncode == 0
    args = json.loads((bin_dir / "python3.args").read_text())
    assert args[:2] == ["-m", "verl.trainer.main_ppo"] and args[-1] == "trainer.total_epochs=3"
    assert f"reward.custom_reward_function.path={Path(adapters.__file__).resolve()}" in args
    assert "custom_reward_function.name=compute_score" in args and "trainer.logger=[console]" in args
    assert f"data.train_files='{out / 'train.parquet'}'" in args


def test_input_model_is_an_earlier_stages_output(tmp_path):
    result = prepare(pipeline(tmp_path, model="sft"), "rl", tmp_path / "verl", max_prompt_length=64)
    o = overrides(tmp_path / "verl" / "run_verl.sh")
    assert o["actor_rollout_ref.model.path"] == str((tmp_path / "run" / "sft" / "model").resolve())
    assert any("stage sft's output" in note and "train it first" in note for note in result.notes)


def test_max_prompt_length_is_the_longest_templated_prompt(tmp_path, tiny_model):
    from transformers import AutoTokenizer

    result = prepare(pipeline(tmp_path, base=tiny_model), "rl", tmp_path / "verl")
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    longest = max(len(tokenizer(tokenizer.apply_chat_template(r["prompt"], add_generation_prompt=True, tokenize=False),
                                add_special_tokens=False)["input_ids"]) for r in records())
    assert overrides(tmp_path / "verl" / "run_verl.sh")["data.max_prompt_length"] == str(longest)
    assert any(f"data.max_prompt_length={longest}" in note for note in result.notes)


def test_a_batch_that_splits_a_group_is_an_error(tmp_path):
    with pytest.raises(PosttrainError, match=r"4 × 1 × 1 = 4 completions per optimizer step, not a multiple of "
                                             r"num_generations \(8\)"):
        prepare(pipeline(tmp_path, trainer={"generation_batch_size": 16, "num_generations": 8}), "rl",
                tmp_path / "verl", max_prompt_length=64)
    assert not (tmp_path / "verl").exists()


# ---- the command ---------------------------------------------------------------------------------------------------

def _invoke(*args):
    return runner.invoke(app, ["verl", "prepare", *map(str, args)])


def _flat(text: str) -> str:
    return "".join(text.split())


def test_cli_prepare_prints_the_splits_and_the_command(tmp_path):
    out = tmp_path / "verl"
    result = _invoke(pipeline(tmp_path), "--stage", "rl", "--out", out, "--max-prompt-length", 128,
                     "--set", "stages.rl.trainer.num_generations=2")
    assert result.exit_code == 0, result.output
    assert "32" in result.stdout and "test.parquet" in result.stdout
    assert _flat(f"bash {out / 'run_verl.sh'}") in _flat(result.stdout)
    assert overrides(out / "run_verl.sh")["actor_rollout_ref.rollout.n"] == "2"


@pytest.mark.parametrize("args,message", [
    (["--stage", "nope"], "--stage: no stage named 'nope'; GRPO stages: rl"),
    (["--stage", "sft"], "--stage: stage sft has type sft; VERL takes a GRPO stage (GRPO stages: rl)"),
    (["--stage", "rl", "--val-size", "0"], "--val-size: expected a fraction above 0 and below 1"),
    (["--stage", "rl", "stages.rl.trainer.num_generations=3"], "not a whole number of groups of num_generations 3"),
])
def test_cli_bad_input_exits_2_and_writes_nothing(tmp_path, args, message):
    out = tmp_path / "verl"
    result = _invoke(pipeline(tmp_path), "--out", out, "--max-prompt-length", 64, *args)
    assert result.exit_code == 2, result.output
    assert _flat(message) in _flat(result.stderr) and "Traceback" not in result.output
    assert not out.exists()


def test_cli_refuses_a_non_empty_out_dir_without_force(tmp_path):
    out = tmp_path / "verl"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    result = _invoke(pipeline(tmp_path), "--stage", "rl", "--out", out, "--max-prompt-length", 64)
    assert result.exit_code == 2 and "pass --force" in result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["mine.txt"]
    result = _invoke(pipeline(tmp_path), "--stage", "rl", "--out", out, "--max-prompt-length", 64, "--force")
    assert result.exit_code == 0, result.output
    assert (out / "mine.txt").read_text() == "keep" and (out / "train.parquet").exists()


def test_a_fresh_worker_scores_the_clinical_study_search_split_through_the_script_env(tmp_path, monkeypatch):
    """The clinical recipe's study-search stage as VERL runs it: a new process with the script's exports,
    adapters.py loaded by path, every prepared row scored; a reviewer's query finds the relevant trials."""
    root = Path(__file__).resolve().parents[2]
    monkeypatch.chdir(root)
    out = tmp_path / "verl"
    prepare("recipes/clinical_trials/pipeline.yaml", "grpo_study_search", out, max_prompt_length=512,
            overrides=[f"output_dir={tmp_path / 'run'}"])
    spec = importlib.util.spec_from_file_location("make_clinical_data", root / "examples" / "make_clinical_data.py")
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    calls = []
    for split in ("train", "val", "test"):
        for row in rows(out, split):
            prompt = row["prompt"][0]["content"]
            condition = next(c for c in generator.CONDITIONS if f"adults with {c}." in prompt)
            intervention = next(i for i in generator.INTERVENTIONS if f"trials comparing {i} with" in prompt)
            calls.append({"data_source": row["data_source"], "ground_truth": row["reward_model"]["ground_truth"],
                          "extra_info": row["extra_info"],
                          "solution_str": f"<answer>{generator.reference_query(condition, intervention)}</answer>"})
    (tmp_path / "calls.json").write_text(json.dumps(calls))
    exports = dict(line[len("export "):].split("=", 1) for line in (out / "run_verl.sh").read_text().splitlines()
                   if line.startswith("export "))
    assert set(exports) == {"POSTTRAIN_SEARCH_INDEX"} and Path(exports["POSTTRAIN_SEARCH_INDEX"]).is_file()
    worker = ("import importlib.util, json, sys\n"
              "spec = importlib.util.spec_from_file_location('custom_reward', sys.argv[1])\n"
              "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)\n"
              "calls = json.load(open(sys.argv[2]))\n"
              "print(json.dumps([module.compute_score(**call) for call in calls]))\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTTRAIN_")}
    done = subprocess.run([sys.executable, "-c", worker, adapters.__file__, str(tmp_path / "calls.json")],
                          env={**env, **exports}, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    scores = json.loads(done.stdout)
    assert len(scores) == 150 and all(score == pytest.approx(1.1) for score in scores)


def test_a_batch_that_makes_whole_groups_only_across_gpus_is_mapped(tmp_path):
    # 4 completions per device are half a group of 8; on 2 GPUs a generation round is one whole group
    trainer = {"per_device_train_batch_size": 4, "num_generations": 8}
    prepare(pipeline(tmp_path, trainer=trainer), "rl", tmp_path / "verl", gpus=2, max_prompt_length=64)
    o = overrides(tmp_path / "verl" / "run_verl.sh")
    assert o["data.train_batch_size"] == "1" and o["actor_rollout_ref.rollout.n"] == "8"
    with pytest.raises(PosttrainError, match="per_device_train_batch_size 4 x 1 process"):
        prepare(pipeline(tmp_path, trainer=trainer), "rl", tmp_path / "verl1", gpus=1, max_prompt_length=64)


@pytest.mark.parametrize("finetuning", ["freeze", "oft"])
def test_finetuning_verl_cannot_follow_is_refused(tmp_path, finetuning):
    with pytest.raises(PosttrainError, match=f"finetuning: {finetuning} has no VERL counterpart"):
        prepare(pipeline(tmp_path, finetuning=finetuning), "rl", tmp_path / "verl", max_prompt_length=64)
    assert not (tmp_path / "verl" / "run_verl.sh").exists()


@pytest.mark.parametrize("stage", [{"optimizer": "muon"}, {"finetuning": "lora", "lora": {"plus_lr_ratio": 16}}])
def test_optimizers_posttrain_builds_are_refused(tmp_path, stage):
    with pytest.raises(PosttrainError, match="VERL's actor has its own optimizer"):
        prepare(pipeline(tmp_path, **stage), "rl", tmp_path / "verl", max_prompt_length=64)


def _fake_verl(root: Path, annotation: str) -> Path:
    """A `verl` package whose HFModelConfig types target_modules as `annotation`, as releases differ."""
    package = root / annotation.replace("[", "_").replace("]", "_") / "verl" / "workers" / "config"
    package.mkdir(parents=True)
    for folder in (package, package.parent, package.parent.parent):
        (folder / "__init__.py").write_text("")
    (package / "model.py").write_text("from dataclasses import dataclass\nfrom typing import Any, Optional\n"
                                      "@dataclass\nclass HFModelConfig:\n"
                                      f"    target_modules: {annotation} = 'all-linear'\n")
    return package.parents[2]


@pytest.mark.parametrize("annotation, string", [("Optional[str]", True), ("Optional[Any]", False)])
def test_a_module_list_is_the_regex_where_verl_types_the_field_as_a_string(tmp_path, annotation, string):
    """VERL 0.9 takes a list (its SGLang rollout refuses a regex); older releases type the field Optional[str], where
    run_verl.sh writes the regex peft full-matches, for the same modules."""
    import subprocess

    from peft import LoraConfig
    from peft.tuners.tuners_utils import check_target_module_exists

    stage = {"finetuning": "lora", "lora": {"r": 16, "target_modules": "q_proj,v_proj"}}
    prepare(pipeline(tmp_path, **stage), "rl", tmp_path / "verl", max_prompt_length=64)
    text = (tmp_path / "verl" / "run_verl.sh").read_text()
    start = text.index("MODULES=(")
    block = text[start:text.index("\nfi\n", start) + 4] + 'printf "%s\\n" "${MODULES[@]}"\n'
    env = {**os.environ, "PYTHONPATH": str(_fake_verl(tmp_path / "fake", annotation))}
    written = subprocess.run(["bash", "-c", block], capture_output=True, text=True, env=env, check=True).stdout
    key, value = written.strip().split("=", 1)
    assert key == "actor_rollout_ref.model.target_modules"
    if not string:
        assert value == "[q_proj,v_proj]"
        return
    assert value[0] == value[-1] == "'"
    lora = LoraConfig(target_modules=value[1:-1])
    picked = [m for m in ("model.layers.0.self_attn.q_proj", "model.layers.11.self_attn.v_proj", "q_proj",
                          "model.layers.0.self_attn.k_proj", "model.layers.0.mlp.up_proj", "lm_head", "xq_proj")
              if check_target_module_exists(lora, m)]
    assert picked == ["model.layers.0.self_attn.q_proj", "model.layers.11.self_attn.v_proj", "q_proj"]
