"""The accelerate config file and `accelerate launch` command that start one training stage's processes.

A config file, as `accelerate config` writes one, rather than flags: the
keys users of accelerate, TRL and LLaMA-Factory already read, which
accelerate itself validates. Its `distributed_type` is MULTI_GPU on a CPU
machine too: accelerate 1.x starts MULTI_GPU through torch.distributed.run
(one process per `nproc`), while its MULTI_CPU path hands the processes to
mpirun; ACCELERATE_USE_CPU in the workers' environment then makes each a gloo
process. `same_network` selects torch's static rendezvous, where `node_rank`
fixes the ranks, so global rank 0 (the writer) is on node 0, beside the
`posttrain run` that keeps the manifest.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import yaml

from posttrain.launch.process import start_time

DEFAULT_PORT = 29500  # torchrun's; every node must name the same port, so a multi-node run cannot pick a free one


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_for(launch) -> int:
    if launch.master_port:
        return launch.master_port
    return DEFAULT_PORT if launch.nnodes > 1 else free_port()


def config(launch, port: int) -> dict:
    return {
        "compute_environment": "LOCAL_MACHINE",
        "distributed_type": "MULTI_GPU",
        "num_processes": launch.processes,  # all nodes' together, as accelerate counts them
        "num_machines": launch.nnodes,
        "machine_rank": launch.node_rank,
        "main_process_ip": launch.master_addr,
        "main_process_port": port,
        "same_network": True,
        "rdzv_backend": "static",
        "gpu_ids": "all",
        "mixed_precision": "no",  # the stage's bf16/fp16 (from the pipeline's dtype) decide, in TrainingArguments
        "use_cpu": False,
        "debug": False,
        "downcast_bf16": "no",
        "main_training_function": "main",
    }


def write(launch, folder: Path, port: int) -> Path:
    path = folder / "accelerate.yaml"
    path.write_text(yaml.safe_dump(config(launch, port), sort_keys=False), encoding="utf-8")
    return path


def command(config_file: Path, payload_dir: Path, threads: int) -> list[str]:
    """`accelerate launch` as a module of this interpreter, so the virtualenv's accelerate runs, PATH or not."""
    return [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config_file),
            "--num_cpu_threads_per_process", str(threads), "-m", "posttrain.launch.worker", str(payload_dir)]


def threads_per_process(launch, cuda: bool) -> int:
    """OMP threads per worker: OMP_NUM_THREADS when set; on a CPU the cores shared out (accelerate's own default
    for this launcher is 1 thread each)."""
    if os.environ.get("OMP_NUM_THREADS", "").isdigit():
        return max(1, int(os.environ["OMP_NUM_THREADS"]))
    if cuda:
        return 1
    return max(1, (os.cpu_count() or 1) // launch.nproc)


def environment(launch, cuda: bool, parent_pid: int) -> dict[str, str]:
    env = dict(os.environ)
    env["POSTTRAIN_PARENT_PID"] = str(parent_pid)  # the workers end themselves if `posttrain run` dies

    started = start_time(parent_pid)
    if started:
        env["POSTTRAIN_PARENT_START"] = started
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    if not cuda:
        env["ACCELERATE_USE_CPU"] = "true"
    if launch.nnodes == 1 and launch.master_addr in ("127.0.0.1", "localhost"):
        env.setdefault("GLOO_SOCKET_IFNAME", _loopback())  # keep one machine's gloo traffic on loopback
    return env


def _loopback() -> str:
    names = [name for _, name in socket.if_nameindex()] if hasattr(socket, "if_nameindex") else []
    return next((name for name in names if name.startswith("lo")), "lo")
