"""Signatures: vespid's scheme binds every field, expires, and refuses replays."""

from __future__ import annotations

import base64
import json

import pytest

from tests.support.servers import shared_key
from vespid.errors import SignatureInvalid
from vespid.protocol.signing import Signer, Verifier, vespid_message
from vespid.protocol.wire import parse_auth_data


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make(clock: Clock, **kwargs: object) -> tuple[Signer, Verifier]:
    key = shared_key()
    signer = Signer(key, ttl_s=60)
    verifier = Verifier(key.public_key(), own_url="http://w:1", clock=clock, **kwargs)  # type: ignore[arg-type]
    return signer, verifier


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
