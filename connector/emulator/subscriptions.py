"""Change notifications: `/subscriptions` with the validation handshake, webhook delivery and lifecycle events.

Follows graph-v1.md §5.7. Differences from the real service, by design:

* `notificationUrl` / `lifecycleNotificationUrl` may be plain `http://` when the host is loopback
  (127.0.0.1, ::1, localhost) so tests can run a receiver without TLS; Graph requires https.
* TLS certificates of loopback https receivers are not verified (self-signed test receivers);
  other hosts are verified unless `settings.verify_remote_tls` is turned off.
* Delivery retries a few times with short delays (`settings.retry_delays`) instead of for 4 hours.
* Rich notifications (`includeResourceData`) and query options on `resource` are refused.

Control routes: `GET /_emulator/subscriptions` (all subscriptions, queue and delivery log),
`POST /_emulator/subscriptions/flush` (wait for queued notifications), `PATCH
/_emulator/subscriptions/settings` (see `Settings`) and `POST /_emulator/subscriptions/{id}/lifecycle`
`{"event": "missed" | "subscriptionRemoved" | "reauthorizationRequired"}`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import secrets
import uuid
from collections import deque
from dataclasses import dataclass, fields
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote_plus, urlsplit

import aiohttp
import orjson

from . import mail
from .http import GraphError, Principal, Request, Response, Router, empty, json_response, normalise_path, utcnow
from .state import EmulatorState
from .store import Item, Mailbox, b64url, change_key

CHANGE_TYPES = ("created", "updated", "deleted")
LIFECYCLE_EVENTS = ("missed", "subscriptionRemoved", "reauthorizationRequired")
MAX_MINUTES = {"messages": 10070, "events": 10070, "contacts": 10070, "todoTasks": 4230}  # §5.7: the service enforces 10,070, not 10,080
MAILBOX_QUOTA = 1000  # active subscriptions per mailbox for Outlook resources, all apps
# (application roles, delegated scopes) that allow a subscription on each resource: its read permission (§6.5).
READ_PERMISSIONS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "messages": (frozenset({"Mail.ReadBasic.All", "Mail.Read", "Mail.ReadWrite"}), frozenset({"Mail.ReadBasic", "Mail.Read", "Mail.ReadWrite"})),
    "events": (frozenset({"Calendars.ReadBasic", "Calendars.ReadBasic.All", "Calendars.Read", "Calendars.ReadWrite"}),
               frozenset({"Calendars.ReadBasic", "Calendars.Read", "Calendars.ReadWrite"})),
    "contacts": (frozenset({"Contacts.Read", "Contacts.ReadWrite"}), frozenset({"Contacts.Read", "Contacts.ReadWrite"})),
    "todoTasks": (frozenset({"Tasks.Read.All", "Tasks.ReadWrite.All"}), frozenset({"Tasks.Read", "Tasks.ReadWrite"})),
}
# Notification shapes per resource: (@odata.type, path segment in `resource` / `@odata.id`).
NOTIFY_TYPES = {
    "messages": ("#Microsoft.Graph.Message", "Messages"),
    "events": ("#Microsoft.Graph.Event", "Events"),
    "contacts": ("#Microsoft.Graph.Contact", "Contacts"),
    "todoTasks": ("#Microsoft.Graph.todoTask", "tasks"),
}
# Lifecycle events each resource can raise (§5.7).
LIFECYCLE_SUPPORT = {
    "messages": frozenset(LIFECYCLE_EVENTS), "events": frozenset(LIFECYCLE_EVENTS), "contacts": frozenset(LIFECYCLE_EVENTS),
    "todoTasks": frozenset({"reauthorizationRequired"}),
}
_TODO_RESOURCES = frozenset({"todoTasks", "tasks", "todo"})
log = logging.getLogger("connector.emulator")


@dataclass
class Settings:
    """Delivery knobs; change them with `PATCH /_emulator/subscriptions/settings`."""

    validation_timeout: float = 10.0  # Graph waits 10 s for the handshake answer
    delivery_timeout: float = 10.0  # Graph's retry timeout per POST
    retry_delays: tuple[float, ...] = (0.2, 0.5, 1.0)  # waits between attempts; len + 1 attempts in all
    batch_window: float = 0.02  # notifications queued within this window share one POST
    max_batch: int = 100
    verify_remote_tls: bool = True


@dataclass
class Subscription:
    """One active subscription."""

    id: str
    app_id: str
    creator_id: str
    user_id: str | None  # the signed-in user for delegated subscriptions
    mailbox_id: str
    kind: str  # messages | events | contacts | todoTasks
    container: str | None  # folder id for mailFolders(...)/messages, list id for To Do
    resource: str  # as the client sent it
    change_type: str
    change_types: frozenset[str]
    notification_url: str
    lifecycle_url: str | None
    expiration: datetime
    client_state: str | None
    tls_version: str
    immutable: bool
    needs_reauth: bool = False
    delivered: int = 0
    failed: int = 0

    def json(self, graph_base: str | None = None) -> dict[str, Any]:
        """The subscription resource as Graph renders it."""
        out: dict[str, Any] = {}
        if graph_base:
            out["@odata.context"] = f"{graph_base}/$metadata#subscriptions/$entity"
        out.update({
            "id": self.id,
            "resource": self.resource,
            "applicationId": self.app_id,
            "changeType": self.change_type,
            "clientState": self.client_state,
            "notificationUrl": self.notification_url,
            "notificationQueryOptions": None,
            "lifecycleNotificationUrl": self.lifecycle_url,
            "expirationDateTime": dt_json(self.expiration),
            "creatorId": self.creator_id,
            "includeResourceData": False,
            "latestSupportedTlsVersion": self.tls_version,
            "encryptionCertificate": None,
            "encryptionCertificateId": None,
            "notificationUrlAppId": None,
        })
        return out


def dt_json(dt: datetime) -> str:
    """Subscription DateTimeOffset rendering: UTC with seven fractional digits, as Graph sends it."""
    dt = dt.astimezone(timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond:06d}0Z"


def _parse_dt(value: Any) -> datetime:
    if not isinstance(value, str) or not value:
        raise GraphError(400, "InvalidRequest", "expirationDateTime is a required property for subscription creation.")
    text = value.strip().replace("Z", "+00:00").replace("z", "+00:00")
    head, dot, frac = text.partition(".")
    if dot:  # Python wants at most 6 fractional digits; Graph sends 7
        digits = "".join(c for c in frac if c.isdigit())
        text = f"{head}.{digits[:6]}{frac[len(digits):]}"
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise GraphError(400, "InvalidRequest", f"Cannot convert the literal '{value}' to the expected type 'Edm.DateTimeOffset'.") from None
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def is_loopback_host(host: str | None) -> bool:
    """127.0.0.0/8, ::1 or localhost."""
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _check_url(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value:
        raise GraphError(400, "InvalidRequest", f"{name} is a required property for subscription creation.")
    parts = urlsplit(value)
    if parts.scheme == "https" or (parts.scheme == "http" and is_loopback_host(parts.hostname)):
        if parts.hostname:
            return value
    raise GraphError(400, "InvalidRequest", f"The {name} must use https (the emulator also accepts http on loopback hosts): '{value}'.")


def _expiration_error(kind: str) -> GraphError:
    return GraphError(400, "ExtensionError", f"Subscription expiration can only be {MAX_MINUTES[kind]} minutes in the future.")


def _check_expiration(kind: str, value: Any) -> datetime:
    exp = _parse_dt(value)
    now = utcnow()
    if exp <= now:
        raise GraphError(400, "InvalidRequest", "Subscription expiration must be in the future.")
    if exp > now + timedelta(minutes=MAX_MINUTES[kind]):
        raise _expiration_error(kind)
    return exp


def _forbidden() -> GraphError:
    return GraphError(403, "ExtensionError", "Operation: Create; Exception: [Status Code: Forbidden; Reason: Access is denied. Check credentials and try again.]")


def _not_found(sub_id: str) -> GraphError:
    return GraphError(404, "ResourceNotFound", f"The object was not found. Subscription Id '{sub_id}'.")


class Subscriptions:
    """All subscriptions of one emulator, and the delivery queues of their endpoints."""

    def __init__(self, state: EmulatorState) -> None:
        self.state = state
        self.settings = Settings()
        self.subs: dict[str, Subscription] = {}
        self.deliveries: deque[dict[str, Any]] = deque(maxlen=1000)  # what was POSTed where, and the answer
        self._queues: dict[str, list[dict[str, Any]]] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}

    # registry -------------------------------------------------------------------------------
    def live(self) -> list[Subscription]:
        """Subscriptions that have not expired; expired ones are dropped, as Graph deletes them."""
        now = utcnow()
        for sid in [s.id for s in self.subs.values() if s.expiration <= now]:
            del self.subs[sid]
        return list(self.subs.values())

    def owned(self, principal: Principal, sub_id: str) -> Subscription:
        """A subscription of the calling app (and user, for delegated calls); 404 otherwise."""
        self.live()
        sub = self.subs.get(sub_id)
        if sub is None or sub.app_id != principal.client_id or (principal.user_id is not None and sub.user_id != principal.user_id):
            raise _not_found(sub_id)
        return sub

    def target(self, principal: Principal, resource: Any) -> tuple[Mailbox, str, str | None]:
        """Resolve a subscription resource to (mailbox, kind, container)."""
        if not isinstance(resource, str) or not resource.strip():
            raise GraphError(400, "InvalidRequest", "resource is a required property for subscription creation.")
        if "?" in resource:
            raise GraphError(400, "InvalidRequest", "The emulator does not support query options on subscription resources.")
        segs = normalise_path("/" + resource.strip().lstrip("/")).strip("/").split("/")
        if segs[0].lower() == "me":
            if principal.app_only:
                raise GraphError(400, "Request_BadRequest", "/me request is only valid with delegated authentication flow.")
            segs = ["users", str(principal.user_id), *segs[1:]]
        unsupported = GraphError(400, "InvalidRequest", f"The resource '{resource}' is not supported for change notifications.")
        if len(segs) < 3 or segs[0].lower() != "users":
            raise unsupported
        rest = [s.lower() for s in segs[2:]]
        if rest == ["messages"]:
            kind, container = "messages", None
        elif len(rest) == 3 and rest[0] == "mailfolders" and rest[2] == "messages":
            kind, container = "messages", segs[3]
        elif rest == ["events"]:
            kind, container = "events", None
        elif rest == ["contacts"]:
            kind, container = "contacts", None
        elif len(rest) == 4 and rest[:2] == ["todo", "lists"] and rest[3] == "tasks":
            kind, container = "todoTasks", segs[4]
        else:
            raise unsupported
        mb = self.state.tenant.find(segs[1])
        if mb is None or not mb.user.get("_hasMailbox", True):
            raise GraphError(404, "ErrorInvalidUser", f"The requested user '{segs[1]}' is invalid.")
        app_roles, scopes = READ_PERMISSIONS[kind]
        if principal.app_only:
            if not principal.roles & app_roles:
                raise _forbidden()
            self.state.check_scope(principal, mb)
        elif not principal.scopes & scopes or mb.id != principal.user_id:
            raise _forbidden()
        if kind == "messages" and container is not None:
            mail.init_mailbox(self.state, mb)
            container = mail.resolve_folder(mb, container).key
        lists = mb.collections.get("todoLists")
        if kind == "todoTasks" and lists is not None and container not in lists.items:
            raise GraphError(404, "ErrorItemNotFound", "The specified object was not found in the store.")
        return mb, kind, container

    def still_allowed(self, principal: Principal, sub: Subscription) -> None:
        """Renewal and reauthorization re-check the caller's permission on the resource."""
        app_roles, scopes = READ_PERMISSIONS[sub.kind]
        if not (principal.roles & app_roles if principal.app_only else principal.scopes & scopes):
            raise _forbidden()

    # change notifications -------------------------------------------------------------------
    def on_change(self, mb: Mailbox, resource: str, container: str, item: Item, change_type: str) -> None:
        """`Mailbox.notify` hook: queue a notification for every matching subscription."""
        if not self.subs:
            return
        for sub in self.live():
            if sub.mailbox_id != mb.id or change_type not in sub.change_types or not _matches(sub, resource, container):
                continue
            self._enqueue(sub.notification_url, self._notification(sub, mb, f"{resource}:{container}", item, change_type))

    def _notification(self, sub: Subscription, mb: Mailbox, collection: str, item: Item, change_type: str) -> dict[str, Any]:
        item_id = item.key
        if not sub.immutable:
            item_id = item.rest_id
            if change_type == "deleted":  # a move has already given the item its new REST id; report the old one
                coll = mb.collections.get(collection)
                tomb = coll.tombstones.get(item.key) if coll is not None else None
                if tomb is not None:
                    item_id = tomb.rest_id
        odata_type, segment = NOTIFY_TYPES[sub.kind]
        prefix = f"Users/{mb.id}"
        if sub.kind == "todoTasks":
            path = f"{prefix}/todo/lists/{sub.container}/tasks/{item_id}"
        else:
            path = f"{prefix}/{segment}/{item_id}"
        data: dict[str, Any] = {"@odata.type": odata_type, "@odata.id": path}
        if change_type != "deleted":
            data["@odata.etag"] = f'W/"{change_key(item.seq, item.key)}"'
        data["id"] = item_id
        return {
            "id": b64url(secrets.token_bytes(10)),
            "subscriptionId": sub.id,
            "subscriptionExpirationDateTime": dt_json(sub.expiration),
            "clientState": sub.client_state,
            "changeType": change_type,
            "resource": path,
            "tenantId": self.state.tenant.id,
            "resourceData": data,
        }

    def _enqueue(self, url: str, notification: dict[str, Any]) -> None:
        self._queues.setdefault(url, []).append(notification)
        worker = self._workers.get(url)
        if worker is None or worker.done():
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # a change made off the emulator loop; it is delivered with the next one
                log.warning("change notification for %s queued off the emulator loop", url)
                return
            self._workers[url] = loop.create_task(self._drain(url))

    async def _drain(self, url: str) -> None:
        """Deliver one endpoint's queue in order; notifications queued together share a POST."""
        await asyncio.sleep(self.settings.batch_window)
        while self._queues.get(url):
            queue = self._queues[url]
            batch, self._queues[url] = queue[: self.settings.max_batch], queue[self.settings.max_batch :]
            ok = await self.post(url, {"value": batch}, "change")
            for n in batch:
                sub = self.subs.get(n["subscriptionId"])
                if sub is not None:
                    if ok:
                        sub.delivered += 1
                    else:
                        sub.failed += 1
        self._queues.pop(url, None)

    async def flush(self, timeout: float = 30.0) -> int:
        """Wait until every queued notification was delivered or given up on; returns how many are still queued."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            busy = [t for t in self._workers.values() if not t.done()]
            if not busy:
                break
            await asyncio.wait(busy, timeout=max(0.0, deadline - loop.time()))
        return sum(len(q) for q in self._queues.values())

    def pending(self) -> int:
        """Notifications queued and not yet POSTed."""
        return sum(len(q) for q in self._queues.values())

    # HTTP out -------------------------------------------------------------------------------
    def _ssl(self, url: str) -> bool | None:
        parts = urlsplit(url)
        if parts.scheme != "https":
            return None
        if is_loopback_host(parts.hostname) or not self.settings.verify_remote_tls:
            return False
        return None

    async def _send(self, url: str, body: bytes, content_type: str, timeout: float) -> tuple[int | None, str]:
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
                async with session.post(url, data=body, headers={"Content-Type": content_type}, ssl=self._ssl(url)) as r:
                    return r.status, await r.text()
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError) as exc:
            return None, f"{type(exc).__name__}: {exc}"

    async def post(self, url: str, payload: dict[str, Any], kind: str) -> bool:
        """POST a notification collection, retrying non-2xx answers with the configured delays."""
        body = orjson.dumps(payload)
        delays = self.settings.retry_delays
        for attempt in range(len(delays) + 1):
            status, _ = await self._send(url, body, "application/json; charset=utf-8", self.settings.delivery_timeout)
            self.deliveries.append({"url": url, "kind": kind, "count": len(payload.get("value", [])), "attempt": attempt + 1, "status": status})
            if status is not None and 200 <= status < 300:
                return True
            if attempt < len(delays):
                await asyncio.sleep(delays[attempt])
        return False

    async def validate(self, url: str) -> bool:
        """The handshake: POST `?validationToken=...` as text/plain; the endpoint must echo the decoded token with 200."""
        token = f"Validation: Testing client application reachability for subscription Request-Id: {uuid.uuid4()}"
        sep = "&" if urlsplit(url).query else ("" if url.endswith("?") else "?")
        target = f"{url}{sep}validationToken={quote_plus(token)}"
        status, text = await self._send(target, b"", "text/plain; charset=utf-8", self.settings.validation_timeout)
        self.deliveries.append({"url": url, "kind": "validation", "count": 0, "attempt": 1, "status": status})
        return status == 200 and text == token

    async def lifecycle(self, sub: Subscription, event: str) -> dict[str, Any]:
        """Send a lifecycle notification to the subscription's lifecycleNotificationUrl."""
        if event == "subscriptionRemoved":
            self.subs.pop(sub.id, None)
        elif event == "reauthorizationRequired":
            sub.needs_reauth = True
        if not sub.lifecycle_url:
            return {"delivered": False, "reason": "The subscription has no lifecycleNotificationUrl."}
        payload = {"value": [{
            "subscriptionId": sub.id,
            "subscriptionExpirationDateTime": dt_json(sub.expiration),
            "tenantId": self.state.tenant.id,
            "clientState": sub.client_state,
            "lifecycleEvent": event,
        }]}
        return {"delivered": await self.post(sub.lifecycle_url, payload, "lifecycle")}


