"""The real azure-identity and MSAL against the emulator's identity platform, configured with only authority and CA bundle.

Client secret and certificate credentials (sync = MSAL: RS256 + x5t; aio = azure-identity's own client:
PS256 + x5t#S256, graph-v1.md §6.2), MSAL confidential and public (device code) clients, and what Graph
says about the tokens: delegated vs app-only, expired and tampered tokens.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import azure.identity
import azure.identity.aio
import httpx
import msal
import pytest
from azure.core.exceptions import ClientAuthenticationError
from certs import AppCertificate, make_app_certificate, ssl_context
from conftest import APP_ID, APP_SECRET, TENANT_ID, base_scenario

from connector.emulator import Emulator
from connector.emulator.jwt import decode_unverified

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
CERT_APP = "33333333-3333-3333-3333-333333333333"
PUBLIC_APP = "44444444-4444-4444-4444-444444444444"
ADELE = "adele@contoso.com"


@pytest.fixture(scope="session")
def app_cert(tmp_path_factory: pytest.TempPathFactory) -> AppCertificate:
    """One RSA key and self-signed certificate per test session."""
    return make_app_certificate(tmp_path_factory.mktemp("app-cert"))


def identity_scenario(cert: AppCertificate, **identity: Any) -> dict[str, Any]:
    """The base tenant plus a certificate app and a public (device code) client; Adele has two messages."""
    data = base_scenario()
    data["identity"] = {"device_code_interval": 1, **identity}
    data["apps"] += [
        {"client_id": CERT_APP, "display_name": "Cert app", "certificate": str(cert.public_pem), "permissions": ["Mail.Read", "User.Read.All"]},
        {"client_id": PUBLIC_APP, "display_name": "Device app", "public_client": True, "scopes": ["Mail.Read", "User.Read"]},
    ]
    data["users"][0]["mailFolders"] = {"inbox": {"messages": [{"subject": "Welcome"}, {"subject": "Agenda"}]}}
    return data


@pytest.fixture
def emu(make_emulator: Callable[..., Emulator], app_cert: AppCertificate) -> Emulator:
    """The identity scenario, running."""
    return make_emulator(identity_scenario(app_cert))


@pytest.fixture
def no_env_ca(monkeypatch: pytest.MonkeyPatch) -> None:
    """requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE override a Session's `verify` (psf/requests#3829),
    so MSAL's `verify=ca_bundle` only takes effect when they are unset."""
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)


@pytest.fixture
def token_posts(emu: Emulator) -> Iterator[list[dict[str, str]]]:
    """Every form posted to the token endpoint, recorded by wrapping the emulator's identity service."""
    from urllib.parse import parse_qsl

    seen: list[dict[str, str]] = []
    identity = emu.dispatcher.identity
    original = identity.token

    def recording(tenant: str, form_body: bytes, content_type: str) -> Any:
        seen.append(dict(parse_qsl(form_body.decode())))
        return original(tenant, form_body, content_type)

    identity.token = recording  # type: ignore[method-assign]
    yield seen
    del identity.token


def graph_get(emu: Emulator, token: str, path: str) -> httpx.Response:
    """A Graph GET with a bearer token."""
    return httpx.get(f"{emu.graph_url}{path}", headers={"Authorization": f"Bearer {token}"}, verify=ssl_context(emu.ca_bundle))


def claims(token: str) -> dict[str, Any]:
    """The claims of a JWT, unverified."""
    return decode_unverified(token)[1]


def assertion_header(form: dict[str, str]) -> dict[str, Any]:
    """The JOSE header of the client assertion in a token request."""
    return decode_unverified(form["client_assertion"])[0]


# azure-identity ---------------------------------------------------------------------------


def test_sync_client_secret_credential(emu: Emulator) -> None:
    """azure.identity.ClientSecretCredential (MSAL inside): OIDC discovery + token POST, token works on Graph."""
    cred = azure.identity.ClientSecretCredential(
        TENANT_ID, APP_ID, APP_SECRET, authority=emu.authority, disable_instance_discovery=True, connection_verify=emu.ca_bundle)
    tok = cred.get_token(GRAPH_SCOPE)
    assert 3500 < tok.expires_on - time.time() <= 3600
    c = claims(tok.token)
    assert (c["aud"], c["tid"], c["appid"], c["idtyp"]) == ("https://graph.microsoft.com", TENANT_ID, APP_ID, "app")
    assert "Mail.ReadWrite" in c["roles"]
    r = graph_get(emu, tok.token, "/users")
    assert r.status_code == 200 and len(r.json()["value"]) == 2
    assert cred.get_token(GRAPH_SCOPE).token == tok.token  # served from MSAL's cache


