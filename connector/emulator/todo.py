"""Microsoft To Do: task lists, tasks, linked resources, and delta over lists and over one list's tasks.

Every mailbox has the default list "Tasks" (`wellknownListName: defaultList`), created on first use.
To Do JSON carries `@odata.etag` but no `@odata.type` and no `changeKey` (graph-v1.md §2.5,
graph-samples/todotask*.json); its timestamps have seven fractional digits. Only application
permissions Tasks.Read.All / Tasks.ReadWrite.All or delegated Tasks.Read / Tasks.ReadWrite reach it (§6.6).
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime, time, timezone
from typing import Any
from urllib.parse import unquote

from ..mapping.timezones import zone
from .delta import CollectionDelta, DeltaQuery, reject_options, select_fields
from .http import Request, Response, Router, bad_request, empty, json_response, not_found, utcnow
from .mail import paged
from .render import render
from .state import EmulatorState
from .store import Collection, Item, Mailbox, b64url, stable_bytes

APP_READ = ("Tasks.Read.All", "Tasks.ReadWrite.All")
APP_WRITE = ("Tasks.ReadWrite.All",)
D_READ = ("Tasks.Read", "Tasks.ReadWrite")
D_WRITE = ("Tasks.ReadWrite",)
LISTS = "todoLists"

STATUSES = frozenset({"notStarted", "inProgress", "completed", "waitingOnOthers", "deferred"})
IMPORTANCES = frozenset({"low", "normal", "high"})
DATE_PROPS = ("dueDateTime", "startDateTime", "reminderDateTime", "completedDateTime")
# To Do keeps due, start and completion as dates: a value in any zone comes back as midnight of
# that day in the zone, converted to UTC (graph-samples/todotask-update-response.json).
DAY_PROPS = frozenset({"dueDateTime", "startDateTime", "completedDateTime"})
TASK_WRITABLE = frozenset({"title", "body", "importance", "status", "categories", "isReminderOn", "recurrence", *DATE_PROPS})
TASK_READ_ONLY = frozenset({"id", "createdDateTime", "lastModifiedDateTime", "bodyLastModifiedDateTime", "hasAttachments"})
TASK_CREATE_ONLY = frozenset({"linkedResources", "checklistItems"})
LINK_FIELDS = ("webUrl", "applicationName", "displayName", "externalId")
_FILTER = re.compile(r"^\s*status\s+(eq|ne)\s+'(\w+)'\s*$", re.IGNORECASE)


def ts(dt: datetime) -> str:
    """To Do's DateTimeOffset rendering: UTC, seven fractional digits, trailing Z."""
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


def _parse_local(value: str) -> datetime:
    """A dateTimeTimeZone.dateTime (up to seven fractional digits, no offset) as a naive datetime."""
    m = re.fullmatch(r"(\d{4}-\d{2}-\d{2})(?:T(\d{2}:\d{2}(?::\d{2})?)(?:\.(\d+))?)?(Z|[+-]\d{2}:\d{2})?", value.strip())
    if m is None:
        raise bad_request(f"Cannot convert the literal '{value}' to the expected type 'Edm.DateTime'.", "RequestBodyRead")
    text = m.group(1) + "T" + (m.group(2) or "00:00:00") + (("." + m.group(3)[:6]) if m.group(3) else "") + (m.group(4) or "")
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return dt.astimezone(timezone.utc).replace(tzinfo=None) if dt.tzinfo else dt


def normalise_dtz(value: Any, *, day: bool) -> dict[str, str] | None:
    """A dateTimeTimeZone converted to UTC, as To Do echoes it back."""
    if value is None:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("dateTime"), str):
        raise bad_request("A dateTimeTimeZone value needs dateTime and timeZone.", "RequestBodyRead")
    tz_name = value.get("timeZone") or "UTC"
    tz = zone(tz_name)
    if tz is None:
        raise bad_request(f"Time zone '{tz_name}' is not supported.", "invalidRequest")
    local = _parse_local(value["dateTime"])
    if day:
        local = datetime.combine(local.date(), time())
    utc = local.replace(tzinfo=tz).astimezone(timezone.utc)
    return {"dateTime": utc.strftime("%Y-%m-%dT%H:%M:%S.%f") + "0", "timeZone": "UTC"}


