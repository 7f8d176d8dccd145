"""Signing and verifying auth_data: vespid's own scheme and Vast's two older ones.

vespid scheme (``auth_data.expires_at`` present): the router signs the bytes
``b"vespid-auth-v1\\n"`` followed by the compact, key-sorted JSON of cost,
endpoint, expires_at (integer unix seconds), reqnum, request_idx and url, with
RSA-2048 PKCS#1 v1.5 over SHA-256. Or, when ``auth_data.alg`` is ``"HS256"``, it
tags the same JSON behind ``b"vespid-auth-hs256-v1\\n"`` with HMAC-SHA256 under a
key of that one worker (``worker_request_key``: derived from a secret of the
control plane and the worker's id, handed to the worker when it is started). The
tag binds the same fields; it costs the worker about 2 µs instead of the 20-40 µs
of an RSA verify, and a worker's key lets it sign only requests for itself. The
worker refuses an expired message, one valid for more than ``max_ttl_s``, one
whose url is not the worker's own, and any signature it has already accepted
(kept until it expires, so memory is bounded by request rate x ttl).

Vast current scheme: the signed message is ``json.dumps({"url": url}, indent=4,
sort_keys=True)``; it binds only the url, so vespid also checks that url is the
worker's own when the worker knows it. Verified (url, signature) pairs are cached
because the same pair repeats on every request.

Vast older scheme: the message is ``json.dumps(auth_data_without_signature,
indent=4)`` in received key order; a reqnum older than the newest seen minus 100,
or an exact repeat of a recent message, is refused.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from typing import Any, Final

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from vespid.errors import ConfigError, SignatureInvalid
from vespid.protocol.wire import AuthData

__all__ = [
    "HMAC_ALG",
    "VESPID_SIGNED_FIELDS",
    "Signer",
    "Verifier",
    "decode_request_key",
    "encode_request_key",
    "generate_private_key",
    "load_private_key",
    "load_public_key",
    "private_key_pem",
    "public_key_pem",
    "vast_current_message",
    "vast_older_message",
    "vespid_message",
    "worker_request_key",
]

VESPID_PREFIX: Final = b"vespid-auth-v1\n"
HMAC_PREFIX: Final = b"vespid-auth-hs256-v1\n"
HMAC_ALG: Final = "HS256"  # auth_data.alg of an HMAC-tagged request; absent: RSA
HMAC_KEY_BYTES: Final = 32
VESPID_SIGNED_FIELDS: Final = (
    "cost",
    "endpoint",
    "expires_at",
    "reqnum",
    "request_idx",
    "url",
)
_PAD: Final = padding.PKCS1v15()
_HASH: Final = hashes.SHA256()
OLDER_REQNUM_WINDOW: Final = 100


def generate_private_key() -> rsa.RSAPrivateKey:
    """A fresh RSA-2048 key, as the router uses."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def private_key_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def public_key_pem(key: rsa.RSAPrivateKey | rsa.RSAPublicKey) -> bytes:
    public = key.public_key() if isinstance(key, rsa.RSAPrivateKey) else key
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_private_key(pem: bytes) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ConfigError("the private key is not an RSA key; vespid signs with RSA-2048")
    return key


def load_public_key(pem: bytes, source: str = "public key") -> rsa.RSAPublicKey:
    """Parse a PEM public key; ``source`` names where it came from in the error."""
    try:
        key = serialization.load_pem_public_key(pem)
    except ValueError as exc:
        raise ConfigError(f"{source}: not a PEM public key ({exc})") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise ConfigError(f"{source}: not an RSA public key; the router signs with RSA-2048")
    return key


def vespid_message(auth: Mapping[str, Any], prefix: bytes = VESPID_PREFIX) -> bytes:
    """The bytes signed under vespid's scheme (``HMAC_PREFIX`` for an HMAC tag)."""
    signed = {name: auth[name] for name in VESPID_SIGNED_FIELDS}
    return prefix + orjson.dumps(signed, option=orjson.OPT_SORT_KEYS)


def worker_request_key(secret: bytes, worker_id: int) -> bytes:
    """The HMAC key of one worker: a PRF of the control plane's secret and the worker's id,
    so the router needs to keep no per-worker key and a worker learns nothing of others'."""
    return hmac_tag(secret, b"vespid-worker-request-key-v1\n%d" % worker_id)


def encode_request_key(key: bytes) -> str:
    """A worker's HMAC key as text for its environment (``VESPID_REQUEST_KEY``)."""
    return base64.urlsafe_b64encode(key).decode()


