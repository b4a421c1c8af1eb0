"""Mail: folders, messages, delta per folder, reads, PATCH, delete, move, drafts, send and sendMail.

Message ids follow Outlook: the REST id changes when a message moves, the immutable id does not,
and each request sees the form its `Prefer: IdType` asks for (graph-v1.md §2.6).
"""

from __future__ import annotations

import html
import re
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from .delta import CollectionDelta, DeltaQuery, reject_options, select_fields
from .http import GraphError, Request, Response, Router, bad_request, empty, iso, json_response, not_found, utcnow
from .render import render
from .state import EmulatorState
from .store import Collection, Item, Mailbox, b64url, stable_bytes
from .threading_ import Threads

MAIL_READ = ("Mail.ReadBasic.All", "Mail.Read", "Mail.ReadWrite")
MAIL_FULL_READ = ("Mail.Read", "Mail.ReadWrite")
MAIL_WRITE = ("Mail.ReadWrite",)
MAIL_SEND = ("Mail.Send",)
D_READ = ("Mail.ReadBasic", "Mail.Read", "Mail.ReadWrite")
D_WRITE = ("Mail.ReadWrite",)

WELL_KNOWN = {
    "inbox": "Inbox",
    "drafts": "Drafts",
    "sentitems": "Sent Items",
    "deleteditems": "Deleted Items",
    "junkemail": "Junk Email",
    "archive": "Archive",
    "outbox": "Outbox",
    "conversationhistory": "Conversation History",
}
SELECT_ONLY = frozenset({"internetMessageHeaders", "uniqueBody", "singleValueExtendedProperties", "multiValueExtendedProperties"})
# Mail.ReadBasic.All hides these (graph-v1.md §2.2).
BASIC_HIDDEN = frozenset({"body", "bodyPreview", "uniqueBody", "internetMessageHeaders", "singleValueExtendedProperties"})
PATCHABLE = {
    "categories", "flag", "importance", "inferenceClassification", "isRead", "isDeliveryReceiptRequested",
    "isReadReceiptRequested", "singleValueExtendedProperties", "multiValueExtendedProperties",
}
DRAFT_PATCHABLE = PATCHABLE | {"body", "subject", "toRecipients", "ccRecipients", "bccRecipients", "replyTo", "from", "sender", "internetMessageId", "internetMessageHeaders"}
MESSAGE_TYPE = "#microsoft.graph.message"
FOLDER_TYPE = "#microsoft.graph.mailFolder"
_TAG = re.compile(r"<[^>]+>")
_WS = re.compile(r"[ \t\r\f\v]+")
_BLOCK = re.compile(r"(?i)<\s*(br|/p|/div|/li|/tr|/h\d)\s*/?>")


def html_to_text(content: str) -> str:
    """Plain text of an HTML body, as `Prefer: outlook.body-content-type="text"` returns it."""
    text = _BLOCK.sub("\n", content)
    text = re.sub(r"(?is)<(script|style|head)[^>]*>.*?</\1>", "", text)
    text = html.unescape(_TAG.sub("", text))
    return "\n".join(_WS.sub(" ", line).strip() for line in text.splitlines()).strip()


def preview(body: dict[str, Any] | None) -> str:
    """bodyPreview: the first 255 characters of the text body."""
    if not body:
        return ""
    content = body.get("content") or ""
    text = html_to_text(content) if (body.get("contentType") or "html").lower() == "html" else content
    return " ".join(text.split())[:255]


def header(headers: list[dict[str, str]] | None, name: str) -> str | None:
    """A MIME header's value from internetMessageHeaders."""
    for h in headers or []:
        if h.get("name", "").lower() == name.lower():
            return h.get("value")
    return None


def parse_dt(value: str | None, default: datetime) -> datetime:
    """A Graph DateTimeOffset string as an aware datetime."""
    if not value:
        return default
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@dataclass
class MailBoxState:
    """Folder tree and well-known names of one mailbox."""

    root_id: str
    well_known: dict[str, str] = field(default_factory=dict)  # name -> folder id
    counter: int = 0


def _mail(mb: Mailbox) -> MailBoxState:
    return mb.extra["mail"]  # type: ignore[no-any-return]


def folder_coll(mb: Mailbox) -> Collection:
    """The mailbox's folder hierarchy as a delta container."""
    return mb.collection("mailFolders")


def message_coll(mb: Mailbox, folder_id: str) -> Collection:
    """The messages of one folder as a delta container."""
    return mb.collection("messages:" + folder_id)


def _folder_id(mb: Mailbox, name: str) -> str:
    return "AAMkAD" + b64url(stable_bytes(mb.id, "folder", name, n=30)) + "AAA="


def init_mailbox(state: EmulatorState, mb: Mailbox) -> None:
    """Create the root and the well-known folders of a new mailbox."""
    if "mail" in mb.extra:
        return
    root = _folder_id(mb, "msgfolderroot")
    mb.extra["mail"] = MailBoxState(root_id=root, well_known={"msgfolderroot": root})
    for name, display in WELL_KNOWN.items():
        item = create_folder(mb, root, display, key=_folder_id(mb, name))
        _mail(mb).well_known[name] = item.key
    mb.extra.setdefault("masterCategories", {})