class TodoState:
    """Id of the default list and a counter for new ids."""

    def __init__(self, default_id: str) -> None:
        self.default_id = default_id
        self.counter = 0


def _ts(mb: Mailbox) -> TodoState:
    return mb.extra["todo"]  # type: ignore[no-any-return]


def list_coll(mb: Mailbox) -> Collection:
    """The mailbox's task lists as a delta container."""
    return mb.collection(LISTS)


def task_coll(mb: Mailbox, list_id: str) -> Collection:
    """The tasks of one list as a delta container."""
    return mb.collection("todoTasks:" + list_id)


def _new_id(mb: Mailbox, kind: str, n: int) -> str:
    st = _ts(mb)
    st.counter += 1
    return "AAMkAD" + b64url(stable_bytes(mb.id, kind, str(st.counter), n=n)) + "AAA="


def init_todo(mb: Mailbox) -> None:
    """Create the default "Tasks" list of a mailbox (idempotent)."""
    if "todo" in mb.extra:
        return
    key = "AAMkAD" + b64url(stable_bytes(mb.id, "todoList", "defaultList", n=30)) + "AAA="
    mb.extra["todo"] = TodoState(key)
    item = Item(key, {"displayName": "Tasks", "isOwner": True, "isShared": False, "wellknownListName": "defaultList"}, LISTS)
    list_coll(mb).put(item)


def default_list_id(mb: Mailbox) -> str:
    """Id of the default "Tasks" list."""
    return _ts(mb).default_id


def create_list(mb: Mailbox, display_name: str, *, wellknown: str = "none", is_owner: bool = True, is_shared: bool = False) -> Item:
    """Add a task list."""
    if not display_name.strip():
        raise bad_request("The list name can't be empty.", "invalidRequest")
    item = Item(_new_id(mb, "todoList", 30), {
        "displayName": display_name.strip(), "isOwner": is_owner, "isShared": is_shared, "wellknownListName": wellknown,
    }, LISTS)
    list_coll(mb).put(item)
    return item


def resolve_list(mb: Mailbox, ref: str, *, by_name: bool = False) -> Item:
    """A list by id (or, for control routes, by display name, case-insensitive); 404 otherwise."""
    ref = unquote(ref)
    coll = list_coll(mb)
    if ref in coll.items:
        return coll.items[ref]
    if by_name:
        for item in coll:
            if item.data["displayName"].lower() == ref.lower():
                return item
    raise not_found()


def list_json(item: Item, select: tuple[str, ...] | None = None) -> dict[str, Any]:
    """todoTaskList JSON: etag, displayName, isOwner, isShared, wellknownListName, id."""
    return render(item, None, select, False, with_change_key=False)


# tasks ------------------------------------------------------------------------------------


def _check_task(body: dict[str, Any], *, create: bool) -> None:
    for k, v in body.items():
        if k.startswith("@odata") or k in TASK_WRITABLE or k in TASK_READ_ONLY or (create and k in TASK_CREATE_ONLY):
            continue
        raise bad_request(f"The property '{k}' does not exist on type 'microsoft.graph.todoTask'. Make sure to only use property names that are defined by the type or mark the type as open type.", "RequestBodyRead")
    if "status" in body and body["status"] not in STATUSES:
        raise bad_request(f"The value '{body['status']}' is not valid for property 'status'.", "RequestBodyRead")
    if "importance" in body and body["importance"] not in IMPORTANCES:
        raise bad_request(f"The value '{body['importance']}' is not valid for property 'importance'.", "RequestBodyRead")
    if "categories" in body and not (isinstance(body["categories"], list) and all(isinstance(c, str) for c in body["categories"])):
        raise bad_request("The property 'categories' must be a collection of strings.", "RequestBodyRead")
    if "title" in body and not isinstance(body["title"], str):
        raise bad_request("The property 'title' must be a string.", "RequestBodyRead")


