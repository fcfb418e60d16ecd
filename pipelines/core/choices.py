"""A base for the pack's option lists (ComfyUI combos)."""

from __future__ import annotations

from enum import Enum


class Choice(str, Enum):
    """A str Enum whose unknown values get an error listing the allowed ones.

    ComfyUI 0.3.75 does not check V3 combo values when a prompt is queued, so an API-format
    prompt with a typo reaches the node; this makes the failure say what was expected.
    """

    @classmethod
    def _missing_(cls, value: object) -> None:
        allowed = ", ".join(repr(member.value) for member in cls)
        raise ValueError(f"{cls.__name__} = {value!r} is not allowed; choose one of {allowed}")
