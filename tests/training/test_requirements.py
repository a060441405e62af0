"""posttrain/machine.py: what each GPU-only option needs, said before anything loads, on a stand-in machine; and
gradient checkpointing, which needs no GPU, training on this CPU. The GRPO rollout rules: tests/stages/test_grpo_rollouts.py."""

from __future__ import annotations

import json
import math

import pytest
import torch

from posttrain import machine as gpu
from posttrain import stages
from posttrain.launch import launched
from posttrain.config import load_config
from posttrain.errors import ConfigError
from tests.conftest import make_chats, write_jsonl

CPU = dict(cuda=False)
A100 = dict(cuda=True, capability=(8, 0), name="NVIDIA A100")
H100 = dict(cuda=True, capability=(9, 0), name="NVIDIA H100")
T4 = dict(cuda=True, capability=(7, 5), name="Tesla T4")
EVERYTHING = ("bitsandbytes", "flash_attn", "flash_attn_interface", "liger_kernel", "vllm")


@pytest.fixture
def machine(monkeypatch):
    """Stand in a machine: CUDA or not, its compute capability and GPU count, which packages import."""
    def use(cuda=False, capability=None, name="none", count=1, packages=(), cpu_bf16=False):
        monkeypatch.setattr(gpu, "cuda", lambda: cuda)
        monkeypatch.setattr(gpu, "cpu_bf16_native", lambda: cpu_bf16)
        monkeypatch.setattr(gpu, "capability", lambda: capability if cuda else None)
        monkeypatch.setattr(gpu, "device_name", lambda: name)
        monkeypatch.setattr(gpu, "device_count", lambda: count if cuda else 0)
        monkeypatch.setattr(gpu, "installed", lambda module: module in packages)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    return use


def pipeline(stage_type="sft", top=None, **stage):
    """A loaded config (nothing on disk is read): one stage of `stage_type` with `stage`'s fields."""
    fields = {"sft": {"data": "d.jsonl"}, "reward_model": {"data": "d.jsonl"}, "process_reward": {"data": "d.jsonl"},
              "grpo": {"data": "d.jsonl", "rewards": ["answer_tags"]},
              "eval": {"data": "d.jsonl", "metrics": ["reward:answer_tags"]}}[stage_type]
    config = load_config({"name": "p", "model": "models/base", **(top or {}),
                          "stages": [{"name": "s", "type": stage_type, **fields, **stage}]})
    return config.stages[0], config



def stage_problems(stage, config):
    """What the stage table finds for `stage`, launched as a run would launch it."""
    return stages.problems(stage, config, launched(stage, config))

def problems(*args, **kwargs):
    return stage_problems(*pipeline(*args, **kwargs))


ATTENTION_CPU = ("attn_implementation: flash_attention_2 needs a CUDA GPU of compute capability 8.0 or newer and the "
                 "flash_attn package; this machine has no CUDA GPU and the flash_attn package is not installed. Fix: "
                 "on a GPU of compute capability 8.0+, pip install flash-attn --no-build-isolation; on this one set "
                 "attn_implementation: sdpa (sdpa and eager run on any machine)")


def test_every_gpu_option_on_a_cpu_machine_is_named_with_its_fix(machine):
    machine(**CPU)
    found = problems(top={"attn_implementation": "flash_attention_2"}, finetuning="qlora",
                     trainer={"tf32": True, "use_liger_kernel": True})
    assert found == [
        ATTENTION_CPU,
        "stages.s.finetuning: qlora needs a CUDA GPU; none is present. Use `lora` on this machine.",
        "stages.s.trainer.tf32: TF32 needs an NVIDIA GPU of compute capability 8.0 or newer (Ampere or later); this "
        "machine has no CUDA GPU. Fix: drop tf32 on this machine",
        "stages.s.trainer.use_liger_kernel: needs a CUDA GPU and the liger_kernel package (Liger's kernels are Triton "
        "code for CUDA GPUs); missing here: a CUDA GPU and the liger_kernel package. Fix: pip install "
        "'posttrain[gpu]' on a CUDA machine, or drop use_liger_kernel here",
    ]


