"""Small images, and the served endpoints' test settings, for the serving tests."""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image


def png(width: int = 64, height: int = 48, seed: int = 0, mode: str = "RGB") -> bytes:
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "L": 1}[mode]
    array = rng.integers(0, 256, (height, width, channels), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array.squeeze(-1) if channels == 1 else array, mode).save(buffer, "PNG")
    return buffer.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# The tier-3 server's served endpoints: on, one test key per vendor, small limits.
SERVE_KEYS = {"photio": "pt-served-test-key-1", "octoai": "octo-served-test-key-1",
              "piktid": "piktid-served-test-key-1"}
SERVE_PICPIK = ("served-public-1", "served-private-1")   # PublicKey, PrivateKey
# Ten more PiktID keys: 20 concurrent jobs within the per-key bound.
SERVE_PIKTID_CROWD = tuple(f"piktid-crowd-key-{n:02d}" for n in range(10))
SERVE_ENV = {"REGION_REPAIR_SERVE": "1",
             **{f"REGION_REPAIR_SERVE_{vendor.upper()}_KEYS": key
                for vendor, key in SERVE_KEYS.items()},
             "REGION_REPAIR_SERVE_PIKTID_KEYS": ",".join((SERVE_KEYS["piktid"],
                                                          *SERVE_PIKTID_CROWD)),
             "REGION_REPAIR_SERVE_PICPIK_KEYS": ":".join(SERVE_PICPIK)}
SERVE_MAX_BODY_MB = 4
SERVE_MAX_JOBS_PER_KEY = 2
SERVE_CONFIG = f"""[serve]
max_body_mb = {SERVE_MAX_BODY_MB}
max_jobs_per_key = {SERVE_MAX_JOBS_PER_KEY}
max_image_side = 2048
"""
