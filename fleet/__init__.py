"""Run a manifest of jobs (API-format workflows with their inputs and params) across a fleet of
ComfyUI servers on Ray: `python -m fleet run MANIFEST.jsonl --out DIR`. docs/fleet.md."""
