"""Vendor keys: from environment variables or a user config file, never from a node input (widget
values are saved into workflow JSON and PNG metadata).

Each key is looked up first in its environment variable, then in the TOML file named by
`REGION_REPAIR_KEYS_FILE`, or else `$XDG_CONFIG_HOME/comfyui-region-repair/keys.toml`
(`~/.config/...` when XDG_CONFIG_HOME is unset):

    [piktid]
    key = "..."              # REGION_REPAIR_PIKTID_KEY (a dashboard API token)
    [picpik]
    public_key = "..."       # REGION_REPAIR_PICPIK_PUBLIC_KEY
    private_key = "..."      # REGION_REPAIR_PICPIK_PRIVATE_KEY
    [photio]
    key = "pt-..."           # REGION_REPAIR_PHOTIO_KEY
    [octoai]
    key = "..."              # REGION_REPAIR_OCTOAI_KEY (your OctoAI-compatible server's token)

A file inside the pack's own folder is refused, so a key cannot be committed with it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from .http import VendorError

try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    tomllib = None  # type: ignore[assignment]

FILE_VARIABLE = "REGION_REPAIR_KEYS_FILE"
PACK_ROOT = Path(__file__).resolve().parents[2]
# vendor -> {field in the file: environment variable}
FIELDS = {
    "piktid": {"key": "REGION_REPAIR_PIKTID_KEY"},
    "picpik": {"public_key": "REGION_REPAIR_PICPIK_PUBLIC_KEY",
               "private_key": "REGION_REPAIR_PICPIK_PRIVATE_KEY"},
    "photio": {"key": "REGION_REPAIR_PHOTIO_KEY"},
    "octoai": {"key": "REGION_REPAIR_OCTOAI_KEY"},
}


class Secret:
    """A key that does not show itself: repr, str and format all print a placeholder."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret(<redacted>)"

    __str__ = __repr__


def keys_file(env: Mapping[str, str] = os.environ) -> Path:
    if env.get(FILE_VARIABLE):
        return Path(env[FILE_VARIABLE]).expanduser()
    config = Path(env.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return config / "comfyui-region-repair" / "keys.toml"


def _read_file(path: Path, vendor: str) -> dict:
    if not path.is_file():
        return {}
    if path.resolve().is_relative_to(PACK_ROOT):
        raise VendorError(vendor, "config", f"the keys file {path} is inside the pack's folder, "
                          "where it could be committed or shared; move it outside (see "
                          "docs/vendors.md)")
    if tomllib is None:
        raise VendorError(vendor, "config", f"reading {path} needs Python 3.11+; use the "
                          "environment variables instead (docs/vendors.md)")
    try:
        with path.open("rb") as handle:
            table = tomllib.load(handle).get(vendor, {})
    except (OSError, tomllib.TOMLDecodeError) as exc:
        # The parser's message can quote the offending line, which may hold a key.
        raise VendorError(vendor, "config", f"cannot read the keys file {path} "
                          f"({type(exc).__name__})") from None
    return table if isinstance(table, dict) else {}


def credentials(vendor: str, env: Mapping[str, str] = os.environ) -> dict[str, Secret]:
    """Every key `vendor` needs, or a VendorError naming the variables and the file."""
    fields = FIELDS[vendor]
    path = keys_file(env)
    found = {field: env.get(variable, "").strip() for field, variable in fields.items()}
    if not all(found.values()):
        table = _read_file(path, vendor)
        found = {field: value or str(table.get(field, "")).strip()
                 for field, value in found.items()}
    missing = [field for field, value in found.items() if not value]
    if missing:
        names = ", ".join(fields[field] for field in missing)
        entries = ", ".join(f"{field} = \"...\"" for field in missing)
        raise VendorError(vendor, "config", f"no key: set {names} in the environment of the "
                          f"ComfyUI process, or add {entries} under [{vendor}] in {path}. Keys "
                          "are never node inputs: those are saved in workflows and images.")
    return {field: Secret(value) for field, value in found.items()}


def hint(vendor: str) -> str:
    """Where `vendor`'s key comes from, for an error message."""
    names = " and ".join(FIELDS[vendor].values())
    return f"Check {names} (environment) or [{vendor}] in the keys file (docs/vendors.md)"
