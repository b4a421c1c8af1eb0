"""Everything one running emulator holds: tenant, apps, token keys, sync states, throttles, faults, stats."""

from __future__ import annotations

import hashlib
import secrets
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa

from .delta import DeltaSettings, SyncStates
from .http import GraphError, Principal, Request
from .jwt import b64url_encode
from .scenario import AppSpec, FaultSpec, Scenario
from .store import Mailbox, Tenant


@dataclass
class App:
    """A registered application, with its certificate thumbprints precomputed."""

    spec: AppSpec
    certificate: x509.Certificate | None = None
    x5t: str | None = None  # base64url SHA-1 thumbprint
    x5t_s256: str | None = None  # base64url SHA-256 thumbprint

    @classmethod
    def from_spec(cls, spec: AppSpec, scenario: Scenario) -> App:
        """Load the app's public certificate if it has one."""
        app = cls(spec)
        if spec.certificate:
            path = scenario.resolve(spec.certificate)
            try:
                cert = x509.load_pem_x509_certificate(Path(path).read_bytes())
            except (OSError, ValueError) as exc:
                raise ValueError(f"app {spec.client_id}: cannot read certificate {path}: {exc}") from exc
            app.certificate = cert
            app.x5t = b64url_encode(cert.fingerprint(hashes.SHA1()))  # noqa: S303 - AAD's x5t is SHA-1
            app.x5t_s256 = b64url_encode(cert.fingerprint(hashes.SHA256()))
        return app


@dataclass
class FaultRule:
    """A live fault rule with its counters."""

    spec: FaultSpec
    id: int
    seen: int = 0
    fired: int = 0

    def consider(self) -> bool:
        """Count a matching request; True when the rule fires for it."""
        self.seen += 1
        if self.seen <= self.spec.skip:
            return False
        if self.spec.times is not None and self.fired >= self.spec.times:
            return False
        self.fired += 1
        return True


@dataclass
class Throttle:
    """Outlook's per (app, mailbox) concurrency and request budget (graph-v1.md §4.1)."""

    concurrency: int = 4
    budget: int = 10_000
    window: float = 600.0
    in_flight: Counter[tuple[str, str]] = field(default_factory=Counter)
    max_seen: Counter[str] = field(default_factory=Counter)  # mailbox -> highest concurrency observed
    _hits: dict[tuple[str, str], deque[float]] = field(default_factory=dict)

    def enter(self, app: str, mailbox: str) -> None:
        """Admit a request or raise the 429 Outlook would send."""
        key = (app, mailbox)
        self.in_flight[key] += 1
        n = self.in_flight[key]
        if n > self.max_seen[mailbox]:
            self.max_seen[mailbox] = n
        if n > self.concurrency:
            self.leave(app, mailbox)
            raise GraphError(
                429,
                "ApplicationThrottled",
                "Application is over its MailboxConcurrency limit.",
                headers={"Retry-After": "1"},
            )
        now = time.monotonic()
        hits = self._hits.setdefault(key, deque())
        while hits and hits[0] <= now - self.window:
            hits.popleft()
        if len(hits) >= self.budget:
            self.leave(app, mailbox)
            wait = max(1, int(hits[0] + self.window - now + 0.999))
            raise GraphError(
                429,
                "TooManyRequests",
                "Please retry again later.",
                headers={"Retry-After": str(wait)},
                inner_code="429",
            )
        hits.append(now)

    def leave(self, app: str, mailbox: str) -> None:
        """Release a request's concurrency slot."""
        self.in_flight[(app, mailbox)] -= 1


class EmulatorState:
    """The shared state every route module works on."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.tenant = Tenant(scenario.tenant.id, scenario.tenant.domain)
        self.apps: dict[str, App] = {a.client_id: App.from_spec(a, scenario) for a in scenario.apps}
        self.signing_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = hashlib.sha1(self.signing_key.public_key().public_numbers().n.to_bytes(256, "big")).hexdigest()[:20]  # noqa: S324
        self.token_lifetime = scenario.identity.token_lifetime
        d = scenario.delta
        self.sync = SyncStates(
            DeltaSettings(d.ring_size, d.expired_code, d.expired_location, d.replays), secrets.token_bytes(16)
        )
        t = scenario.throttling
        self.throttle = Throttle(t.mailbox_concurrency, t.requests_per_window, t.window_seconds)
        self.faults: list[FaultRule] = []
        self._fault_ids = 0
        for f in scenario.faults:
            self.add_fault(f)
        self.stats_status: Counter[int] = Counter()
        self.request_log: deque[dict[str, Any]] = deque(maxlen=100_000)
        self.origin = ""  # https://host:port, set when the server is bound
        self.extensions: dict[str, Any] = {}  # per-module singletons (subscriptions, device codes...)

    # faults ---------------------------------------------------------------------------------
    def add_fault(self, spec: FaultSpec) -> FaultRule:
        """Install a fault rule; returns it with its id."""
        self._fault_ids += 1
        rule = FaultRule(spec, self._fault_ids)
        self.faults.append(rule)
        return rule

    def clear_faults(self) -> None:
        """Remove every fault rule."""
        self.faults.clear()

    # mailboxes ------------------------------------------------------------------------------
    def mailbox(self, request: Request) -> Mailbox:
        """The mailbox named by the route's {user}, enforcing the app's mailbox scope."""
        name = request.params.get("user", "")
        mb = self.tenant.find(name)
        if mb is None or not mb.user.get("_hasMailbox", True):
            if mb is not None:
                raise GraphError(404, "MailboxNotEnabledForRESTAPI", "The mailbox is either inactive, soft-deleted, or is hosted on-premise.")
            raise GraphError(404, "ErrorInvalidUser", f"The requested user '{name}' is invalid.")
        self.check_scope(request.principal, mb)
        return mb

    def named_mailbox(self, request: Request) -> Mailbox:
        """The mailbox a control route's {user} names (any id form); 404 when the scenario has none."""
        mb = self.tenant.find(request.params.get("user", ""))
        if mb is None:
            raise GraphError(404, "ErrorInvalidUser", f"No user {request.params.get('user')!r} in the scenario.")
        return mb

    def check_scope(self, principal: Principal | None, mb: Mailbox) -> None:
        """403 when an application access policy keeps the app out of `mb`, or a signed-in user out of another's mailbox."""
        if principal is None:
            return
        if not principal.app_only:
            # Delegated access reaches only the user's own mailbox unless a *.Shared scope was granted.
            if principal.user_id != mb.id and not any(s.endswith(".Shared") for s in principal.scopes):
                raise GraphError(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")
            return
        app = self.apps.get(principal.client_id)
        allowed = app.spec.mailboxes if app else None
        if allowed is not None:
            names = {n.lower() for n in allowed}
            if not ({mb.id.lower(), mb.upn.lower(), (mb.user.get("mail") or "").lower()} & names):
                raise GraphError(403, "ErrorAccessDenied", "Access to OData is disabled: [RAOP] : Blocked by tenant configured AppOnly AccessPolicy settings.")
