"""Signatures: vespid's scheme binds every field, expires, and refuses replays, whether
RSA-signed or HMAC-tagged with the worker's own key."""

from __future__ import annotations

import base64
import json

import pytest

from tests.support.servers import shared_key
from vespid.errors import SignatureInvalid
from vespid.protocol.signing import (
    Signer,
    Verifier,
    decode_request_key,
    encode_request_key,
    vespid_message,
    worker_request_key,
)
from vespid.protocol.wire import parse_auth_data


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


SECRET = b"control-plane-secret"
WORKER_KEY = worker_request_key(SECRET, 7)


def make(clock: Clock, max_ttl_s: int = 600) -> tuple[Signer, Verifier]:
    key = shared_key()
    signer = Signer(key, ttl_s=60)
    verifier = Verifier(
        key.public_key(),
        own_url="http://w:1",
        request_key=WORKER_KEY,
        clock=clock,
        max_ttl_s=max_ttl_s,
    )
    return signer, verifier


def tagged(signer: Signer, key: bytes = WORKER_KEY, **fields: object) -> dict[str, object]:
    """An HMAC-tagged auth_data for http://w:1 (fields override the defaults)."""
    args: dict[str, object] = {
        "url": "http://w:1", "cost": 5, "endpoint": "e", "reqnum": 1, "request_idx": 2,
        "now": 1000,
    }  # fmt: skip
    args.update(fields)
    return signer.auth_data(worker_key=key, **args)  # type: ignore[arg-type]


def test_message_binds_every_auth_field() -> None:
    signer, _ = make(Clock(1000.0))
    auth = signer.auth_data(
        url="http://w:1", cost=5, endpoint="e", reqnum=1, request_idx=2, now=1000
    )
    message = vespid_message(auth)
    assert message.startswith(b"vespid-auth-v1\n")
    assert json.loads(message.split(b"\n", 1)[1]) == {
        "cost": "5", "endpoint": "e", "expires_at": 1060, "reqnum": 1, "request_idx": 2,
        "url": "http://w:1",
    }  # fmt: skip


@pytest.mark.parametrize("field", ["cost", "endpoint", "reqnum", "request_idx", "expires_at"])
def test_changing_any_field_breaks_the_signature(field: str) -> None:
    clock = Clock(1000.0)
    signer, verifier = make(clock)
    auth = signer.auth_data(
        url="http://w:1", cost=5, endpoint="e", reqnum=1, request_idx=2, now=1000
    )
    auth[field] = auth[field] + 1 if isinstance(auth[field], int) else auth[field] + "0"
    with pytest.raises(SignatureInvalid, match="does not match"):
        verifier.verify(parse_auth_data(auth))


def test_replay_in_another_base64_spelling_is_refused() -> None:
    """Regression: the replay book was keyed by the base64 text, and base64 ignores the
    unused low bits of the last character, so a re-spelled signature passed as new."""
    clock = Clock(1000.0)
    signer, verifier = make(clock)
    auth = signer.auth_data(
        url="http://w:1", cost=1, endpoint="e", reqnum=1, request_idx=1, now=1000
    )
    verifier.verify(parse_auth_data(auth))
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    sig = auth["signature"]
    assert sig.endswith("==")  # 256 bytes: the last character carries 4 unused bits
    respelled = sig[:-3] + alphabet[alphabet.index(sig[-3]) ^ 1] + "=="
    assert base64.b64decode(respelled) == base64.b64decode(sig)
    with pytest.raises(SignatureInvalid, match="replay"):
        verifier.verify(parse_auth_data({**auth, "signature": respelled}))


def test_replay_book_forgets_expired_signatures() -> None:
    """Memory is bounded: after expiry a signature is forgotten (and refused as expired)."""
    clock = Clock(1000.0)
    signer, verifier = make(clock)
    for i in range(50):
        auth = signer.auth_data(url="http://w:1", cost=1, endpoint="e", reqnum=i, request_idx=i,
                                now=clock.now)  # fmt: skip
        verifier.verify(parse_auth_data(auth))
    assert verifier.replay_book_size == 50
    clock.now += 61  # all 50 have expired
    late = signer.auth_data(url="http://w:1", cost=1, endpoint="e", reqnum=99, request_idx=99,
                            now=clock.now)  # fmt: skip
    verifier.verify(parse_auth_data(late))
    assert verifier.replay_book_size == 1


