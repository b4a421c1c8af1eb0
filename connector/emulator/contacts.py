"""Contacts: contact folders, contacts, delta for the default folder, per folder and over the folder tree.

The default "Contacts" folder sits under the mailbox root; `GET /contactFolders` lists the folders
*inside* it, as the docs say ("the contact folder collection in the default Contacts folder"), and
`contactFolders/delta` flattens that subtree without the default folder itself, whose contacts are
tracked by `/contacts/delta`. The well-known name `contacts` resolves to the default folder.
Contacts honour `Prefer: IdType="ImmutableId"` (graph-v1.md §2.6); folder ids are stable.
"""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import unquote

from .delta import CollectionDelta, DeltaQuery, reject_options, select_fields
from .http import GraphError, Request, Response, Router, bad_request, empty, iso, json_response, not_found, utcnow
from .mail import paged, init_mailbox
from .render import render
from .state import EmulatorState
from .store import Collection, Item, Mailbox, b64url, stable_bytes

READ = ("Contacts.Read", "Contacts.ReadWrite")
WRITE = ("Contacts.ReadWrite",)
CONTACT_TYPE = "#microsoft.graph.contact"
FOLDER_COLL = "contactFolders"

# Every default property of a contact, in the order of graph-samples/contact-get-response.json,
# with the value Graph reports when it was never set.
_DEFAULTS: dict[str, Any] = {
    "birthday": None, "fileAs": "", "displayName": "", "givenName": None, "initials": None, "middleName": None,
    "nickName": None, "surname": None, "title": None, "yomiGivenName": None, "yomiSurname": None,
    "yomiCompanyName": None, "generation": None, "imAddresses": [], "jobTitle": None, "companyName": None,
    "department": None, "officeLocation": None, "profession": None, "businessHomePage": None,
    "assistantName": None, "manager": None, "homePhones": [], "mobilePhone": None, "businessPhones": [],
    "spouseName": None, "personalNotes": "", "children": [], "emailAddresses": [], "homeAddress": {},
    "businessAddress": {}, "otherAddress": {},
}
WRITABLE = frozenset(_DEFAULTS) | {"categories"}
READ_ONLY = frozenset({"id", "changeKey", "createdDateTime", "lastModifiedDateTime", "parentFolderId"})
_NAME_PARTS = ("givenName", "middleName", "surname")


class ContactsState:
    """Ids of the default folder and a counter for new contact ids."""

    def __init__(self, default_id: str, root_id: str) -> None:
        self.default_id = default_id
        self.root_id = root_id
        self.counter = 0


def _cs(mb: Mailbox) -> ContactsState:
    return mb.extra["contacts"]  # type: ignore[no-any-return]


def folder_coll(mb: Mailbox) -> Collection:
    """The contact folder tree (without the default folder) as a delta container."""
    return mb.collection(FOLDER_COLL)


def contact_coll(mb: Mailbox, folder_id: str) -> Collection:
    """The contacts of one folder as a delta container."""
    return mb.collection("contacts:" + folder_id)


def _folder_key(mb: Mailbox, *parts: str) -> str:
    return "AAMkAD" + b64url(stable_bytes(mb.id, "contactFolder", *parts, n=30)) + "AAA="


def init_contacts(state: EmulatorState, mb: Mailbox) -> None:
    """Create the default Contacts folder of a mailbox (idempotent)."""
    if "contacts" in mb.extra:
        return
    init_mailbox(state, mb)
    mb.extra["contacts"] = ContactsState(_folder_key(mb, "contacts"), mb.extra["mail"].root_id)


def default_folder_id(mb: Mailbox) -> str:
    """Id of the default Contacts folder."""
    return _cs(mb).default_id


def create_folder(mb: Mailbox, parent_id: str, display_name: str) -> Item:
    """Add a contact folder under `parent_id`; 409 when a sibling has that name."""
    name = display_name.strip()
    if not name:
        raise bad_request("The folder name can't be empty.", "ErrorInvalidRequest")
    coll = folder_coll(mb)
    if any(f.data["parentFolderId"] == parent_id and f.data["displayName"].lower() == name.lower() for f in coll):
        raise GraphError(409, "ErrorFolderExists", "A folder with the specified name already exists.")
    item = Item(_folder_key(mb, parent_id, name, secrets.token_hex(4)), {"displayName": name, "parentFolderId": parent_id}, FOLDER_COLL)
    coll.put(item)
    return item


