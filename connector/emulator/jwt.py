"""Just enough JWS for the identity platform: RS256/PS256 signing and verification.

azure-identity's async CertificateCredential pads its base64url segments with '=' (graph-v1.md §6.2),
so decoding tolerates padding.
"""

from __future__ import annotations

import base64
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa


class JWTError(ValueError):
    """A token that is malformed or whose signature does not verify."""


def b64url_decode(seg: str) -> bytes:
    """Decode base64url with or without '=' padding."""
    seg = seg.strip().rstrip("=")
    try:
        return base64.urlsafe_b64decode(seg + "=" * (-len(seg) % 4))
    except (ValueError, TypeError) as exc:
        raise JWTError("malformed base64url segment") from exc


def b64url_encode(data: bytes) -> str:
    """Unpadded base64url."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def decode_unverified(token: str) -> tuple[dict[str, Any], dict[str, Any], bytes, bytes]:
    """(header, claims, signing input, signature) of a compact JWS, without checking the signature."""
    parts = token.split(".")
    if len(parts) != 3:
        raise JWTError("a JWT has three dot-separated segments")
    try:
        header = orjson.loads(b64url_decode(parts[0]))
        claims = orjson.loads(b64url_decode(parts[1]))
    except orjson.JSONDecodeError as exc:
        raise JWTError("JWT segments are not JSON") from exc
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise JWTError("JWT header and claims must be objects")
    return header, claims, f"{parts[0]}.{parts[1]}".encode(), b64url_decode(parts[2])


def _pad(alg: str) -> padding.AsymmetricPadding:
    if alg == "RS256":
        return padding.PKCS1v15()
    if alg == "PS256":
        return padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH)
    raise JWTError(f"unsupported alg {alg!r}")


def sign(claims: dict[str, Any], key: rsa.RSAPrivateKey, *, alg: str = "RS256", headers: dict[str, Any] | None = None) -> str:
    """A compact JWS over `claims`."""
    header = {"typ": "JWT", "alg": alg, **(headers or {})}
    signing_input = f"{b64url_encode(orjson.dumps(header))}.{b64url_encode(orjson.dumps(claims))}"
    sig = key.sign(signing_input.encode(), _pad(alg), hashes.SHA256())
    return f"{signing_input}.{b64url_encode(sig)}"


def verify(token: str, public_key: rsa.RSAPublicKey, *, algs: tuple[str, ...] = ("RS256", "PS256")) -> tuple[dict[str, Any], dict[str, Any]]:
    """Check the signature; returns (header, claims)."""
    header, claims, signing_input, sig = decode_unverified(token)
    alg = header.get("alg")
    if alg not in algs:
        raise JWTError(f"unsupported alg {alg!r}")
    pad = _pad(alg)
    if alg == "PS256":
        pad = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.AUTO)
    try:
        public_key.verify(sig, signing_input, pad, hashes.SHA256())
    except InvalidSignature as exc:
        raise JWTError("signature does not verify") from exc
    return header, claims
