"""What to sync in a mailbox: its delta containers, and the first request of each, built with msgraph-sdk.

One container is one delta stream with its own checkpoint: a mail folder, the calendar view,
a contact folder, or a To Do list. Discovery lists them fresh on every run, so folders and lists
that were created, renamed or deleted are followed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

from kiota_abstractions.base_request_configuration import RequestConfiguration
from kiota_abstractions.request_information import RequestInformation

from ..graph.client import CallStats, GraphClient
from ..settings import Settings

# Every message property the shipped mappings and tracking read. internetMessageHeaders is only
# returned when $select-ed (graph-v1.md §2.3), so an explicit list is required.
MESSAGE_SELECT = [
    "id", "changeKey", "createdDateTime", "lastModifiedDateTime", "receivedDateTime", "sentDateTime", "subject", "body",
    "bodyPreview", "importance", "parentFolderId", "conversationId", "conversationIndex", "internetMessageId",
    "internetMessageHeaders", "isRead", "isDraft", "hasAttachments", "categories", "flag", "from", "sender",
    "toRecipients", "ccRecipients", "bccRecipients", "replyTo", "inferenceClassification", "webLink",
]

KIND_OF = {"mail": "messages", "calendar": "events", "contacts": "contacts", "tasks": "todoTasks"}
SOURCE_OF = {"mail": "message", "calendar": "event", "contacts": "contact", "tasks": "todoTask"}


@dataclass(frozen=True)
class Container:
    """One delta stream of one mailbox."""

    resource: str  # mail | calendar | contacts | tasks
    container: str  # checkpoint key: folder id, "calendar|start|end", contact folder id, list id
    label: str  # for people: "Inbox", "Calendar", "Contacts/Suppliers"...
    folder: str | None  # well-known name given to mappings (inbox, sentitems) when known
    first_request: Callable[[], RequestInformation]
    window: tuple[datetime, datetime] | None = None

    @property
    def kind(self) -> str:
        """The checkpoint's resource name."""
        return KIND_OF[self.resource]

    @property
    def source(self) -> str:
        """The mapping source kind."""
        return SOURCE_OF[self.resource]


def request_config(prefer: list[str], **query: Any) -> RequestConfiguration[Any]:
    """An SDK request configuration: Prefer values, and query options built by the builder's `_params` class."""
    cfg: RequestConfiguration[Any] = RequestConfiguration()
    for p in prefer:
        cfg.headers.add("Prefer", p)
    if query:
        cfg.query_parameters = query.pop("_params")(**query)
    return cfg


def calendar_window(settings: Settings, today: date | None = None) -> tuple[datetime, datetime]:
    """The sliding window: it moves forward a week at a time, so tokens survive most runs."""
    today = today or datetime.now(timezone.utc).date()
    start = today - timedelta(days=settings.calendar_past_days)
    start -= timedelta(days=start.weekday())  # align to Monday
    end = start + timedelta(days=settings.calendar_past_days + settings.calendar_future_days + 7)
    return datetime.combine(start, time(0), timezone.utc), datetime.combine(end, time(0), timezone.utc)


