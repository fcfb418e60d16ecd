"""`python -m fleet run MANIFEST.jsonl --out DIR [--workers N] [--servers URL,...]
[--address RAY_ADDRESS]`; docs/fleet.md."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fleet.manifest import ManifestError
from fleet.run import Options, run


def parse(argv: list[str]) -> Options:
    parser = argparse.ArgumentParser(prog="python -m fleet", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    command = commands.add_parser("run", help="run every job of a manifest; a re-run skips "
                                  "the jobs whose outputs exist")
    command.add_argument("manifest", type=Path, help="JSON Lines: {id, workflow, inputs, params}")
    command.add_argument("--out", type=Path, required=True,
                         help="folder for OUT/<id>/ outputs and results.parquet / results.csv")
    command.add_argument("--workers", type=int, help="ComfyUI servers (one per GPU where the "
                         "cluster has GPUs); default 1, or one per --servers URL")
    command.add_argument("--servers", default="", help="comma-separated URLs of running "
                         "ComfyUI servers with the pack, instead of starting servers")
    command.add_argument("--address", help="join this Ray cluster (default: start a local one)")
    command.add_argument("--job-timeout", type=float, default=600.0,
                         help="seconds before a running prompt is interrupted and retried")
    command.add_argument("--retries", type=int, default=2,
                         help="retries of a job whose server died or timed out")
    command.add_argument("--cpus-per-worker", type=float, default=1.0,
                         help="Ray CPUs each worker reserves (and its server's threads)")
    args = parser.parse_args(argv)
    if args.workers is not None and args.workers < 1:
        parser.error(f"--workers must be at least 1, got {args.workers}")
    if args.retries < 0 or args.job_timeout <= 0 or args.cpus_per_worker <= 0:
        parser.error("--retries must be >= 0, --job-timeout and --cpus-per-worker > 0")
    servers = tuple(url.strip() for url in args.servers.split(",") if url.strip())
    return Options(args.manifest, args.out, args.workers, servers, args.address,
                   args.job_timeout, args.retries, args.cpus_per_worker)


def main(argv: list[str]) -> int:
    try:
        return run(parse(argv))
    except (ManifestError, ValueError) as error:
        print(f"fleet: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
