"""Vendor keys, and the hosts they may be sent to: both from environment variables or a user
config file, never from a node input (widget values are saved into workflow JSON and PNG
metadata, and a downloaded workflow must not be able to send a key anywhere).

Each key is looked up first in its environment variable, then in the TOML file named by
`REGION_REPAIR_KEYS_FILE`, or else `$XDG_CONFIG_HOME/comfyui-region-repair/keys.toml`
(`~/.config/...` when XDG_CONFIG_HOME is unset):

    [piktid]
    key = "..."              # REGION_REPAIR_PIKTID_KEY (a dashboard API token)
    allowed_hosts = ["https://proxy.example"]  # REGION_REPAIR_PIKTID_HOSTS (optional)
    [picpik]
    public_key = "..."       # REGION_REPAIR_PICPIK_PUBLIC_KEY
    private_key = "..."      # REGION_REPAIR_PICPIK_PRIVATE_KEY
    [photio]
    key = "pt-..."           # REGION_REPAIR_PHOTIO_KEY
    [octoai]
    key = "..."              # REGION_REPAIR_OCTOAI_KEY (your OctoAI-compatible server's token)
    allowed_hosts = ["http://10.0.0.5:8000"]  # REGION_REPAIR_OCTOAI_HOSTS (required: no default)

A key goes only to its vendor's documented https host, or to an origin (scheme://host[:port])
listed in the vendor's `REGION_REPAIR_<VENDOR>_HOSTS` variable (comma-separated) or its
`allowed_hosts` in the file. A file inside the pack's own folder is refused, so a key cannot be
committed with it; a file readable by group or others is used, with a warning in the log.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path

from . import photio, picpik, piktid
from .http import VendorError, origin

try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    tomllib = None  # type: ignore[assignment]

logger = logging.getLogger("region_repair.vendors")

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
# The origins each vendor documents; the first is the default base URL. OctoAI shut down, so a
# self-hosted compatible server must always be allowed explicitly.
DOCUMENTED_HOSTS = {
    "piktid": (piktid.BASE_URL,),
    "picpik": (picpik.BASE_URL, picpik.CHINA_URL),
    "photio": (photio.BASE_URL,),
    "octoai": (),
}
HOSTS_FIELD = "allowed_hosts"
_warned_files: set[Path] = set()


def hosts_variable(vendor: str) -> str:
    return f"REGION_REPAIR_{vendor.upper()}_HOSTS"


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
    """The `[vendor]` table of the keys file ({} when there is no file), every field checked.
    Errors name the file and the field, never a value."""
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
        mode = path.stat().st_mode
        with path.open("rb") as handle:
            document = tomllib.load(handle)
    except (OSError, ValueError) as exc:  # ValueError: TOML syntax, or not UTF-8 text
        # The parser's message can quote the offending line, which may hold a key.
        raise VendorError(vendor, "config", f"cannot read the keys file {path} "
                          f"({type(exc).__name__}); it must be UTF-8 TOML text") from None
    if mode & 0o077 and path not in _warned_files:
        _warned_files.add(path)
        logger.warning("the keys file %s is readable by group or others (mode %o); "
                       "run chmod 600 on it", path, mode & 0o777)
    table = document.get(vendor, {})
    if not isinstance(table, dict):
        raise VendorError(vendor, "config", f"the keys file {path}: [{vendor}] must be a table "
                          f"(a [{vendor}] section), not a {_toml_type(table)}")
    for field in FIELDS[vendor]:
        if field in table and not isinstance(table[field], str):
            raise VendorError(vendor, "config", f"the keys file {path}: [{vendor}] {field} "
                              f"must be a string in quotes, not a {_toml_type(table[field])}")
    hosts = table.get(HOSTS_FIELD, [])
    if not isinstance(hosts, list) or not all(isinstance(host, str) for host in hosts):
        raise VendorError(vendor, "config", f"the keys file {path}: [{vendor}] {HOSTS_FIELD} "
                          "must be a list of strings, e.g. [\"https://proxy.example:8443\"]")
    return table


def _toml_type(value: object) -> str:
    return {bool: "boolean", int: "number", float: "number", list: "list", dict: "table",
            str: "string"}.get(type(value), type(value).__name__)


def _checked_key(value: str, where: str, vendor: str) -> str:
    value = value.strip()
    if re.search(r"\s", value):
        raise VendorError(vendor, "config", f"{where} contains whitespace or a line break; a "
                          "key is one word (check for a stray space or a pasted second line)")
    return value


def credentials(vendor: str, env: Mapping[str, str] = os.environ) -> dict[str, Secret]:
    """Every key `vendor` needs, or a VendorError naming the variables and the file."""
    fields = FIELDS[vendor]
    path = keys_file(env)
    found = {field: _checked_key(env.get(variable, ""), variable, vendor)
             for field, variable in fields.items()}
    if not all(found.values()):
        table = _read_file(path, vendor)
        found = {field: value or _checked_key(table.get(field, ""),
                                               f"the keys file {path}: [{vendor}] {field}",
                                               vendor)
                 for field, value in found.items()}
    missing = [field for field, value in found.items() if not value]
    if missing:
        names = ", ".join(fields[field] for field in missing)
        entries = ", ".join(f"{field} = \"...\"" for field in missing)
        raise VendorError(vendor, "config", f"no key: set {names} in the environment of the "
                          f"ComfyUI process, or add {entries} under [{vendor}] in {path}. Keys "
                          "are never node inputs: those are saved in workflows and images.")
    return {field: Secret(value) for field, value in found.items()}


def allowed_hosts(vendor: str, env: Mapping[str, str] = os.environ) -> set[str]:
    """The origins that may receive `vendor`'s key: the documented ones, the vendor's
    `REGION_REPAIR_<VENDOR>_HOSTS` (comma-separated) and the keys file's `allowed_hosts`."""
    path = keys_file(env)
    listed = [(entry, hosts_variable(vendor)) for entry in
              re.split(r"[,\s]+", env.get(hosts_variable(vendor), "")) if entry]
    listed += [(entry, f"the keys file {path}: [{vendor}] {HOSTS_FIELD}")
               for entry in _read_file(path, vendor).get(HOSTS_FIELD, [])]
    allowed = set(DOCUMENTED_HOSTS[vendor])
    for entry, where in listed:
        normal = origin(entry)
        if normal is None:
            raise VendorError(vendor, "config", f"{where}: {entry!r} is not an http(s) origin "
                              "such as https://proxy.example:8443")
        allowed.add(normal)
    return allowed