def create_folder(mb: Mailbox, parent_id: str, display_name: str, *, key: str | None = None) -> Item:
    """Add a folder under `parent_id`."""
    coll = folder_coll(mb)
    for f in coll:
        if f.data["parentFolderId"] == parent_id and f.data["displayName"].lower() == display_name.lower():
            raise GraphError(409, "ErrorFolderExists", "A folder with the specified name already exists.")
    key = key or _folder_id(mb, f"{parent_id}/{display_name}/{secrets.token_hex(4)}")
    item = Item(key, {"displayName": display_name, "parentFolderId": parent_id, "isHidden": False}, "mailFolders")
    coll.put(item)
    mb.register(item)
    return item


def resolve_folder(mb: Mailbox, ref: str) -> Item:
    """A folder by well-known name, id, or path of display names such as `inbox/Projects`."""
    ms = _mail(mb)
    coll = folder_coll(mb)
    if ref in coll.items:
        return coll.items[ref]
    parts = [p for p in ref.strip("/").split("/") if p]
    if not parts:
        raise not_found()
    first = parts[0].lower()
    if first in ms.well_known:
        fid = ms.well_known[first]
    else:
        fid = next((f.key for f in coll if f.data["parentFolderId"] == ms.root_id and f.data["displayName"].lower() == first), "")
    if fid == ms.root_id:
        item = Item(ms.root_id, {"displayName": "Top of Information Store", "parentFolderId": ""}, "mailFolders")
        return item if len(parts) == 1 else _walk(coll, fid, parts[1:])
    if fid not in coll.items:
        raise not_found()
    return _walk(coll, fid, parts[1:])


def _walk(coll: Collection, fid: str, rest: list[str]) -> Item:
    for name in rest:
        nxt = next((f.key for f in coll if f.data["parentFolderId"] == fid and f.data["displayName"].lower() == name.lower()), None)
        if nxt is None:
            raise not_found()
        fid = nxt
    return coll.items[fid]


def folder_json(mb: Mailbox, folder: Item, select: tuple[str, ...] | None = None) -> dict[str, Any]:
    """mailFolder JSON with live counts."""
    coll = folder_coll(mb)
    msgs = message_coll(mb, folder.key)
    data = {
        "displayName": folder.data["displayName"],
        "parentFolderId": folder.data["parentFolderId"],
        "childFolderCount": sum(1 for f in coll if f.data["parentFolderId"] == folder.key),
        "unreadItemCount": sum(1 for m in msgs if not _truthy(m.data.get("isRead"))),
        "totalItemCount": len(msgs),
        "sizeInBytes": sum(len(m.data.get("body", {}).get("content") or "") for m in msgs),
        "isHidden": folder.data.get("isHidden", False),
    }
    out: dict[str, Any] = {"id": folder.key}
    # sizeInBytes is not in v1.0's mailFolder metadata (msgraph-sdk has no such field): only on $select.
    out.update({k: v for k, v in data.items() if k != "sizeInBytes"} if select is None else {k: v for k, v in data.items() if k in select})
    return out


def _truthy(v: Any) -> bool:
    return v is True or (isinstance(v, str) and v.lower() == "true")


# messages ---------------------------------------------------------------------------------


def _new_message_key(mb: Mailbox) -> str:
    ms = _mail(mb)
    ms.counter += 1
    return "AAkALg" + b64url(stable_bytes(mb.id, "message", str(ms.counter), n=42))


def _rest_id(key: str, moves: int) -> str:
    return "AAMkAG" + b64url(stable_bytes(key, "rest", str(moves), n=42)) + "AAA="


def _address_of(recipient: dict[str, Any] | None) -> str:
    return ((recipient or {}).get("emailAddress") or {}).get("address") or ""


def new_internet_message_id(sender: str) -> str:
    """An RFC 5322 Message-ID in Exchange Online's style."""
    host = "prod.outlook.com" if not sender or "@" not in sender else sender.split("@", 1)[1]
    return f"<{secrets.token_hex(16).upper()}@{host}>"