def test_grpo_use_vllm_on_a_cpu_machine(machine):
    machine(**CPU)
    assert problems("grpo", trainer={"use_vllm": True}) == [
        "stages.s.trainer.use_vllm: needs a CUDA GPU and the vllm package (vLLM generates the rollouts on the GPU); "
        "missing here: a CUDA GPU and the vllm package. Fix: pip install 'posttrain[gpu]' on a CUDA machine, or "
        "use_vllm: false here (rollouts then use transformers' generate)"]


def test_a_gpu_machine_with_the_packages_runs_every_option(machine):
    machine(**H100, packages=EVERYTHING)
    for attention in ("flash_attention_2", "flash_attention_3"):
        assert problems(top={"attn_implementation": attention, "dtype": "bf16"}, finetuning="qlora",
                        trainer={"tf32": True, "bf16": True, "use_liger_kernel": True,
                                 "gradient_checkpointing": True}) == []
    assert problems("grpo", trainer={"use_vllm": True, "vllm_mode": "server"}) == []


def test_a_package_missing_on_a_gpu_machine_says_what_to_install(machine):
    machine(**A100, packages=("vllm",))
    assert problems(finetuning="qlora") == ["stages.s.finetuning: qlora needs bitsandbytes, which is not installed: "
                                            "pip install 'posttrain[gpu]', or use `lora` on this machine."]
    assert problems(top={"attn_implementation": "flash_attention_2"}) == [
        "attn_implementation: flash_attention_2 needs a CUDA GPU of compute capability 8.0 or newer and the "
        "flash_attn package; the flash_attn package is not installed. Fix: pip install flash-attn "
        "--no-build-isolation, or set attn_implementation: sdpa (sdpa and eager run on any machine)"]
    assert "missing here: the liger_kernel package." in problems(trainer={"use_liger_kernel": True})[0]


@pytest.mark.parametrize("attention", [None, "sdpa", "eager"])
@pytest.mark.parametrize("kind", [CPU, T4])
def test_sdpa_and_eager_run_anywhere(machine, attention, kind):
    machine(**kind)
    for stage_type in ("sft", "grpo", "reward_model", "process_reward", "eval"):
        assert problems(stage_type, top={"attn_implementation": attention} if attention else None) == []


def test_an_older_gpu_refuses_bf16_tf32_and_flash_attention(machine):
    machine(**T4, packages=EVERYTHING)
    assert problems(top={"dtype": "bf16"}, trainer={"bf16": True, "tf32": True}) == [
        "stages.s.trainer.tf32: TF32 needs an NVIDIA GPU of compute capability 8.0 or newer (Ampere or later); this "
        "GPU (Tesla T4) is compute capability 7.5. Fix: drop tf32 on this machine",
        "dtype: bf16 needs a GPU of compute capability 8.0 or newer; this GPU (Tesla T4) is 7.5. Fix: train in fp16 "
        "mixed precision here (dtype: fp32 with trainer fp16: true)",
        "stages.s.trainer.bf16: bf16 needs a GPU of compute capability 8.0 or newer; this GPU (Tesla T4) is 7.5. Fix: "
        "train in fp16 mixed precision here (dtype: fp32 with trainer fp16: true)",
    ]
    found, = problems(top={"attn_implementation": "flash_attention_2"})
    assert "this GPU (Tesla T4) is compute capability 7.5. Fix: on a GPU of compute capability 8.0+" in found
    machine(**A100, packages=EVERYTHING)  # FlashAttention-3 is built for Hopper
    assert "needs a CUDA GPU of compute capability 9.0" in problems(top={"attn_implementation": "flash_attention_3"})[0]


def test_fp16_weights_cannot_be_fully_fine_tuned_in_fp16_mixed_precision(machine):
    machine(**T4)
    message = ("dtype: fp16 with stages.s.finetuning: full: fp16 mixed precision needs fp32 master weights (torch's "
               "gradient scaler stops with 'Attempting to unscale FP16 gradients'). Fix: dtype: fp32 (trainer fp16: "
               "true stays), or dtype: bf16 on a GPU of compute capability 8.0 or newer")
    assert problems(top={"dtype": "fp16"}) == [message]
    assert problems(top={"dtype": "fp16"}, finetuning="lora") == []  # peft keeps the adapters in fp32
    assert problems(top={"dtype": "fp32"}, trainer={"fp16": True}) == []
    machine(**CPU)
    assert problems(top={"dtype": "fp16"}) == []  # no gradient scaler on the CPU


