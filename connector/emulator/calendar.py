"""Calendar: events CRUD, recurring series, calendarView, instances and calendarView/delta.

Storage. The primary calendar holds single instances and series masters as `Item`s (collection
"events"). A master keeps its exceptions (per original start: overriding properties and their own
sequence) and its cancelled occurrences in `Item.hidden`; occurrences are never stored. Their ids are
deterministic: the master's id plus the original start (`occurrence_id`), so the same occurrence has
the same id in every round, and an occurrence keeps its id when it becomes an exception. Occurrences
and exceptions share the master's iCalUId and carry `seriesMasterId`, `originalStart`,
`originalStartTimeZone` and `originalEndTimeZone`.

calendarView/delta (graph-v1.md §2.4). A round is tied to the window of its first request (kept in
the token; links never repeat it). The snapshot holds every single instance, occurrence and exception
overlapping the window, **and the seriesMaster of every series with at least one instance in it**.
Plain `calendarView` returns instances only; the reference does not settle whether delta sends
masters, and a sync engine needs them (recurrence, series properties), so the emulator does. Each series
keeps a history of its shape (times, recurrence, exceptions, cancellations) by sequence, so a later
round can tell which instances were in the window at the deltaLink and are not any more:

* created/updated singles and masters come back whole; a master's change re-emits all its
  occurrences (they inherit its properties); an exception's change re-emits only that exception;
* deleted events, cancelled occurrences, occurrences dropped by a shortened recurrence, and
  instances moved out of the window come back as `@removed {"reason": "deleted"}`;
* like Graph, events outside the window that changed are reported as `@removed` too.

Changing a series' start, end or recurrence drops its exceptions and cancellations (Outlook's rule
when a series is re-timed; not confirmed for Graph).
`start`/`end` are stored in the zone they were written in and rendered in `Prefer: outlook.timezone`
(default UTC); all-day events keep their wall-clock dates. Windows and IANA zone names are accepted.

Scenario seeds (`users[].events`): Graph event JSON, plus two conveniences: `cancelledOccurrences`
(a list of original starts) and `exceptions` (a list of `{"originalStart": ..., <overriding
properties>}`). An original start is a local date `YYYY-MM-DD` in the series' zone, a full
date-time, or relative. Relative values keep demos current: `start.dateTime`/`end.dateTime` may be
`+2d09:00` / `-1dT14:30` / `+0d` (days from today in the event's zone, optional time), and
`recurrence.range.startDate`/`endDate` may be `+Nd`.
"""

from __future__ import annotations

import base64
import re
import struct
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from .delta import DeltaQuery, reject_options, select_fields
from .http import GraphError, Request, Response, Router, bad_request, empty, iso, json_response, not_found, utcnow
from .mail import paged, html_to_text, preview
from .recurrence import RecurrenceError, fmt_local, normalise, originals, overlaps, parse_local, to_utc, zone
from .render import render
from .state import EmulatorState
from .store import Collection, Item, Mailbox, b64url, change_key, stable_bytes

CAL_READ = ("Calendars.Read", "Calendars.ReadBasic", "Calendars.ReadWrite")
CAL_WRITE = ("Calendars.ReadWrite",)
D_READ = ("Calendars.Read", "Calendars.ReadBasic", "Calendars.ReadWrite")
D_WRITE = ("Calendars.ReadWrite",)
EVENT_TYPE = "#microsoft.graph.event"
SELECT_ONLY = frozenset({"singleValueExtendedProperties", "multiValueExtendedProperties"})
BASIC_HIDDEN = ("body", "bodyPreview")  # Calendars.ReadBasic leaves these out
WRITABLE = frozenset({
    "subject", "body", "start", "end", "location", "locations", "attendees", "categories", "importance",
    "sensitivity", "showAs", "isAllDay", "isReminderOn", "reminderMinutesBeforeStart", "recurrence",
    "responseRequested", "isOnlineMeeting", "onlineMeetingProvider", "allowNewTimeProposals", "hideAttendees",
    "organizer", "transactionId", "singleValueExtendedProperties", "multiValueExtendedProperties",
})
READ_ONLY = frozenset({
    "id", "createdDateTime", "lastModifiedDateTime", "changeKey", "type", "seriesMasterId", "iCalUId", "webLink",
    "isOrganizer", "responseStatus", "originalStart", "originalStartTimeZone", "originalEndTimeZone",
    "bodyPreview", "hasAttachments", "isCancelled", "isDraft", "onlineMeeting", "onlineMeetingUrl",
})
COMPUTED = frozenset({"id", "type", "seriesMasterId", "changeKey", "originalStart"})
TIMING = frozenset({"start", "end", "recurrence", "isAllDay"})
WINDOW_MESSAGE = "This request requires a time window specified by the query string parameters StartDateTime and EndDateTime."
NO_TIME = "0001-01-01T00:00:00Z"
ICAL_PREFIX = "040000008200E00074C5B7101A82E008"
_RELATIVE = re.compile(r"^([+-]\d+)d(?:T?(\d{1,2}):(\d{2}))?$")
_CACHE_LIMIT = 2048


# model ------------------------------------------------------------------------------------