def decode_request_key(text: str) -> bytes:
    """``VESPID_REQUEST_KEY`` back to bytes; ValueError saying what is wrong."""
    try:
        spelled = text.strip().replace("+", "-").replace("/", "_")
        key = base64.b64decode(spelled, altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("must be base64, as the control plane hands it out") from None
    if len(key) < HMAC_KEY_BYTES:
        raise ValueError(f"must decode to at least {HMAC_KEY_BYTES} bytes (got {len(key)})")
    return key


def hmac_tag(key: bytes, message: bytes) -> bytes:
    return hmac.digest(key, message, "sha256")


def vast_current_message(url: str) -> bytes:
    return json.dumps({"url": url}, indent=4, sort_keys=True).encode()


def vast_older_message(auth: Mapping[str, Any]) -> bytes:
    return json.dumps({k: v for k, v in auth.items() if k != "signature"}, indent=4).encode()


class Signer:
    """Signs auth_data for workers (the router's half)."""

    def __init__(self, key: rsa.RSAPrivateKey, *, ttl_s: int = 120) -> None:
        self._key = key
        self.ttl_s = ttl_s

    def sign(self, message: bytes) -> str:
        return base64.b64encode(self._key.sign(message, _PAD, _HASH)).decode()

    def auth_data(
        self,
        *,
        url: str,
        cost: float | str,
        endpoint: str,
        reqnum: int,
        request_idx: int,
        now: float | None = None,
        worker_key: bytes | None = None,
    ) -> dict[str, Any]:
        """A vespid-scheme auth_data, ready to send to the worker at ``url``: tagged with
        HMAC-SHA256 under ``worker_key`` when given (``alg: HS256``), else RSA-signed."""
        issued = time.time() if now is None else now
        auth: dict[str, Any] = {
            "cost": str(cost),
            "endpoint": endpoint,
            "expires_at": int(issued) + self.ttl_s,
            "reqnum": reqnum,
            "request_idx": request_idx,
            "url": url,
        }
        if worker_key is None:
            auth["signature"] = self.sign(vespid_message(auth))
        else:
            tag = hmac_tag(worker_key, vespid_message(auth, HMAC_PREFIX))
            auth["alg"] = HMAC_ALG
            auth["signature"] = base64.b64encode(tag).decode()
        return auth


def _replay_key(signature: bytes) -> bytes:
    """What the replay book remembers of a raw signature: a 128-bit BLAKE2b digest.

    Keyed by the decoded bytes, so two base64 spellings of one signature are one key.
    """
    return hashlib.blake2b(signature, digest_size=16).digest()


def _normalise_url(url: str) -> str:
    return url.rstrip("/").lower()


class Verifier:
    """Checks signatures on the worker. Not thread-safe: call from the event loop only.

    ``key`` (the router's RSA public key) may arrive later (``public_key``); until it
    does, ``needs_public_key`` says which requests must wait for it. ``request_key`` is
    this worker's HMAC key, if the control plane that started it handed one out.
    """

    def __init__(
        self,
        key: rsa.RSAPublicKey | None,
        *,
        own_url: str | None,
        request_key: bytes | None = None,
        accept_vast: bool = True,
        max_ttl_s: int = 600,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.public_key = key
        self._request_key = request_key
        self._own_url = _normalise_url(own_url) if own_url else None
        self._accept_vast = accept_vast
        self._max_ttl_s = max_ttl_s
        self._clock = clock
        # vespid scheme: digest of the raw signature -> expiry, in arrival order for cheap
        # expiry. 16 bytes per entry instead of the 344-character base64 string.
        self._seen: dict[bytes, int] = {}
        self._seen_order: deque[tuple[int, bytes]] = deque()
        # Vast current scheme: cache of verified (url, signature) pairs.
        self._vast_ok: OrderedDict[tuple[str, str], None] = OrderedDict()
        # Vast older scheme: newest reqnum and recent messages.
        self._newest_reqnum = -1
        self._recent: set[bytes] = set()
        self._recent_order: deque[bytes] = deque()

    @property
    def replay_book_size(self) -> int:
        """How many accepted vespid signatures are remembered now."""
        return len(self._seen)

    def needs_public_key(self, auth: AuthData) -> bool:
        """Whether checking ``auth`` needs the router's public key, not loaded yet."""
        return self.public_key is None and auth.raw.get("alg") != HMAC_ALG

    def verify(self, auth: AuthData) -> None:
        """Raise SignatureInvalid unless ``auth`` is validly signed for this worker."""
        try:
            signature = base64.b64decode(auth.signature, validate=True)
        except (binascii.Error, ValueError):
            raise SignatureInvalid("auth_data.signature is not valid base64") from None
        if "expires_at" in auth.raw:
            self._verify_vespid(auth, signature)
        elif self._accept_vast:
            self._verify_vast(auth, signature)
        else:
            raise SignatureInvalid(
                "auth_data has no expires_at: this worker accepts only vespid-signed "
                "requests (VESPID_ACCEPT_VAST_SIGNATURES=false)"
            )

    def _check(self, signature: bytes, message: bytes) -> bool:
        if self.public_key is None:
            raise SignatureInvalid(
                "this worker has no router public key (REPORT_ADDR unreachable or unset, "
                "no VESPID_PUBLIC_KEY_FILE), so it cannot check RSA-signed requests"
            )
        try:
            self.public_key.verify(signature, message, _PAD, _HASH)
        except InvalidSignature:
            return False
        return True

    def _check_vespid(self, auth: AuthData, signature: bytes) -> bool:
        alg = auth.raw.get("alg")
        if alg is None:
            return self._check(signature, vespid_message(auth.raw))
        if alg != HMAC_ALG:
            raise SignatureInvalid(
                f"auth_data.alg {alg!r} is not known; vespid signs with RSA (no alg) "
                f"or {HMAC_ALG!r}"
            )
        if self._request_key is None:
            raise SignatureInvalid(
                f"auth_data.alg is {HMAC_ALG!r} but this worker was given no request key "
                "(VESPID_REQUEST_KEY); the control plane that started it sets one"
            )
        expected = hmac_tag(self._request_key, vespid_message(auth.raw, HMAC_PREFIX))
        return hmac.compare_digest(expected, signature)

    def _check_url(self, url: str) -> None:
        if self._own_url is not None and _normalise_url(url) != self._own_url:
            raise SignatureInvalid(
                f"auth_data.url {url!r} is not this worker's url {self._own_url!r}; "
                "ask the router for a fresh route"
            )

    def _verify_vespid(self, auth: AuthData, signature: bytes) -> None:
        expires_at = auth.raw["expires_at"]
        if not isinstance(expires_at, int) or isinstance(expires_at, bool):
            raise SignatureInvalid("auth_data.expires_at must be integer unix seconds")
        now = self._clock()
        if expires_at < now:
            raise SignatureInvalid(
                f"signature expired {now - expires_at:.0f} s ago; ask the router for a fresh route"
            )
        if expires_at > now + self._max_ttl_s:
            raise SignatureInvalid(
                f"auth_data.expires_at is more than {self._max_ttl_s} s ahead; "
                "check the router's clock"
            )
        self._check_url(auth.url)
        key = _replay_key(signature)
        if key in self._seen:
            raise SignatureInvalid("this signature was already used (replay refused)")
        if not self._check_vespid(auth, signature):
            raise SignatureInvalid("signature does not match auth_data")
        self._forget_expired(now)
        self._seen[key] = expires_at
        self._seen_order.append((expires_at, key))

    def _forget_expired(self, now: float) -> None:
        # Entries arrive in roughly expiry order; one that lives longer than its
        # neighbours only delays the forgetting of those behind it, never a replay.
        order = self._seen_order
        while order and order[0][0] < now:
            _, sig = order.popleft()
            self._seen.pop(sig, None)

    def _verify_vast(self, auth: AuthData, signature: bytes) -> None:
        self._check_url(auth.url)
        pair = (auth.url, auth.signature)
        if pair in self._vast_ok:
            return
        if self._check(signature, vast_current_message(auth.url)):
            self._vast_ok[pair] = None
            if len(self._vast_ok) > 256:
                self._vast_ok.popitem(last=False)
            return
        message = vast_older_message(auth.raw)
        if not self._check(signature, message):
            raise SignatureInvalid("signature does not match auth_data")
        if auth.reqnum < self._newest_reqnum - OLDER_REQNUM_WINDOW:
            raise SignatureInvalid(
                f"reqnum {auth.reqnum} is too old (newest seen {self._newest_reqnum})"
            )
        if message in self._recent:
            raise SignatureInvalid("this request was already used (replay refused)")
        self._newest_reqnum = max(self._newest_reqnum, auth.reqnum)
        self._recent.add(message)
        self._recent_order.append(message)
        if len(self._recent_order) > 4 * OLDER_REQNUM_WINDOW:
            self._recent.discard(self._recent_order.popleft())