async def test_async_client_secret_credential(emu: Emulator, token_posts: list[dict[str, str]]) -> None:
    """azure.identity.aio.ClientSecretCredential: a single token POST, no discovery."""
    async with azure.identity.aio.ClientSecretCredential(
        TENANT_ID, APP_ID, APP_SECRET, authority=emu.authority, connection_verify=emu.ca_bundle) as cred:
        tok = await cred.get_token(GRAPH_SCOPE)
    assert [f["grant_type"] for f in token_posts] == ["client_credentials"]
    assert token_posts[0]["client_secret"] == APP_SECRET
    assert graph_get(emu, tok.token, "/users/adele@contoso.com").json()["userPrincipalName"] == ADELE


def test_sync_certificate_credential_sends_rs256_x5t(emu: Emulator, app_cert: AppCertificate, token_posts: list[dict[str, str]]) -> None:
    """azure.identity.CertificateCredential (MSAL, thumbprint given): RS256 with a SHA-1 x5t (graph-v1.md §6.2)."""
    cred = azure.identity.CertificateCredential(
        TENANT_ID, CERT_APP, str(app_cert.credential_pem), authority=emu.authority, disable_instance_discovery=True,
        connection_verify=emu.ca_bundle)
    tok = cred.get_token(GRAPH_SCOPE)
    header = assertion_header(token_posts[-1])
    assert header["alg"] == "RS256" and "x5t" in header
    assert claims(tok.token)["roles"] == ["Mail.Read", "User.Read.All"]
    assert graph_get(emu, tok.token, f"/users/{ADELE}/messages").status_code == 200