def insert_message(
    state: EmulatorState,
    mb: Mailbox,
    folder_id: str,
    data: dict[str, Any],
    *,
    now: datetime | None = None,
    notify: bool = True,
) -> Item:
    """Store a message in a folder, filling what Exchange fills (ids, threading, preview, dates)."""
    now = now or utcnow()
    msg = dict(data)
    msg.pop("id", None)
    sender = msg.get("sender") or msg.get("from") or {"emailAddress": {"name": mb.user.get("displayName"), "address": mb.address}}
    msg.setdefault("from", sender)
    msg.setdefault("sender", msg["from"])
    received = parse_dt(msg.get("receivedDateTime"), now)
    sent = parse_dt(msg.get("sentDateTime"), received)
    msg.setdefault("createdDateTime", iso(received))
    msg["lastModifiedDateTime"] = msg.get("lastModifiedDateTime") or iso(received)
    msg["receivedDateTime"] = iso(received)
    msg["sentDateTime"] = iso(sent)
    msg.setdefault("hasAttachments", bool(msg.get("attachments")))
    msg.setdefault("subject", "")
    body = msg.setdefault("body", {"contentType": "html", "content": ""})
    if "bodyPreview" not in msg:  # setdefault would compute the preview even when supplied
        msg["bodyPreview"] = preview(body)
    msg.setdefault("importance", "normal")
    msg.setdefault("isDeliveryReceiptRequested", False)
    msg.setdefault("isReadReceiptRequested", False)
    msg.setdefault("isRead", False)
    msg.setdefault("isDraft", False)
    msg.setdefault("inferenceClassification", "focused")
    for k in ("toRecipients", "ccRecipients", "bccRecipients", "replyTo", "categories"):
        msg.setdefault(k, [])
    msg.setdefault("flag", {"flagStatus": "notFlagged"})
    headers = msg.get("internetMessageHeaders") or []
    imid = msg.get("internetMessageId") or header(headers, "Message-ID") or new_internet_message_id(_address_of(msg["from"]))
    msg["internetMessageId"] = imid
    threads: Threads = state.extensions.setdefault("threads", Threads())
    refs = (header(headers, "References") or "").split()
    cid, cindex = threads.place(imid, msg["subject"], sent, header(headers, "In-Reply-To"), refs)
    msg.setdefault("conversationId", cid)
    msg.setdefault("conversationIndex", cindex)
    if not header(headers, "Message-ID") and not msg["isDraft"]:
        headers = [{"name": "Message-ID", "value": imid}, *headers]
    if headers:
        msg["internetMessageHeaders"] = headers
    ext = {p["id"]: p.get("value") for p in msg.pop("singleValueExtendedProperties", []) or []}
    msg.pop("attachments", None)
    key = _new_message_key(mb)
    item = Item(key, msg, "")
    item.rest_id = _rest_id(key, 0)
    item.hidden["ext"] = ext
    _place(mb, item, folder_id)
    if notify:
        mb.notify("messages", folder_id, item, "created")
    return item


def _place(mb: Mailbox, item: Item, folder_id: str) -> None:
    item.data["parentFolderId"] = folder_id
    item.data["webLink"] = f"https://outlook.office365.com/owa/?ItemID={item.rest_id}&exvsurl=1&viewmodel=ReadMessageItem"
    message_coll(mb, folder_id).put(item)
    mb.register(item)


def find_message(mb: Mailbox, message_id: str, folder_id: str | None = None) -> Item:
    """A message by REST or immutable id; 404 otherwise."""
    item = mb.index.get(message_id)
    if item is None or not item.container.startswith("messages:"):
        raise not_found()
    if folder_id is not None and item.container != "messages:" + folder_id:
        raise not_found()
    return item


def move_message(mb: Mailbox, item: Item, dest_id: str) -> Item:
    """Move to another folder: @removed in the source folder, new (with a new REST id) in the destination."""
    src = item.container.split(":", 1)[1]
    if src == dest_id:
        return item
    message_coll(mb, src).remove(item.key)
    mb.forget(item)
    item.moves += 1
    item.rest_id = _rest_id(item.key, item.moves)
    item.data["lastModifiedDateTime"] = iso(utcnow())
    _place(mb, item, dest_id)
    mb.notify("messages", src, item, "deleted")
    mb.notify("messages", dest_id, item, "created")
    return item


def delete_message(mb: Mailbox, item: Item) -> None:
    """DELETE: into Deleted Items; from Deleted Items, gone for good."""
    deleted = _mail(mb).well_known["deleteditems"]
    if item.container == "messages:" + deleted:
        message_coll(mb, deleted).remove(item.key)
        mb.forget(item)
        mb.notify("messages", deleted, item, "deleted")
    else:
        move_message(mb, item, deleted)


def update_message(mb: Mailbox, item: Item, patch: dict[str, Any], *, strict: bool = True) -> Item:
    """Apply a PATCH; only the properties Graph lets you change."""
    allowed = DRAFT_PATCHABLE if item.data.get("isDraft") else PATCHABLE
    for k, v in patch.items():
        if k.startswith("@odata"):
            continue
        if strict and k not in allowed:
            if k in DRAFT_PATCHABLE:
                raise GraphError(400, "ErrorInvalidPropertyUpdateSentMessage", "Update is not allowed for this type of item.")
            raise bad_request(f"The property '{k}' does not exist on type 'microsoft.graph.message'. Make sure to only use property names that are defined by the type or mark the type as open type.", "RequestBodyRead")
        if k == "singleValueExtendedProperties":
            item.hidden.setdefault("ext", {}).update({p["id"]: p.get("value") for p in v or []})
        else:
            item.data[k] = v
            if k == "body":
                item.data["bodyPreview"] = preview(v)
    item.data["lastModifiedDateTime"] = iso(utcnow())
    folder = item.container.split(":", 1)[1]
    message_coll(mb, folder).put(item)
    mb.notify("messages", folder, item, "updated")
    return item


