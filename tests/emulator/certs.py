"""Test helpers: an RSA app certificate for certificate credentials, and TLS trust for the emulator."""

from __future__ import annotations

import datetime as dt
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class AppCertificate:
    """A self-signed app certificate: the public PEM for the scenario, the key+cert PEM for the credential."""

    public_pem: Path  # what the scenario's `certificate:` names
    credential_pem: Path  # private key followed by the certificate, for azure-identity
    private_key_pem: str
    public_cert_pem: str
    sha1_thumbprint: str  # hex, as MSAL's `thumbprint` wants it


def make_app_certificate(directory: Path, name: str = "app") -> AppCertificate:
    """Generate an RSA-2048 key and a self-signed certificate under `directory`."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"m365sync test {name}")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    directory.mkdir(parents=True, exist_ok=True)
    public = directory / f"{name}-cert.pem"
    public.write_bytes(cert_pem)
    both = directory / f"{name}-key-and-cert.pem"
    both.write_bytes(key_pem + cert_pem)
    return AppCertificate(public, both, key_pem.decode(), cert_pem.decode(), cert.fingerprint(hashes.SHA1()).hex())  # noqa: S303


def ssl_context(ca_bundle: str) -> ssl.SSLContext:
    """A client SSL context that trusts only the emulator's CA."""
    return ssl.create_default_context(cafile=ca_bundle)
