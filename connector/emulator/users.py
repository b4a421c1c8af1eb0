"""`/users`: list (with $filter on mail and userPrincipalName, $select, $top paging) and get."""

from __future__ import annotations

import re
from typing import Any

from .http import GraphError, Request, Response, Router, bad_request, json_response
from .state import EmulatorState
from .store import Mailbox

USER_READ = ("User.Read.All", "User.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All", "User.ReadBasic.All")
_DEFAULT = ("businessPhones", "displayName", "givenName", "jobTitle", "mail", "mobilePhone", "officeLocation", "preferredLanguage", "surname", "userPrincipalName", "id")
_FILTER = re.compile(r"^\s*(mail|userPrincipalName)\s+eq\s+'([^']*)'\s*$", re.IGNORECASE)
_STARTS = re.compile(r"^\s*startswith\(\s*(mail|userPrincipalName|displayName)\s*,\s*'([^']*)'\s*\)\s*$", re.IGNORECASE)


def user_json(mb: Mailbox) -> dict[str, Any]:
    """The user's public JSON (emulator-private keys removed)."""
    return {k: v for k, v in mb.user.items() if not k.startswith("_")}


def _project(mb: Mailbox, select: tuple[str, ...] | None) -> dict[str, Any]:
    data = user_json(mb)
    fields = select or _DEFAULT
    out: dict[str, Any] = {}
    for f in fields:
        match = next((k for k in data if k.lower() == f.lower()), None)
        out[match or f] = data.get(match) if match else None
    out["id"] = mb.id
    return out


def register(router: Router, control: Router, state: EmulatorState) -> None:
    """Add the /users routes."""

    async def list_users(request: Request) -> Response:
        users = sorted(state.tenant.mailboxes.values(), key=lambda m: m.upn.lower())
        flt = request.query.get("$filter")
        if flt:
            m, s = _FILTER.match(flt), _STARTS.match(flt)
            if m:
                prop, value = m.group(1).lower(), m.group(2).lower()
                if prop == "mail":
                    users = [u for u in users if (u.user.get("mail") or "").lower() == value]
                else:
                    users = [u for u in users if u.upn.lower() == value]
            elif s:
                prop, value = s.group(1), s.group(2).lower()
                key = {"mail": "mail", "userprincipalname": "userPrincipalName", "displayname": "displayName"}[prop.lower()]
                users = [u for u in users if (u.user.get(key) or "").lower().startswith(value)]
            else:
                raise bad_request(f"Unsupported or invalid query filter clause specified for property '{flt.split()[0]}' of resource 'User'.", "Request_UnsupportedQuery")
        select = tuple(s.strip() for s in request.query.get("$select", "").split(",") if s.strip()) or None
        raw_top = request.query.get("$top") or "100"
        if not raw_top.isdigit():
            raise bad_request(f"Invalid page size specified: '{raw_top}'. Must be between 1 and 999 inclusive.", "Request_UnsupportedQuery")
        top = int(raw_top)
        if not 1 <= top <= 999:
            raise bad_request("Invalid page size specified: '%d'. Must be between 1 and 999 inclusive." % top, "Request_UnsupportedQuery")
        offset = 0
        if "$skiptoken" in request.query:
            _, offset = state.sync.parse(request.query["$skiptoken"], "$skiptoken")
        page = users[offset : offset + top]
        body: dict[str, Any] = {"@odata.context": f"{request.graph_base}/$metadata#users", "value": [_project(u, select) for u in page]}
        if offset + top < len(users):
            qs = "&".join(f"{k}={v}" for k, v in request.query.items() if k not in ("$skiptoken",))
            body["@odata.nextLink"] = f"{request.graph_base}/users?{qs + '&' if qs else ''}$skiptoken={state.sync.token(0, offset + top)}"
        return json_response(body)

    async def get_user(request: Request) -> Response:
        mb = state.tenant.find(request.params["user"])
        if mb is None:
            raise GraphError(404, "Request_ResourceNotFound", f"Resource '{request.params['user']}' does not exist or one of its queried reference-property objects are not present.")
        select = tuple(s.strip() for s in request.query.get("$select", "").split(",") if s.strip()) or None
        body = {"@odata.context": f"{request.graph_base}/$metadata#users/$entity", **_project(mb, select)}
        return json_response(body)

    router.add("GET", "/users", list_users, app=USER_READ, delegated=("User.Read", "User.ReadBasic.All", "User.Read.All"))
    router.add("GET", "/users/{user}", get_user, app=USER_READ, delegated=("User.Read", "User.ReadBasic.All", "User.Read.All"))