def message_json(item: Item, request: Request, select: tuple[str, ...] | None) -> dict[str, Any]:
    """A message as Graph renders it for this request (id form, body type, permission-limited fields)."""
    out = render(item, MESSAGE_TYPE, select, request.prefer.immutable_id, select_only=SELECT_ONLY)
    if request.prefer.body_content_type == "text":
        for k in ("body", "uniqueBody"):
            b = out.get(k)
            if isinstance(b, dict) and (b.get("contentType") or "").lower() == "html":
                out[k] = {"contentType": "text", "content": html_to_text(b.get("content") or "")}
    p = request.principal
    if p is not None and p.app_only and "Mail.ReadBasic.All" in p.roles and not (p.roles & {"Mail.Read", "Mail.ReadWrite"}):
        for k in BASIC_HIDDEN:
            out.pop(k, None)
    return out


# delivery ---------------------------------------------------------------------------------


def _recipients(msg: dict[str, Any], *keys: str) -> list[str]:
    return [_address_of(r) for k in keys for r in msg.get(k) or [] if _address_of(r)]


def submit(state: EmulatorState, mb: Mailbox, msg: dict[str, Any], *, save_to_sent: bool = True, draft: Item | None = None) -> None:
    """Send `msg` from `mb`: a copy in Sent Items, and delivery to every recipient inside the tenant."""
    now = utcnow()
    msg = dict(msg)
    msg.pop("id", None)
    sender = {"emailAddress": {"name": mb.user.get("displayName"), "address": mb.address}}
    msg.setdefault("from", sender)
    msg.setdefault("sender", sender)
    imid = msg.get("internetMessageId") or new_internet_message_id(mb.address)
    headers = list(msg.get("internetMessageHeaders") or [])
    custom = [h for h in headers if not h.get("name", "").lower().startswith("x-") and h.get("name", "").lower() not in ("in-reply-to", "references")]
    if custom:
        raise bad_request(f"The internet message header name '{custom[0].get('name')}' should start with 'x-' or 'X-'.", "InvalidInternetMessageHeader")
    headers = [{"name": "Message-ID", "value": imid}, *headers]
    msg.update(internetMessageId=imid, internetMessageHeaders=headers, sentDateTime=iso(now), receivedDateTime=iso(now), isDraft=False)
    sent_id = _mail(mb).well_known["sentitems"]
    if draft is not None:
        folder = draft.container.split(":", 1)[1]
        draft.data.update({k: v for k, v in msg.items() if k != "internetMessageHeaders"})
        draft.data.update(isRead=True, isDraft=False, lastModifiedDateTime=iso(now))
        draft.data["internetMessageHeaders"] = headers
        threads: Threads = state.extensions.setdefault("threads", Threads())
        cid, cindex = threads.place(imid, msg.get("subject"), now, header(headers, "In-Reply-To"), (header(headers, "References") or "").split())
        draft.data.update(conversationId=cid, conversationIndex=cindex)
        if save_to_sent:
            move_message(mb, draft, sent_id)
            message_coll(mb, sent_id).put(draft)
        else:
            message_coll(mb, folder).remove(draft.key)
            mb.forget(draft)
    elif save_to_sent:
        insert_message(state, mb, sent_id, {**msg, "isRead": True}, now=now)
    delivered: set[str] = set()
    for address in _recipients(msg, "toRecipients", "ccRecipients", "bccRecipients"):
        target = state.tenant.find(address)
        if target is None or target.id in delivered or "mail" not in target.extra:
            continue  # external recipients leave the tenant
        delivered.add(target.id)
        copy = {k: v for k, v in msg.items() if k != "bccRecipients"}
        copy["isRead"] = False
        if address.lower() in {a.lower() for a in _recipients(msg, "bccRecipients")}:
            copy["bccRecipients"] = [r for r in msg.get("bccRecipients") or [] if _address_of(r).lower() == address.lower()]
        insert_message(state, target, _mail(target).well_known["inbox"], copy, now=now)


# delta ------------------------------------------------------------------------------------

_RECEIVED_FILTER = re.compile(r"^\s*receivedDateTime\s+(ge|gt)\s+(\S+)\s*$", re.IGNORECASE)