class Discovery:
    """Lists the containers of a mailbox for the requested resources."""

    def __init__(self, client: GraphClient, settings: Settings, prefer: list[str]) -> None:
        self.client = client
        self.settings = settings
        self.prefer = prefer
        self.pinned: Callable[[str], set[str]] | None = None  # address -> folder ids to sync whatever their path

    async def _all_pages(self, request: RequestInformation, limiter: Any, stats: CallStats) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while True:
            page = (await self.client.get(request, limiter=limiter, stats=stats)).data
            out.extend(page.get("value") or [])
            nxt = page.get("@odata.nextLink")
            if not nxt:
                return out
            request = self.client.url_request(nxt, prefer=self.prefer)

    async def mail(self, user: str, limiter: Any, stats: CallStats, address: str) -> list[Container]:
        """Inbox, Sent Items and configured folders (with their subfolders), or every folder."""
        from msgraph.generated.users.item.mail_folders.delta.delta_request_builder import DeltaRequestBuilder as FolderDelta

        u = self.client.sdk.users.by_user_id(user)
        folders = await self._all_pages(u.mail_folders.delta.to_get_request_information(
            request_config(self.prefer, _params=FolderDelta.DeltaRequestBuilderGetQueryParameters, select=["displayName", "parentFolderId"])), limiter, stats)
        by_id = {f["id"]: f for f in folders if "@removed" not in f}
        well_known: dict[str, str] = {}
        for name in ("inbox", "sentitems"):
            got = (await self.client.get(u.mail_folders.by_mail_folder_id(name).to_get_request_information(request_config([])), limiter=limiter, stats=stats)).data
            well_known[got["id"]] = name
        children: dict[str, list[str]] = {}
        for f in by_id.values():
            children.setdefault(f.get("parentFolderId", ""), []).append(f["id"])

        def path_of(fid: str) -> str:
            parts = []
            while fid in by_id:
                parts.append(by_id[fid]["displayName"])
                fid = by_id[fid].get("parentFolderId", "")
            return "/".join(reversed(parts))

        if self.settings.mail_folders == "all":
            chosen = set(by_id)
        else:
            chosen = set(well_known)
            wanted = {p.strip("/").lower() for p in self.settings.mailbox(address).folders}
            inbox_id = next(k for k, v in well_known.items() if v == "inbox")
            for fid in by_id:
                p = path_of(fid).lower()
                rel = p.replace(path_of(inbox_id).lower(), "inbox", 1) if p.startswith(path_of(inbox_id).lower()) else p
                if any(rel == w or rel.startswith(w + "/") or p == w or p.startswith(w + "/") for w in wanted):
                    chosen.add(fid)
            if self.pinned is not None:
                chosen |= {fid for fid in self.pinned(address) if fid in by_id}
        out = []
        for fid in sorted(chosen, key=path_of):
            out.append(Container("mail", fid, path_of(fid) or fid, well_known.get(fid), self._message_delta(user, fid)))
        return out

    def _message_delta(self, user: str, folder_id: str) -> Callable[[], RequestInformation]:
        from msgraph.generated.users.item.mail_folders.item.messages.delta.delta_request_builder import DeltaRequestBuilder

        def build() -> RequestInformation:
            b = self.client.sdk.users.by_user_id(user).mail_folders.by_mail_folder_id(folder_id).messages.delta
            return b.to_get_request_information(request_config(self.prefer, _params=DeltaRequestBuilder.DeltaRequestBuilderGetQueryParameters, select=MESSAGE_SELECT))

        return build

    def calendar(self, user: str) -> list[Container]:
        """The calendar view in the sliding window."""
        from msgraph.generated.users.item.calendar_view.delta.delta_request_builder import DeltaRequestBuilder

        start, end = calendar_window(self.settings)
        iso = "%Y-%m-%dT%H:%M:%SZ"

        def build() -> RequestInformation:
            b = self.client.sdk.users.by_user_id(user).calendar_view.delta
            return b.to_get_request_information(request_config(self.prefer, _params=DeltaRequestBuilder.DeltaRequestBuilderGetQueryParameters,
                                                     start_date_time=start.strftime(iso), end_date_time=end.strftime(iso)))

        key = f"calendar|{start:%Y-%m-%d}|{end:%Y-%m-%d}"
        return [Container("calendar", key, "Calendar", None, build, (start, end))]

    async def contacts(self, user: str, limiter: Any, stats: CallStats) -> list[Container]:
        """The default contact folder and every other contact folder."""
        u = self.client.sdk.users.by_user_id(user)
        folders = await self._all_pages(u.contact_folders.to_get_request_information(request_config(self.prefer)), limiter, stats)
        out = [Container("contacts", "contacts", "Contacts", None, lambda: u.contacts.delta.to_get_request_information(request_config(self.prefer)))]
        for f in folders:
            fid = f["id"]
            out.append(Container("contacts", fid, f"Contacts/{f.get('displayName', fid)}", None,
                                 lambda fid=fid: u.contact_folders.by_contact_folder_id(fid).contacts.delta.to_get_request_information(request_config(self.prefer))))
        return out

    async def tasks(self, user: str, limiter: Any, stats: CallStats) -> list[Container]:
        """Every To Do list (lists delta), then tasks delta per list."""
        u = self.client.sdk.users.by_user_id(user)
        lists = await self._all_pages(u.todo.lists.delta.to_get_request_information(request_config(self.prefer)), limiter, stats)
        out = []
        for lst in lists:
            if "@removed" in lst:
                continue
            lid = lst["id"]
            out.append(Container("tasks", lid, f"To Do/{lst.get('displayName', lid)}", None,
                                 lambda lid=lid: u.todo.lists.by_todo_task_list_id(lid).tasks.delta.to_get_request_information(request_config(self.prefer))))
        return out