def base_url(vendor: str, url: str, env: Mapping[str, str] = os.environ) -> str:
    """The base URL the run may send `vendor`'s key to: `url` (the node's `base_url`), or the
    documented one when empty. Anything else is refused before a request is made, saying how
    to allow it from outside the graph."""
    url = url.strip()
    if not url:
        return DOCUMENTED_HOSTS[vendor][0] if DOCUMENTED_HOSTS[vendor] else ""
    normal = origin(url)
    if normal is None:
        raise ValueError(f"base_url: {url!r} is not an http:// or https:// URL with a host "
                         "(and no user:password); other schemes are refused")
    if normal in allowed_hosts(vendor, env):
        return url
    documented = ", ".join(DOCUMENTED_HOSTS[vendor]) or "none (OctoAI shut down)"
    raise ValueError(
        f"base_url: {normal} is not a host allowed to receive the {vendor} key (documented: "
        f"{documented}). A workflow cannot choose where a key goes: to use this host, set "
        f"{hosts_variable(vendor)}={normal} in the environment of the ComfyUI process, or add "
        f"{HOSTS_FIELD} = [\"{normal}\"] under [{vendor}] in {keys_file(env)} (docs/vendors.md)")


def hint(vendor: str) -> str:
    """Where `vendor`'s key comes from, for an error message."""
    names = " and ".join(FIELDS[vendor].values())
    return f"Check {names} (environment) or [{vendor}] in the keys file (docs/vendors.md)"
