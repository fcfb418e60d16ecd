"""Benchmark (a measurement, not a test) of RemoteVendorInpaint's concurrency: `make bench`.

    .venv/bin/python bench/vendors.py [--latency 0.5] [--candidates 4] [--repeats 3]

Runs the remote pipeline (pipelines.vendors.remote.run_remote) against the test suite's fake
vendor servers on 127.0.0.1 (tests/support/fake_vendors), which answer every request after a fixed
latency. For Photio and an OctoAI-compatible /adetailer (one image per call) it times one
candidate, then `--candidates` candidates, and prints the ratio: 1.0 means the candidates ran
fully in parallel, `--candidates` means one after the other. For PiktID Detail Repair the
candidates share one job, so the row times a batch of `--candidates` images (one job each) against
one image instead. Medians over `--repeats` runs; no network beyond loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time

from _common import import_pack  # noqa: E402

PACK_ROOT = import_pack()
sys.path.insert(0, str(PACK_ROOT / "tests" / "support"))

import torch  # noqa: E402

from fake_vendors import ENV, FakeOctoAI, FakePhotio, FakePiktID, serve  # noqa: E402
from region_repair.pipelines.vendors.keys import hosts_variable  # noqa: E402
from region_repair.pipelines.vendors.remote import RemoteSettings, run_remote  # noqa: E402


def timed(endpoint: str, url: str, batch: int, candidates: int, options: dict) -> float:
    height, width = (512, 512) if endpoint.startswith("octoai") else (64, 64)
    image = torch.full((batch, height, width, 3), 0.5)
    mask = torch.zeros(1, height, width)
    mask[:, height // 4:height // 2, width // 4:width // 2] = 1
    settings = RemoteSettings(endpoint, base_url=url, candidates=candidates, options=options,
                              poll_interval=0.05, timeout=120)
    env = {**ENV, hosts_variable(settings.endpoint.vendor): url}  # the fake's host, allowed
    start = time.perf_counter()
    asyncio.run(run_remote(image, mask, settings, env=env))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.5)
    parser.add_argument("--candidates", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    n = args.candidates
    rows = [("photio/regen", FakePhotio, {}, "candidates"),
            ("octoai-compatible/adetailer", FakeOctoAI, {"inpainting_base_model": "sd15"},
             "candidates"),
            ("piktid/detail-repair", FakePiktID, {}, "images")]
    print(f"fixed latency {args.latency:g} s per request; {n} vs 1; median of {args.repeats}")
    print(f"{'endpoint':30} {'what':10} {'one s':>7} {f'{n} s':>7} {'ratio':>6}")
    for endpoint, fake_class, options, what in rows:
        fake = fake_class()
        if endpoint.startswith("piktid"):  # the job's duration is the latency here
            fake.step_delay = args.latency / 4
        else:
            fake.latency = args.latency
        with serve(fake):
            one, many = [], []
            for _ in range(args.repeats):
                if what == "candidates":
                    one.append(timed(endpoint, fake.url, 1, 1, options))
                    many.append(timed(endpoint, fake.url, 1, n, options))
                else:
                    fake.max_active = fake.max_creates_per_minute = 10 ** 6
                    one.append(timed(endpoint, fake.url, 1, 1, options))
                    many.append(timed(endpoint, fake.url, n, 1, options))
        a, b = statistics.median(one), statistics.median(many)
        print(f"{endpoint:30} {what:10} {a:7.3f} {b:7.3f} {b / a:6.2f}")


if __name__ == "__main__":
    main()
