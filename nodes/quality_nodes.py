"""Quality check: the automatic review signal and the ranking of repair candidates."""

from __future__ import annotations

import json
from dataclasses import fields

import torch
from comfy_api.latest import io

from ..pipelines.review import quality
from ._comfy import (
    check_interrupt,
    compute_device,
    finite_inputs,
    progress_and_cancel,
    report,
    to_output,
)

# One widget per threshold: (name, min, max, step, tooltip); defaults from quality.Thresholds.
# Widgets added after release are optional and come last: API prompts saved before them still
# validate (the default applies) and saved workflows keep their widget order.
ADDED_LATER = ("max_residue",)
THRESHOLDS = {
    "max_shift_px": (0.01, 4096.0, 0.05, "framing_shift fires when the frame's centre moved "
                     "more than this many pixels (or a rotation moved its corners that far)."),
    "max_scale_drift_percent": (0.01, 100.0, 0.05, "scale_drift fires when the candidate's "
                                "scale differs from the original's by more than this %."),
    "max_outside_mean": (0.01, 255.0, 0.05, "outside_mask_changed fires when the mean change "
                         "outside the mask exceeds this (8-bit levels). With info blend = mask, "
                         "any change at all fires."),
    "max_seam_delta_e": (0.1, 100.0, 0.1, "seam fires when the colour step (ΔE2000) across the "
                         "mask's edge exceeds by more than this what the surroundings' own "
                         "texture shows one band further out."),
    "max_seam_gradient": (0.1, 100.0, 0.1, "seam also fires when the luminance gradient on the "
                          "mask's edge exceeds the surroundings' own by more than this (L* per "
                          "pixel)."),
    "seam_width": (1, 64, 1, "Pixels each side of the mask's edge that the seam and residue "
                   "compare."),
    "min_reference_similarity": (-1.0, 0.99, 0.01, "reference_mismatch fires when the repaired "
                                 "region's similarity to the best aligned reference (-1..1) is "
                                 "below this."),
    "max_target_delta_e": (0.1, 100.0, 0.1, "color_target fires when the region's mean colour "
                           "is further than this (ΔE2000) from the info's target_lab..."),
    "max_color_spread": (0.1, 100.0, 0.1, "...or further than this from the set's mean colour "
                         "(the same variation of every image)."),
    "max_residue": (0.01, 0.99, 0.01, "residue fires when more than this share (0..1) of the "
                    "old content in the ring just inside the mask survives, where it stood out "
                    "from its surroundings and the content was to be replaced: a left-over "
                    "outline or frame. Judged on the image alone without info; never for "
                    "recolour."),
}


class QualityCheck(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        defaults = {f.name: f.default for f in fields(quality.Thresholds)}
        widgets = [(io.Int if isinstance(defaults[name], int) else io.Float).Input(
            name, default=defaults[name], min=low, max=high, step=step, tooltip=tip,
            optional=name in ADDED_LATER)
            for name, (low, high, step, tip) in THRESHOLDS.items()]
        return io.Schema(
            node_id="RegionRepair_QualityCheck",
            display_name="Quality Check",
            category="region_repair/review",
            description=(
                "PiktID Detail Repair's review signal, done locally: every candidate is compared "
                "with its original and flagged needs_review with reasons (framing_shift, "
                "scale_drift, outside_mask_changed, seam, residue, no_reference, "
                "reference_unaligned, reference_mismatch, color_target) and scores, as JSON. "
                "Candidates come back ranked (fewest reasons, then lowest penalty, then the edge "
                "closest to its surroundings), with the best one per original. Works on any "
                "original/candidate pair, a vendor's output included; a generator's info JSON "
                "adds what only it knows (references used, blend promise, colour target)."),
            inputs=[
                io.Image.Input("original", tooltip="The original image(s) the candidates repair."),
                io.Image.Input("candidates", tooltip="The candidate images (an IMAGE batch): k "
                               "per original, candidate-major "
                               "(all originals' first candidate, then the second, ...), unless "
                               "info gives image_index / candidate_index."),
                io.Mask.Input("mask", tooltip="The mask the candidates were made with (1 = "
                              "edit); one for all originals or one each. Resized if needed."),
                io.String.Input("info", optional=True, force_input=True, multiline=True,
                                tooltip="Optional: the generator's info JSON, one entry per "
                                "candidate: references used or unaligned, the blend promise, "
                                "whether the content was replaced, the colour target."),
                io.Image.Input("references", optional=True, tooltip="Optional: shots where the "
                               "true detail is visible; enables reference_mismatch."),
                *widgets,
            ],
            outputs=[
                io.String.Output("report", display_name="report"),
                io.Image.Output("sorted", display_name="sorted"),
                io.Image.Output("best", display_name="best"),
                io.String.Output("original_indices", display_name="original_indices"),
                io.String.Output("candidate_indices", display_name="candidate_indices"),
            ],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    @finite_inputs
    def execute(cls, original: torch.Tensor, candidates: torch.Tensor, mask: torch.Tensor,  # type: ignore[override]
                info: str | None = None, references: torch.Tensor | None = None,
                **thresholds) -> io.NodeOutput:
        device = compute_device()
        result = quality.quality_check(
            original.to(device), candidates.to(device), mask, info,
            None if references is None else references.to(device),
            quality.Thresholds(**thresholds), step=progress_and_cancel(candidates.shape[0]),
            check_cancel=check_interrupt)
        flagged = result.report["needs_review"]
        report(cls.hidden.unique_id, result.notes + [
            f"{flagged} of {candidates.shape[0]} candidates need review; best per original: "
            + ", ".join(map(str, result.best))])
        return io.NodeOutput(json.dumps(result.report, indent=1),
                             to_output(candidates[result.order]),
                             to_output(candidates[result.best]),
                             ", ".join(str(result.image_index[j]) for j in result.order),
                             ", ".join(map(str, result.order)))


NODES = [QualityCheck]
