"""The identity platform: OIDC discovery, the v2.0 token endpoint, device code, and token checks for Graph.

Wire shapes follow login.microsoftonline.com (graph-v1.md §6, graph-samples/aad-*). MSAL and
azure-identity talk to this unmodified once pointed at the emulator's authority.
"""

from __future__ import annotations

import hmac
import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import orjson

from .http import GraphError, Principal, Request, Response, utcnow
from .jwt import JWTError, decode_unverified, sign, verify
from .state import App, EmulatorState

GRAPH_AUDIENCE = "https://graph.microsoft.com"
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
_GRAPH_SCOPE_PREFIXES = (GRAPH_AUDIENCE + "/", GRAPH_APP_ID + "/", "https://graph.microsoft.com//")
_OIDC_SCOPES = {"openid", "profile", "offline_access", "email"}
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


def aad_error(status: int, error: str, code: int, description: str) -> Response:
    """An OAuth2 error as Azure AD sends it, with the AADSTS code in the description and error_codes."""
    trace, corr = str(uuid.uuid4()), str(uuid.uuid4())
    ts = utcnow().strftime("%Y-%m-%d %H:%M:%SZ")
    body = {
        "error": error,
        "error_description": f"AADSTS{code}: {description}\r\nTrace ID: {trace}\r\nCorrelation ID: {corr}\r\nTimestamp: {ts}",
        "error_codes": [code],
        "timestamp": ts,
        "trace_id": trace,
        "correlation_id": corr,
        "error_uri": f"https://login.microsoftonline.com/error?code={code}",
    }
    return Response(status, orjson.dumps(body), {"Cache-Control": "no-store, no-cache"}, "application/json; charset=utf-8")


@dataclass
class DeviceCode:
    """A pending device-code sign-in."""

    device_code: str
    user_code: str
    client_id: str
    scopes: list[str]
    expires_at: float
    interval: int
    approved_user: str | None = None
    last_poll: float = 0.0