def test_half_precision_on_a_cpu_is_a_note_not_a_problem(machine):
    machine(**CPU)
    stage, config = pipeline(top={"dtype": "bf16"}, trainer={"bf16": True})
    assert stage_problems(stage, config) == []
    assert stages.notes(stage, config) == [
        f"{label}: no CUDA GPU here, so half precision trains on the CPU (posttrain sets use_cpu: true): fine for "
        "checking a GPU config, not for speed" for label in ("dtype", "stages.s.trainer.bf16")]
    machine(**A100)
    assert stages.notes(stage, config) == []


@pytest.mark.parametrize(("top", "trainer", "says"), [
    ({}, {}, "over fp32 weights"),  # the default on such a CPU
    ({"dtype": "bf16"}, {}, "over bf16 weights"),
    ({}, {"bf16": False}, None),
    ({"dtype": "fp32"}, {}, None),
])
def test_sft_on_a_cpu_with_bf16_arithmetic_says_it_trains_in_bf16_there(machine, top, trainer, says):
    machine(cuda=False, cpu_bf16=True)
    stage, config = pipeline(top=top, trainer=trainer)
    found = stages.notes(stage, config)
    assert not any("not for speed" in note for note in found), found  # it is for speed here
    autocast = [note for note in found if "bf16 autocast" in note]
    assert (autocast == []) if says is None else (len(autocast) == 1 and says in autocast[0]), found


def test_validate_names_each_problem_once_and_checks_the_rest(machine, tiny_model, tmp_path):
    from posttrain.pipeline.validate import validate

    machine(**CPU)
    data = write_jsonl(tmp_path / "chats.jsonl", make_chats(4))
    stage = {"type": "sft", "data": str(data), "trainer": {"max_length": 64}}
    report = validate({"name": "p", "model": str(tiny_model), "attn_implementation": "flash_attention_2",
                       "stages": [{"name": "a", **stage, "trainer": {"tf32": True, "max_length": 64,
                                                                    "save_strategy": "sometimes"}},
                                  {"name": "b", **stage}]})
    assert report.problems.count(ATTENTION_CPU) == 1
    assert any(p.startswith("stages.a.trainer.tf32: TF32 needs") for p in report.problems)
    assert not any("--tf32 requires Ampere" in p for p in report.problems)  # TRL's own words, said once by posttrain
    assert any("not a valid SaveStrategy" in p for p in report.problems)  # the rest of the block is still checked
    report = validate({"name": "p", "model": str(tiny_model),
                       "stages": [{"name": "a", **stage, "trainer": {"ddp_backend": "nccl", "max_length": 64}}]})
    assert report.problems == [  # and not torch's "Default process group has not been initialized" besides
        "stages.a.trainer.ddp_backend: nccl needs CUDA GPUs; this machine has none. Fix: leave ddp_backend out "
        "(posttrain launches CPU processes with gloo; on GPUs accelerate picks nccl)"]
    report = validate({"name": "p", "model": str(tiny_model), "stages": [
        {"name": "a", "type": "grpo", "data": str(data), "rewards": ["answer_tags"],
         "trainer": {"use_vllm": True, "vllm_mode": "bogus"}}]})
    assert not any("vllm_mode: colocate" in n for n in report.notes)  # a bad mode gets a problem, not a colocate note


def test_a_stage_stops_before_it_loads_anything(machine, tiny_model, tmp_path):
    from posttrain.pipeline import run

    machine(**CPU)
    data = write_jsonl(tmp_path / "chats.jsonl", make_chats(4))
    config = {"name": "p", "model": str(tiny_model), "output_dir": str(tmp_path / "run"),
              "stages": [{"name": "sft", "type": "sft", "data": str(data),
                          "trainer": {"use_liger_kernel": True, "tf32": True}}]}
    with pytest.raises(ConfigError) as info:
        run(config)
    lines = str(info.value).splitlines()
    assert [line.split(":")[0] for line in lines] == ["stages.sft.trainer.tf32", "stages.sft.trainer.use_liger_kernel"]
    assert not (tmp_path / "run" / "sft" / "model").exists()


