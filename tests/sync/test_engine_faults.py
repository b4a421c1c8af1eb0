"""Engine behaviour on bad items, bad pages, token rejection and folder churn."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.conftest import base_scenario
from tests.emulator.test_mail_delta import messages


STRICT_OVERLAY = """\
version: 1
kind: MappingOverlay
name: email
custom_columns:
  new_shortsubject: {type: String, max_length: 12}
columns:
  new_shortsubject:
    source: subject
"""


def inbox_scenario(n: int) -> dict[str, Any]:
    s = base_scenario()
    s["users"][0]["mailFolders"] = {"inbox": {"messages": messages(n)}}
    return s


def test_an_item_that_fails_validation_is_quarantined_and_the_page_commits(runner_for: Any, tmp_path: Path) -> None:
    overlays = tmp_path / "mappings"
    overlays.mkdir()
    (overlays / "email.yaml").write_text(STRICT_OVERLAY)
    s = inbox_scenario(3)
    s["users"][0]["mailFolders"]["inbox"]["messages"].append({"subject": "A subject far too long for the custom column"})
    r = runner_for(s)
    rep = r.sync(resources=["mail"], mappings_dir=overlays)
    mail = next(m for m in rep.mailboxes if m.address == "adele@contoso.com").resource("mail")
    assert (mail.created, mail.quarantined) == (3, 1)
    assert rep.ok  # a bad item is not a failed mailbox
    errors = r.rows("SELECT mailbox, resource, reason FROM sync_error")
    assert len(errors) == 1 and errors[0][:2] == ("adele@contoso.com", "messages") and "new_shortsubject" in errors[0][2]
    assert r.rows("SELECT new_shortsubject FROM email WHERE subject = 'Msg 1'") == [("Msg 1",)]


def test_a_malformed_page_is_retried_then_fails_only_its_container(runner_for: Any) -> None:
    r = runner_for(inbox_scenario(4))
    delta = "/v1.0/users/*/mailFolders/*/messages/delta*"
    both = {"@odata.nextLink": "https://x/a", "@odata.deltaLink": "https://x/b", "value": []}
    r.emu.add_fault({"match": {"path": delta, "user": "adele@contoso.com"}, "times": 1, "respond": {"status": 200, "body": both}})
    rep = r.sync(resources=["mail"])
    assert rep.ok and rep.totals().retries == 1  # retried once, then the real page
    r.emu.add_fault({"match": {"path": delta, "user": "bob@contoso.com"}, "respond": {"status": 200, "body": "<html>oops</html>"}})
    rep = r.sync(resources=["mail"], max_retries=2)
    bob = next(m for m in rep.mailboxes if m.address == "bob@contoso.com").resource("mail")
    adele = next(m for m in rep.mailboxes if m.address == "adele@contoso.com").resource("mail")
    assert not rep.ok and bob.errors and "not JSON" in bob.errors[0] and not adele.errors


def test_a_401_triggers_one_token_refresh(runner_for: Any) -> None:
    r = runner_for(inbox_scenario(3))
    r.emu.add_fault({"match": {"path": "/v1.0/users/*/mailFolders/*/messages/delta*"}, "times": 1,
                     "respond": {"status": 401, "code": "InvalidAuthenticationToken", "message": "Access token has expired or is not yet valid."}})
    rep = r.sync(resources=["mail"])
    assert rep.ok, rep.to_dict()
    assert r.rows("SELECT COUNT(*) FROM email") == [(3,)]
    # Adele's two folders each get a 401, refresh, and a second 401, which then stands.
    r.emu.add_fault({"match": {"path": "/v1.0/users/*/mailFolders/*/messages/delta*", "user": "adele@contoso.com"}, "times": 4,
                     "respond": {"status": 401, "code": "InvalidAuthenticationToken", "message": "nope"}})
    rep = r.sync(resources=["mail"], full=True)
    adele = next(m for m in rep.mailboxes if m.address == "adele@contoso.com").resource("mail")
    assert len(adele.errors) == 2 and all("after a token refresh" in e for e in adele.errors)


def test_folders_created_renamed_and_deleted_are_followed(runner_for: Any) -> None:
    r = runner_for(inbox_scenario(2))
    assert r.sync(resources=["mail"], mail_folders="all").ok
    fid = r.emu.add_folder("adele@contoso.com", "Escalations", parent="inbox")["id"]
    r.emu.add_message("adele@contoso.com", "inbox/Escalations", {"subject": "Urgent"})
    rep = r.sync(resources=["mail"], mail_folders="all")
    assert rep.ok and r.rows("SELECT COUNT(*) FROM email WHERE subject = 'Urgent'") == [(1,)]
    assert r.rows("SELECT COUNT(*) FROM sync_state WHERE container = ?", fid) == [(1,)]
    from tests.conftest import graph_client

    with graph_client(r.emu) as c:
        assert c.patch(f"/users/adele@contoso.com/mailFolders/{fid}", json={"displayName": "Escalated"}).status_code == 200
        rep = r.sync(resources=["mail"], mail_folders="all")
        assert rep.ok and rep.totals().created == 0  # a rename changes no record
        assert c.delete(f"/users/adele@contoso.com/mailFolders/{fid}").status_code == 204
    rep = r.sync(resources=["mail"], mail_folders="all")
    assert rep.ok
    assert r.rows("SELECT COUNT(*) FROM email WHERE subject = 'Urgent'") == [(1,)]  # emails are kept


def test_store_matches_the_emulator_truth_field_by_field(runner_for: Any) -> None:
    from tests.conftest import graph_client

    r = runner_for(inbox_scenario(15))
    assert r.sync(resources=["mail"], page_size=4).ok
    with graph_client(r.emu) as c:
        truth = c.get("/users/adele@contoso.com/mailFolders/inbox/messages",
                      params={"$top": "100", "$select": "subject,internetMessageId,receivedDateTime,conversationIndex"}).json()["value"]
    stored = {row[1]: row for row in r.rows("SELECT subject, messageid, actualend, conversationindex FROM email")}
    assert len(stored) == len(truth) == 15
    for m in truth:
        subject, _, actualend, cindex = stored[m["internetMessageId"]]
        assert (subject, actualend, cindex) == (m["subject"], m["receivedDateTime"], m["conversationIndex"])


def test_a_token_about_to_expire_is_not_handed_to_a_request(tmp_path: Path, make_emulator: Any) -> None:
    """azure-identity returns its cached token until it expires when it refreshed in the last 30 s; the provider signs in
    afresh instead of handing a request a token with under a second left (it would reach Graph expired)."""
    import asyncio
    import base64
    import json
    import time

    from connector.graph.auth import TokenProvider, credential_factory
    from tests.sync.conftest import settings_for

    emu = make_emulator(base_scenario(identity={"token_lifetime": 3}))

    def exp(token: str) -> int:
        payload = token.split(".")[1]
        return int(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["exp"])

    async def go() -> tuple[str, str, float]:
        provider = TokenProvider(credential_factory(settings_for(emu, tmp_path / "t.db")))
        try:
            first = await provider.get_authorization_token("https://graph")
            await asyncio.sleep(max(0.0, exp(first) - time.time() - 0.7))  # under a second left
            second = await provider.get_authorization_token("https://graph")
            return first, second, exp(second) - time.time()
        finally:
            await provider.close()

    first, second, left = asyncio.run(go())
    assert second != first and left >= 1.0