def test_expiry_too_far_ahead_is_refused() -> None:
    clock = Clock(1000.0)
    signer, verifier = make(clock, max_ttl_s=30)
    auth = signer.auth_data(
        url="http://w:1", cost=1, endpoint="e", reqnum=1, request_idx=1, now=1000
    )
    with pytest.raises(SignatureInvalid, match="more than 30 s ahead"):
        verifier.verify(parse_auth_data(auth))


def test_url_check_ignores_case_and_trailing_slash() -> None:
    clock = Clock(1000.0)
    signer, verifier = make(clock)
    auth = signer.auth_data(
        url="HTTP://W:1/", cost=1, endpoint="e", reqnum=1, request_idx=1, now=1000
    )
    verifier.verify(parse_auth_data(auth))


def test_hmac_tag_verifies_without_the_public_key() -> None:
    """A worker given its request key checks HMAC tags before (or without) the RSA key."""
    signer, _ = make(Clock(1000.0))
    verifier = Verifier(None, own_url="http://w:1", request_key=WORKER_KEY, clock=Clock(1000.0))
    auth = parse_auth_data(tagged(signer))
    assert auth.raw["alg"] == "HS256"
    assert not verifier.needs_public_key(auth)
    verifier.verify(auth)
    rsa_signed = parse_auth_data(
        signer.auth_data(url="http://w:1", cost=1, endpoint="e", reqnum=1, request_idx=1, now=1000)
    )
    assert verifier.needs_public_key(rsa_signed)
    with pytest.raises(SignatureInvalid, match="no router public key"):
        verifier.verify(rsa_signed)


@pytest.mark.parametrize("field", ["cost", "endpoint", "reqnum", "request_idx", "expires_at"])
def test_changing_any_field_breaks_the_hmac_tag(field: str) -> None:
    signer, verifier = make(Clock(1000.0))
    auth = tagged(signer)
    value = auth[field]
    auth[field] = value + 1 if isinstance(value, int) else f"{value}0"
    with pytest.raises(SignatureInvalid, match="does not match"):
        verifier.verify(parse_auth_data(auth))


def test_another_workers_key_or_url_is_refused() -> None:
    """A worker's key signs only for itself: another worker's tag does not check, and a
    tag for another url is refused before any key is tried."""
    signer, verifier = make(Clock(1000.0))
    other_key = worker_request_key(SECRET, 8)
    assert other_key != WORKER_KEY
    with pytest.raises(SignatureInvalid, match="does not match"):
        verifier.verify(parse_auth_data(tagged(signer, key=other_key)))
    with pytest.raises(SignatureInvalid, match="not this worker's url"):
        verifier.verify(parse_auth_data(tagged(signer, url="http://w:2")))


def test_hmac_tag_replay_is_refused() -> None:
    signer, verifier = make(Clock(1000.0))
    auth = tagged(signer)
    verifier.verify(parse_auth_data(auth))
    with pytest.raises(SignatureInvalid, match="replay"):
        verifier.verify(parse_auth_data(auth))


def test_alg_cannot_be_swapped() -> None:
    """Stripping alg from a tagged request, or adding it to an RSA-signed one, fails: the
    schemes sign different bytes. An unknown alg is named in the error."""
    signer, verifier = make(Clock(1000.0))
    auth = tagged(signer)
    del auth["alg"]
    with pytest.raises(SignatureInvalid, match="does not match"):
        verifier.verify(parse_auth_data(auth))
    signed = signer.auth_data(
        url="http://w:1", cost=1, endpoint="e", reqnum=1, request_idx=1, now=1000
    )
    with pytest.raises(SignatureInvalid, match="does not match"):
        verifier.verify(parse_auth_data({**signed, "alg": "HS256"}))
    with pytest.raises(SignatureInvalid, match="'none' is not known"):
        verifier.verify(parse_auth_data({**signed, "alg": "none"}))


def test_worker_without_a_request_key_says_so() -> None:
    signer, _ = make(Clock(1000.0))
    verifier = Verifier(shared_key().public_key(), own_url="http://w:1", clock=Clock(1000.0))
    with pytest.raises(SignatureInvalid, match="VESPID_REQUEST_KEY"):
        verifier.verify(parse_auth_data(tagged(signer)))


def test_request_key_text_round_trip_and_errors() -> None:
    assert decode_request_key(encode_request_key(WORKER_KEY)) == WORKER_KEY
    with pytest.raises(ValueError, match="base64"):
        decode_request_key("not base64!")
    with pytest.raises(ValueError, match="at least 32 bytes"):
        decode_request_key(encode_request_key(b"short"))