def _body(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise bad_request("The property 'body' must be an itemBody.", "RequestBodyRead")
    ct = str(value.get("contentType") or "text")
    return {"content": str(value.get("content") or ""), "contentType": ct.lower() if ct.lower() in ("text", "html") else "text"}


def _link(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise bad_request("A linkedResource must be an object.", "RequestBodyRead")
    out: dict[str, Any] = {"id": str(value.get("id") or uuid.uuid4())}
    for k in LINK_FIELDS:
        if k in value:
            out[k] = value[k]
    return out


def _apply(item: Item, values: dict[str, Any], now: datetime, *, strict: bool) -> None:
    data = item.data
    for k, v in values.items():
        if k.startswith("@odata") or k == "id" or k in TASK_CREATE_ONLY or (strict and k in TASK_READ_ONLY):
            continue
        if k == "body":
            data["body"] = _body(v)
            data["bodyLastModifiedDateTime"] = ts(now)
        elif k in DATE_PROPS:
            norm = normalise_dtz(v, day=k in DAY_PROPS)
            if norm is None:
                data.pop(k, None)
            else:
                data[k] = norm
        elif k == "categories":
            data[k] = list(v or [])
        else:
            data[k] = v
    if "status" in values:
        if data["status"] == "completed" and "completedDateTime" not in values:
            data.setdefault("completedDateTime", normalise_dtz({"dateTime": now.strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"}, day=True))
        elif data["status"] != "completed":
            data.pop("completedDateTime", None)


def insert_task(mb: Mailbox, list_id: str, body: dict[str, Any], *, strict: bool = True, notify: bool = True) -> Item:
    """Store a new task in `list_id`, with To Do's defaults and any inline linkedResources."""
    if strict:
        _check_task(body, create=True)
    now = utcnow()
    data: dict[str, Any] = {
        "importance": "normal", "isReminderOn": False, "status": "notStarted", "title": "",
        "createdDateTime": ts(now), "lastModifiedDateTime": ts(now), "hasAttachments": False, "categories": [],
        "body": {"content": "", "contentType": "text"}, "bodyLastModifiedDateTime": ts(now),
    }
    item = Item(_new_id(mb, "todoTask", 60), data, "")
    _apply(item, body, now, strict=strict)  # seeds and control routes may also set the read-only dates
    item.hidden["linkedResources"] = [_link(r) for r in body.get("linkedResources") or []]
    task_coll(mb, list_id).put(item)
    mb.register(item)
    if notify:
        mb.notify("todoTasks", list_id, item, "created")
    return item


def find_task(mb: Mailbox, list_id: str, task_id: str) -> Item:
    """A task of one list by id; 404 otherwise."""
    item = task_coll(mb, list_id).items.get(unquote(task_id))
    if item is None:
        raise not_found()
    return item


def update_task(mb: Mailbox, list_id: str, item: Item, patch: dict[str, Any], *, strict: bool = True) -> Item:
    """Apply a PATCH; a new lastModifiedDateTime and etag, and a delta change."""
    if strict:
        _check_task(patch, create=False)
    now = utcnow()
    _apply(item, patch, now, strict=strict)
    item.data["lastModifiedDateTime"] = ts(now)
    task_coll(mb, list_id).put(item)
    mb.notify("todoTasks", list_id, item, "updated")
    return item


def delete_task(mb: Mailbox, list_id: str, item: Item) -> None:
    """Remove a task; later delta rounds report it as @removed."""
    task_coll(mb, list_id).remove(item.key)
    mb.forget(item)
    mb.notify("todoTasks", list_id, item, "deleted")


def task_json(item: Item, select: tuple[str, ...] | None, *, expand_links: bool = False) -> dict[str, Any]:
    """todoTask JSON; `linkedResources` only when expanded."""
    out = render(item, None, select, False, with_change_key=False)
    if expand_links:
        out["linkedResources"] = list(item.hidden.get("linkedResources", []))
    return out


def _expand(request: Request) -> bool:
    raw = (request.query.get("$expand") or "").strip()
    if not raw:
        return False
    parts = {p.strip() for p in raw.split(",") if p.strip()}
    unknown = parts - {"linkedResources"}
    if unknown:
        name = sorted(unknown)[0].split("(")[0]
        raise bad_request(f"Parsing OData Select and Expand failed: Could not find a property named '{name}' on type 'microsoft.graph.todoTask'.", "BadRequest")
    return True


# delta ------------------------------------------------------------------------------------


class TaskDelta(CollectionDelta):
    """todo/lists/{id}/tasks/delta: no @odata.type and no changeKey (graph-samples/todotask-delta-response.json)."""

    context = "$metadata#Collection(todoTask)"

    def item_json(self, mb: Mailbox, query: DeltaQuery, item: Item, request: Request) -> dict[str, Any]:
        return render(item, None, query.select, False, with_change_key=False)

    def removed_json(self, tomb: Any, request: Request) -> dict[str, Any]:
        return {"id": tomb.key, "@removed": {"reason": "deleted"}}


class ListDelta(TaskDelta):
    """todo/lists/delta."""

    context = "$metadata#Collection(todoTaskList)"


def register(router: Router, control: Router, state: EmulatorState) -> None:
    """Add the To Do routes and the To Do control routes."""
    tasks_delta, lists_delta = TaskDelta(), ListDelta()

    def mb_of(request: Request) -> Mailbox:
        mb = state.mailbox(request)
        init_todo(mb)
        return mb

    def select_option(request: Request) -> tuple[tuple[str, str], ...]:
        return (("$select", request.query["$select"]),) if request.query.get("$select") else ()

    # lists ----------------------------------------------------------------------------------
    async def lists_delta_route(request: Request) -> Response:
        mb = mb_of(request)
        reject_options(request, {"$select"}, "todoTaskList")
        return state.sync.serve(request, mb, lists_delta, lambda: DeltaQuery(
            mb.id, "todoLists", LISTS, f"/users/{mb.id}/todo/lists/delta", select_option(request), request.prefer.maxpagesize))

    async def list_lists(request: Request) -> Response:
        mb = mb_of(request)
        select = select_fields(request)
        return paged(request, [list_json(i, select) for i in list_coll(mb)], f"$metadata#users('{mb.id}')/todo/lists")

    async def get_list(request: Request) -> Response:
        mb = mb_of(request)
        item = resolve_list(mb, request.params["list"])
        ctx = f"{request.graph_base}/$metadata#users('{mb.id}')/todo/lists/$entity"
        return json_response({"@odata.context": ctx, **list_json(item, select_fields(request))})

    async def create_list_route(request: Request) -> Response:
        mb = mb_of(request)
        body = request.json()
        name = body.get("displayName") if isinstance(body, dict) else None
        if not isinstance(name, str):
            raise bad_request("The list name can't be empty.", "invalidRequest")
        item = create_list(mb, name)
        ctx = f"{request.graph_base}/$metadata#users('{mb.id}')/todo/lists/$entity"
        return json_response({"@odata.context": ctx, **list_json(item)}, 201)

    async def patch_list(request: Request) -> Response:
        mb = mb_of(request)
        item = resolve_list(mb, request.params["list"])
        body = request.json()
        name = body.get("displayName") if isinstance(body, dict) else None
        if name is not None:
            if item.data["wellknownListName"] != "none":
                raise bad_request("Well-known lists cannot be renamed.", "invalidRequest")
            if not isinstance(name, str) or not name.strip():
                raise bad_request("The list name can't be empty.", "invalidRequest")
            item.data["displayName"] = name.strip()
            list_coll(mb).put(item)
        ctx = f"{request.graph_base}/$metadata#users('{mb.id}')/todo/lists/$entity"
        return json_response({"@odata.context": ctx, **list_json(item)})

    async def delete_list(request: Request) -> Response:
        mb = mb_of(request)
        item = resolve_list(mb, request.params["list"])
        if item.data["wellknownListName"] != "none":
            raise bad_request("Well-known lists cannot be deleted.", "invalidRequest")
        tasks = task_coll(mb, item.key)
        for key in list(tasks.items):
            task = tasks.remove(key)
            if task is not None:
                mb.forget(task)
                mb.notify("todoTasks", item.key, task, "deleted")
        list_coll(mb).remove(item.key)
        return empty(204)

    # tasks ----------------------------------------------------------------------------------
    async def tasks_delta_route(request: Request) -> Response:
        mb = mb_of(request)
        lst = resolve_list(mb, request.params["list"])
        # The doc's $filter/$orderby on receivedDateTime is a copy-paste from messages (graph-v1.md §2.2).
        reject_options(request, {"$select"}, "todoTask")
        return state.sync.serve(request, mb, tasks_delta, lambda: DeltaQuery(
            mb.id, "todoTasks", "todoTasks:" + lst.key, f"/users/{mb.id}/todo/lists/{lst.key}/tasks/delta",
            select_option(request), request.prefer.maxpagesize))

    async def list_tasks(request: Request) -> Response:
        mb = mb_of(request)
        lst = resolve_list(mb, request.params["list"])
        for key in request.query:
            if key in ("$search", "$orderby"):
                raise bad_request(f"The emulator does not support the query parameter '{key}' on tasks.", "invalidRequest")
        expand = _expand(request)
        select = select_fields(request)
        items = list(task_coll(mb, lst.key))
        flt = request.query.get("$filter")
        if flt:
            m = _FILTER.match(flt)
            if m is None:
                raise bad_request("The emulator supports only $filter=status eq|ne '...' on tasks.", "invalidRequest")
            want = m.group(2)
            items = [i for i in items if (i.data["status"] == want) == (m.group(1).lower() == "eq")]
        values = [task_json(i, select, expand_links=expand) for i in items]
        return paged(request, values, f"$metadata#users('{mb.id}')/todo/lists('{lst.key}')/tasks")

    async def get_task(request: Request) -> Response:
        mb = mb_of(request)
        lst = resolve_list(mb, request.params["list"])
        item = find_task(mb, lst.key, request.params["task"])
        ctx = f"{request.graph_base}/$metadata#users('{mb.id}')/todo/lists('{lst.key}')/tasks/$entity"
        return json_response({"@odata.context": ctx, **task_json(item, select_fields(request), expand_links=_expand(request))})

    async def create_task(request: Request) -> Response:
        mb = mb_of(request)
        lst = resolve_list(mb, request.params["list"])
        body = request.json()
        if not isinstance(body, dict):
            raise bad_request("Expected a JSON object.", "BadRequest")
        item = insert_task(mb, lst.key, body)
        ctx = f"{request.graph_base}/$metadata#users('{mb.id}')/todo/lists('{lst.key}')/tasks/$entity"
        # The create response carries the linked resources created inline (todotask-create-response.json).
        return json_response({"@odata.context": ctx, **task_json(item, None, expand_links="linkedResources" in body)}, 201)

    async def patch_task(request: Request) -> Response:
        mb = mb_of(request)
        lst = resolve_list(mb, request.params["list"])
        item = find_task(mb, lst.key, request.params["task"])
        body = request.json()
        if not isinstance(body, dict):
            raise bad_request("Expected a JSON object.", "BadRequest")
        update_task(mb, lst.key, item, body)
        ctx = f"{request.graph_base}/$metadata#users('{mb.id}')/todo/lists('{lst.key}')/tasks/$entity"
        return json_response({"@odata.context": ctx, **task_json(item, None)})

    async def delete_task_route(request: Request) -> Response:
        mb = mb_of(request)
        lst = resolve_list(mb, request.params["list"])
        delete_task(mb, lst.key, find_task(mb, lst.key, request.params["task"]))
        return empty(204)

    # linked resources -----------------------------------------------------------------------
    def task_of(request: Request) -> tuple[Mailbox, str, Item]:
        mb = mb_of(request)
        lst = resolve_list(mb, request.params["list"])
        return mb, lst.key, find_task(mb, lst.key, request.params["task"])

    def link_of(task: Item, link_id: str) -> dict[str, Any]:
        for link in task.hidden.get("linkedResources", []):
            if link["id"] == unquote(link_id):
                return link  # type: ignore[no-any-return]
        raise not_found()

    async def list_links(request: Request) -> Response:
        _, _, task = task_of(request)
        return paged(request, list(task.hidden.get("linkedResources", [])), "$metadata#Collection(linkedResource)")

    async def get_link(request: Request) -> Response:
        _, _, task = task_of(request)
        return json_response({"@odata.context": f"{request.graph_base}/$metadata#linkedResource/$entity", **link_of(task, request.params["link"])})

    async def create_link(request: Request) -> Response:
        mb, list_id, task = task_of(request)
        body = request.json()
        if not isinstance(body, dict):
            raise bad_request("Expected a JSON object.", "BadRequest")
        unknown = [k for k in body if not k.startswith("@odata") and k not in LINK_FIELDS and k != "id"]
        if unknown:
            raise bad_request(f"The property '{unknown[0]}' does not exist on type 'microsoft.graph.linkedResource'.", "RequestBodyRead")
        link = _link(body)
        task.hidden.setdefault("linkedResources", []).append(link)
        update_task(mb, list_id, task, {}, strict=False)
        return json_response({"@odata.context": f"{request.graph_base}/$metadata#linkedResource/$entity", **link}, 201)

    async def delete_link(request: Request) -> Response:
        mb, list_id, task = task_of(request)
        link = link_of(task, request.params["link"])
        task.hidden["linkedResources"].remove(link)
        update_task(mb, list_id, task, {}, strict=False)
        return empty(204)

    lists, one = "/users/{user}/todo/lists", "/users/{user}/todo/lists/{list}"
    R, W = dict(app=APP_READ, delegated=D_READ), dict(app=APP_WRITE, delegated=D_WRITE)
    router.add("GET", lists + "/delta", lists_delta_route, **R)
    router.add("GET", lists, list_lists, **R)
    router.add("POST", lists, create_list_route, **W)
    router.add("GET", one, get_list, **R)
    router.add("PATCH", one, patch_list, **W)
    router.add("DELETE", one, delete_list, **W)
    router.add("GET", one + "/tasks/delta", tasks_delta_route, **R)
    router.add("GET", one + "/tasks", list_tasks, **R)
    router.add("POST", one + "/tasks", create_task, **W)
    router.add("GET", one + "/tasks/{task}", get_task, **R)
    router.add("PATCH", one + "/tasks/{task}", patch_task, **W)
    router.add("DELETE", one + "/tasks/{task}", delete_task_route, **W)
    router.add("GET", one + "/tasks/{task}/linkedResources", list_links, **R)
    router.add("POST", one + "/tasks/{task}/linkedResources", create_link, **W)
    router.add("GET", one + "/tasks/{task}/linkedResources/{link}", get_link, **R)
    router.add("DELETE", one + "/tasks/{task}/linkedResources/{link}", delete_link, **W)

    register_control(control, state)


# control ----------------------------------------------------------------------------------


def register_control(control: Router, state: EmulatorState) -> None:
    """`/_emulator/users/{upn}/todo/lists...`: change To Do content as the user would."""

    def target(request: Request) -> tuple[Mailbox, str]:
        mb = state.named_mailbox(request)
        init_todo(mb)
        return mb, resolve_list(mb, request.params["list"], by_name=True).key if "list" in request.params else ""

    async def add_list(request: Request) -> Response:
        mb, _ = target(request)
        body = request.json()
        item = create_list(mb, str(body.get("displayName") or ""), wellknown=str(body.get("wellknownListName") or "none"),
                           is_owner=bool(body.get("isOwner", True)), is_shared=bool(body.get("isShared", False)))
        return json_response({"id": item.key}, 201)

    async def add(request: Request) -> Response:
        mb, list_id = target(request)
        item = insert_task(mb, list_id, request.json(), strict=False)
        return json_response({"id": item.key, "listId": list_id}, 201)

    async def patch(request: Request) -> Response:
        mb, list_id = target(request)
        item = update_task(mb, list_id, find_task(mb, list_id, request.params["task"]), request.json(), strict=False)
        return json_response({"id": item.key, "listId": list_id})

    async def delete(request: Request) -> Response:
        mb, list_id = target(request)
        delete_task(mb, list_id, find_task(mb, list_id, request.params["task"]))
        return empty(204)

    u = "/_emulator/users/{user}/todo/lists"
    control.add("POST", u, add_list)
    control.add("POST", u + "/{list}/tasks", add)
    control.add("PATCH", u + "/{list}/tasks/{task}", patch)
    control.add("DELETE", u + "/{list}/tasks/{task}", delete)


def seed(state: EmulatorState, mb: Mailbox, spec: Any) -> None:
    """Load a user's `todo.lists`; the defaultList entry fills the existing "Tasks" list."""
    init_todo(mb)
    for lspec in spec.todo.lists:
        existing = next((i for i in list_coll(mb) if lspec.wellknownListName != "none" and i.data["wellknownListName"] == lspec.wellknownListName), None)
        if existing is not None:
            existing.data.update(displayName=lspec.displayName, isOwner=lspec.isOwner, isShared=lspec.isShared)
            list_coll(mb).put(existing)
            lst = existing
        else:
            lst = create_list(mb, lspec.displayName, wellknown=lspec.wellknownListName, is_owner=lspec.isOwner, is_shared=lspec.isShared)
        for task in lspec.tasks:
            insert_task(mb, lst.key, dict(task), strict=False, notify=False)
