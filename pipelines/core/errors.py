"""Errors the pipelines raise besides ValueError (which always names the bad input)."""

from __future__ import annotations


class MissingDependencyError(RuntimeError):
    """An optional package (a detector's, PatchMatch, segment-anything) is not installed; the
    message says how to install it."""