def _default_item(mb: Mailbox) -> Item:
    cs = _cs(mb)
    return Item(cs.default_id, {"displayName": "Contacts", "parentFolderId": cs.root_id}, FOLDER_COLL)


def resolve_folder(mb: Mailbox, ref: str) -> Item:
    """A contact folder by id, the well-known name `contacts`, or a display name under the default folder."""
    ref = unquote(ref)
    cs = _cs(mb)
    if ref == cs.default_id or ref.lower() == "contacts":
        return _default_item(mb)
    coll = folder_coll(mb)
    if ref in coll.items:
        return coll.items[ref]
    for f in coll:
        if f.data["parentFolderId"] == cs.default_id and f.data["displayName"].lower() == ref.lower():
            return f
    raise not_found()


def folder_json(item: Item, select: tuple[str, ...] | None = None) -> dict[str, Any]:
    """contactFolder JSON (Graph sends no etag for folders)."""
    out: dict[str, Any] = {"id": item.key}
    for k in ("displayName", "parentFolderId"):
        if select is None or k in select:
            out[k] = item.data[k]
    return out


def _delete_folder_tree(mb: Mailbox, folder_id: str) -> None:
    coll = folder_coll(mb)
    for child in [f.key for f in coll if f.data["parentFolderId"] == folder_id]:
        _delete_folder_tree(mb, child)
    contacts = contact_coll(mb, folder_id)
    for key in list(contacts.items):
        item = contacts.remove(key)
        if item is not None:
            mb.forget(item)
            mb.notify("contacts", folder_id, item, "deleted")
    coll.remove(folder_id)


# contacts ---------------------------------------------------------------------------------


def _derived_name(data: dict[str, Any]) -> str:
    """Outlook's display name for a contact created without one."""
    name = " ".join(str(data[k]) for k in _NAME_PARTS if data.get(k))
    if name:
        return name
    if data.get("companyName"):
        return str(data["companyName"])
    emails = data.get("emailAddresses") or []
    return str((emails[0] or {}).get("address") or "") if emails else ""