@dataclass
class IdentityService:
    """Token issuance and validation for one emulator."""

    state: EmulatorState
    device_codes: dict[str, DeviceCode] = field(default_factory=dict)

    # discovery ------------------------------------------------------------------------------
    def _tenant_ok(self, tenant: str) -> bool:
        t = self.state.tenant
        return tenant.lower() in {t.id.lower(), t.domain.lower(), "organizations", "common"}

    def openid_configuration(self, tenant: str) -> Response:
        """`/{tenant}/v2.0/.well-known/openid-configuration`."""
        if not self._tenant_ok(tenant):
            return aad_error(400, "invalid_tenant", 90002, f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud.")
        base = f"{self.state.origin}/{tenant}"
        tid = self.state.tenant.id
        doc = {
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
            "jwks_uri": f"{base}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": f"{self.state.origin}/{tid}/v2.0",
            "request_uri_parameter_supported": False,
            "userinfo_endpoint": f"{self.state.origin}/oidc/userinfo",
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
            "tenant_region_scope": "WW",
            "cloud_instance_name": "microsoftonline.com",
            "msgraph_host": "graph.microsoft.com",
        }
        return Response(200, orjson.dumps(doc), {"Cache-Control": "max-age=86400, private"}, "application/json; charset=utf-8")

    def jwks(self) -> Response:
        """The public key tokens are signed with."""
        from .jwt import b64url_encode

        nums = self.state.signing_key.public_key().public_numbers()
        key = {
            "kty": "RSA",
            "use": "sig",
            "kid": self.state.kid,
            "n": b64url_encode(nums.n.to_bytes((nums.n.bit_length() + 7) // 8, "big")),
            "e": b64url_encode(nums.e.to_bytes(3, "big")),
        }
        return Response(200, orjson.dumps({"keys": [key]}), content_type="application/json; charset=utf-8")

    # token endpoint -------------------------------------------------------------------------
    def token(self, tenant: str, form_body: bytes, content_type: str) -> Response:
        """`POST /{tenant}/oauth2/v2.0/token` for client credentials and device code."""
        if not self._tenant_ok(tenant) or tenant.lower() in {"common"}:
            return aad_error(400, "invalid_request", 90002, f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud.")
        if "application/x-www-form-urlencoded" not in content_type:
            return aad_error(400, "invalid_request", 900144, "The request body must contain the following parameter: 'grant_type'.")
        form = {k: v[0] for k, v in parse_qs(form_body.decode("utf-8", "replace"), keep_blank_values=True).items()}
        grant = form.get("grant_type", "")
        if not grant:
            return aad_error(400, "invalid_request", 900144, "The request body must contain the following parameter: 'grant_type'.")
        client_id = form.get("client_id", "")
        app = self.state.apps.get(client_id)
        if app is None:
            return aad_error(
                400, "unauthorized_client", 700016,
                f"Application with identifier '{client_id}' was not found in the directory '{self.state.tenant.domain}'. "
                "This can happen if the application has not been installed by the administrator of the tenant.",
            )
        if grant == "client_credentials":
            return self._client_credentials(tenant, app, form)
        if grant == DEVICE_GRANT:
            return self._device_token(app, form)
        return aad_error(400, "unsupported_grant_type", 70003, f"The app requested an unsupported grant type '{grant}'.")

    def _scope_error(self, scope: str) -> Response | None:
        scopes = scope.split()
        if not scopes:
            return aad_error(400, "invalid_request", 900144, "The request body must contain the following parameter: 'scope'.")
        return None

    def _client_credentials(self, tenant: str, app: App, form: dict[str, str]) -> Response:
        scope = form.get("scope", "")
        err = self._scope_error(scope)
        if err:
            return err
        scopes = [s for s in scope.split() if s not in _OIDC_SCOPES]
        if len(scopes) != 1 or not scopes[0].endswith("/.default"):
            return aad_error(400, "invalid_scope", 1002012, f"The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).")
        if not scopes[0].startswith(_GRAPH_SCOPE_PREFIXES):
            resource = scopes[0][: -len("/.default")]
            return aad_error(400, "invalid_resource", 500011, f"The resource principal named {resource} was not found in the tenant named {self.state.tenant.domain}. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant.")
        if "client_assertion" in form:
            err = self._check_assertion(tenant, app, form)
            if err:
                return err
        elif "client_secret" in form:
            if app.spec.client_secret is None or not hmac.compare_digest(form["client_secret"], app.spec.client_secret):
                return aad_error(401, "invalid_client", 7000215, "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '" + app.spec.client_id + "'.")
        else:
            return aad_error(401, "invalid_client", 7000218, "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.")
        return self._issue(app, roles=app.spec.permissions, scopes=None, user=None)

    def _check_assertion(self, tenant: str, app: App, form: dict[str, str]) -> Response | None:
        if form.get("client_assertion_type") != ASSERTION_TYPE:
            return aad_error(400, "invalid_request", 50027, "Invalid client_assertion_type.")
        assertion = form["client_assertion"]
        try:
            header, claims, _, _ = decode_unverified(assertion)
        except JWTError:
            return aad_error(401, "invalid_client", 50027, "JWT token is invalid or malformed.")
        if app.certificate is None:
            return aad_error(401, "invalid_client", 700027, f"The certificate with identifier used to sign the client assertion is not registered on application. [Reason - The key was not found., Thumbprint of key used by client: '{header.get('x5t') or header.get('x5t#S256')}']")
        x5t, x5t256 = header.get("x5t"), header.get("x5t#S256")
        if not ((x5t and x5t.rstrip("=") == app.x5t) or (x5t256 and x5t256.rstrip("=") == app.x5t_s256)):
            return aad_error(401, "invalid_client", 700027, f"The certificate with identifier used to sign the client assertion is not registered on application. [Reason - The key was not found., Thumbprint of key used by client: '{x5t or x5t256}']")
        try:
            verify(assertion, app.certificate.public_key())  # type: ignore[arg-type]
        except JWTError:
            return aad_error(401, "invalid_client", 700027, "Client assertion contains an invalid signature. [Reason - The key used is expired or the signature does not verify.]")
        now = time.time()
        if claims.get("iss") != app.spec.client_id or claims.get("sub") != app.spec.client_id:
            return aad_error(401, "invalid_client", 700021, "Client assertion application identifier doesn't match 'client_id' parameter.")
        exp, nbf = claims.get("exp"), claims.get("nbf", claims.get("iat", 0))
        if not isinstance(exp, (int, float)) or exp < now - 300 or (isinstance(nbf, (int, float)) and nbf > now + 300):
            return aad_error(401, "invalid_client", 700024, "Client assertion is not within its valid time range.")
        aud = claims.get("aud")
        expected = {f"{self.state.origin}/{t}/oauth2/v2.0/token" for t in (tenant, self.state.tenant.id, self.state.tenant.domain)}
        auds = aud if isinstance(aud, list) else [aud]
        if not any(a in expected for a in auds):
            return aad_error(401, "invalid_client", 700016 if False else 50013, f"Assertion audience claim does not match the required value. The audience in the assertion was '{aud}'.")
        return None

    def _issue(self, app: App, *, roles: list[str] | None, scopes: list[str] | None, user: str | None) -> Response:
        now = int(time.time())
        life = self.state.token_lifetime
        tid = self.state.tenant.id
        claims: dict[str, Any] = {
            "aud": GRAPH_AUDIENCE,
            "iss": f"https://sts.windows.net/{tid}/",
            "iat": now,
            "nbf": now,
            "exp": now + life,
            "appid": app.spec.client_id,
            "app_displayname": app.spec.display_name or app.spec.client_id,
            "tid": tid,
            "ver": "1.0",
            "uti": secrets.token_urlsafe(16),
        }
        if user is None:
            claims.update(idtyp="app", oid=str(uuid.uuid5(uuid.NAMESPACE_URL, f"sp:{app.spec.client_id}")), roles=sorted(roles or []))
            claims["sub"] = claims["oid"]
        else:
            claims.update(idtyp="user", oid=user, sub=user, scp=" ".join(scopes or []))
        token = sign(claims, self.state.signing_key, headers={"kid": self.state.kid, "x5t": self.state.kid})
        body: dict[str, Any] = {"token_type": "Bearer", "expires_in": life, "ext_expires_in": life, "access_token": token}
        if scopes is not None:
            body["scope"] = " ".join(scopes)
        return Response(200, orjson.dumps(body), {"Cache-Control": "no-store, no-cache"}, "application/json; charset=utf-8")

    # device code ----------------------------------------------------------------------------
    def device_authorize(self, tenant: str, form_body: bytes) -> Response:
        """`POST /{tenant}/oauth2/v2.0/devicecode`."""
        form = {k: v[0] for k, v in parse_qs(form_body.decode("utf-8", "replace"), keep_blank_values=True).items()}
        app = self.state.apps.get(form.get("client_id", ""))
        if app is None:
            return aad_error(400, "unauthorized_client", 700016, f"Application with identifier '{form.get('client_id', '')}' was not found in the directory '{self.state.tenant.domain}'.")
        if not app.spec.public_client:
            return aad_error(400, "invalid_client", 7000218, "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.")
        ident = self.state.scenario.identity
        user_code = "".join(secrets.choice("ABCDEFGHJKLMNPQRSTUVWXYZ23456789") for _ in range(9))
        dc = DeviceCode(
            device_code=secrets.token_urlsafe(48),
            user_code=user_code,
            client_id=app.spec.client_id,
            scopes=[s for s in form.get("scope", "").split() if s not in _OIDC_SCOPES],
            expires_at=time.time() + ident.device_code_lifetime,
            interval=ident.device_code_interval,
        )
        self.device_codes[dc.device_code] = dc
        uri = f"{self.state.origin}/devicelogin"
        body = {
            "user_code": user_code,
            "device_code": dc.device_code,
            "verification_uri": uri,
            "expires_in": ident.device_code_lifetime,
            "interval": dc.interval,
            "message": f"To sign in, use a web browser to open the page {uri} and enter the code {user_code} to authenticate.",
        }
        return Response(200, orjson.dumps(body), content_type="application/json; charset=utf-8")

    def approve_device_code(self, user_code: str, user: str) -> bool:
        """Approve a pending sign-in as `user` (control API); False when no such code."""
        mb = self.state.tenant.find(user)
        if mb is None:
            raise KeyError(user)
        for dc in self.device_codes.values():
            if dc.user_code == user_code.replace("-", "").upper():
                dc.approved_user = mb.id
                return True
        return False

    def _device_token(self, app: App, form: dict[str, str]) -> Response:
        dc = self.device_codes.get(form.get("device_code", ""))
        if dc is None or dc.client_id != app.spec.client_id:
            return aad_error(400, "invalid_grant", 70000, "Provided grant is invalid or malformed.")
        if time.time() > dc.expires_at:
            self.device_codes.pop(dc.device_code, None)
            return aad_error(400, "expired_token", 70020, "The provided value for the input parameter 'device_code' is not valid. This device code has expired.")
        if dc.approved_user is None:
            return aad_error(400, "authorization_pending", 70016, "OAuth 2.0 device flow error. Authorization is pending. Continue polling.")
        self.device_codes.pop(dc.device_code, None)
        granted = set(app.spec.scopes)
        scopes = []
        for s in dc.scopes:
            short = s.split("/")[-1]
            if short == ".default":
                scopes.extend(sorted(granted))
            elif short in granted:
                scopes.append(short)
            else:
                return aad_error(400, "invalid_grant", 65001, f"The user or administrator has not consented to use the application with ID '{app.spec.client_id}'. Send an interactive authorization request for this user and resource.")
        return self._issue(app, roles=None, scopes=scopes, user=dc.approved_user)

    # Graph-side validation ------------------------------------------------------------------
    def authenticate(self, request: Request) -> Principal:
        """Verify the bearer token of a Graph request; 401 InvalidAuthenticationToken otherwise."""
        auth = request.headers.get("authorization", "")
        if not auth.lower().startswith("bearer "):
            raise GraphError(401, "InvalidAuthenticationToken", "Access token is empty.")
        token = auth[7:].strip()
        try:
            _, claims = verify(token, self.state.signing_key.public_key(), algs=("RS256",))
        except JWTError:
            raise GraphError(401, "InvalidAuthenticationToken", "Access token validation failure. Invalid signature.") from None
        now = time.time()
        if not isinstance(claims.get("exp"), (int, float)) or claims["exp"] < now:
            raise GraphError(401, "InvalidAuthenticationToken", "Lifetime validation failed, the token is expired.")
        if claims.get("aud") not in (GRAPH_AUDIENCE, GRAPH_AUDIENCE + "/", GRAPH_APP_ID):
            raise GraphError(401, "InvalidAuthenticationToken", "Access token validation failure. Invalid audience.")
        if claims.get("tid") != self.state.tenant.id:
            raise GraphError(401, "InvalidAuthenticationToken", "Access token validation failure. Invalid issuer or tenant.")
        if claims.get("idtyp") == "user":
            return Principal(claims["tid"], claims["appid"], scopes=frozenset(str(claims.get("scp", "")).split()), user_id=claims["oid"])
        return Principal(claims["tid"], claims["appid"], roles=frozenset(claims.get("roles", [])))