class MessageDelta(CollectionDelta):
    """messages/delta for one folder."""

    odata_type = MESSAGE_TYPE
    context = "$metadata#Collection(message)"

    @staticmethod
    def _filter(query: DeltaQuery) -> tuple[str, datetime] | None:
        f = query.option("$filter")
        if not f:
            return None
        m = _RECEIVED_FILTER.match(f)
        assert m is not None  # validated when the round started
        return m.group(1).lower(), parse_dt(m.group(2), utcnow())

    def _passes(self, item: Item, flt: tuple[str, datetime] | None) -> bool:
        if flt is None:
            return True
        op, at = flt
        got = parse_dt(item.data.get("receivedDateTime"), at)
        return got >= at if op == "ge" else got > at

    def snapshot(self, mb: Mailbox, query: DeltaQuery) -> list[str]:
        coll = mb.collection(query.container)
        flt = self._filter(query)
        if flt is None:
            return list(coll.items)
        items = [i for i in coll if self._passes(i, flt)]
        items.sort(key=lambda i: i.data.get("receivedDateTime") or "", reverse=True)
        return [i.key for i in items[:5000]]  # Graph returns at most 5,000 messages with a filter

    def changes(self, mb: Mailbox, query: DeltaQuery, since: int) -> list[str]:
        coll = mb.collection(query.container)
        kind = query.option("changetype")
        flt = self._filter(query)
        out = []
        for key in coll.changed_since(since):
            item = coll.items.get(key)
            if item is None:
                if kind in (None, "deleted"):
                    out.append(key)
                continue
            if not self._passes(item, flt):
                continue
            created = item.created_seq > since
            if kind is None or (kind == "created" and created) or (kind == "updated" and not created):
                out.append(key)
        return out

    def item_json(self, mb: Mailbox, query: DeltaQuery, item: Item, request: Request) -> dict[str, Any]:
        return message_json(item, request, query.select)


class FolderDelta(CollectionDelta):
    """mailFolders/delta: the whole hierarchy, flattened."""

    context = "$metadata#Collection(mailFolder)"

    def collection(self, mb: Mailbox, query: DeltaQuery) -> Collection:
        return folder_coll(mb)

    def item_json(self, mb: Mailbox, query: DeltaQuery, item: Item, request: Request) -> dict[str, Any]:
        return folder_json(mb, item, query.select)

    def removed_json(self, tomb: Any, request: Request) -> dict[str, Any]:
        return {"id": tomb.key, "@removed": {"reason": "deleted"}}


