"""The accelerate config posttrain writes loads as accelerate's own, and says how many processes meet where."""

from __future__ import annotations

import socket
import sys

from posttrain.config import LaunchSpec
from posttrain.launch import accelerate_config


def test_the_file_is_an_accelerate_cluster_config(tmp_path):
    from accelerate.commands.config.config_args import ClusterConfig

    launch = LaunchSpec(nproc=4, nnodes=2, node_rank=1, master_addr="10.1.2.3", master_port=29511)
    loaded = ClusterConfig.from_yaml_file(accelerate_config.write(launch, tmp_path, 29511))
    assert (loaded.num_processes, loaded.num_machines, loaded.machine_rank) == (8, 2, 1)
    assert (loaded.main_process_ip, loaded.main_process_port) == ("10.1.2.3", 29511)
    assert loaded.same_network and loaded.rdzv_backend == "static"  # node_rank fixes the ranks: rank 0 on node 0
    assert loaded.distributed_type.value == "MULTI_GPU"  # accelerate's torch.distributed.run path, CPU too
    assert loaded.mixed_precision == "no"


def test_the_command_runs_this_interpreters_accelerate_and_the_worker(tmp_path):
    argv = accelerate_config.command(tmp_path / "a.yaml", tmp_path, threads=3)
    assert argv[:3] == [sys.executable, "-m", "accelerate.commands.launch"]
    assert argv[argv.index("--config_file") + 1] == str(tmp_path / "a.yaml")
    assert argv[argv.index("--num_cpu_threads_per_process") + 1] == "3"
    assert argv[-3:] == ["-m", "posttrain.launch.worker", str(tmp_path)]


def test_ports(monkeypatch):
    assert accelerate_config.port_for(LaunchSpec(nproc=2, master_port=29999)) == 29999
    assert accelerate_config.port_for(LaunchSpec(nnodes=2, master_addr="10.0.0.1")) == 29500  # all nodes agree
    port = accelerate_config.port_for(LaunchSpec(nproc=2))
    with socket.socket() as listener:  # one machine: a port nothing listens on, so a second run there does not clash
        listener.bind(("127.0.0.1", port))


def test_cpu_workers_are_told_so_and_keep_to_loopback(monkeypatch):
    monkeypatch.delenv("GLOO_SOCKET_IFNAME", raising=False)
    env = accelerate_config.environment(LaunchSpec(nproc=2), cuda=False, parent_pid=123)
    assert env["ACCELERATE_USE_CPU"] == "true" and env["POSTTRAIN_PARENT_PID"] == "123"
    assert env["GLOO_SOCKET_IFNAME"].startswith("lo")
    env = accelerate_config.environment(LaunchSpec(nproc=2, nnodes=2, master_addr="10.0.0.1"), cuda=True,
                                        parent_pid=1)
    assert "ACCELERATE_USE_CPU" not in env and "GLOO_SOCKET_IFNAME" not in env


def test_cpu_threads_are_shared_out_unless_omp_says(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(accelerate_config.os, "cpu_count", lambda: 16)
    assert accelerate_config.threads_per_process(LaunchSpec(nproc=4), cuda=False) == 4
    assert accelerate_config.threads_per_process(LaunchSpec(nproc=32), cuda=False) == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert accelerate_config.threads_per_process(LaunchSpec(nproc=4), cuda=False) == 3