def test_a_later_stage_the_machine_cannot_run_stops_the_pipeline_before_the_first_trains(machine, tiny_model,
                                                                                            tmp_path):
    from posttrain.pipeline import run

    machine(**CPU)
    data = write_jsonl(tmp_path / "chats.jsonl", make_chats(4))
    sft = {"type": "sft", "data": str(data), "trainer": {"max_steps": 1, "max_length": 64}}
    config = {"name": "p", "model": str(tiny_model), "output_dir": str(tmp_path / "run"),
              "stages": [{"name": "first", **sft}, {"name": "second", **sft, "finetuning": "qlora"}]}
    with pytest.raises(ConfigError, match=r"^stages\.second\.finetuning: qlora needs a CUDA GPU"):
        run(config)
    assert not (tmp_path / "run" / "first").exists()


def test_a_stage_the_manifest_holds_as_done_is_not_checked_again(machine, tiny_model, tmp_path):
    """A run trained on a GPU machine goes on with its other stages on one without."""
    from posttrain.pipeline.plan import to_run as _to_run

    machine(**CPU)
    config = load_config({"name": "p", "model": str(tiny_model), "output_dir": str(tmp_path / "run"),
                          "stages": [{"name": name, "type": "sft", "data": "d.jsonl", "finetuning": "qlora"}
                                     for name in ("trained", "pending")]})
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "manifest.json").write_text(json.dumps(
        {"stages": {"trained": {"status": "done"}, "pending": {"status": "failed"}}}))
    assert [s.name for s in _to_run(config, {"trained", "pending"}, force=False)] == ["pending"]
    assert [s.name for s in _to_run(config, {"trained", "pending"}, force=True)] == ["trained", "pending"]
    assert [s.name for s in _to_run(config, {"trained"}, force=False)] == []


def test_gradient_checkpointing_trains_on_the_cpu_without_reentrant_checkpoints(machine, tiny_model, tmp_path,
                                                                                 monkeypatch):
    import transformers.modeling_utils as modeling_utils

    from posttrain.pipeline import run

    machine(**CPU)
    calls = []
    original = modeling_utils.checkpoint

    def recording(function, *args, **kwargs):
        calls.append(kwargs.get("use_reentrant"))
        return original(function, *args, **kwargs)

    monkeypatch.setattr(modeling_utils, "checkpoint", recording)
    data = write_jsonl(tmp_path / "chats.jsonl", make_chats(16, seed=3, max_words=10))
    config = {"name": "p", "model": str(tiny_model), "output_dir": str(tmp_path / "run"),
              "stages": [{"name": "sft", "type": "sft", "data": str(data),
                          "trainer": {"gradient_checkpointing": True, "max_steps": 2, "max_length": 64,
                                      "per_device_train_batch_size": 2, "logging_steps": 1}}]}
    assert stage_problems(*pipeline(trainer={"gradient_checkpointing": True})) == []
    run_dir = run(config)
    losses = [json.loads(line).get("loss") for line in (run_dir / "sft" / "trainer_log.jsonl").read_text().splitlines()]
    assert [loss for loss in losses if loss is not None] and all(math.isfinite(x) for x in losses if x is not None)
    # two decoder layers, checkpointed in each of the two steps' forward passes
    assert len(calls) >= 4 and set(calls) == {False}, calls
    assert (run_dir / "sft" / "model" / "model.safetensors").exists()


def test_posttrain_validate_prints_the_install_command_whole(machine, tiny_model, tmp_path):
    import yaml
    from typer.testing import CliRunner

    from posttrain.cli import app

    machine(**CPU)
    data = write_jsonl(tmp_path / "chats.jsonl", make_chats(4))
    config = tmp_path / "p.yaml"
    config.write_text(yaml.safe_dump({"name": "p", "model": str(tiny_model), "type": "sft", "data": str(data),
                                      "trainer": {"use_liger_kernel": True, "max_length": 64}}))
    result = CliRunner().invoke(app, ["validate", str(config)])
    assert result.exit_code == 2
    assert "Fix:pipinstall'posttrain[gpu]'onaCUDAmachine" in "".join(result.stderr.split())  # not eaten as markup