def _normalise_emails(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise bad_request("Cannot convert the literal to the expected type 'Collection(microsoft.graph.emailAddress)'.", "RequestBodyRead")
    out = []
    for e in value:
        if not isinstance(e, dict):
            raise bad_request("An emailAddress must be an object.", "RequestBodyRead")
        address = e.get("address")
        out.append({"name": e.get("name") or address, "address": address})  # Outlook fills name from the address
    return out


def _check_properties(body: dict[str, Any]) -> None:
    for k in body:
        if k.startswith("@odata") or k in WRITABLE or k in READ_ONLY or k == "singleValueExtendedProperties":
            continue
        raise bad_request(f"The property '{k}' does not exist on type 'microsoft.graph.contact'. Make sure to only use property names that are defined by the type or mark the type as open type.", "RequestBodyRead")
    for k in ("categories", "businessPhones", "homePhones", "imAddresses", "children"):
        v = body.get(k)
        if v is not None and not (isinstance(v, list) and all(isinstance(x, str) for x in v)):
            raise bad_request(f"Cannot convert the literal to the expected type 'Collection(Edm.String)' for property '{k}'.", "RequestBodyRead")


def insert_contact(mb: Mailbox, folder_id: str, body: dict[str, Any], *, strict: bool = True, notify: bool = True) -> Item:
    """Store a new contact in `folder_id`, filling what Exchange fills (ids, dates, defaults)."""
    if strict:
        _check_properties(body)
    now = iso(utcnow())
    given = {k: v for k, v in body.items() if not k.startswith("@odata") and k not in ("id", "changeKey", "singleValueExtendedProperties")}
    if strict:
        given = {k: v for k, v in given.items() if k not in READ_ONLY}
    data: dict[str, Any] = {
        "createdDateTime": given.pop("createdDateTime", now),
        "lastModifiedDateTime": given.pop("lastModifiedDateTime", now),
        "categories": list(given.pop("categories", []) or []),
        "parentFolderId": folder_id,
    }
    given.pop("parentFolderId", None)
    for k, default in _DEFAULTS.items():
        data[k] = given.pop(k, default.copy() if isinstance(default, (list, dict)) else default)
    data.update(given)  # only reached in non-strict mode (seed and control routes)
    data["emailAddresses"] = _normalise_emails(data["emailAddresses"] or [])
    derived = not data["displayName"]
    if derived:
        data["displayName"] = _derived_name(data)
    cs = _cs(mb)
    cs.counter += 1
    key = "AAkALg" + b64url(stable_bytes(mb.id, "contact", str(cs.counter), n=42))
    item = Item(key, data, "")
    item.rest_id = "AAMkAG" + b64url(stable_bytes(key, "rest", n=42)) + "AAA="
    item.hidden["derivedName"] = derived
    item.hidden["ext"] = {p["id"]: p.get("value") for p in body.get("singleValueExtendedProperties") or []}
    contact_coll(mb, folder_id).put(item)
    mb.register(item)
    if notify:
        mb.notify("contacts", folder_id, item, "created")
    return item


def find_contact(mb: Mailbox, contact_id: str, folder_id: str | None = None) -> Item:
    """A contact by REST or immutable id (optionally within one folder); 404 otherwise."""
    item = mb.index.get(unquote(contact_id))
    if item is None or not item.container.startswith("contacts:"):
        raise not_found()
    if folder_id is not None and item.container != "contacts:" + folder_id:
        raise not_found()
    return item


def update_contact(mb: Mailbox, item: Item, patch: dict[str, Any], *, strict: bool = True) -> Item:
    """Apply a PATCH: new values, a new lastModifiedDateTime and changeKey, a delta change."""
    if strict:
        _check_properties(patch)
    for k, v in patch.items():
        if k.startswith("@odata") or k in ("id", "changeKey") or (strict and k in READ_ONLY):
            continue
        if k == "singleValueExtendedProperties":
            item.hidden.setdefault("ext", {}).update({p["id"]: p.get("value") for p in v or []})
        elif k == "emailAddresses":
            item.data[k] = _normalise_emails(v or [])
        else:
            item.data[k] = v
    if "displayName" in patch:
        item.hidden["derivedName"] = not patch["displayName"]
    if item.hidden.get("derivedName") or not item.data.get("displayName"):
        item.data["displayName"] = _derived_name(item.data)
        item.hidden["derivedName"] = True
    item.data["lastModifiedDateTime"] = iso(utcnow())
    folder_id = item.container.split(":", 1)[1]
    contact_coll(mb, folder_id).put(item)
    mb.notify("contacts", folder_id, item, "updated")
    return item


def delete_contact(mb: Mailbox, item: Item) -> None:
    """Remove a contact; later delta rounds report it as @removed."""
    folder_id = item.container.split(":", 1)[1]
    contact_coll(mb, folder_id).remove(item.key)
    mb.forget(item)
    mb.notify("contacts", folder_id, item, "deleted")


def contact_json(item: Item, request: Request, select: tuple[str, ...] | None) -> dict[str, Any]:
    """A contact as GET and list render it: no @odata.type (graph-samples/contact-get-response.json)."""
    return render(item, None, select, request.prefer.immutable_id)


# delta ------------------------------------------------------------------------------------


class ContactDelta(CollectionDelta):
    """contacts/delta for one folder (the default folder or any contactFolder)."""

    odata_type = CONTACT_TYPE
    context = "$metadata#Collection(contact)"


class ContactFolderDelta(CollectionDelta):
    """contactFolders/delta: every folder below the default Contacts folder, flattened."""

    context = "$metadata#Collection(contactFolder)"

    def collection(self, mb: Mailbox, query: DeltaQuery) -> Collection:
        return folder_coll(mb)

    def item_json(self, mb: Mailbox, query: DeltaQuery, item: Item, request: Request) -> dict[str, Any]:
        return folder_json(item, query.select)

    def removed_json(self, tomb: Any, request: Request) -> dict[str, Any]:
        return {"id": tomb.key, "@removed": {"reason": "deleted"}}


def _reject_list_options(request: Request) -> None:
    for key in request.query:
        if key in ("$filter", "$search", "$expand"):
            raise bad_request(f"The emulator does not support the query parameter '{key}' on contact lists.", "ErrorInvalidUrlQuery")


def register(router: Router, control: Router, state: EmulatorState) -> None:
    """Add the contact routes and the contact control routes."""
    contacts_delta, folders_delta = ContactDelta(), ContactFolderDelta()

    def mb_of(request: Request) -> Mailbox:
        mb = state.mailbox(request)
        init_contacts(state, mb)
        return mb

    def folder_of(mb: Mailbox, request: Request) -> str:
        return resolve_folder(mb, request.params["folder"]).key if "folder" in request.params else _cs(mb).default_id

    # folders --------------------------------------------------------------------------------
    async def list_folders(request: Request) -> Response:
        mb = mb_of(request)
        parent = folder_of(mb, request)
        select = select_fields(request)
        values = [folder_json(f, select) for f in folder_coll(mb) if f.data["parentFolderId"] == parent]
        return paged(request, values, f"$metadata#users('{mb.id}')/contactFolders")

    async def get_folder(request: Request) -> Response:
        mb = mb_of(request)
        folder = resolve_folder(mb, request.params["folder"])
        ctx = f"{request.graph_base}/$metadata#users('{mb.id}')/contactFolders/$entity"
        return json_response({"@odata.context": ctx, **folder_json(folder, select_fields(request))})

    async def create_folder_route(request: Request) -> Response:
        mb = mb_of(request)
        parent = folder_of(mb, request)
        body = request.json()
        if not isinstance(body, dict) or not isinstance(body.get("displayName"), str):
            raise bad_request("The folder name can't be empty.", "ErrorInvalidRequest")
        item = create_folder(mb, parent, body["displayName"])
        ctx = f"{request.graph_base}/$metadata#users('{mb.id}')/contactFolders/$entity"
        return json_response({"@odata.context": ctx, **folder_json(item)}, 201)

    async def patch_folder(request: Request) -> Response:
        mb = mb_of(request)
        folder = resolve_folder(mb, request.params["folder"])
        if folder.key == _cs(mb).default_id:
            raise bad_request("Distinguished folders cannot be renamed.", "ErrorInvalidRequest")
        body = request.json()
        name = body.get("displayName") if isinstance(body, dict) else None
        if name is not None:
            if not isinstance(name, str) or not name.strip():
                raise bad_request("The folder name can't be empty.", "ErrorInvalidRequest")
            folder.data["displayName"] = name.strip()
            folder_coll(mb).put(folder)
        return json_response(folder_json(folder))

    async def delete_folder(request: Request) -> Response:
        mb = mb_of(request)
        folder = resolve_folder(mb, request.params["folder"])
        if folder.key == _cs(mb).default_id:
            raise GraphError(400, "ErrorDeleteDistinguishedFolder", "Distinguished folders cannot be deleted.")
        _delete_folder_tree(mb, folder.key)
        return empty(204)

    async def folders_delta_route(request: Request) -> Response:
        mb = mb_of(request)
        reject_options(request, {"$select"}, "contactFolder")
        return state.sync.serve(request, mb, folders_delta, lambda: DeltaQuery(
            mb.id, "contactFolders", FOLDER_COLL, f"/users/{mb.id}/contactFolders/delta",
            (("$select", request.query["$select"]),) if request.query.get("$select") else (), request.prefer.maxpagesize))

    # contacts -------------------------------------------------------------------------------
    async def contacts_delta_route(request: Request) -> Response:
        mb = mb_of(request)
        folder = folder_of(mb, request)
        # The default-folder form is undocumented in v1.0 and reported to refuse query options
        # (graph-v1.md §2.2); the emulator accepts $select on both forms and nothing else.
        reject_options(request, {"$select"}, "contact")
        path = f"/users/{mb.id}/contactFolders/{folder}/contacts/delta" if "folder" in request.params else f"/users/{mb.id}/contacts/delta"
        return state.sync.serve(request, mb, contacts_delta, lambda: DeltaQuery(
            mb.id, "contacts", "contacts:" + folder, path,
            (("$select", request.query["$select"]),) if request.query.get("$select") else (), request.prefer.maxpagesize))

    async def list_contacts(request: Request) -> Response:
        mb = mb_of(request)
        _reject_list_options(request)
        select = select_fields(request)
        items = contact_coll(mb, folder_of(mb, request))
        values = [contact_json(i, request, select) for i in items]
        return paged(request, values, f"$metadata#users('{mb.id}')/contacts")

    async def get_contact(request: Request) -> Response:
        mb = mb_of(request)
        folder = folder_of(mb, request) if "folder" in request.params else None
        item = find_contact(mb, request.params["contact"], folder)
        ctx = f"{request.graph_base}/$metadata#users('{mb.id}')/contacts/$entity"
        return json_response({"@odata.context": ctx, **contact_json(item, request, select_fields(request))})

    async def create_contact(request: Request) -> Response:
        mb = mb_of(request)
        folder = folder_of(mb, request)
        body = request.json()
        if not isinstance(body, dict):
            raise bad_request("Expected a JSON object.", "BadRequest")
        item = insert_contact(mb, folder, body)
        ctx = f"{request.graph_base}/$metadata#users('{mb.id}')/contacts/$entity"
        return json_response({"@odata.context": ctx, **contact_json(item, request, None)}, 201)

    async def patch_contact(request: Request) -> Response:
        mb = mb_of(request)
        folder = folder_of(mb, request) if "folder" in request.params else None
        item = find_contact(mb, request.params["contact"], folder)
        body = request.json()
        if not isinstance(body, dict):
            raise bad_request("Expected a JSON object.", "BadRequest")
        update_contact(mb, item, body)
        ctx = f"{request.graph_base}/$metadata#users('{mb.id}')/contacts/$entity"
        return json_response({"@odata.context": ctx, **contact_json(item, request, None)})

    async def delete_contact_route(request: Request) -> Response:
        mb = mb_of(request)
        folder = folder_of(mb, request) if "folder" in request.params else None
        delete_contact(mb, find_contact(mb, request.params["contact"], folder))
        return empty(204)

    u, f = "/users/{user}", "/users/{user}/contactFolders/{folder}"
    R, W = dict(app=READ, delegated=READ), dict(app=WRITE, delegated=WRITE)
    router.add("GET", u + "/contactFolders/delta", folders_delta_route, **R)
    router.add("GET", u + "/contactFolders", list_folders, **R)
    router.add("POST", u + "/contactFolders", create_folder_route, **W)
    router.add("GET", f, get_folder, **R)
    router.add("PATCH", f, patch_folder, **W)
    router.add("DELETE", f, delete_folder, **W)
    router.add("GET", f + "/childFolders", list_folders, **R)
    router.add("POST", f + "/childFolders", create_folder_route, **W)
    for base in (f, u):  # a named folder, or the default one
        router.add("GET", base + "/contacts/delta", contacts_delta_route, **R)
        router.add("GET", base + "/contacts", list_contacts, **R)
        router.add("POST", base + "/contacts", create_contact, **W)
        router.add("GET", base + "/contacts/{contact}", get_contact, **R)
        router.add("PATCH", base + "/contacts/{contact}", patch_contact, **W)
        router.add("DELETE", base + "/contacts/{contact}", delete_contact_route, **W)

    register_control(control, state)


# control ----------------------------------------------------------------------------------


def register_control(control: Router, state: EmulatorState) -> None:
    """`/_emulator/users/{upn}/contacts...`: change contacts as the user would, outside Graph's checks."""

    def mb_named(request: Request) -> Mailbox:
        mb = state.named_mailbox(request)
        init_contacts(state, mb)
        return mb

    async def add(request: Request) -> Response:
        mb = mb_named(request)
        body = dict(request.json())
        folder = resolve_folder(mb, str(body.pop("folder", "contacts")))
        item = insert_contact(mb, folder.key, body, strict=False)
        return json_response({"id": item.rest_id, "immutableId": item.key, "folderId": folder.key}, 201)

    async def patch(request: Request) -> Response:
        mb = mb_named(request)
        item = find_contact(mb, request.params["contact"])
        update_contact(mb, item, request.json(), strict=False)
        return json_response({"id": item.rest_id, "immutableId": item.key})

    async def delete(request: Request) -> Response:
        mb = mb_named(request)
        delete_contact(mb, find_contact(mb, request.params["contact"]))
        return empty(204)

    async def add_folder(request: Request) -> Response:
        mb = mb_named(request)
        body = request.json()
        parent = resolve_folder(mb, str(body.get("parent", "contacts")))
        item = create_folder(mb, parent.key, str(body.get("displayName") or ""))
        return json_response({"id": item.key}, 201)

    u = "/_emulator/users/{user}"
    control.add("POST", u + "/contactFolders", add_folder)
    control.add("POST", u + "/contacts", add)
    control.add("PATCH", u + "/contacts/{contact}", patch)
    control.add("DELETE", u + "/contacts/{contact}", delete)


def seed(state: EmulatorState, mb: Mailbox, spec: Any) -> None:
    """Load a user's `contacts` (default folder) and `contactFolders` from the scenario."""
    init_contacts(state, mb)
    default = _cs(mb).default_id
    for c in spec.contacts:
        insert_contact(mb, default, dict(c), strict=False, notify=False)
    for name, fspec in spec.contactFolders.items():
        folder = create_folder(mb, default, name)
        for c in fspec.contacts:
            insert_contact(mb, folder.key, dict(c), strict=False, notify=False)