async def test_async_certificate_credential_sends_ps256_x5t_s256(emu: Emulator, app_cert: AppCertificate, token_posts: list[dict[str, str]]) -> None:
    """azure.identity.aio.CertificateCredential: PS256 with x5t#S256 and '='-padded base64url segments (graph-v1.md §6.2)."""
    async with azure.identity.aio.CertificateCredential(
        TENANT_ID, CERT_APP, str(app_cert.credential_pem), authority=emu.authority, connection_verify=emu.ca_bundle) as cred:
        tok = await cred.get_token(GRAPH_SCOPE)
    form = token_posts[-1]
    header = assertion_header(form)
    assert header["alg"] == "PS256" and "x5t#S256" in header
    assert form["client_assertion"].endswith("==")  # a 256-byte RSA signature, base64url with padding
    assert form["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    assert claims(form["client_assertion"])["aud"] == f"{emu.authority}/{TENANT_ID}/oauth2/v2.0/token"
    assert graph_get(emu, tok.token, f"/users/{ADELE}/messages").status_code == 200


def test_wrong_secret_is_aadsts7000215(emu: Emulator) -> None:
    """A wrong client secret: ClientAuthenticationError carrying Azure AD's code."""
    cred = azure.identity.ClientSecretCredential(
        TENANT_ID, APP_ID, "not-the-secret", authority=emu.authority, disable_instance_discovery=True, connection_verify=emu.ca_bundle)
    with pytest.raises(ClientAuthenticationError, match="AADSTS7000215"):
        cred.get_token(GRAPH_SCOPE)


async def test_wrong_secret_async_and_unknown_app(emu: Emulator) -> None:
    """The aio credential reports the same code; an unknown client id is AADSTS700016."""
    async with azure.identity.aio.ClientSecretCredential(
        TENANT_ID, APP_ID, "not-the-secret", authority=emu.authority, connection_verify=emu.ca_bundle) as cred:
        with pytest.raises(ClientAuthenticationError, match="AADSTS7000215"):
            await cred.get_token(GRAPH_SCOPE)
    async with azure.identity.aio.ClientSecretCredential(
        TENANT_ID, "99999999-9999-9999-9999-999999999999", APP_SECRET, authority=emu.authority, connection_verify=emu.ca_bundle) as cred:
        with pytest.raises(ClientAuthenticationError, match="AADSTS700016"):
            await cred.get_token(GRAPH_SCOPE)


def test_certificate_not_registered_is_rejected(emu: Emulator, tmp_path: Path) -> None:
    """A certificate the app does not have: AADSTS700027 (thumbprint unknown)."""
    other = make_app_certificate(tmp_path, "stranger")
    cred = azure.identity.CertificateCredential(
        TENANT_ID, CERT_APP, str(other.credential_pem), authority=emu.authority, disable_instance_discovery=True,
        connection_verify=emu.ca_bundle)
    with pytest.raises(ClientAuthenticationError, match="AADSTS700027"):
        cred.get_token(GRAPH_SCOPE)


# MSAL -------------------------------------------------------------------------------------


@pytest.mark.usefixtures("no_env_ca")
def test_msal_confidential_client_secret(emu: Emulator) -> None:
    """msal.ConfidentialClientApplication with a secret; the second call is a cache hit."""
    app = msal.ConfidentialClientApplication(
        APP_ID, client_credential=APP_SECRET, authority=f"{emu.authority}/{TENANT_ID}", instance_discovery=False, verify=emu.ca_bundle)
    result = app.acquire_token_for_client([GRAPH_SCOPE])
    assert result.get("token_type") == "Bearer", result
    assert result["token_source"] == "identity_provider"
    assert graph_get(emu, result["access_token"], "/users").status_code == 200
    assert app.acquire_token_for_client([GRAPH_SCOPE])["token_source"] == "cache"


@pytest.mark.usefixtures("no_env_ca")
@pytest.mark.parametrize(("credential_keys", "alg", "thumb"), [
    (("private_key", "thumbprint"), "RS256", "x5t"),
    (("private_key", "public_certificate"), "PS256", "x5t#S256"),
])
def test_msal_confidential_client_certificate(
    emu: Emulator, app_cert: AppCertificate, token_posts: list[dict[str, str]], credential_keys: tuple[str, str], alg: str, thumb: str,
) -> None:
    """MSAL signs RS256 + x5t with a thumbprint, PS256 + x5t#S256 with the public certificate (graph-v1.md §6.2)."""
    values = {"private_key": app_cert.private_key_pem, "thumbprint": app_cert.sha1_thumbprint, "public_certificate": app_cert.public_cert_pem}
    app = msal.ConfidentialClientApplication(
        CERT_APP, client_credential={k: values[k] for k in credential_keys}, authority=f"{emu.authority}/{TENANT_ID}",
        instance_discovery=False, verify=emu.ca_bundle)
    result = app.acquire_token_for_client([GRAPH_SCOPE])
    assert "access_token" in result, result
    header = assertion_header(token_posts[-1])
    assert header["alg"] == alg and thumb in header
    assert claims(token_posts[-1]["client_assertion"])["aud"] == f"{emu.authority}/{TENANT_ID}/oauth2/v2.0/token"


@pytest.mark.usefixtures("no_env_ca")
def test_msal_wrong_secret_reports_error_codes(emu: Emulator) -> None:
    """MSAL returns AAD's error JSON rather than raising."""
    app = msal.ConfidentialClientApplication(
        APP_ID, client_credential="wrong", authority=f"{emu.authority}/{TENANT_ID}", instance_discovery=False, verify=emu.ca_bundle)
    result = app.acquire_token_for_client([GRAPH_SCOPE])
    assert result["error"] == "invalid_client" and result["error_codes"] == [7000215]
    assert result["error_description"].startswith("AADSTS7000215:")


def device_code_sign_in(emu: Emulator, user: str, scopes: list[str]) -> dict[str, Any]:
    """Run MSAL's device flow in a thread while the test approves the code as `user`."""
    app = msal.PublicClientApplication(PUBLIC_APP, authority=f"{emu.authority}/{TENANT_ID}", instance_discovery=False, verify=emu.ca_bundle)
    flow = app.initiate_device_flow(scopes=scopes)
    assert "user_code" in flow, flow
    assert flow["interval"] == 1 and flow["verification_uri"].startswith(emu.authority)
    result: dict[str, Any] = {}
    worker = threading.Thread(target=lambda: result.update(app.acquire_token_by_device_flow(flow)))
    worker.start()
    time.sleep(1.2)  # let MSAL poll at least once and see authorization_pending
    assert worker.is_alive(), result
    emu.approve_device_code(flow["user_code"], user)
    worker.join(30)
    assert not worker.is_alive()
    return result


@pytest.mark.usefixtures("no_env_ca")
def test_device_code_flow_gives_a_delegated_token(emu: Emulator) -> None:
    """Device code sign-in as Adele: /me/messages works with it; an app-only token gets 400 on /me."""
    result = device_code_sign_in(emu, ADELE, ["Mail.Read", "User.Read"])
    assert "access_token" in result, result
    assert set(result["scope"].split()) == {"Mail.Read", "User.Read"}
    c = claims(result["access_token"])
    assert c["idtyp"] == "user" and set(c["scp"].split()) == {"Mail.Read", "User.Read"}
    r = graph_get(emu, result["access_token"], "/me/messages?$select=subject")
    assert r.status_code == 200, r.text
    assert sorted(m["subject"] for m in r.json()["value"]) == ["Agenda", "Welcome"]

    app_only = azure.identity.ClientSecretCredential(
        TENANT_ID, APP_ID, APP_SECRET, authority=emu.authority, disable_instance_discovery=True, connection_verify=emu.ca_bundle,
    ).get_token(GRAPH_SCOPE).token
    r = graph_get(emu, app_only, "/me")
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "Request_BadRequest" and "/me" in r.json()["error"]["message"]


@pytest.mark.usefixtures("no_env_ca")
def test_device_code_scope_not_granted_to_the_app(emu: Emulator) -> None:
    """Asking for a scope the app was not consented for: invalid_grant AADSTS65001."""
    result = device_code_sign_in(emu, ADELE, ["Mail.ReadWrite"])
    assert result.get("error") == "invalid_grant" and 65001 in result.get("error_codes", []), result


def test_delegated_token_cannot_read_another_mailbox(emu: Emulator, no_env_ca: None) -> None:
    """Adele's delegated Mail.Read reaches her mailbox, not Bob's (no shared-mailbox permission in the scenario)."""
    token = device_code_sign_in(emu, ADELE, ["Mail.Read"])["access_token"]
    assert graph_get(emu, token, f"/users/{ADELE}/messages").status_code == 200
    r = graph_get(emu, token, "/users/bob@contoso.com/messages")
    assert r.status_code == 403 and r.json()["error"]["code"] == "ErrorAccessDenied"


# what Graph says about tokens -------------------------------------------------------------


def test_expired_token_is_401(make_emulator: Callable[..., Emulator], app_cert: AppCertificate) -> None:
    """identity.token_lifetime: 2 -> the token expires -> Graph 401 InvalidAuthenticationToken."""
    emu = make_emulator(identity_scenario(app_cert, token_lifetime=2))
    cred = azure.identity.ClientSecretCredential(
        TENANT_ID, APP_ID, APP_SECRET, authority=emu.authority, disable_instance_discovery=True, connection_verify=emu.ca_bundle)
    tok = cred.get_token(GRAPH_SCOPE)
    assert tok.expires_on - time.time() <= 2
    assert graph_get(emu, tok.token, "/users").status_code == 200
    time.sleep(3.1)  # exp is whole seconds; wait past it
    r = graph_get(emu, tok.token, "/users")
    assert r.status_code == 401
    err = r.json()["error"]
    assert err["code"] == "InvalidAuthenticationToken" and "expired" in err["message"].lower()
    # azure-identity treats a token this close to expiry as stale and fetches a fresh one.
    fresh = cred.get_token(GRAPH_SCOPE).token
    assert fresh != tok.token and graph_get(emu, fresh, "/users").status_code == 200


def test_tampered_token_is_401(emu: Emulator) -> None:
    """Flipping one byte of the signature, or of the claims, breaks verification."""
    token = azure.identity.ClientSecretCredential(
        TENANT_ID, APP_ID, APP_SECRET, authority=emu.authority, disable_instance_discovery=True, connection_verify=emu.ca_bundle,
    ).get_token(GRAPH_SCOPE).token
    head, body, sig = token.split(".")
    flipped_sig = sig[:10] + ("A" if sig[10] != "A" else "B") + sig[11:]
    import base64
    import json

    forged_claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    forged_claims["roles"] = ["Directory.ReadWrite.All"]
    forged_body = base64.urlsafe_b64encode(json.dumps(forged_claims).encode()).rstrip(b"=").decode()
    for bad in (f"{head}.{body}.{flipped_sig}", f"{head}.{forged_body}.{sig}"):
        r = graph_get(emu, bad, "/users")
        assert r.status_code == 401
        assert r.json()["error"]["code"] == "InvalidAuthenticationToken"
    assert graph_get(emu, token, "/users").status_code == 200
