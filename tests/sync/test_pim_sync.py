"""The engine against the emulator for calendar, contacts and To Do: full rounds, then changes, then deletes."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from tests.conftest import base_scenario

from .conftest import Runner


def _day(offset: int, hour: int = 9) -> str:
    d = datetime.now(timezone.utc).replace(hour=hour, minute=0, second=0, microsecond=0) + timedelta(days=offset)
    return d.strftime("%Y-%m-%dT%H:%M:%S")


def pim_scenario() -> dict[str, Any]:
    s = base_scenario()
    s["users"][0]["events"] = [
        {"subject": "Kick-off", "start": {"dateTime": _day(3), "timeZone": "UTC"}, "end": {"dateTime": _day(3, 10), "timeZone": "UTC"}},
        {"subject": "Weekly sync", "start": {"dateTime": _day(1, 15), "timeZone": "UTC"}, "end": {"dateTime": _day(1, 16), "timeZone": "UTC"},
         "recurrence": {"pattern": {"type": "weekly", "interval": 1, "daysOfWeek": [datetime.now(timezone.utc).strftime("%A").lower()]},
                        "range": {"type": "numbered", "startDate": _day(1)[:10], "numberOfOccurrences": 4}}},
        {"subject": "Long ago", "start": {"dateTime": _day(-400), "timeZone": "UTC"}, "end": {"dateTime": _day(-400, 10), "timeZone": "UTC"}},
    ]
    s["users"][0]["contacts"] = [
        {"givenName": "Dana", "surname": "Swope", "emailAddresses": [{"address": "dana@fabrikam.com", "name": "Dana Swope"}], "companyName": "Fabrikam"},
        {"givenName": "Lee", "surname": "Gu", "emailAddresses": [{"address": "lee@adatum.com"}]},
    ]
    s["users"][0]["contactFolders"] = {"Suppliers": {"contacts": [{"givenName": "Ray", "surname": "Ho", "emailAddresses": [{"address": "ray@litware.com"}]}]}}
    s["users"][0]["todo"] = {"lists": [
        {"displayName": "Tasks", "wellknownListName": "defaultList", "tasks": [{"title": "Call Dana", "importance": "high"}, {"title": "Send quote", "status": "inProgress"}]},
        {"displayName": "Renewals", "tasks": [{"title": "Renew Fabrikam", "dueDateTime": {"dateTime": _day(10), "timeZone": "UTC"}}]},
    ]}
    return s


def count(r: Runner, table: str, where: str = "1=1") -> int:
    return int(r.rows(f"SELECT COUNT(*) FROM {table} WHERE {where}")[0][0])


def report_of(rep: Any, resource: str) -> Any:
    return next(m for m in rep.mailboxes if m.address == "adele@contoso.com").resource(resource)


def test_calendar_round_then_changes(runner_for: Any) -> None:
    r = runner_for(pim_scenario())
    rep = r.sync(resources=["calendar"])
    assert rep.ok, rep.to_dict()
    # Kick-off + the series master + 4 occurrences; the event 400 days ago is outside the window
    assert count(r, "appointment") == 6
    assert count(r, "appointment", "subject = 'Long ago'") == 0
    events = r.emu.call("GET", "/_emulator/requests")  # the engine went through calendarView/delta
    assert any("calendarView/delta" in e["path"] for e in events["value"])
    kick = _event_id(r, "Kick-off")
    r.emu.update_event("adele@contoso.com", kick, {"subject": "Kick-off (moved)"})
    r.emu.add_event("adele@contoso.com", {"subject": "New meeting", "start": {"dateTime": _day(5), "timeZone": "UTC"},
                                          "end": {"dateTime": _day(5, 10), "timeZone": "UTC"}})
    rep = r.sync(resources=["calendar"])
    cal = report_of(rep, "calendar")
    assert rep.ok and (cal.created, cal.updated) == (1, 1)
    assert count(r, "appointment", "subject = 'Kick-off (moved)'") == 1
    r.emu.delete_event("adele@contoso.com", kick)
    rep = r.sync(resources=["calendar"])
    assert report_of(rep, "calendar").deleted == 1
    canceled = r.rows("SELECT statecode FROM appointment WHERE subject = 'Kick-off (moved)'")
    assert canceled == [(2,)]  # appointments become Canceled (statecode 2)


def _event_id(r: Runner, subject: str) -> str:
    from tests.conftest import graph_client

    with graph_client(r.emu) as c:
        events = c.get("/users/adele@contoso.com/events", params={"$top": "100"}).json()["value"]
    return next(e["id"] for e in events if e["subject"] == subject)


def test_contacts_in_every_folder_then_deactivation(runner_for: Any) -> None:
    r = runner_for(pim_scenario())
    rep = r.sync(resources=["contacts"])
    assert rep.ok, rep.to_dict()
    assert count(r, "contact") == 3 and report_of(rep, "contacts").containers == 2
    assert r.rows("SELECT emailaddress1 FROM contact WHERE lastname = 'Swope'") == [("dana@fabrikam.com",)]
    cid = r.emu.add_contact("adele@contoso.com", {"givenName": "New", "surname": "Person"})["id"]
    rep = r.sync(resources=["contacts"])
    assert report_of(rep, "contacts").created == 1
    r.emu.update_contact("adele@contoso.com", cid, {"jobTitle": "CFO"})
    rep = r.sync(resources=["contacts"])
    assert report_of(rep, "contacts").updated == 1 and r.rows("SELECT jobtitle FROM contact WHERE lastname = 'Person'") == [("CFO",)]
    r.emu.delete_contact("adele@contoso.com", cid)
    rep = r.sync(resources=["contacts"])
    assert report_of(rep, "contacts").deleted == 1
    assert r.rows("SELECT statecode FROM contact WHERE lastname = 'Person'") == [(1,)]  # Inactive


def test_tasks_per_list_then_delete(runner_for: Any) -> None:
    r = runner_for(pim_scenario())
    rep = r.sync(resources=["tasks"])
    assert rep.ok, rep.to_dict()
    assert count(r, "task") == 3 and report_of(rep, "tasks").containers == 2
    tid = r.emu.add_task("adele@contoso.com", "Renewals", {"title": "Renew Adatum"})["id"]
    r.sync(resources=["tasks"])
    assert count(r, "task", "subject = 'Renew Adatum'") == 1
    r.emu.update_task("adele@contoso.com", "Renewals", tid, {"status": "completed"})
    r.sync(resources=["tasks"])
    assert r.rows("SELECT statecode, percentcomplete FROM task WHERE subject = 'Renew Adatum'") == [(1, 100)]
    r.emu.delete_task("adele@contoso.com", "Renewals", tid)
    rep = r.sync(resources=["tasks"])
    assert report_of(rep, "tasks").deleted == 1 and count(r, "task", "subject = 'Renew Adatum'") == 0  # tasks are deleted


def test_everything_at_once_and_a_quiet_second_run(runner_for: Any) -> None:
    r = runner_for(pim_scenario())
    first = r.sync()
    assert first.ok, first.to_dict()
    second = r.sync()
    t = second.totals()
    assert second.ok and (t.created, t.updated, t.deleted) == (0, 0, 0)
    assert t.pages == t.containers  # one deltaLink page per container: no snapshot re-read
