"""Credentials from azure-identity, and the token provider the request adapter uses.

The provider caches one token and can be told to drop it: a 401 from Graph triggers exactly one
refresh with a fresh credential (azure-identity would otherwise hand back its cached token).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from typing import Any

from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import ClientAuthenticationError, ServiceRequestError
from kiota_abstractions.authentication import AccessTokenProvider, AllowedHostsValidator

from ..errors import AuthError, UnreachableError
from ..settings import Settings

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
_AADSTS = re.compile(r"AADSTS\d+")


def credential_factory(settings: Settings) -> Callable[[], AsyncTokenCredential]:
    """A factory of azure-identity async credentials for the configured method."""
    settings.require_credentials()
    common: dict[str, Any] = {"authority": settings.authority_host}
    if settings.ca_bundle:
        common["connection_verify"] = str(settings.ca_bundle)
    if not settings.authority_host.endswith("login.microsoftonline.com"):
        common["disable_instance_discovery"] = True

    def make() -> AsyncTokenCredential:
        from azure.identity.aio import CertificateCredential, ClientSecretCredential, ManagedIdentityCredential

        if settings.client_secret is not None:
            return ClientSecretCredential(settings.tenant_id or "", settings.client_id or "", settings.client_secret.get_secret_value(), **common)
        if settings.client_certificate_path is not None:
            pw = settings.client_certificate_password.get_secret_value().encode() if settings.client_certificate_password else None
            return CertificateCredential(settings.tenant_id or "", settings.client_id or "", str(settings.client_certificate_path), password=pw, **common)
        kwargs: dict[str, Any] = {}
        if settings.managed_identity_client_id:
            kwargs["client_id"] = settings.managed_identity_client_id
        return ManagedIdentityCredential(**kwargs)

    return make


_MIN_VALIDITY = 1.0  # seconds a token handed to a request must still be valid for


class TokenProvider(AccessTokenProvider):
    """Kiota access-token provider over an azure-identity credential, with forced refresh."""

    def __init__(self, make_credential: Callable[[], AsyncTokenCredential], scope: str = GRAPH_SCOPE) -> None:
        self._make = make_credential
        self._credential: AsyncTokenCredential | None = None
        self._scope = scope
        self._token: str | None = None
        self._expires = 0.0
        self._lock = asyncio.Lock()
        self.refreshes = 0

    async def get_authorization_token(self, uri: str, additional_authentication_context: dict[str, Any] | None = None) -> str:
        """A valid bearer token (cached until 60 s before expiry)."""
        if self._token and time.time() < self._expires - 60:
            return self._token
        async with self._lock:
            if self._token and time.time() < self._expires - 60:
                return self._token
            if self._credential is None:
                self._credential = self._make()
            try:
                tok = await self._credential.get_token(self._scope)
                if tok.expires_on - time.time() < _MIN_VALIDITY:
                    # azure-identity hands out its cached token until the very end when it tried a refresh in the
                    # last 30 s: one about to expire would reach Graph expired (401). Sign in afresh once.
                    old, self._credential = self._credential, self._make()
                    await old.close()
                    tok = await self._credential.get_token(self._scope)
            except ClientAuthenticationError as exc:
                text = str(exc.message or exc)
                code = _AADSTS.search(text)
                first = text.strip().splitlines()[0] if text.strip() else "authentication failed"
                raise AuthError(f"authentication failed: {first}", code.group(0) if code else None) from None
            except ServiceRequestError as exc:
                raise UnreachableError(f"cannot reach the authority: {exc.message or exc}") from None
            self._token, self._expires = tok.token, float(tok.expires_on)
            return self._token

    async def invalidate(self) -> None:
        """Forget the token and the credential's cache; the next request signs in again."""
        async with self._lock:
            self._token = None
            self._expires = 0.0
            old, self._credential = self._credential, None
            self.refreshes += 1
        if old is not None:
            await old.close()

    def get_allowed_hosts_validator(self) -> AllowedHostsValidator:
        """Tokens go to any host the adapter calls (the configured Graph URL)."""
        return AllowedHostsValidator([])

    async def close(self) -> None:
        """Close the credential's transport."""
        if self._credential is not None:
            await self._credential.close()
            self._credential = None
