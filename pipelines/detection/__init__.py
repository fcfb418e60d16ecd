"""Detectors, SAM refinement, the detailer."""