@dataclass(slots=True)
class Shape:
    """What decides where an event's instances fall: enough to expand it at any past sequence."""

    start: datetime  # aware UTC
    end: datetime
    recurrence: dict[str, Any] | None
    base_seq: int  # last change of the event's own properties (occurrences inherit it)
    exceptions: dict[str, tuple[datetime, datetime, int]] = field(default_factory=dict)  # original -> start, end, seq
    cancelled: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Instance:
    """One occurrence or exception of a series."""

    id: str
    original: datetime
    start: datetime
    end: datetime
    exception: bool
    seq: int


@dataclass
class CalendarState:
    """Per-mailbox calendar bookkeeping."""

    calendar_id: str
    counter: int = 0
    transactions: dict[str, str] = field(default_factory=dict)  # transactionId -> event key
    history: dict[str, list[tuple[int, Shape | None]]] = field(default_factory=dict)  # key -> (seq, shape)
    cache: dict[tuple[str, int, datetime, datetime], dict[str, Instance]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class View:
    """How a request wants events rendered."""

    immutable: bool = False
    tz: str = "UTC"
    text_body: bool = False
    basic: bool = False

    @classmethod
    def of(cls, request: Request) -> View:
        """The view a request's Prefer header and token ask for."""
        tz = request.prefer.timezone or "UTC"
        try:
            zone(tz)
        except ValueError:
            tz = "UTC"
        p = request.principal
        granted = (p.roles | p.scopes) if p is not None else frozenset()
        basic = "Calendars.ReadBasic" in granted and not granted & {"Calendars.Read", "Calendars.ReadWrite"}
        return cls(request.prefer.immutable_id, tz, request.prefer.body_content_type == "text", basic)


def _cal(mb: Mailbox) -> CalendarState:
    cal = mb.extra.get("calendar")
    if cal is None:
        cal = mb.extra["calendar"] = CalendarState("AAMkAG" + b64url(stable_bytes(mb.id, "calendar", n=33)) + "AAA=")
    return cal  # type: ignore[no-any-return]


def events_coll(mb: Mailbox) -> Collection:
    """The primary calendar's singles and series masters as a delta container."""
    return mb.collection("events")


def occurrence_id(master_key: str, original: datetime) -> str:
    """The id of a series' instance: the master's id and the original start, reversibly."""
    return f"{master_key[:-1]}ABEI{b64url(struct.pack('>q', int(original.timestamp())))}="


def split_occurrence(event_id: str) -> tuple[str, datetime] | None:
    """(master key, original start) of an occurrence id; None for other ids."""
    if len(event_id) < 20 or not event_id.endswith("=") or event_id[-16:-12] != "ABEI":
        return None
    try:
        (ts,) = struct.unpack(">q", base64.urlsafe_b64decode(event_id[-12:-1] + "="))
        return event_id[:-16] + "=", datetime.fromtimestamp(ts, timezone.utc)
    except (ValueError, struct.error, OverflowError, OSError):
        return None


def _stamp(dt: datetime) -> str:
    """DateTimeOffset with Outlook's seven fractional digits, as in the event samples."""
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


def _web_link(event_id: str) -> str:
    return f"https://outlook.office365.com/owa/?itemid={event_id.replace('=', '%3D')}&exvsurl=1&path=/calendar/item"  # ids are base64url


def _ical_uid(mb: Mailbox, key: str, created: datetime) -> str:
    filetime = int((created - datetime(1601, 1, 1, tzinfo=timezone.utc)).total_seconds() * 10_000_000)
    guid = stable_bytes(mb.id, "ical", key).hex().upper()
    return f"{ICAL_PREFIX}00000000{struct.pack('<Q', filetime).hex().upper()}{'0' * 16}10000000{guid}"


# writes -----------------------------------------------------------------------------------


def _dtz(value: Any, name: str) -> dict[str, str]:
    if not isinstance(value, dict) or not value.get("dateTime"):
        raise bad_request(f"The property '{name}' must be a dateTimeTimeZone with a dateTime.", "ErrorInvalidRequest")
    tz = str(value.get("timeZone") or "UTC")
    try:
        z = zone(tz)
    except ValueError:
        raise GraphError(400, "TimeZoneNotSupportedException", f"A valid TimeZone value must be specified. The following TimeZone value is not supported: '{tz}'.") from None
    try:
        local = parse_local(str(value["dateTime"]))
    except ValueError:
        raise bad_request(f"Cannot convert the literal '{value['dateTime']}' to the expected type 'Edm.DateTime'.", "RequestBodyRead") from None
    if local.tzinfo is not None:
        local = local.astimezone(z).replace(tzinfo=None)
    return {"dateTime": fmt_local(local), "timeZone": tz}


def _attendees(value: Any) -> list[dict[str, Any]]:
    out = []
    for a in value or []:
        status = a.get("status") or {}
        out.append({
            "type": str(a.get("type") or "required").lower(),
            "status": {"response": status.get("response", "none"), "time": status.get("time", NO_TIME)},
            "emailAddress": dict(a.get("emailAddress") or {}),
        })
    return out


def _location(value: Any) -> dict[str, Any]:
    name = (value or {}).get("displayName") or ""
    if not name:
        return {"displayName": "", "locationType": "default", "uniqueIdType": "unknown", "address": {}, "coordinates": {}}
    return {"displayName": name, "locationType": "default", "uniqueId": name, "uniqueIdType": "private", **{k: v for k, v in value.items() if k != "displayName"}}


def _apply(data: dict[str, Any], hidden: dict[str, Any], patch: dict[str, Any], *, strict: bool, allowed: frozenset[str]) -> set[str]:
    """Apply writable properties of `patch` to `data`; returns the names changed."""
    changed: set[str] = set()
    if not isinstance(patch, dict):
        raise bad_request("Expected a JSON object.", "BadRequest")
    for k, v in patch.items():
        if k.startswith("@odata") or k in COMPUTED:
            continue
        if k not in allowed:
            if k in READ_ONLY and strict:
                continue
            if strict:
                raise bad_request(f"The property '{k}' does not exist on type 'microsoft.graph.event'. Make sure to only use property names that are defined by the type or mark the type as open type.", "RequestBodyRead")
        if k == "singleValueExtendedProperties":
            hidden.setdefault("ext", {}).update({p["id"]: p.get("value") for p in v or []})
            continue
        if k in ("start", "end"):
            v = _dtz(v, k)
        elif k == "body":
            v = {"contentType": str((v or {}).get("contentType") or "html").lower(), "content": (v or {}).get("content") or ""}
            data["bodyPreview"] = preview(v)
        elif k == "attendees":
            v = _attendees(v)
        elif k == "location":
            v = _location(v)
            if "locations" not in patch:
                data["locations"] = [{"displayName": v["displayName"], "locationType": "default", "uniqueIdType": "unknown"}] if v["displayName"] else []
        elif k == "importance" or k == "sensitivity" or k == "showAs":
            v = str(v)
        data[k] = v
        changed.add(k)
    return changed


def _finish(mb: Mailbox, data: dict[str, Any]) -> None:
    """Check times and derive what Outlook derives (type, zones, normalised recurrence, organizer flags)."""
    if not data.get("start") or not data.get("end"):
        raise bad_request("An event must have both a start and an end.", "ErrorInvalidRequest")
    start, end = to_utc(data["start"]), to_utc(data["end"])
    if end < start:
        raise GraphError(400, "ErrorCalendarEndDateIsEarlierThanStartDate", "The end date occurs before the start date.")
    data["originalStartTimeZone"] = data["start"]["timeZone"]
    data["originalEndTimeZone"] = data["end"]["timeZone"]
    rec = data.get("recurrence")
    if rec:
        try:
            data["recurrence"] = normalise(rec, parse_local(data["start"]["dateTime"]), data["start"]["timeZone"])
        except RecurrenceError as exc:
            raise bad_request(str(exc), "ErrorInvalidRequest") from None
        data["type"] = "seriesMaster"
    else:
        data["recurrence"] = None
        data["type"] = "singleInstance"
    organizer = ((data.get("organizer") or {}).get("emailAddress") or {}).get("address") or ""
    data["isOrganizer"] = organizer.lower() == mb.address.lower()
    if data["isOrganizer"]:
        data["responseStatus"] = {"response": "organizer", "time": NO_TIME}
    elif (data.get("responseStatus") or {}).get("response") in (None, "organizer"):
        data["responseStatus"] = {"response": "notResponded", "time": NO_TIME}


def _new_key(mb: Mailbox) -> str:
    cal = _cal(mb)
    cal.counter += 1
    return "AAMkAG" + b64url(stable_bytes(mb.id, "event", str(cal.counter), n=42)) + "AAA="


def insert_event(state: EmulatorState, mb: Mailbox, body: dict[str, Any], *, strict: bool = True, notify: bool = True) -> Item:
    """Create an event in the primary calendar with everything Outlook fills in; honours `transactionId`."""
    cal = _cal(mb)
    coll = events_coll(mb)
    tid = body.get("transactionId") if isinstance(body, dict) else None
    if tid and cal.transactions.get(str(tid)) in coll.items:
        return coll.items[cal.transactions[str(tid)]]
    now = utcnow()
    key = _new_key(mb)
    data: dict[str, Any] = {
        "createdDateTime": _stamp(now),
        "lastModifiedDateTime": _stamp(now),
        "categories": [],
        "originalStartTimeZone": None,
        "originalEndTimeZone": None,
        "iCalUId": _ical_uid(mb, key, now),
        "reminderMinutesBeforeStart": 15,
        "isReminderOn": True,
        "hasAttachments": False,
        "hideAttendees": False,
        "subject": "",
        "bodyPreview": "",
        "importance": "normal",
        "sensitivity": "normal",
        "isAllDay": False,
        "isCancelled": False,
        "isDraft": False,
        "isOrganizer": True,
        "responseRequested": True,
        "seriesMasterId": None,
        "showAs": "busy",
        "type": "singleInstance",
        "webLink": _web_link(key),
        "onlineMeetingUrl": None,
        "isOnlineMeeting": False,
        "onlineMeetingProvider": "unknown",
        "onlineMeeting": None,
        "allowNewTimeProposals": True,
        "responseStatus": {"response": "organizer", "time": NO_TIME},
        "body": {"contentType": "html", "content": ""},
        "start": None,
        "end": None,
        "location": _location(None),
        "locations": [],
        "recurrence": None,
        "attendees": [],
        "organizer": {"emailAddress": {"name": mb.user.get("displayName"), "address": mb.address}},
    }
    item = Item(key, data, "events")
    _apply(data, item.hidden, body, strict=strict, allowed=WRITABLE if strict else frozenset(body))
    _finish(mb, data)
    item.hidden.update(exceptions={}, cancelled=set())
    _commit(mb, item, base=True)
    mb.register(item)
    if tid:
        cal.transactions[str(tid)] = key
    if notify:
        mb.notify("events", "calendar", item, "created")
    return item


def _commit(mb: Mailbox, item: Item, *, base: bool) -> None:
    """Record a change: new sequence, shape history, and (for own-property changes) the occurrences' base."""
    events_coll(mb).put(item)
    if base:
        item.hidden["base_seq"] = item.seq
    _cal(mb).history.setdefault(item.key, []).append((item.seq, shape(item)))


def update_event(mb: Mailbox, item: Item, patch: dict[str, Any], *, strict: bool = True) -> Item:
    """PATCH a single instance or a series master; timing changes drop a series' exceptions."""
    data = dict(item.data)
    hidden = dict(item.hidden)
    changed = _apply(data, hidden, patch, strict=strict, allowed=WRITABLE if strict else frozenset(patch))
    _finish(mb, data)
    item.data, item.hidden = data, hidden
    if changed & TIMING:
        item.hidden.update(exceptions={}, cancelled=set())
    data["lastModifiedDateTime"] = _stamp(utcnow())
    _commit(mb, item, base=True)
    mb.notify("events", "calendar", item, "updated")
    return item


def update_occurrence(mb: Mailbox, master: Item, inst: Instance, patch: dict[str, Any], *, strict: bool = True) -> Instance:
    """PATCH one instance of a series: it becomes (or stays) an exception."""
    if "recurrence" in patch:
        raise bad_request("The recurrence of an occurrence or exception can't be changed.", "ErrorInvalidRequest")
    key = iso(inst.original)
    exc = master.hidden["exceptions"].get(key) or {"data": {}}
    overrides = dict(exc["data"])
    scratch: dict[str, Any] = {}
    _apply(overrides, scratch, patch, strict=strict, allowed=(WRITABLE - {"recurrence", "transactionId"}) if strict else frozenset(patch))
    if scratch.get("ext"):
        master.hidden.setdefault("ext", {}).update(scratch["ext"])
    start = to_utc(overrides["start"]) if "start" in overrides else inst.start
    end = to_utc(overrides["end"]) if "end" in overrides else start + (inst.end - inst.start)
    if end < start:
        raise GraphError(400, "ErrorCalendarEndDateIsEarlierThanStartDate", "The end date occurs before the start date.")
    overrides["lastModifiedDateTime"] = _stamp(utcnow())
    exceptions = dict(master.hidden["exceptions"])
    exceptions[key] = {"data": overrides, "seq": mb.seq + 1}  # the sequence _commit is about to take
    master.hidden["exceptions"] = exceptions
    _commit(mb, master, base=False)
    mb.notify("events", "calendar", master, "updated")
    found = instance_at(mb, master, inst.original)
    assert found is not None
    return found


def delete_event(mb: Mailbox, item: Item) -> None:
    """DELETE a single instance or a whole series."""
    coll = events_coll(mb)
    coll.remove(item.key)
    mb.forget(item)
    _cal(mb).history.setdefault(item.key, []).append((coll.tombstones[item.key].seq, None))
    mb.notify("events", "calendar", item, "deleted")


def cancel_occurrence(mb: Mailbox, master: Item, inst: Instance) -> None:
    """DELETE one instance of a series: the occurrence is cancelled (gone from views, ids 404)."""
    key = iso(inst.original)
    master.hidden["exceptions"] = {k: v for k, v in master.hidden["exceptions"].items() if k != key}
    master.hidden["cancelled"] = set(master.hidden["cancelled"]) | {key}
    _commit(mb, master, base=False)
    mb.notify("events", "calendar", master, "updated")


# expansion --------------------------------------------------------------------------------


def shape(item: Item) -> Shape:
    """The item's current shape (cached per sequence)."""
    cached = item.hidden.get("shape")
    if cached is not None and cached[0] == item.seq:
        return cached[1]  # type: ignore[no-any-return]
    start, end = to_utc(item.data["start"]), to_utc(item.data["end"])
    exceptions = {}
    for orig, exc in (item.hidden.get("exceptions") or {}).items():
        o = datetime.fromisoformat(orig.replace("Z", "+00:00"))
        s = to_utc(exc["data"]["start"]) if "start" in exc["data"] else o
        e = to_utc(exc["data"]["end"]) if "end" in exc["data"] else s + (end - start)
        exceptions[orig] = (s, e, exc["seq"])
    sh = Shape(start, end, item.data.get("recurrence"), item.hidden.get("base_seq", item.seq), exceptions, frozenset(item.hidden.get("cancelled") or ()))
    item.hidden["shape"] = (item.seq, sh)
    return sh


def expand(sh: Shape, master_key: str, lo: datetime, hi: datetime) -> dict[str, Instance]:
    """The instances of a series overlapping [lo, hi), by id, in start order."""
    if not sh.recurrence:
        return {}
    duration = sh.end - sh.start
    found: list[Instance] = []
    for o in originals(sh.recurrence, sh.start, duration, lo, hi):
        k = iso(o)
        if k in sh.cancelled or k in sh.exceptions:
            continue
        found.append(Instance(occurrence_id(master_key, o), o, o, o + duration, False, sh.base_seq))
    for k, (s, e, seq) in sh.exceptions.items():
        if k not in sh.cancelled and overlaps(s, e, lo, hi):
            o = datetime.fromisoformat(k.replace("Z", "+00:00"))
            found.append(Instance(occurrence_id(master_key, o), o, s, e, True, max(seq, sh.base_seq)))
    found.sort(key=lambda i: i.start)
    return {i.id: i for i in found}


def instances_in(mb: Mailbox, item: Item, lo: datetime, hi: datetime) -> dict[str, Instance]:
    """Current instances of a series in a window, cached per (series, sequence, window)."""
    cal = _cal(mb)
    ck = (item.key, item.seq, lo, hi)
    got = cal.cache.get(ck)
    if got is None:
        if len(cal.cache) >= _CACHE_LIMIT:
            cal.cache.clear()
        got = cal.cache[ck] = expand(shape(item), item.key, lo, hi)
    return got


def instance_at(mb: Mailbox, master: Item, original: datetime) -> Instance | None:
    """The live instance with this original start, or None (cancelled, or not in the pattern)."""
    sh = shape(master)
    if not sh.recurrence:
        return None
    k = iso(original)
    if k in sh.cancelled:
        return None
    if k in sh.exceptions:
        s, e, seq = sh.exceptions[k]
        return Instance(occurrence_id(master.key, original), original, s, e, True, max(seq, sh.base_seq))
    duration = sh.end - sh.start
    if original not in originals(sh.recurrence, sh.start, duration, original, original + timedelta(microseconds=1)):
        return None
    return Instance(occurrence_id(master.key, original), original, original, original + duration, False, sh.base_seq)


def find_event(mb: Mailbox, event_id: str) -> tuple[Item, Instance | None]:
    """A stored event, or a series and one of its instances, by id; 404 otherwise."""
    coll = events_coll(mb)
    item = coll.items.get(event_id)
    if item is not None:
        return item, None
    split = split_occurrence(event_id)
    if split is not None:
        master = coll.items.get(split[0])
        if master is not None:
            inst = instance_at(mb, master, split[1])
            if inst is not None:
                return master, inst
    raise not_found()


def in_window(mb: Mailbox, item: Item, lo: datetime, hi: datetime) -> bool:
    """Whether a single instance overlaps the window, or a series has an instance in it."""
    if item.data.get("recurrence"):
        return bool(instances_in(mb, item, lo, hi))
    sh = shape(item)
    return overlaps(sh.start, sh.end, lo, hi)


# rendering --------------------------------------------------------------------------------


def _when(dt: datetime, stored: dict[str, str], all_day: bool, tz: str) -> dict[str, str]:
    if all_day:  # all-day events float: their dates stay midnight-to-midnight in every zone
        return {"dateTime": fmt_local(dt.astimezone(zone(stored["timeZone"]))), "timeZone": tz}
    return {"dateTime": fmt_local(dt.astimezone(zone(tz))), "timeZone": tz}


def _finish_view(out: dict[str, Any], view: View) -> dict[str, Any]:
    if view.text_body:
        b = out.get("body")
        if isinstance(b, dict) and b.get("contentType") == "html":
            out["body"] = {"contentType": "text", "content": html_to_text(b.get("content") or "")}
    if view.basic:
        for k in BASIC_HIDDEN:
            out.pop(k, None)
    return out


def event_json(item: Item, view: View, select: tuple[str, ...] | None = None) -> dict[str, Any]:
    """A single instance or series master as Graph renders it."""
    out = render(item, EVENT_TYPE, select, view.immutable, select_only=SELECT_ONLY)
    sh = shape(item)
    all_day = bool(item.data.get("isAllDay"))
    if "start" in out:
        out["start"] = _when(sh.start, item.data["start"], all_day, view.tz)
    if "end" in out:
        out["end"] = _when(sh.end, item.data["start"], all_day, view.tz)
    return _finish_view(out, view)


def instance_json(master: Item, inst: Instance, view: View, select: tuple[str, ...] | None = None) -> dict[str, Any]:
    """An occurrence or exception: the master's properties, its own times, and any overrides."""
    ck = change_key(inst.seq, inst.id)
    d: dict[str, Any] = {"@odata.type": EVENT_TYPE, "@odata.etag": f'W/"{ck}"'}
    d.update(master.data)
    d.pop("transactionId", None)
    d.update(type="occurrence", seriesMasterId=master.public_id(view.immutable), recurrence=None,
             originalStart=iso(inst.original), webLink=_web_link(inst.id))
    if inst.exception:
        d.update(master.hidden["exceptions"][iso(inst.original)]["data"])
        d["type"] = "exception"
    all_day = bool(d.get("isAllDay"))
    d["start"] = _when(inst.start, master.data["start"], all_day, view.tz)
    d["end"] = _when(inst.end, master.data["start"], all_day, view.tz)
    if select is None:
        for k in SELECT_ONLY:
            d.pop(k, None)
        d["changeKey"] = ck
        out = d
    else:
        out = {"@odata.type": EVENT_TYPE, "@odata.etag": d["@odata.etag"]}
        for name in select:
            if name in d:
                out[name] = d[name]
            elif name == "changeKey":
                out[name] = ck
    out["id"] = inst.id
    return _finish_view(out, view)


def _removed(event_id: str) -> dict[str, Any]:
    return {"@odata.type": EVENT_TYPE, "id": event_id, "@removed": {"reason": "deleted"}}


def view_items(mb: Mailbox, lo: datetime, hi: datetime, *, masters: bool) -> list[tuple[datetime, int, str, Item, Instance | None]]:
    """(sort start, rank, id, event, instance) for everything in a window, in start order."""
    rows: list[tuple[datetime, int, str, Item, Instance | None]] = []
    for item in events_coll(mb):
        if item.data.get("recurrence"):
            insts = instances_in(mb, item, lo, hi)
            if not insts:
                continue
            if masters:
                first = min(i.start for i in insts.values())
                rows.append((first, 0, item.key, item, None))
            rows.extend((i.start, 1, i.id, item, i) for i in insts.values())
        else:
            sh = shape(item)
            if overlaps(sh.start, sh.end, lo, hi):
                rows.append((sh.start, 1, item.key, item, None))
    rows.sort(key=lambda r: (r[0], r[1]))
    return rows


# delta ------------------------------------------------------------------------------------


def _window_of(query: DeltaQuery) -> tuple[datetime, datetime]:
    return datetime.fromisoformat(query.option("startdatetime") or ""), datetime.fromisoformat(query.option("enddatetime") or "")


def _shape_at(history: list[tuple[int, Shape | None]], seq: int) -> Shape | None:
    for s, sh in reversed(history):
        if s <= seq:
            return sh
    return None


class CalendarViewDelta:
    """calendarView/delta over the primary calendar for the window of the round's first request."""

    odata_type = EVENT_TYPE
    context = "$metadata#Collection(event)"

    def snapshot(self, mb: Mailbox, query: DeltaQuery) -> list[str]:
        lo, hi = _window_of(query)
        return [r[2] for r in view_items(mb, lo, hi, masters=True)]

    def changes(self, mb: Mailbox, query: DeltaQuery, since: int) -> list[str]:
        lo, hi = _window_of(query)
        coll = events_coll(mb)
        history = _cal(mb).history
        out: list[str] = []
        for key in coll.changed_since(since):
            out.append(key)
            old = _shape_at(history.get(key, []), since)
            old_ids = list(expand(old, key, lo, hi)) if old is not None and old.recurrence else []
            item = coll.items.get(key)
            new = instances_in(mb, item, lo, hi) if item is not None and item.data.get("recurrence") else {}
            out.extend(i.id for i in new.values() if i.seq > since)
            out.extend(i for i in old_ids if i not in new)
        return out

    def render(self, mb: Mailbox, query: DeltaQuery, key: str, request: Request, initial: bool) -> dict[str, Any] | None:
        lo, hi = _window_of(query)
        coll = events_coll(mb)
        item = coll.items.get(key)
        view = View.of(request)
        if item is not None:
            if in_window(mb, item, lo, hi):
                return event_json(item, view)
            return None if initial else _removed(key)
        split = split_occurrence(key)
        if split is not None:
            master = coll.items.get(split[0])
            inst = instances_in(mb, master, lo, hi).get(key) if master is not None and master.data.get("recurrence") else None
            if master is not None and inst is not None:
                return instance_json(master, inst, view)
            return None if initial else _removed(key)
        if key in coll.tombstones and not initial:
            return _removed(key)
        return None


# routes -----------------------------------------------------------------------------------


def _bound(value: str, name: str) -> datetime:
    v = value.strip().replace(" ", "+")  # an unencoded '+' in an offset arrives as a space
    try:
        dt = parse_local(v) if v else None
    except ValueError:
        dt = None
    if dt is None:
        raise bad_request(f"The value '{value}' of parameter '{name}' is invalid.", "ErrorInvalidParameter")
    return dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt.astimezone(timezone.utc)


def parse_window(request: Request) -> tuple[datetime, datetime]:
    """startDateTime/endDateTime of a calendarView request (no offset means UTC)."""
    s, e = request.query.get("startdatetime"), request.query.get("enddatetime")
    if s is None or e is None:
        raise bad_request(WINDOW_MESSAGE, "ErrorInvalidParameter")
    lo, hi = _bound(s, "StartDateTime"), _bound(e, "EndDateTime")
    if hi < lo:
        raise bad_request(f"The value '{e}' of parameter 'EndDateTime' is invalid.", "ErrorInvalidParameter")
    return lo, hi


def _int(v: str | None) -> int | None:
    return int(v) if v and v.isdigit() else None


def _headers(view: View, request: Request) -> dict[str, str]:
    if request.prefer.timezone:
        return {"Preference-Applied": f'outlook.timezone="{view.tz}"'}
    return {}


def _no_filter(request: Request) -> None:
    for opt in ("$filter", "$search", "$orderby", "$expand"):
        if request.query.get(opt):
            raise bad_request(f"The emulator does not support {opt} on this event collection.", "ErrorInvalidUrlQuery")


def calendar_json(mb: Mailbox) -> dict[str, Any]:
    """The primary calendar resource."""
    return {
        "id": _cal(mb).calendar_id, "name": "Calendar", "color": "auto", "hexColor": "", "isDefaultCalendar": True,
        "changeKey": "DxYSthXJXEWwAQSYQnXvIgAAIxGttg==", "canShare": True, "canViewPrivateItems": True, "canEdit": True,
        "allowedOnlineMeetingProviders": ["teamsForBusiness"], "defaultOnlineMeetingProvider": "teamsForBusiness",
        "isTallyingResponses": True, "isRemovable": False,
        "owner": {"name": mb.user.get("displayName"), "address": mb.address},
    }


def remove_event(mb: Mailbox, event_id: str) -> None:
    """DELETE on an event id: a series or single event goes; an occurrence id cancels that occurrence."""
    item, inst = find_event(mb, event_id)
    if inst is not None:
        cancel_occurrence(mb, item, inst)
    else:
        delete_event(mb, item)


def register(router: Router, control: Router, state: EmulatorState) -> None:
    """Add the calendar routes and the calendar control routes."""
    view_delta = CalendarViewDelta()

    def mb_of(request: Request) -> Mailbox:
        mb = state.mailbox(request)
        _cal(mb)
        if "calendar" in request.params and request.params["calendar"] != _cal(mb).calendar_id:
            raise not_found()
        return mb

    def out(item: Item, inst: Instance | None, view: View, select: tuple[str, ...] | None = None) -> dict[str, Any]:
        return instance_json(item, inst, view, select) if inst is not None else event_json(item, view, select)

    async def calendar_view_delta(request: Request) -> Response:
        mb = mb_of(request)
        lo = hi = None
        if not (request.query.get("$skiptoken") or request.query.get("$deltatoken")):
            reject_options(request, {"$top"}, "event")
            lo, hi = parse_window(request)
        return state.sync.serve(request, mb, view_delta, lambda: DeltaQuery(
            mb.id, "events", "events", f"/users/{mb.id}/calendarView/delta",
            (("startdatetime", lo.isoformat()), ("enddatetime", hi.isoformat())) if lo and hi else (),
            request.prefer.maxpagesize or _int(request.query.get("$top"))))

    async def calendar_view(request: Request) -> Response:
        mb = mb_of(request)
        _no_filter(request)
        lo, hi = parse_window(request)
        view, select = View.of(request), select_fields(request)
        values = [out(item, inst, view, select) for _, _, _, item, inst in view_items(mb, lo, hi, masters=False)]
        resp = paged(request, values, f"$metadata#users('{mb.id}')/calendarView")
        resp.headers.update(_headers(view, request))
        return resp

    async def instances(request: Request) -> Response:
        mb = mb_of(request)
        _no_filter(request)
        item, inst = find_event(mb, request.params["event"])
        lo, hi = parse_window(request)
        view, select = View.of(request), select_fields(request)
        insts = instances_in(mb, item, lo, hi) if inst is None and item.data.get("recurrence") else {}
        values = [instance_json(item, i, view, select) for i in insts.values()]
        resp = paged(request, values, f"$metadata#users('{mb.id}')/events('{request.params['event']}')/instances")
        resp.headers.update(_headers(view, request))
        return resp

    async def list_events(request: Request) -> Response:
        mb = mb_of(request)
        _no_filter(request)
        view, select = View.of(request), select_fields(request)
        values = [event_json(i, view, select) for i in events_coll(mb)]
        resp = paged(request, values, f"$metadata#users('{mb.id}')/events")
        resp.headers.update(_headers(view, request))
        return resp

    async def get_event(request: Request) -> Response:
        mb = mb_of(request)
        item, inst = find_event(mb, request.params["event"])
        view = View.of(request)
        body = out(item, inst, view, select_fields(request))
        expand_opt = (request.query.get("$expand") or "").strip()
        m = re.match(r"^singleValueExtendedProperties(?:\(\$filter=(.*)\))?$", expand_opt, re.IGNORECASE)
        if expand_opt and not m:
            raise bad_request(f"Parsing OData Select and Expand failed: Could not find a property named '{expand_opt.split('(')[0]}' on type 'microsoft.graph.event'.", "BadRequest")
        if m and not view.basic:
            ext = item.hidden.get("ext", {})
            ids = re.findall(r"id\s+eq\s+'([^']*)'", m.group(1) or "", re.IGNORECASE)
            wanted = [i for i in ids if i in ext] if ids else list(ext)
            if wanted:
                body["singleValueExtendedProperties"] = [{"id": i, "value": ext[i]} for i in wanted]
        return json_response({"@odata.context": f"{request.graph_base}/$metadata#users('{mb.id}')/events/$entity", **body}, headers=_headers(view, request))

    async def create_event(request: Request) -> Response:
        mb = mb_of(request)
        body = request.json()
        if not isinstance(body, dict):
            raise bad_request("Expected a JSON object.", "BadRequest")
        item = insert_event(state, mb, body)
        view = View.of(request)
        return json_response({"@odata.context": f"{request.graph_base}/$metadata#users('{mb.id}')/events/$entity", **event_json(item, view)}, 201, _headers(view, request))

    async def patch_event(request: Request) -> Response:
        mb = mb_of(request)
        item, inst = find_event(mb, request.params["event"])
        body = request.json()
        if inst is not None:
            inst = update_occurrence(mb, item, inst, body)
        else:
            update_event(mb, item, body)
        view = View.of(request)
        return json_response({"@odata.context": f"{request.graph_base}/$metadata#users('{mb.id}')/events/$entity", **out(item, inst, view)}, headers=_headers(view, request))

    async def delete_event_route(request: Request) -> Response:
        remove_event(mb_of(request), request.params["event"])
        return empty(204)

    async def events_delta(request: Request) -> Response:
        raise GraphError(400, "BadRequest", "Resource not found for the segment 'delta'.")

    async def get_calendar(request: Request) -> Response:
        mb = mb_of(request)
        return json_response({"@odata.context": f"{request.graph_base}/$metadata#users('{mb.id}')/calendar/$entity", **calendar_json(mb)})

    async def list_calendars(request: Request) -> Response:
        mb = mb_of(request)
        return json_response({"@odata.context": f"{request.graph_base}/$metadata#users('{mb.id}')/calendars", "value": [calendar_json(mb)]})

    R, W = dict(app=CAL_READ, delegated=D_READ), dict(app=CAL_WRITE, delegated=D_WRITE)
    u = "/users/{user}"
    router.add("GET", u + "/calendar", get_calendar, **R)
    router.add("GET", u + "/calendars", list_calendars, **R)
    for base in (u, u + "/calendar", u + "/calendars/{calendar}"):
        router.add("GET", base + "/calendarView/delta", calendar_view_delta, **R)
        router.add("GET", base + "/calendarView", calendar_view, **R)
        router.add("GET", base + "/events/delta", events_delta, **R)
        router.add("GET", base + "/events", list_events, **R)
        router.add("POST", base + "/events", create_event, **W)
        router.add("GET", base + "/events/{event}/instances", instances, **R)
        router.add("GET", base + "/events/{event}", get_event, **R)
        router.add("PATCH", base + "/events/{event}", patch_event, **W)
        router.add("DELETE", base + "/events/{event}", delete_event_route, **W)

    register_control(control, state)


# control ----------------------------------------------------------------------------------


def register_control(control: Router, state: EmulatorState) -> None:
    """`/_emulator/users/{upn}/events[/{id}]`: change events as their owner would, any property allowed."""

    async def add(request: Request) -> Response:
        mb = state.named_mailbox(request)
        item = insert_event(state, mb, request.json(), strict=False)
        return json_response(event_json(item, View()), 201)

    async def patch(request: Request) -> Response:
        mb = state.named_mailbox(request)
        item, inst = find_event(mb, request.params["event"])
        if inst is not None:
            inst = update_occurrence(mb, item, inst, request.json(), strict=False)
            return json_response(instance_json(item, inst, View()))
        update_event(mb, item, request.json(), strict=False)
        return json_response(event_json(item, View()))

    async def delete(request: Request) -> Response:
        remove_event(state.named_mailbox(request), request.params["event"])
        return empty(204)

    u = "/_emulator/users/{user}/events"
    control.add("POST", u, add)
    control.add("PATCH", u + "/{event}", patch)
    control.add("DELETE", u + "/{event}", delete)


# seeding ----------------------------------------------------------------------------------


def _relative_dt(value: Any, tz: str) -> Any:
    m = _RELATIVE.match(value) if isinstance(value, str) else None
    if m is None:
        return value
    day = datetime.now(zone(tz)).date() + timedelta(days=int(m.group(1)))
    return f"{day.isoformat()}T{int(m.group(2) or 0):02d}:{m.group(3) or '00'}:00"


def _resolve_seed(spec: dict[str, Any]) -> dict[str, Any]:
    ev = dict(spec)
    for k in ("start", "end"):
        if isinstance(ev.get(k), dict):
            tz = str(ev[k].get("timeZone") or "UTC")
            ev[k] = {**ev[k], "dateTime": _relative_dt(ev[k].get("dateTime"), tz)}
    rec = ev.get("recurrence")
    if isinstance(rec, dict) and isinstance(rec.get("range"), dict):
        tz = str((ev.get("start") or {}).get("timeZone") or "UTC")
        rng = dict(rec["range"])
        for k in ("startDate", "endDate"):
            if isinstance(rng.get(k), str) and _RELATIVE.match(rng[k]):
                rng[k] = _relative_dt(rng[k], tz)[:10]
        ev["recurrence"] = {**rec, "range": rng}
    return ev


def _seed_original(mb: Mailbox, master: Item, value: Any) -> Instance:
    tz = master.data["start"]["timeZone"]
    text = str(_relative_dt(value, tz))
    m = _RELATIVE.match(value) if isinstance(value, str) else None
    if m is not None and m.group(2) is None:
        text = text[:10]  # "+Nd" names the occurrence on that day
    sh = shape(master)
    if len(text) == 10:
        clock = sh.start.astimezone(zone(tz))
        local = datetime.combine(datetime.fromisoformat(text).date(), clock.timetz().replace(tzinfo=None), zone(tz))
        original = local.astimezone(timezone.utc)
    else:
        dt = parse_local(text)
        original = (dt if dt.tzinfo else dt.replace(tzinfo=zone(tz))).astimezone(timezone.utc)
    inst = instance_at(mb, master, original)
    if inst is None:
        raise ValueError(f"event {master.data.get('subject')!r}: no occurrence starts at {value!r}")
    return inst


def seed(state: EmulatorState, mb: Mailbox, spec: Any) -> None:
    """Load a user's `events` (see the module docstring for the seed conveniences)."""
    _cal(mb)
    for raw in spec.events:
        ev = _resolve_seed(raw)
        cancelled = ev.pop("cancelledOccurrences", None) or []
        exceptions = ev.pop("exceptions", None) or []
        try:
            item = insert_event(state, mb, ev, strict=False, notify=False)
        except GraphError as exc:
            raise ValueError(f"user {mb.upn}: event {raw.get('subject')!r}: {exc.message}") from None
        if (cancelled or exceptions) and not item.data.get("recurrence"):
            raise ValueError(f"user {mb.upn}: event {raw.get('subject')!r} has exceptions but no recurrence")
        for exc_spec in exceptions:
            body = _resolve_seed(exc_spec)
            inst = _seed_original(mb, item, body.pop("originalStart", None))
            update_occurrence(mb, item, inst, body, strict=False)
        for value in cancelled:
            cancel_occurrence(mb, item, _seed_original(mb, item, value))

