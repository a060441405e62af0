"""posttrain/stages/grpo/rollouts.py: the rules a GRPO stage's rollouts must satisfy on GPUs (vLLM's modes, memory share and
tensor-parallel size, the generation round), said before anything loads, on a stand-in machine."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from posttrain import stages
from posttrain.stages.grpo import rollouts
from posttrain.config import load_config
from posttrain.errors import PosttrainError
from tests.training.test_requirements import A100, EVERYTHING, machine, pipeline, problems, stage_problems  # noqa: F401  (machine: a fixture)


@pytest.mark.parametrize("trainer, message", [
    ({"vllm_mode": "remote"}, "stages.s.trainer.vllm_mode: expected colocate (vLLM inside each training process) or "
                              "server (a separate `posttrain vllm-serve`), got 'remote'"),
    ({"vllm_gpu_memory_utilization": 0}, "stages.s.trainer.vllm_gpu_memory_utilization: 0 is outside (0, 1]; it is "
                                         "the fraction of each GPU's memory vLLM reserves. Fix: a value such as TRL's "
                                         "default 0.3"),
    ({"vllm_gpu_memory_utilization": 1.5}, "stages.s.trainer.vllm_gpu_memory_utilization: 1.5 is outside (0, 1]"),
])
def test_vllm_settings_out_of_range(machine, trainer, message):
    machine(**A100, packages=EVERYTHING)
    found = problems("grpo", trainer={"use_vllm": True, **trainer})
    assert len(found) == 1 and found[0].startswith(message), found


def test_colocated_tensor_parallel_must_divide_the_training_processes(machine, monkeypatch):
    machine(**A100, packages=EVERYTHING, count=1)
    trainer = {"use_vllm": True, "vllm_tensor_parallel_size": 4}
    assert problems("grpo", trainer=trainer) == [  # one process: TRL would raise once the model has loaded
        "stages.s.trainer.vllm_tensor_parallel_size: 4 does not divide the 1 training process (each colocated vLLM "
        "engine spans that many of them). Fix: one of 1, or more processes (--nproc; `posttrain validate FILE "
        "launch.nproc=N` checks such a run)"]
    machine(**A100, packages=EVERYTHING, count=8)
    assert problems("grpo", top={"launch": {"nproc": 4}}, trainer=trainer) == []
    monkeypatch.setenv("WORLD_SIZE", "6")
    assert problems("grpo", trainer=trainer) == [
        "stages.s.trainer.vllm_tensor_parallel_size: 4 does not divide the 6 training processes (each colocated vLLM "
        "engine spans that many of them). Fix: one of 1, 2, 3, 6, or more processes (--nproc; `posttrain validate "
        "FILE launch.nproc=N` checks such a run)"]
    assert problems("grpo", trainer={**trainer, "vllm_mode": "server"}) == []
    monkeypatch.delenv("WORLD_SIZE")
    stage, config = pipeline("grpo", trainer=trainer)
    launched = SimpleNamespace(attn_implementation=None, dtype="auto", launch=SimpleNamespace(processes=2))
    assert stage_problems(stage, launched)[0].startswith("stages.s.trainer.vllm_tensor_parallel_size: 4 does not "
                                                       "divide the 2 training processes")


def test_vllm_notes_server_command_and_colocated_memory_share(machine):
    machine(**A100, packages=EVERYTHING)
    notes = stages.notes(*pipeline("grpo", trainer={"use_vllm": True, "vllm_mode": "server", "vllm_server_port": 8011,
                                                 "vllm_gpu_memory_utilization": 0.5}))
    assert notes == [
        "stages.s.trainer.vllm_mode: server: the trainer sends rollouts to a vLLM server at http://0.0.0.0:8011 "
        "(waiting up to vllm_server_timeout, 240 s by default); start it first on a GPU training does not use: "
        "CUDA_VISIBLE_DEVICES=0 posttrain vllm-serve --model models/base --port 8011",
        "stages.s.trainer: vllm_gpu_memory_utilization applies to colocate mode only; give the server "
        "--gpu-memory-utilization / --tensor-parallel-size instead"]
    default, = stages.notes(*pipeline("grpo", trainer={"use_vllm": True}))
    assert default.endswith("reserves 0.3 of its GPU's memory for weights and KV cache")
    high, = stages.notes(*pipeline("grpo", trainer={"use_vllm": True, "vllm_gpu_memory_utilization": 0.7}))
    assert "that leaves training 30% for its weights, gradients, optimizer states and activations" in high
    assert "lower vllm_gpu_memory_utilization (TRL's default is 0.3)" in high
    assert stages.notes(*pipeline("grpo", trainer={"vllm_mode": "server"})) == [
        "stages.s.trainer: vllm_mode: no effect without use_vllm: true"]


def test_the_server_note_names_the_model_an_earlier_stage_writes():
    config = load_config({"name": "p", "model": "models/base", "output_dir": "runs/p", "stages": [
        {"name": "sft", "type": "sft", "data": "d.jsonl"},
        {"name": "rl", "type": "grpo", "model": "sft", "data": "d.jsonl", "rewards": ["answer_tags"]}]})
    assert rollouts.serve_model(config.stages[1], config) == "runs/p/sft/model"
    assert rollouts.serve_model(config.stages[0], config) == "models/base"


@pytest.mark.parametrize("trainer, processes, message", [
    ({"generation_batch_size": 8, "steps_per_generation": 2}, 1,
     "stages.s.trainer: generation_batch_size 8 and steps_per_generation 2 both size the generation round; keep one"),
    ({"num_generations": 1}, 1, "stages.s.trainer.num_generations: 1; GRPO scores each completion against the others "
                                "of its prompt, so a group needs at least 2. Fix: num_generations: 2 or more"),
    ({"generation_batch_size": 12, "per_device_train_batch_size": 4, "num_generations": 8}, 2,
     "stages.s.trainer.generation_batch_size: 12 is not a whole number of optimizer batches of 8 completions "
     "(per_device_train_batch_size 4 x 2 process(es)). Fix: generation_batch_size: 16"),
    ({"generation_batch_size": 18, "per_device_train_batch_size": 4, "num_generations": 6}, 1,
     "stages.s.trainer.generation_batch_size: 18 is not a whole number of optimizer batches of 4 completions "
     "(per_device_train_batch_size 4 x 1 process(es)). Fix: generation_batch_size: 24"),
])
def test_generation_round_rules_come_before_trls_own_errors(tmp_path, trainer, processes, message):
    from posttrain.stages import grpo

    stage, config = pipeline("grpo", trainer=trainer)
    with pytest.raises(PosttrainError) as info:
        grpo.plan(stage, config, tmp_path, processes=processes)
    assert str(info.value).startswith(message), str(info.value)
    fix = str(info.value).rsplit("generation_batch_size: ", 1)[-1]
    if fix.isdigit():  # the suggested size passes every rule
        grpo.plan(*pipeline("grpo", trainer={**trainer, "generation_batch_size": int(fix)}), tmp_path,
                  processes=processes)
        assert int(fix) % math.lcm(trainer["per_device_train_batch_size"] * processes, trainer["num_generations"]) == 0
