"""The served endpoints' configuration: off unless the owner turns them on, from the environment
or a TOML file outside the pack's folder.

    REGION_REPAIR_SERVE=1                         # or enabled = true under [serve]
    REGION_REPAIR_SERVE_CONFIG=/path/serve.toml   # else $XDG_CONFIG_HOME/comfyui-region-repair/
                                                  # serve.toml (~/.config/... without it)
    REGION_REPAIR_SERVE_PHOTIO_KEYS=key1,key2     # per vendor: PHOTIO, OCTOAI, PIKTID
    REGION_REPAIR_SERVE_PICPIK_KEYS=public1:private1,public2:private2

    [serve]
    enabled = true
    max_body_mb = 50            # 413 above this, checked before the body is read
    max_image_side = 4096       # 413 above this, read from the image header before decoding
    max_image_pixels = 16777216
    max_jobs_per_key = 4        # queued or running; one more gets 429 with Retry-After
    job_timeout_s = 600         # a synchronous endpoint (Photio, OctoAI) waits this long
    [serve.photio]
    keys = ["..."]
    checkpoint = "sd-v1-5-inpainting.safetensors"   # optional; none = the embedded engines
    image_url_hosts = ["https://cdn.example"]       # optional; URL inputs from these origins only
    [serve.piktid]
    keys = ["..."]
    models = {nano_banana_2 = "sd-v1-5-inpainting.safetensors"}  # vendor model -> checkpoint
    webhook_urls = ["https://hooks.example/piktid"]  # or REGION_REPAIR_SERVE_PIKTID_WEBHOOK_URLS
    [serve.picpik]
    keys = [{public_key = "...", private_key = "..."}]

Keys from the environment and the file add up. A file inside the pack's folder is refused, so a
key cannot be committed with it. Errors name the setting, never a key.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    tomllib = None  # type: ignore[assignment]

ENABLE_VARIABLE = "REGION_REPAIR_SERVE"
FILE_VARIABLE = "REGION_REPAIR_SERVE_CONFIG"
VENDORS = ("piktid", "picpik", "photio", "octoai")
PACK_ROOT = Path(__file__).resolve().parents[1]
TRUE = {"1", "true", "yes", "on"}
FALSE = {"", "0", "false", "no", "off"}


class ConfigError(ValueError):
    """A setting is wrong; the message names it (and never shows a key)."""


def keys_variable(vendor: str) -> str:
    return f"REGION_REPAIR_SERVE_{vendor.upper()}_KEYS"


def webhooks_variable(vendor: str) -> str:
    return f"REGION_REPAIR_SERVE_{vendor.upper()}_WEBHOOK_URLS"


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = 50 * 1024 * 1024
    max_image_side: int = 4096
    max_image_pixels: int = 4096 * 4096
    max_jobs_per_key: int = 4
    job_timeout_s: float = 600.0


@dataclass(frozen=True)
class VendorConfig:
    keys: tuple[str, ...] = ()                  # PiktID, Photio, OctoAI: bearer/header keys
    key_pairs: tuple[tuple[str, str], ...] = ()  # PICPIK: (public, private)
    checkpoint: str = ""                        # "" = the embedded engines (no weights)
    image_url_hosts: tuple[str, ...] = ()
    models: dict[str, str] = field(default_factory=dict)  # vendor model name -> checkpoint
    loras: dict[str, str] = field(default_factory=dict)   # vendor LoRA name -> models/loras file
    webhook_urls: tuple[str, ...] = ()          # PiktID: where webhooks may be posted

    def __repr__(self) -> str:  # keys never show in a log or a traceback
        return (f"VendorConfig(keys=<{len(self.keys) + len(self.key_pairs)} redacted>, "
                f"checkpoint={self.checkpoint!r}, models={self.models!r}, loras={self.loras!r}, "
                f"image_url_hosts={self.image_url_hosts!r}, webhook_urls={self.webhook_urls!r})")


@dataclass(frozen=True)
class ServeConfig:
    enabled: bool = False
    limits: Limits = Limits()
    vendors: dict[str, VendorConfig] = field(default_factory=dict)

    def vendor(self, name: str) -> VendorConfig:
        return self.vendors.get(name, VendorConfig())


def config_file(env: Mapping[str, str]) -> Path:
    if env.get(FILE_VARIABLE):
        return Path(env[FILE_VARIABLE]).expanduser()
    config = Path(env.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return config / "comfyui-region-repair" / "serve.toml"


def _read(path: Path, explicit: bool) -> dict:
    if not path.is_file():
        if explicit:
            raise ConfigError(f"{FILE_VARIABLE}: {path} is not a file")
        return {}
    if path.resolve().is_relative_to(PACK_ROOT):
        raise ConfigError(f"{path} is inside the pack's folder, where its keys could be "
                          "committed or shared; move it outside (docs/self-hosting.md)")
    if tomllib is None:
        raise ConfigError(f"reading {path} needs Python 3.11+; use the environment variables")
    try:
        with path.open("rb") as handle:
            document = tomllib.load(handle)
    except (OSError, ValueError) as exc:  # the parser's message may quote a line with a key
        raise ConfigError(f"cannot read {path} ({type(exc).__name__}); it must be UTF-8 TOML"
                          ) from None
    serve = document.get("serve", {})
    if not isinstance(serve, dict):
        raise ConfigError(f"{path}: [serve] must be a table")
    return serve


def _flag(value: object, where: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in TRUE | FALSE:
        return text in TRUE
    raise ConfigError(f"{where}: {value!r} is not on/off (use 1 or 0)")


def _positive(table: dict, name: str, default: float, scale: float = 1, integer: bool = True
              ) -> float:
    value = table.get(name, default / scale)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigError(f"[serve] {name}: a positive number, got {value!r}")
    return int(value * scale) if integer else float(value * scale)


def _strings(value: object, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ConfigError(f"{where}: a list of strings")
    return tuple(item.strip() for item in value if item.strip())


def _names(table: dict, name: str, where: str, file_kind: str) -> dict[str, str]:
    """A table mapping the vendor's names to the owner's files (request names never become
    paths: only these files can be loaded)."""
    value = table.get(name, {})
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ConfigError(f"{where}: a table of vendor name = \"{file_kind}\"")
    return {str(vendor): file.strip() for vendor, file in value.items() if file.strip()}


def _checked_key(key: str, where: str) -> str:
    if re.search(r"\s", key) or len(key) < 8:
        raise ConfigError(f"{where}: a key is one word of at least 8 characters (check for a "
                          "stray space, a pasted second line or a placeholder)")
    return key


def _pair(text: str, where: str) -> tuple[str, str]:
    public, sep, private = text.partition(":")
    if not sep:
        raise ConfigError(f"{where}: PICPIK keys are public:private pairs")
    return _checked_key(public, where), _checked_key(private, where)


def _vendor(name: str, table: object, env: Mapping[str, str], path: Path) -> VendorConfig:
    where = f"{path} [serve.{name}]"
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table")
    listed = [entry for entry in re.split(r"[,\s]+", env.get(keys_variable(name), "")) if entry]
    file_keys = table.get("keys", [])
    if not isinstance(file_keys, list):
        raise ConfigError(f"{where} keys: a list")
    checkpoint = table.get("checkpoint", "")
    if not isinstance(checkpoint, str):
        raise ConfigError(f"{where} checkpoint: a file name in quotes")
    hosts = _strings(table.get("image_url_hosts", []), f"{where} image_url_hosts")
    models = _names(table, "models", f"{where} models", "checkpoint file")
    loras = _names(table, "loras", f"{where} loras", "LoRA file")
    hooks = _strings(table.get("webhook_urls", []), f"{where} webhook_urls")
    hooks += tuple(entry for entry in re.split(r"[,\s]+", env.get(webhooks_variable(name), ""))
                   if entry)
    extra = {"image_url_hosts": hosts, "models": models, "loras": loras, "webhook_urls": hooks}
    if name == "picpik":
        pairs = [_pair(entry, keys_variable(name)) for entry in listed]
        for entry in file_keys:
            if not (isinstance(entry, dict) and {"public_key", "private_key"} <= set(entry)):
                raise ConfigError(f"{where} keys: tables with public_key and private_key")
            pairs.append((_checked_key(str(entry["public_key"]), f"{where} keys"),
                          _checked_key(str(entry["private_key"]), f"{where} keys")))
        return VendorConfig(key_pairs=tuple(pairs), checkpoint=checkpoint.strip(), **extra)
    keys = [_checked_key(entry, keys_variable(name)) for entry in listed]
    keys += [_checked_key(entry, f"{where} keys")
             for entry in _strings(file_keys, f"{where} keys")]
    return VendorConfig(keys=tuple(keys), checkpoint=checkpoint.strip(), **extra)


def load(env: Mapping[str, str] = os.environ) -> ServeConfig:
    """The configuration, or a ConfigError naming the setting. Disabled unless
    REGION_REPAIR_SERVE or the file's `[serve] enabled` says so (the variable wins)."""
    path = config_file(env)
    table = _read(path, explicit=bool(env.get(FILE_VARIABLE)))
    if env.get(ENABLE_VARIABLE, "").strip():
        enabled = _flag(env[ENABLE_VARIABLE], ENABLE_VARIABLE)
    else:
        enabled = _flag(table.get("enabled", False), f"{path} [serve] enabled")
    if not enabled:
        return ServeConfig()
    limits = Limits(
        max_body_bytes=_positive(table, "max_body_mb", Limits.max_body_bytes, 1024 * 1024),
        max_image_side=_positive(table, "max_image_side", Limits.max_image_side),
        max_image_pixels=_positive(table, "max_image_pixels", Limits.max_image_pixels),
        max_jobs_per_key=_positive(table, "max_jobs_per_key", Limits.max_jobs_per_key),
        job_timeout_s=_positive(table, "job_timeout_s", Limits.job_timeout_s, integer=False))
    vendors = {name: _vendor(name, table.get(name, {}), env, path) for name in VENDORS}
    return ServeConfig(True, limits, vendors)
