"""Who is calling: the presented key is matched against the vendor's local keys in constant time
and only its index (`key_id`) travels on; no key is ever stored in a job, a prompt or a log.

PICPIK carries no secret on the wire: the body names a `PublicKey` and its SHA-1 `Signature`,
which is recomputed with the matching private key (pipelines/vendors/picpik.py signs the same way
on the client side) and compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from ..pipelines.vendors.keys import Secret
from ..pipelines.vendors.picpik import sign
from .config import VendorConfig

BEARER = "bearer "


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


class KeyRing:
    """One vendor's keys, held as SHA-256 digests. `match` compares against every key whatever
    the outcome, so the time taken says nothing about which key (or how much of one) matched."""

    def __init__(self, vendor: str, config: VendorConfig):
        self.vendor = vendor
        self._digests = [_digest(key) for key in config.keys]
        self._pairs = [(_digest(public), Secret(private)) for public, private in config.key_pairs]

    @property
    def size(self) -> int:
        return len(self._digests) + len(self._pairs)

    def __repr__(self) -> str:
        return f"KeyRing({self.vendor}, <{self.size} keys>)"

    def match(self, presented: str | None) -> str | None:
        """The key's id (`vendor:index`) or None."""
        if not presented:
            return None
        digest, found = _digest(presented), None
        for index, known in enumerate(self._digests):
            if hmac.compare_digest(known, digest) and found is None:
                found = f"{self.vendor}:{index}"
        return found

    def verify_signed(self, params: dict[str, Any]) -> str | None:
        """PICPIK: the key id whose private key signs `params` to its `Signature`, else None."""
        public, signature = params.get("PublicKey"), params.get("Signature")
        if not isinstance(public, str) or not isinstance(signature, str):
            return None
        digest, found = _digest(public), None
        for index, (known, private) in enumerate(self._pairs):
            if hmac.compare_digest(known, digest):
                expected = sign(params, private.reveal())
                if hmac.compare_digest(expected.encode(), signature.lower().encode()) \
                        and found is None:
                    found = f"{self.vendor}:{index}"
        return found


def bearer(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header."""
    if header and header[:len(BEARER)].lower() == BEARER:
        return header[len(BEARER):].strip() or None
    return None
