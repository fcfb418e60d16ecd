"""The GPU path, on a machine without a GPU.

What these tests prove: the runner's decision (each worker takes `num_gpus=1` where the cluster
has GPUs and the workers start their own servers; no GPU with --servers or on a CPU cluster),
and, inside two real Ray actors holding one GPU each of a cluster that Ray was told has two
(`ray.init(num_gpus=2)`), the launch each worker's real JobRunner makes: ComfyUI's command line
without `--cpu`, and `CUDA_VISIBLE_DEVICES` in the server's environment set to the GPU Ray
assigned to that actor (the same value Ray put in the actor's own environment, different for
the two actors).

What they cannot prove: that ComfyUI starts and runs a prompt on that GPU, or that CUDA honours
the variable. Only the server's start (spawning main.py and waiting for it) is replaced, by a
recorder: here a start without `--cpu` would fail, the host's torch being CPU-only. No GPU run
of the fleet has been made (docs/fleet.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from fleet_testing import fleet_env
from pack_paths import PACK_ROOT

from fleet.run import Options, worker_resources

PROBE = PACK_ROOT / "tests" / "support" / "fleet_gpu_probe.py"


def options(*servers: str) -> Options:
    return Options(Path("manifest.jsonl"), Path("out"), servers=servers, cpus_per_worker=2.0)


def test_a_worker_takes_a_gpu_only_where_the_cluster_has_one_and_it_starts_the_server():
    assert worker_resources(options(), {"CPU": 8.0, "GPU": 2.0}) == {"num_gpus": 1,
                                                                     "num_cpus": 2.0}
    assert worker_resources(options(), {"CPU": 8.0}) == {"num_cpus": 2.0}
    assert worker_resources(options(), {"CPU": 8.0, "GPU": 0.5}) == {"num_cpus": 2.0}
    assert worker_resources(options("http://127.0.0.1:8188"),
                            {"CPU": 8.0, "GPU": 2.0}) == {"num_cpus": 2.0}


def test_each_gpu_worker_starts_its_server_without_cpu_on_the_gpu_ray_gave_it():
    probe = subprocess.run([sys.executable, str(PROBE)], cwd=PACK_ROOT,
                           env={**fleet_env(), "PYTHONPATH": str(PACK_ROOT)},
                           capture_output=True, text=True, timeout=180, check=False)
    assert probe.returncode == 0, probe.stderr[-4000:]
    report = json.loads(probe.stdout)
    assert report["resources"] == {"num_gpus": 1, "num_cpus": 1.0}
    launches = report["launches"]
    for launch in launches:
        assert launch["command"][1].endswith("ComfyUI/main.py")
        assert "--cpu" not in launch["command"]
        assert len(launch["assigned"]) == 1
        assert launch["env"]["CUDA_VISIBLE_DEVICES"] == launch["assigned"][0]
        assert launch["actor_cuda_visible_devices"] == launch["assigned"][0]
        assert launch["env"]["OMP_NUM_THREADS"] == launch["env"]["OPENCV_FOR_THREADS_NUM"] == "1"
    assert sorted(launch["assigned"][0] for launch in launches) == ["0", "1"]