@pytest.mark.parametrize("kind, loads, trains_in, mixed", [
    (CPU, torch.float32, "fp32", {"bf16": False, "fp16": False}),
    (T4, torch.float16, "fp32", {"bf16": False, "fp16": True}),  # torch would call T4's emulated bf16 supported
    (A100, torch.bfloat16, "bf16", {"bf16": True, "fp16": False}),
])
def test_dtype_auto_is_what_the_machine_computes_in(machine, kind, loads, trains_in, mixed):
    from trl import SFTConfig

    from posttrain.models.loading import resolve_dtype, training_dtype
    from posttrain.training.defaults import apply_common

    machine(**kind)
    assert resolve_dtype("auto") is loads  # generation and evaluation
    assert training_dtype("auto") == trains_in  # fp16 weights cannot train under fp16 mixed precision
    assert training_dtype("fp16") == "fp16"  # what is asked by name is kept (and checked in problems)
    stage, config = pipeline()
    settings = {}
    apply_common(settings, stage, config, SFTConfig, "stages.s.trainer")
    assert {key: settings[key] for key in mixed} == mixed
    assert settings.get("use_cpu", False) is False


@pytest.mark.parametrize("optim, kind, packages, expected", [
    ("paged_adamw_8bit", CPU, (), ["stages.s.trainer.optim: paged_adamw_8bit comes from the bitsandbytes package, "
                                   "which is not installed. Fix: pip install bitsandbytes, or optim: adamw_torch (the "
                                   "default)",
                                   "stages.s.trainer.optim: paged_adamw_8bit pages optimizer states between GPU and CPU "
                                   "memory, and needs a CUDA GPU; this machine has none. Fix: optim: adamw_torch here"]),
    ("adamw_8bit", A100, (), ["stages.s.trainer.optim: adamw_8bit comes from the bitsandbytes package, which is not "
                              "installed. Fix: pip install bitsandbytes, or optim: adamw_torch (the default)"]),
    ("galore_adamw_8bit", CPU, (), ["stages.s.trainer.optim: galore_adamw_8bit comes from the galore_torch package, "
                                    "which is not installed. Fix: pip install galore-torch, or optim: adamw_torch (the "
                                    "default)"]),
    ("paged_adamw_8bit", A100, ("bitsandbytes",), []),
    ("adamw_torch_fused", CPU, (), []),
    ("adafactor", CPU, (), []),
])
def test_an_optimizer_from_a_missing_package_is_named_before_training(machine, optim, kind, packages, expected):
    machine(**kind, packages=packages)
    assert problems(trainer={"optim": optim}) == expected


@pytest.mark.parametrize("attention, kind, stage_type, expected", [
    ("flex_attention", CPU, "sft", "attn_implementation: flex_attention needs a CUDA GPU (torch's FlexAttention has "
                                   "no backward pass on the CPU, to train)"),
    ("flex_attention", CPU, "eval", "attn_implementation: flex_attention needs a CUDA GPU"),
    ("flex_attention", A100, "sft", None),
    ("flash_attn", A100, "sft", "attn_implementation: expected one of eager, sdpa, flash_attention_2, "
                                "flash_attention_3, flash_attention_4, flex_attention or a Hub kernel (org/name), got "
                                "'flash_attn'"),
    ("paged|eager", A100, "eval", "attn_implementation: expected one of"),
    ("kernels-community/flash-attn2", A100, "sft", "attn_implementation: kernels-community/flash-attn2 is a kernel "
                                                   "from the Hugging Face Hub, which needs the kernels package"),
    ("flash_attention_4", A100, "sft", "attn_implementation: flash_attention_4 needs a CUDA GPU of compute "
                                       "capability 9.0 or newer and the flash_attn.cute package; this GPU (NVIDIA "
                                       "A100) is compute capability 8.0 and the flash_attn.cute package is not "
                                       "installed"),
])
def test_attention_values_transformers_would_refuse_deep_inside_loading(machine, attention, kind, stage_type,
                                                                         expected):
    machine(**kind)
    found = problems(stage_type, top={"attn_implementation": attention})
    if expected is None:
        assert found == []
    else:
        assert len(found) == 1 and found[0].startswith(expected), found


