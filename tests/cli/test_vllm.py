"""`posttrain vllm-serve` (posttrain/cli/vllm.py): options mapped onto TRL's server command, the machine checked
before anything starts, a LoRA adapter merged first. Nothing here starts vLLM: the process is a stand-in."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from posttrain.serving import vllm as vllm_server
from posttrain import machine as gpu
from posttrain.cli import app
from tests.export.test_export import make_adapter

runner = CliRunner()


def _invoke(*args):
    return runner.invoke(app, ["vllm-serve", *[str(a) for a in args]])


@pytest.fixture
def no_process(monkeypatch):
    """Fail the test if anything is started."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"started a process: {args}")
    monkeypatch.setattr(vllm_server.subprocess, "Popen", refuse)


@pytest.fixture
def gpu_machine(monkeypatch):
    monkeypatch.setattr(gpu, "cuda", lambda: True)
    monkeypatch.setattr(gpu, "device_count", lambda: 2)
    monkeypatch.setattr(gpu, "installed", lambda module: True)


def test_options_map_onto_trls_server_command():
    command = vllm_server.server_command("models/m", host="0.0.0.0", port=8011, tensor_parallel_size=2,
                                      gpu_memory_utilization=0.8, max_model_len=2048)
    assert command[:4] == [sys.executable, "-m", "vllm.entrypoints.cli.main", "serve"]
    options = dict(zip(command[5::2], command[6::2]))
    assert command[4] == "models/m"
    assert {k: options[k] for k in ("--host", "--port", "--tensor-parallel-size", "--gpu-memory-utilization",
                                    "--max-model-len")} == {
        "--host": "0.0.0.0", "--port": "8011", "--tensor-parallel-size": "2", "--gpu-memory-utilization": "0.8",
        "--max-model-len": "2048"}
    # what TRL's trainers need of the server: weights pushed over NCCL, logprobs after temperature
    assert '{"backend": "nccl"}' in command and "processed_logprobs" in command
    defaults = vllm_server.server_command("m")
    assert defaults[defaults.index("--host") + 1] == "127.0.0.1" and defaults[defaults.index("--port") + 1] == "8000"
    assert "--max-model-len" not in defaults and "--trust-remote-code" not in defaults


def test_dry_run_prints_the_command_and_starts_nothing(tiny_model, no_process):
    result = _invoke("--model", tiny_model, "--port", 8011, "--tensor-parallel-size", 2,
                     "--gpu-memory-utilization", 0.7, "--dry-run")
    assert result.exit_code == 0, result.output
    line = result.stdout.strip()
    assert line.startswith(f"env VLLM_SERVER_DEV_MODE=1 {sys.executable} -m vllm.entrypoints.cli.main serve "
                           f"{tiny_model} --host 127.0.0.1 --port 8011 --tensor-parallel-size 2")
    assert "--gpu-memory-utilization 0.7" in line


def test_without_vllm_or_cuda_it_says_so_and_starts_nothing(tiny_model, no_process, monkeypatch):
    monkeypatch.setattr(gpu, "cuda", lambda: False)
    monkeypatch.setattr(gpu, "installed", lambda module: False)
    result = _invoke("--model", tiny_model)
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "posttrain vllm-serve needs the vllm package, which is not installed: pip install 'posttrain[gpu]' (on a CUDA "
        "machine), or train with use_vllm: false here",
        "posttrain vllm-serve needs a CUDA GPU; none is present. Run it on the GPU machine, or train with use_vllm: "
        "false here"]
    result = _invoke("--model", tiny_model, "--dry-run")  # prints the command, and says it would not start here
    assert result.exit_code == 0 and "vllm.entrypoints.cli.main serve" in result.stdout
    assert result.stderr.splitlines() == [
        "note: on this machine the server would not start: posttrain vllm-serve needs the vllm package, which is not "
        "installed: pip install 'posttrain[gpu]' (on a CUDA machine), or train with use_vllm: false here",
        "note: on this machine the server would not start: posttrain vllm-serve needs a CUDA GPU; none is present. "
        "Run it on the GPU machine, or train with use_vllm: false here"]


def test_more_tensor_parallel_ranks_than_gpus(tiny_model, no_process, gpu_machine):
    result = _invoke("--model", tiny_model, "--tensor-parallel-size", 4)
    assert result.exit_code == 2
    assert result.stderr.strip() == ("--tensor-parallel-size 4 needs that many GPUs; 2 visible "
                                     "(CUDA_VISIBLE_DEVICES). Fix: a smaller --tensor-parallel-size, or make more "
                                     "GPUs visible")


@pytest.mark.parametrize("args, message", [
    (["--gpu-memory-utilization", 1.2], "--gpu-memory-utilization: 1.2 is outside (0, 1]; it is the fraction of each "
                                        "of the server's GPUs vLLM reserves (0.9 when it has the GPUs to itself)"),
    (["--gpu-memory-utilization", 0], "--gpu-memory-utilization: 0.0 is outside (0, 1]"),
])
def test_bad_options_exit_2(tiny_model, no_process, gpu_machine, args, message):
    result = _invoke("--model", tiny_model, *args)
    assert result.exit_code == 2 and result.stderr.startswith(message), result.stderr


def test_a_missing_model_exits_2(tmp_path, no_process, gpu_machine):
    result = _invoke("--model", tmp_path / "nothing")
    assert result.exit_code == 2
    assert result.stderr.strip() == f"--model: {tmp_path / 'nothing'}: no such model directory"
    (tmp_path / "empty").mkdir()
    result = _invoke("--model", tmp_path / "empty")
    assert result.exit_code == 2 and "neither a model directory (no config.json) nor a LoRA adapter" in result.stderr


def test_an_adapter_is_merged_before_the_server_starts_and_removed_after(tiny_model, tmp_path, gpu_machine,
                                                                          monkeypatch):
    adapter = make_adapter(tiny_model, tmp_path / "lora", seed=2)
    started = []

    class Server:
        def __init__(self, command, env, preexec_fn):
            assert preexec_fn is not None  # the server dies with this process
            model = Path(command[4])
            started.append((command, env, (model / "config.json").is_file(), (model / "model.safetensors").is_file(),
                            (model / "adapter_config.json").exists()))

        def wait(self):
            return 0

    monkeypatch.setattr(vllm_server.subprocess, "Popen", Server)
    result = _invoke("--model", adapter, "--port", 8123)
    assert result.exit_code == 0, result.output
    (command, env, config, weights, still_adapter), = started
    assert (config, weights, still_adapter) == (True, True, False)  # a standalone merged model, not the adapter
    assert env["VLLM_SERVER_DEV_MODE"] == "1" and command[command.index("--port") + 1] == "8123"
    assert not Path(command[4]).exists()  # the temporary merge goes with the server


def test_the_server_exit_status_is_the_commands(tiny_model, gpu_machine, monkeypatch):
    class Server:
        def __init__(self, command, env, preexec_fn):
            pass

        def wait(self):
            return 3

    monkeypatch.setattr(vllm_server.subprocess, "Popen", Server)
    assert _invoke("--model", tiny_model).exit_code == 3
