"""The info JSON contract between the generating nodes and Quality Check: one record per output
image, in output order (candidate-major). docs/quality.md describes every field; a `blend` of
"mask" promises that no pixel outside the mask changed."""

from __future__ import annotations

SCHEMA = "region_repair.info/1"
# Vendor endpoints (a record's `endpoint`) whose result keeps the old content's structure on
# purpose, changing its colour: a recolour. Quality Check does not call that residue, and Remote
# Vendor Inpaint does not blend it seamlessly (which would pull the colour back at the edge).
KEEPS_CONTENT_ENDPOINTS = ("piktid/garment-recolor",)


def record(node: str, image_index: int, candidate_index: int, *, seed: int | None, engine: str,
           mode: str | None, blend: str, references_used: bool, reference_count: int,
           notes: list[str], **extra) -> dict:
    """One output's record: the fields every generator gives, then its own `extra` ones."""
    return {"schema": SCHEMA, "node": node, "image_index": image_index,
            "candidate_index": candidate_index, "seed": seed, "engine": engine, "mode": mode,
            "blend": blend, "references_used": references_used,
            "reference_count": reference_count, "notes": notes, **extra}