def _options(request: Request, names: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    return tuple((n, request.query[n]) for n in names if request.query.get(n))


def register(router: Router, control: Router, state: EmulatorState) -> None:
    """Add the mail routes and the mail control routes."""
    messages_delta, folders_delta = MessageDelta(), FolderDelta()

    def mb_of(request: Request) -> Mailbox:
        mb = state.mailbox(request)
        init_mailbox(state, mb)
        return mb

    # folders --------------------------------------------------------------------------------
    async def list_folders(request: Request) -> Response:
        mb = mb_of(request)
        parent = resolve_folder(mb, request.params["folder"]).key if "folder" in request.params else _mail(mb).root_id
        select = select_fields(request)
        folders = [folder_json(mb, f, select) for f in folder_coll(mb) if f.data["parentFolderId"] == parent]
        return paged(request, folders, "$metadata#Collection(mailFolder)")

    async def get_folder(request: Request) -> Response:
        mb = mb_of(request)
        folder = resolve_folder(mb, request.params["folder"])
        return json_response({"@odata.context": f"{request.graph_base}/$metadata#mailFolders/$entity", **folder_json(mb, folder, select_fields(request))})

    async def create_child(request: Request) -> Response:
        mb = mb_of(request)
        parent = resolve_folder(mb, request.params["folder"]).key if "folder" in request.params else _mail(mb).root_id
        body = request.json()
        name = body.get("displayName")
        if not name:
            raise bad_request("The folder name can't be empty.", "ErrorInvalidFolderName" if False else "ErrorInvalidRequest")
        item = create_folder(mb, parent, name)
        if body.get("isHidden"):
            item.data["isHidden"] = True
        return json_response(folder_json(mb, item), 201)

    async def patch_folder(request: Request) -> Response:
        mb = mb_of(request)
        folder = resolve_folder(mb, request.params["folder"])
        body = request.json()
        if "displayName" in body:
            folder.data["displayName"] = body["displayName"]
            folder_coll(mb).put(folder)
        return json_response(folder_json(mb, folder))

    async def delete_folder(request: Request) -> Response:
        mb = mb_of(request)
        folder = resolve_folder(mb, request.params["folder"])
        if folder.key in _mail(mb).well_known.values():
            raise GraphError(400, "ErrorDeleteDistinguishedFolder", "Distinguished folders cannot be deleted.")
        _delete_tree(mb, folder.key)
        return empty(204)

    async def move_folder(request: Request) -> Response:
        mb = mb_of(request)
        folder = resolve_folder(mb, request.params["folder"])
        dest = resolve_folder(mb, str(request.json().get("destinationId", "")))
        folder.data["parentFolderId"] = dest.key
        folder_coll(mb).put(folder)
        return json_response(folder_json(mb, folder), 201)

    async def folders_delta_route(request: Request) -> Response:
        mb = mb_of(request)
        reject_options(request, {"$select", "$top"}, "mailFolder")
        return state.sync.serve(request, mb, folders_delta, lambda: DeltaQuery(
            mb.id, "mailFolders", "mailFolders", f"/users/{mb.id}/mailFolders/delta", _options(request, ("$select",)), request.prefer.maxpagesize or _int(request.query.get("$top"))))

    # messages -------------------------------------------------------------------------------
    async def messages_delta_route(request: Request) -> Response:
        mb = mb_of(request)
        folder = resolve_folder(mb, request.params["folder"])
        if not (request.query.get("$skiptoken") or request.query.get("$deltatoken")):
            reject_options(request, {"$select", "$top", "$filter", "$orderby", "$expand"}, "message")
            flt = request.query.get("$filter")
            if flt and not _RECEIVED_FILTER.match(flt):
                raise bad_request("The only supported $filter on message delta is 'receivedDateTime ge|gt {value}'.", "ErrorInvalidUrlQueryFilter")
            order = request.query.get("$orderby")
            if order and order.strip().lower() != "receiveddatetime desc":
                raise bad_request("The only supported $orderby on message delta is 'receivedDateTime desc'.", "ErrorInvalidUrlQuery")
            ct = request.query.get("changetype")
            if ct and ct not in ("created", "updated", "deleted"):
                raise bad_request(f"The value '{ct}' of parameter 'changeType' is invalid.")
        return state.sync.serve(request, mb, messages_delta, lambda: DeltaQuery(
            mb.id, "messages", "messages:" + folder.key, f"/users/{mb.id}/mailFolders/{folder.key}/messages/delta",
            _options(request, ("$select", "$filter", "changetype")), request.prefer.maxpagesize or _int(request.query.get("$top"))))

    async def user_messages_delta(request: Request) -> Response:
        raise bad_request("Unsupported request: Change tracking is not supported against 'microsoft.graph.message'.", "ErrorInvalidRequest")

    async def list_messages(request: Request) -> Response:
        mb = mb_of(request)
        select = select_fields(request)
        if "folder" in request.params:
            colls = [message_coll(mb, resolve_folder(mb, request.params["folder"]).key)]
        else:
            colls = [c for n, c in mb.collections.items() if n.startswith("messages:")]
        items = sorted((i for c in colls for i in c), key=lambda i: i.data.get("receivedDateTime") or "", reverse=True)
        flt = request.query.get("$filter")
        if flt:
            m = re.match(r"^\s*internetMessageId\s+eq\s+'([^']*)'\s*$", flt, re.IGNORECASE)
            if not m:
                raise bad_request("The emulator supports $filter=internetMessageId eq '...' on message lists.", "ErrorInvalidUrlQueryFilter")
            items = [i for i in items if i.data.get("internetMessageId") == m.group(1)]
        return paged(request, [message_json(i, request, select) for i in items], "$metadata#Collection(message)")

    async def get_message(request: Request) -> Response:
        mb = mb_of(request)
        folder = resolve_folder(mb, request.params["folder"]).key if "folder" in request.params else None
        item = find_message(mb, request.params["message"], folder)
        out = message_json(item, request, select_fields(request))
        expand = request.query.get("$expand") or ""
        m = re.match(r"^singleValueExtendedProperties(?:\(\$filter=(.*)\))?$", expand.strip(), re.IGNORECASE)
        if expand and not m:
            raise bad_request(f"Parsing OData Select and Expand failed: Could not find a property named '{expand.split('(')[0]}' on type 'microsoft.graph.message'.", "BadRequest")
        if m:
            ext = item.hidden.get("ext", {})
            ids = re.findall(r"id\s+eq\s+'([^']*)'", m.group(1) or "", re.IGNORECASE)
            if m.group(1) and not ids:
                raise bad_request("$filter on singleValueExtendedProperties must be id eq '...'.", "ErrorInvalidUrlQueryFilter")
            wanted = [i for i in ids if i in ext] if ids else list(ext)
            if wanted:
                out["singleValueExtendedProperties"] = [{"id": i, "value": ext[i]} for i in wanted]
        return json_response({"@odata.context": f"{request.graph_base}/$metadata#users('{mb.id}')/messages/$entity", **out})

    async def patch_message(request: Request) -> Response:
        mb = mb_of(request)
        item = find_message(mb, request.params["message"])
        body = request.json()
        if not isinstance(body, dict):
            raise bad_request("Expected a JSON object.", "BadRequest")
        update_message(mb, item, body)
        return json_response(message_json(item, request, None))

    async def delete_message_route(request: Request) -> Response:
        mb = mb_of(request)
        delete_message(mb, find_message(mb, request.params["message"]))
        return empty(204)

    async def move_route(request: Request) -> Response:
        mb = mb_of(request)
        item = find_message(mb, request.params["message"])
        dest = request.json().get("destinationId")
        if not dest:
            raise bad_request("The destinationId parameter is required.", "ErrorInvalidRequest")
        move_message(mb, item, resolve_folder(mb, str(dest)).key)
        return json_response(message_json(item, request, None), 201)

    async def create_message(request: Request) -> Response:
        mb = mb_of(request)
        folder = resolve_folder(mb, request.params["folder"]).key if "folder" in request.params else _mail(mb).well_known["drafts"]
        body = request.json()
        body.setdefault("isDraft", True)
        body.setdefault("isRead", True)
        item = insert_message(state, mb, folder, body)
        return json_response(message_json(item, request, None), 201)

    async def send_draft(request: Request) -> Response:
        mb = mb_of(request)
        item = find_message(mb, request.params["message"])
        if not item.data.get("isDraft"):
            raise GraphError(400, "ErrorInvalidOperation", "Only draft messages can be sent.")
        submit(state, mb, dict(item.data), draft=item)
        return empty(202)

    async def send_mail(request: Request) -> Response:
        mb = mb_of(request)
        body = request.json()
        msg = body.get("message") if isinstance(body, dict) else None
        if not isinstance(msg, dict):
            raise bad_request("The 'message' parameter is required.", "ErrorInvalidParameter")
        if not _recipients(msg, "toRecipients", "ccRecipients", "bccRecipients"):
            raise bad_request("At least one recipient isn't valid., A message can't be sent because it contains no recipients.", "ErrorInvalidRecipients")
        save = body.get("saveToSentItems", True)
        submit(state, mb, msg, save_to_sent=str(save).lower() != "false")
        return empty(202)

    # categories -----------------------------------------------------------------------------
    async def list_categories(request: Request) -> Response:
        mb = mb_of(request)
        cats = mb.extra["masterCategories"]
        return json_response({"@odata.context": f"{request.graph_base}/$metadata#users('{mb.id}')/outlook/masterCategories", "value": list(cats.values())})

    async def create_category(request: Request) -> Response:
        mb = mb_of(request)
        body = request.json()
        name = body.get("displayName")
        if not name:
            raise bad_request("The displayName is required.", "ErrorInvalidRequest")
        cats = mb.extra["masterCategories"]
        if any(c["displayName"].lower() == name.lower() for c in cats.values()):
            raise GraphError(409, "ErrorDuplicateCategory" if False else "NameAlreadyExists", f"A category with the name '{name}' already exists.")
        cid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{mb.id}:category:{name.lower()}"))
        cats[cid] = {"id": cid, "displayName": name, "color": body.get("color", "none")}
        return json_response(cats[cid], 201)

    async def delete_category(request: Request) -> Response:
        mb = mb_of(request)
        if mb.extra["masterCategories"].pop(request.params["category"], None) is None:
            raise not_found()
        return empty(204)

    u = "/users/{user}"
    R, W = dict(app=MAIL_READ, delegated=D_READ), dict(app=MAIL_WRITE, delegated=D_WRITE)
    router.add("GET", u + "/mailFolders/delta", folders_delta_route, **R)
    router.add("GET", u + "/mailFolders", list_folders, **R)
    router.add("POST", u + "/mailFolders", create_child, **W)
    router.add("GET", u + "/mailFolders/{folder}", get_folder, **R)
    router.add("PATCH", u + "/mailFolders/{folder}", patch_folder, **W)
    router.add("DELETE", u + "/mailFolders/{folder}", delete_folder, **W)
    router.add("POST", u + "/mailFolders/{folder}/move", move_folder, **W)
    router.add("GET", u + "/mailFolders/{folder}/childFolders", list_folders, **R)
    router.add("POST", u + "/mailFolders/{folder}/childFolders", create_child, **W)
    router.add("GET", u + "/mailFolders/{folder}/messages/delta", messages_delta_route, **R)
    router.add("GET", u + "/messages/delta", user_messages_delta, **R)
    router.add("GET", u + "/mailFolders/{folder}/messages", list_messages, **R)
    router.add("POST", u + "/mailFolders/{folder}/messages", create_message, **W)
    router.add("GET", u + "/mailFolders/{folder}/messages/{message}", get_message, **R)
    router.add("PATCH", u + "/mailFolders/{folder}/messages/{message}", patch_message, **W)
    router.add("DELETE", u + "/mailFolders/{folder}/messages/{message}", delete_message_route, **W)
    router.add("GET", u + "/messages", list_messages, **R)
    router.add("POST", u + "/messages", create_message, **W)
    router.add("GET", u + "/messages/{message}", get_message, **R)
    router.add("PATCH", u + "/messages/{message}", patch_message, **W)
    router.add("DELETE", u + "/messages/{message}", delete_message_route, **W)
    router.add("POST", u + "/messages/{message}/move", move_route, **W)
    router.add("POST", u + "/mailFolders/{folder}/messages/{message}/move", move_route, **W)
    router.add("POST", u + "/messages/{message}/send", send_draft, app=MAIL_SEND, delegated=("Mail.Send",))
    router.add("POST", u + "/sendMail", send_mail, app=MAIL_SEND, delegated=("Mail.Send",))
    router.add("GET", u + "/outlook/masterCategories", list_categories, app=MAIL_READ + ("MailboxSettings.Read", "MailboxSettings.ReadWrite"), delegated=D_READ + ("MailboxSettings.Read",))
    router.add("POST", u + "/outlook/masterCategories", create_category, app=("MailboxSettings.ReadWrite", "Mail.ReadWrite"), delegated=("MailboxSettings.ReadWrite",))
    router.add("DELETE", u + "/outlook/masterCategories/{category}", delete_category, app=("MailboxSettings.ReadWrite", "Mail.ReadWrite"), delegated=("MailboxSettings.ReadWrite",))

    register_control(control, state)


def _delete_tree(mb: Mailbox, folder_id: str) -> None:
    coll = folder_coll(mb)
    for child in [f.key for f in coll if f.data["parentFolderId"] == folder_id]:
        _delete_tree(mb, child)
    msgs = message_coll(mb, folder_id)
    for key in list(msgs.items):
        item = msgs.remove(key)
        if item is not None:
            mb.forget(item)
    coll.remove(folder_id)


def _int(v: str | None) -> int | None:
    return int(v) if v and v.isdigit() else None


def paged(request: Request, values: list[dict[str, Any]], context: str) -> Response:
    """Plain (non-delta) list paging with $top and $skip."""
    top = _int(request.query.get("$top")) or request.prefer.maxpagesize or 10
    skip = _int(request.query.get("$skip")) or 0
    body: dict[str, Any] = {"@odata.context": f"{request.graph_base}/{context}", "value": values[skip : skip + top]}
    if skip + top < len(values):
        qs = "&".join(f"{k}={v}" for k, v in request.query.items() if k != "$skip")
        body["@odata.nextLink"] = f"{request.graph_base}{request.path}?{qs + '&' if qs else ''}$skip={skip + top}"
    return json_response(body)


# control ----------------------------------------------------------------------------------


def register_control(control: Router, state: EmulatorState) -> None:
    """`/_emulator/users/{upn}/...` mutation helpers for tests and demos."""

    def mb_named(request: Request) -> Mailbox:
        mb = state.named_mailbox(request)
        init_mailbox(state, mb)
        return mb

    async def add(request: Request) -> Response:
        mb = mb_named(request)
        folder = resolve_folder(mb, request.params["folder"])
        item = insert_message(state, mb, folder.key, request.json())
        return json_response({"id": item.rest_id, "immutableId": item.key, "internetMessageId": item.data["internetMessageId"]}, 201)

    async def patch(request: Request) -> Response:
        mb = mb_named(request)
        item = find_message(mb, request.params["message"])
        update_message(mb, item, request.json(), strict=False)
        return json_response({"id": item.rest_id, "immutableId": item.key})

    async def delete(request: Request) -> Response:
        mb = mb_named(request)
        item = find_message(mb, request.params["message"])
        folder = item.container.split(":", 1)[1]
        message_coll(mb, folder).remove(item.key)
        mb.forget(item)
        mb.notify("messages", folder, item, "deleted")
        return empty(204)

    async def move(request: Request) -> Response:
        mb = mb_named(request)
        item = find_message(mb, request.params["message"])
        dest = resolve_folder(mb, str(request.json().get("destination", "")))
        move_message(mb, item, dest.key)
        return json_response({"id": item.rest_id, "immutableId": item.key}, 201)

    async def deliver(request: Request) -> Response:
        mb = mb_named(request)
        msg = request.json()
        msg.setdefault("from", {"emailAddress": {"name": "External Sender", "address": "sender@external.example"}})
        msg.setdefault("toRecipients", [{"emailAddress": {"name": mb.user.get("displayName"), "address": mb.address}}])
        folder = resolve_folder(mb, str(msg.pop("folder", "inbox")))
        item = insert_message(state, mb, folder.key, msg)
        return json_response({"id": item.rest_id, "immutableId": item.key, "internetMessageId": item.data["internetMessageId"]}, 201)

    async def add_folder(request: Request) -> Response:
        mb = mb_named(request)
        body = request.json()
        parent = resolve_folder(mb, str(body.get("parent", "msgfolderroot")))
        item = create_folder(mb, parent.key, body["displayName"])
        return json_response({"id": item.key}, 201)

    u = "/_emulator/users/{user}"
    control.add("POST", u + "/mailFolders", add_folder)
    control.add("POST", u + "/mailFolders/{folder}/messages", add)
    control.add("PATCH", u + "/messages/{message}", patch)
    control.add("DELETE", u + "/messages/{message}", delete)
    control.add("POST", u + "/messages/{message}/move", move)
    control.add("POST", u + "/deliver", deliver)


def seed(state: EmulatorState, mb: Mailbox, spec: Any) -> None:
    """Load a user's `mailFolders` and `masterCategories` from the scenario."""
    init_mailbox(state, mb)
    ms = _mail(mb)
    base = utcnow() - timedelta(days=1)

    def load(parent_id: str, name: str, fspec: Any, top: bool) -> None:
        if top and name.lower() in ms.well_known:
            fid = ms.well_known[name.lower()]
        else:
            fid = create_folder(mb, parent_id, fspec.displayName or name).key
        for i, m in enumerate(fspec.messages):
            m = dict(m)
            m.setdefault("receivedDateTime", iso(base + timedelta(minutes=i)))
            insert_message(state, mb, fid, m, notify=False)
        for child_name, child in fspec.childFolders.items():
            load(fid, child_name, child, False)

    for name, fspec in spec.mailFolders.items():
        load(ms.root_id, name, fspec, True)
    for cat in spec.masterCategories:
        cid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{mb.id}:category:{cat['displayName'].lower()}"))
        mb.extra["masterCategories"][cid] = {"id": cid, "color": "none", **cat}