def _matches(sub: Subscription, resource: str, container: str) -> bool:
    if sub.kind == "messages":
        return resource == "messages" and (sub.container is None or container.removeprefix("messages:") == sub.container)
    if sub.kind == "todoTasks":
        return resource in _TODO_RESOURCES and container.rsplit(":", 1)[-1] == sub.container
    return resource == sub.kind


def subscriptions(state: EmulatorState) -> Subscriptions:
    """The emulator's subscription registry."""
    return state.extensions["subscriptions"]  # type: ignore[no-any-return]


def register(router: Router, control: Router, state: EmulatorState) -> None:
    """Add `/subscriptions` and the `/_emulator/subscriptions` control routes, and hook mailbox changes."""
    reg = Subscriptions(state)
    state.extensions["subscriptions"] = reg
    state.extensions["on_change"] = reg.on_change

    async def create(request: Request) -> Response:
        p = request.principal
        assert p is not None
        body = request.json()
        if not isinstance(body, dict):
            raise GraphError(400, "InvalidRequest", "Expected a subscription object.")
        change_type = body.get("changeType")
        types = [t.strip() for t in change_type.split(",")] if isinstance(change_type, str) else []
        if not types or any(t not in CHANGE_TYPES for t in types):
            raise GraphError(400, "InvalidRequest", f"The changeType '{change_type}' is invalid; use a comma list of created, updated, deleted.")
        notification_url = _check_url(body.get("notificationUrl"), "notificationUrl")
        lifecycle_url = _check_url(body["lifecycleNotificationUrl"], "lifecycleNotificationUrl") if body.get("lifecycleNotificationUrl") else None
        mb, kind, container = reg.target(p, body.get("resource"))
        expiration = _check_expiration(kind, body.get("expirationDateTime"))
        client_state = body.get("clientState")
        if client_state is not None and (not isinstance(client_state, str) or len(client_state) > 128):
            raise GraphError(400, "InvalidRequest", "clientState must be a string of at most 128 characters.")
        if body.get("includeResourceData"):
            raise GraphError(400, "InvalidRequest", "The emulator does not support rich notifications (includeResourceData).")
        tls = body.get("latestSupportedTlsVersion") or "v1_2"
        if tls not in ("v1_0", "v1_1", "v1_2", "v1_3"):
            raise GraphError(400, "InvalidRequest", f"The latestSupportedTlsVersion '{tls}' is invalid.")

        def duplicate() -> Subscription | None:
            wanted = (frozenset(types), body["resource"].strip().lstrip("/").lower(), notification_url)
            for s in reg.live():
                if s.app_id == p.client_id and (s.change_types, s.resource.strip().lstrip("/").lower(), s.notification_url) == wanted:
                    return s
            return None

        def check_free() -> None:
            if (dup := duplicate()) is not None:
                raise GraphError(409, "ObjectIdentifierInUse", f"Subscription Id {dup.id} already exists for the requested combination")
            if sum(1 for s in reg.subs.values() if s.mailbox_id == mb.id) >= MAILBOX_QUOTA:
                raise GraphError(403, "ExtensionError", f"Maximum number of subscriptions ({MAILBOX_QUOTA}) for this mailbox has been reached.")

        check_free()
        for url in (notification_url, lifecycle_url):
            if url and not await reg.validate(url):
                raise GraphError(400, "InvalidRequest", "Subscription validation request failed. Notification endpoint must respond with 200 OK to validation request.")
        check_free()  # the handshake awaited; another create may have won
        creator = p.user_id or str(uuid.uuid5(uuid.NAMESPACE_URL, f"sp:{p.client_id}"))  # the token's oid for app-only
        sub = Subscription(
            id=str(uuid.uuid4()), app_id=p.client_id, creator_id=creator, user_id=p.user_id, mailbox_id=mb.id, kind=kind,
            container=container, resource=body["resource"], change_type=change_type, change_types=frozenset(types),  # type: ignore[arg-type]
            notification_url=notification_url, lifecycle_url=lifecycle_url, expiration=expiration, client_state=client_state,
            tls_version=tls, immutable=request.prefer.immutable_id,
        )
        reg.subs[sub.id] = sub
        return json_response(sub.json(request.graph_base), 201)

    async def list_subs(request: Request) -> Response:
        p = request.principal
        assert p is not None
        mine = [s.json() for s in reg.live() if s.app_id == p.client_id and (p.user_id is None or s.user_id == p.user_id)]
        return json_response({"@odata.context": f"{request.graph_base}/$metadata#subscriptions", "value": mine})

    async def get_sub(request: Request) -> Response:
        assert request.principal is not None
        return json_response(reg.owned(request.principal, request.params["id"]).json(request.graph_base))

    async def patch_sub(request: Request) -> Response:
        p = request.principal
        assert p is not None
        sub = reg.owned(p, request.params["id"])
        body = request.json()
        if not isinstance(body, dict):
            raise GraphError(400, "InvalidRequest", "Expected a subscription object.")
        reg.still_allowed(p, sub)
        allowed = {"expirationDateTime", "notificationUrl", "@odata.type"}
        if unknown := [k for k in body if k not in allowed]:
            raise GraphError(400, "InvalidRequest", f"The property '{unknown[0]}' cannot be updated on a subscription.")
        expiration = _check_expiration(sub.kind, body["expirationDateTime"]) if "expirationDateTime" in body else sub.expiration
        url = _check_url(body["notificationUrl"], "notificationUrl") if "notificationUrl" in body else sub.notification_url
        if url != sub.notification_url and not await reg.validate(url):
            raise GraphError(400, "InvalidRequest", "Subscription validation request failed. Notification endpoint must respond with 200 OK to validation request.")
        sub.expiration, sub.notification_url, sub.needs_reauth = expiration, url, False
        return json_response(sub.json(request.graph_base))

    async def delete_sub(request: Request) -> Response:
        assert request.principal is not None
        sub = reg.owned(request.principal, request.params["id"])
        reg.subs.pop(sub.id, None)
        return empty(204)

    async def reauthorize(request: Request) -> Response:
        p = request.principal
        assert p is not None
        sub = reg.owned(p, request.params["id"])
        reg.still_allowed(p, sub)
        sub.needs_reauth = False
        return empty(204)

    # Any valid token may call these; the resource's read permission is checked per subscription.
    router.add("POST", "/subscriptions", create)
    router.add("GET", "/subscriptions", list_subs)
    router.add("GET", "/subscriptions/{id}", get_sub)
    router.add("PATCH", "/subscriptions/{id}", patch_sub)
    router.add("DELETE", "/subscriptions/{id}", delete_sub)
    router.add("POST", "/subscriptions/{id}/reauthorize", reauthorize)
    router.add("POST", "/subscriptions/{id}/microsoft.graph.reauthorize", reauthorize)

    # control --------------------------------------------------------------------------------
    async def control_list(request: Request) -> Response:
        subs = [{**s.json(), "mailbox": s.mailbox_id, "needsReauthorization": s.needs_reauth, "delivered": s.delivered, "failed": s.failed}
                for s in reg.live()]
        return json_response({"value": subs, "pending": reg.pending(), "deliveries": list(reg.deliveries)})

    async def control_flush(request: Request) -> Response:
        return json_response({"pending": await reg.flush()})

    async def control_settings(request: Request) -> Response:
        body = request.json()
        names = {f.name for f in fields(Settings)}
        if not isinstance(body, dict) or any(k not in names for k in body):
            raise GraphError(400, "InvalidRequest", f"Settings are: {', '.join(sorted(names))}.")
        updates: dict[str, Any] = {}
        for k, v in body.items():
            current = getattr(reg.settings, k)
            try:
                if k == "retry_delays":
                    updates[k] = tuple(float(x) for x in v)
                elif isinstance(current, bool):
                    if not isinstance(v, bool):
                        raise TypeError(k)
                    updates[k] = v
                else:
                    updates[k] = type(current)(v)
            except (TypeError, ValueError):
                raise GraphError(400, "InvalidRequest", f"Invalid value for setting {k!r}.") from None
        for k, v in updates.items():
            setattr(reg.settings, k, v)
        return json_response({f.name: getattr(reg.settings, f.name) for f in fields(Settings)})

    async def control_lifecycle(request: Request) -> Response:
        reg.live()
        sub = reg.subs.get(request.params["id"])
        if sub is None:
            raise _not_found(request.params["id"])
        event = request.json().get("event")
        if event not in LIFECYCLE_EVENTS:
            raise GraphError(400, "InvalidRequest", f"event must be one of {', '.join(LIFECYCLE_EVENTS)}.")
        if event not in LIFECYCLE_SUPPORT[sub.kind]:
            raise GraphError(400, "InvalidRequest", f"Graph sends no '{event}' lifecycle events for {sub.kind} subscriptions.")
        return json_response(await reg.lifecycle(sub, event))

    control.add("GET", "/_emulator/subscriptions", control_list)
    control.add("POST", "/_emulator/subscriptions/flush", control_flush)
    control.add("PATCH", "/_emulator/subscriptions/settings", control_settings)
    control.add("POST", "/_emulator/subscriptions/{id}/lifecycle", control_lifecycle)
