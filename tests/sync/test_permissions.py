"""Onboarding: the permissions `m365sync permissions` lists are enough for a full sync, and no more is asked."""

from __future__ import annotations

from typing import Any

from connector.permissions import required_permissions
from connector.settings import Settings
from tests.conftest import APP_ID, APP_SECRET, base_scenario
from tests.emulator.test_mail_delta import messages


def test_the_manifest_permissions_are_enough_for_a_full_sync(runner_for: Any) -> None:
    needed = sorted({p.name for p in required_permissions(Settings.load(None))})
    s = base_scenario(apps=[{"client_id": APP_ID, "client_secret": APP_SECRET, "permissions": needed}])
    s["users"][0]["mailFolders"] = {"inbox": {"messages": messages(3)}}
    s["users"][0]["contacts"] = [{"givenName": "Dana", "surname": "Swope"}]
    r = runner_for(s)
    rep = r.sync(tracking={"enabled": True, "track": "all"})
    assert rep.ok, rep.to_dict()
    assert r.emu.stats()["by_status"].get("403", 0) == 0
    assert "Mail.ReadWrite" in needed and "Mail.Send" not in needed  # least privilege: no send


def test_permissions_follow_the_configuration() -> None:
    only_mail = Settings.load(None, resources=["mail"], tracking={"enabled": False})
    assert [p.name for p in required_permissions(only_mail)] == ["User.Read.All", "Mail.Read"]
    tasks = Settings.load(None, resources=["tasks", "calendar"])
    assert {p.name for p in required_permissions(tasks)} == {"User.Read.All", "Tasks.Read.All", "Calendars.Read"}
