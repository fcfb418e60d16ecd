"""Local keys: matched in constant time by digest; PICPIK signatures verified with the signer
the client uses (its published test vectors)."""

from __future__ import annotations

from region_repair.pipelines.vendors.picpik import sign
from region_repair.serving.auth import KeyRing, bearer
from region_repair.serving.config import VendorConfig

KEYS = VendorConfig(keys=("first-key-123", "second-key-456"))


def test_a_key_matches_by_index_and_nothing_else_does():
    ring = KeyRing("photio", KEYS)
    assert ring.match("second-key-456") == "photio:1"
    assert ring.match("first-key-123") == "photio:0"
    for wrong in ("second-key-45", "second-key-4567", "", None, "SECOND-KEY-456"):
        assert ring.match(wrong) is None


def test_the_ring_shows_no_key():
    ring = KeyRing("photio", KEYS)
    assert "first-key" not in repr(ring) and "first-key" not in repr(vars(ring))
    signed = KeyRing("picpik", VendorConfig(key_pairs=(("public-abc", "private-xyz"),)))
    assert "private-xyz" not in repr(vars(signed)) and "public-abc" not in repr(vars(signed))


def test_bearer_header():
    assert bearer("Bearer abc") == "abc" and bearer("bearer  abc ") == "abc"
    assert bearer("Basic abc") is None and bearer(None) is None and bearer("Bearer ") is None


def test_picpik_signature_published_vector():
    """PICPIK's start-page vector: Pub abcdefg, Priv 123456."""
    ring = KeyRing("picpik", VendorConfig(key_pairs=(("abcdefg", "123456"),)))
    params = {"Action": "ListModels", "PublicKey": "abcdefg",
              "Signature": "4a20bc1141494035f6aaaad13224c94c5a8bc3a5"}
    assert ring.verify_signed(params) == "picpik:0"


def test_picpik_signature_refused_when_anything_changes():
    ring = KeyRing("picpik", VendorConfig(key_pairs=(("abcdefg", "123456"),
                                                      ("other-pub", "other-priv"))))
    params = {"Action": "ModifyMaskedPixels", "PublicKey": "other-pub", "Seed": 5,
              "Masked": {"InvertMask": False, "ReferStrength": 1.0}}
    params["Signature"] = sign(params, "other-priv")
    assert ring.verify_signed(params) == "picpik:1"
    assert ring.verify_signed({**params, "Seed": 6}) is None
    assert ring.verify_signed({**params, "Signature": sign(params, "123456")}) is None
    assert ring.verify_signed({**params, "PublicKey": "abcdefg"}) is None
    assert ring.verify_signed({k: v for k, v in params.items() if k != "Signature"}) is None