def test_a_hub_kernel_runs_where_the_kernels_package_is_installed(machine):
    machine(**A100, packages=("kernels",))
    assert problems(top={"attn_implementation": "kernels-community/flash-attn2"}) == []


def test_nccl_and_an_eval_stages_vllm_backend_need_the_gpu(machine):
    machine(**CPU)
    assert problems(trainer={"ddp_backend": "nccl"}) == [
        "stages.s.trainer.ddp_backend: nccl needs CUDA GPUs; this machine has none. Fix: leave ddp_backend out "
        "(posttrain launches CPU processes with gloo; on GPUs accelerate picks nccl)"]
    assert problems("eval", backend="vllm") == [
        "stages.s.backend: vllm: needs a CUDA GPU and the vllm package (vLLM generates on the GPU); missing here: a "
        "CUDA GPU and the vllm package. Fix: backend: hf (or auto, which takes vLLM where it can run)"]
    machine(**A100, packages=("vllm",))
    assert problems(trainer={"ddp_backend": "nccl"}) == [] and problems("eval", backend="vllm") == []


def test_an_eval_stage_the_machine_cannot_run_stops_before_it_loads_a_model(machine, tiny_model, tmp_path):
    """A run trained on a GPU machine, evaluated on one without: a message, not transformers' ImportError."""
    from posttrain.pipeline import run

    machine(**CPU)
    data = write_jsonl(tmp_path / "eval.jsonl", [{"prompt": [{"role": "user", "content": "2+2?"}],
                                                  "ground_truth": "4", "data_source": "answer_tags"}])
    config = {"name": "p", "model": str(tiny_model), "output_dir": str(tmp_path / "run"),
              "attn_implementation": "flash_attention_2",
              "stages": [{"name": "eval", "type": "eval", "models": ["base"], "data": str(data),
                          "metrics": ["reward:answer_tags"]}]}
    with pytest.raises(ConfigError, match="^attn_implementation: flash_attention_2 needs a CUDA GPU"):
        run(config)
    assert not (tmp_path / "run" / "eval").exists()


def test_one_process_a_gpu(machine, monkeypatch):
    machine(**A100, count=4)
    assert problems(top={"launch": {"nproc": 4}}) == []
    assert problems(top={"launch": {"nproc": 8}}) == [
        "launch.nproc: 8 processes on this node, but 4 CUDA GPUs are visible; two processes would share a GPU. Fix: "
        "--nproc 4 (or make more GPUs visible with CUDA_VISIBLE_DEVICES)"]
    assert problems() == [
        "stages.s: 4 CUDA GPUs are visible and the stage runs in one process, so transformers would spread each batch "
        "over them with nn.DataParallel (slow, and TRL's SFT trainer refuses it). Fix: --nproc 4 (one process a GPU), "
        "or CUDA_VISIBLE_DEVICES=0 to train on one"]
    assert problems("eval") == []  # generation uses one GPU
    monkeypatch.setenv("WORLD_SIZE", "8")  # inside a launched worker, the launch has already been checked
    assert problems() == []
    monkeypatch.delenv("WORLD_SIZE")
    machine(**A100, count=1)
    assert problems() == [] and problems(top={"launch": {"nproc": 1}}, deepspeed="zero2") == []


def test_flash_attention_needs_half_precision(machine):
    machine(**A100, packages=EVERYTHING)
    flash = {"attn_implementation": "flash_attention_2"}
    assert problems(top={**flash, "dtype": "fp32"}) == [
        "attn_implementation: flash_attention_2 computes in bf16 or fp16 only, and stage s runs in fp32 (dtype: fp32 "
        "and no bf16/fp16 autocast): flash-attn would stop at the first forward pass. Fix: dtype: bf16 (or auto), or "
        "attn_implementation: sdpa"]
    assert problems(top={**flash, "dtype": "fp32"}, trainer={"bf16": True}) == []  # autocast: attention in bf16
    assert problems("eval", top={**flash, "dtype": "fp32"})[0].startswith(
        "attn_implementation: flash_attention_2 computes in bf16 or fp16 only, and stage s runs in fp32 (dtype: fp32)")
    assert problems(top={**flash, "dtype": "auto"}) == [] and problems("eval", top=flash) == []

