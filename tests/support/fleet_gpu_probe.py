"""Run by tests/fleet_runner/test_fleet_gpu.py (PYTHONPATH = the pack root): a local Ray cluster
told it has 2 GPUs, the runner's resource decision, and two real Ray actors with those resources
each building the real JobRunner, whose owned server's start alone is replaced by a recorder (a
start without --cpu needs a GPU). Prints the decision and each actor's launch as JSON."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import uuid
from pathlib import Path

import ray

from fleet import comfy
from fleet.manifest import PACK_ROOT
from fleet.run import Options, worker_resources
from fleet.worker import JobRunner, server_folder_prefix

LAUNCH_ENV = ("CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS", "OPENCV_FOR_THREADS_NUM")


def record_instead_of_starting(server):
    server.process = None  # never started; the launch is read back from `server`
    return server


class Probe:
    def __init__(self, out_dir: str, run_tag: str, use_gpu: bool):
        real_module = comfy.comfy_server_module

        def recording_module():
            module = real_module()
            module.ComfyServer.start = record_instead_of_starting
            return module

        comfy.comfy_server_module = recording_module
        self.runner = JobRunner(out_dir, job_timeout=1.0, retries=0, run_tag=run_tag,
                                use_gpu=use_gpu, threads=1)

    def launch(self) -> dict:
        server = self.runner.owned.server
        return {"command": server.command(),
                "env": {name: server.env.get(name) for name in LAUNCH_ENV},
                "assigned": ray.get_runtime_context().get_accelerator_ids()["GPU"],
                "actor_cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}


def main() -> None:
    ray.init(num_cpus=2, num_gpus=2, include_dashboard=False, log_to_driver=False,
             logging_level="WARNING",
             runtime_env={"env_vars": {"PYTHONPATH": str(PACK_ROOT)}})
    out, run_tag = tempfile.mkdtemp(prefix="fleet-gpu-probe-"), uuid.uuid4().hex[:12]
    try:
        resources = worker_resources(Options(Path("manifest.jsonl"), Path("out")),
                                     ray.cluster_resources())
        actors = [ray.remote(**resources)(Probe).remote(out, run_tag, "num_gpus" in resources)
                  for _ in range(2)]
        launches = ray.get([actor.launch.remote() for actor in actors], timeout=120)
        json.dump({"resources": resources, "launches": launches}, sys.stdout)
    finally:
        ray.shutdown()  # ends the actors without __del__: their folders are removed here
        for folder in [out, *Path(tempfile.gettempdir()).glob(server_folder_prefix(run_tag) + "*")]:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
