"""Mail writes: sendMail delivery and threading, drafts, PATCH, extended properties, delete, categories."""

from __future__ import annotations

import base64

import httpx

from connector.emulator import Emulator

U = "/users/adele@contoso.com"
B = "/users/bob@contoso.com"


def inbox(graph: httpx.Client, user: str, select: str = "subject,internetMessageId,conversationId,conversationIndex,internetMessageHeaders,bccRecipients,isRead") -> list[dict]:
    return graph.get(f"{user}/mailFolders/inbox/messages", params={"$select": select, "$top": "100"}).json()["value"]


def test_send_mail_copies_to_sent_items_and_delivers_inside_the_tenant(graph: httpx.Client) -> None:
    r = graph.post(f"{U}/sendMail", json={"message": {
        "subject": "Quarterly review", "body": {"contentType": "html", "content": "<p>Agenda</p>"},
        "toRecipients": [{"emailAddress": {"address": "bob@contoso.com"}}],
        "ccRecipients": [{"emailAddress": {"address": "someone@external.example"}}]}})
    assert r.status_code == 202 and r.content == b""
    sent = graph.get(f"{U}/mailFolders/sentitems/messages", params={"$select": "subject,internetMessageId,isRead"}).json()["value"]
    got = inbox(graph, B)
    assert [m["subject"] for m in sent] == ["Quarterly review"] and sent[0]["isRead"] is True
    assert [m["subject"] for m in got] == ["Quarterly review"] and got[0]["isRead"] is False
    assert got[0]["internetMessageId"] == sent[0]["internetMessageId"]
    assert got[0]["internetMessageId"].startswith("<") and got[0]["internetMessageId"].endswith(">")


def test_replies_thread_by_headers_and_extend_the_conversation_index(graph: httpx.Client) -> None:
    graph.post(f"{U}/sendMail", json={"message": {"subject": "Pricing", "toRecipients": [{"emailAddress": {"address": "bob@contoso.com"}}]}})
    original = inbox(graph, B)[0]
    graph.post(f"{B}/sendMail", json={"message": {
        "subject": "RE: Pricing", "toRecipients": [{"emailAddress": {"address": "adele@contoso.com"}}],
        "internetMessageHeaders": [{"name": "In-Reply-To", "value": original["internetMessageId"]},
                                   {"name": "References", "value": original["internetMessageId"]}]}})
    reply = inbox(graph, U)[0]
    assert reply["conversationId"] == original["conversationId"]
    parent_idx = base64.b64decode(original["conversationIndex"])
    child_idx = base64.b64decode(reply["conversationIndex"])
    assert len(parent_idx) == 22 and len(child_idx) == 27 and child_idx[:22] == parent_idx
    headers = {h["name"]: h["value"] for h in reply["internetMessageHeaders"]}
    assert headers["In-Reply-To"] == original["internetMessageId"]


def test_subject_threading_without_headers_and_unrelated_mail_stays_apart(graph: httpx.Client, emulator: Emulator) -> None:
    a = emulator.deliver("adele@contoso.com", {"subject": "Contract renewal"})
    b = emulator.deliver("adele@contoso.com", {"subject": "RE: Contract renewal"})
    c = emulator.deliver("adele@contoso.com", {"subject": "Lunch?"})
    by_id = {m["internetMessageId"]: m for m in inbox(graph, U)}
    assert by_id[a["internetMessageId"]]["conversationId"] == by_id[b["internetMessageId"]]["conversationId"]
    assert by_id[c["internetMessageId"]]["conversationId"] != by_id[a["internetMessageId"]]["conversationId"]


def test_bcc_recipient_receives_without_exposing_other_bcc(graph: httpx.Client) -> None:
    graph.post(f"{U}/sendMail", json={"message": {
        "subject": "Board pack", "toRecipients": [{"emailAddress": {"address": "x@external.example"}}],
        "bccRecipients": [{"emailAddress": {"address": "bob@contoso.com"}}, {"emailAddress": {"address": "y@external.example"}}]}})
    got = inbox(graph, B)
    assert len(got) == 1
    assert [r["emailAddress"]["address"] for r in got[0]["bccRecipients"]] == ["bob@contoso.com"]


def test_delivery_to_an_alias_reaches_the_mailbox(graph: httpx.Client) -> None:
    graph.post(f"{B}/sendMail", json={"message": {"subject": "Alias", "toRecipients": [{"emailAddress": {"address": "Adele.Vance@contoso.com"}}]}})
    assert [m["subject"] for m in inbox(graph, U)] == ["Alias"]


def test_send_mail_validation(graph: httpx.Client) -> None:
    r = graph.post(f"{U}/sendMail", json={"message": {"subject": "nobody"}})
    assert r.status_code == 400 and r.json()["error"]["code"] == "ErrorInvalidRecipients"
    r = graph.post(f"{U}/sendMail", json={"message": {"subject": "bad header", "toRecipients": [{"emailAddress": {"address": "bob@contoso.com"}}],
                                                      "internetMessageHeaders": [{"name": "Priority", "value": "1"}]}})
    assert r.status_code == 400


def test_draft_then_send_keeps_the_immutable_id(graph: httpx.Client) -> None:
    imm = {"Prefer": 'IdType="ImmutableId"'}
    draft = graph.post(f"{U}/messages", headers=imm, json={"subject": "Draft", "toRecipients": [{"emailAddress": {"address": "bob@contoso.com"}}]})
    assert draft.status_code == 201 and draft.json()["isDraft"] is True
    did = draft.json()["id"]
    assert graph.patch(f"{U}/messages/{did}", json={"subject": "Draft v2"}).status_code == 200
    assert graph.post(f"{U}/messages/{did}/send").status_code == 202
    sent = graph.get(f"{U}/messages/{did}", headers=imm).json()
    assert sent["subject"] == "Draft v2" and sent["isDraft"] is False
    folder = graph.get(f"{U}/mailFolders/sentitems").json()
    assert sent["parentFolderId"] == folder["id"]
    assert [m["subject"] for m in inbox(graph, B)] == ["Draft v2"]


def test_patch_categories_flag_and_extended_properties(graph: httpx.Client, emulator: Emulator) -> None:
    mid = emulator.deliver("adele@contoso.com", {"subject": "Track me"})["id"]
    before = graph.get(f"{U}/messages/{mid}").json()
    prop = "String {66f5a359-4659-4830-9070-00047ec6ac6e} Name TrackedBy"
    r = graph.patch(f"{U}/messages/{mid}", json={"categories": ["Tracked to Dynamics 365"], "flag": {"flagStatus": "flagged"},
                                                 "singleValueExtendedProperties": [{"id": prop, "value": "m365sync"}]})
    assert r.status_code == 200
    after = r.json()
    assert after["categories"] == ["Tracked to Dynamics 365"] and after["flag"]["flagStatus"] == "flagged"
    assert after["changeKey"] != before["changeKey"] and after["@odata.etag"] != before["@odata.etag"]
    assert "singleValueExtendedProperties" not in after  # responses never include them
    got = graph.get(f"{U}/messages/{mid}", params={"$expand": f"singleValueExtendedProperties($filter=id eq '{prop}')"}).json()
    assert got["singleValueExtendedProperties"] == [{"id": prop, "value": "m365sync"}]
    r = graph.patch(f"{U}/messages/{mid}", json={"subject": "nope"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "ErrorInvalidPropertyUpdateSentMessage"
    assert graph.patch(f"{U}/messages/{mid}", json={"bogus": 1}).status_code == 400


def test_delete_moves_to_deleted_items_then_purges(graph: httpx.Client, emulator: Emulator) -> None:
    mid = emulator.deliver("adele@contoso.com", {"subject": "Bye"})["immutableId"]
    imm = {"Prefer": 'IdType="ImmutableId"'}
    assert graph.delete(f"{U}/messages/{mid}").status_code == 204
    deleted = graph.get(f"{U}/mailFolders/deleteditems/messages", headers=imm).json()["value"]
    assert [m["id"] for m in deleted] == [mid]
    assert graph.delete(f"{U}/messages/{mid}").status_code == 204
    assert graph.get(f"{U}/messages/{mid}").status_code == 404


def test_master_categories(graph: httpx.Client) -> None:
    r = graph.post(f"{U}/outlook/masterCategories", json={"displayName": "Tracked to Dynamics 365", "color": "preset9"})
    assert r.status_code == 201
    assert graph.post(f"{U}/outlook/masterCategories", json={"displayName": "tracked to dynamics 365"}).status_code == 409
    names = [c["displayName"] for c in graph.get(f"{U}/outlook/masterCategories").json()["value"]]
    assert names == ["Tracked to Dynamics 365"]
    assert graph.delete(f"{U}/outlook/masterCategories/{r.json()['id']}").status_code == 204


def test_users_list_filter_select_and_paging(graph: httpx.Client) -> None:
    r = graph.get("/users", params={"$filter": "mail eq 'bob@contoso.com'"}).json()["value"]
    assert [u["userPrincipalName"] for u in r] == ["bob@contoso.com"]
    r = graph.get("/users", params={"$filter": "userPrincipalName eq 'ADELE@contoso.com'", "$select": "id,proxyAddresses"}).json()["value"]
    assert set(r[0]) == {"id", "proxyAddresses"} and "smtp:adele.vance@contoso.com" in r[0]["proxyAddresses"]
    page = graph.get("/users", params={"$top": "1"}).json()
    assert len(page["value"]) == 1 and "@odata.nextLink" in page
    nxt = graph.get(page["@odata.nextLink"]).json()
    assert nxt["value"][0]["id"] != page["value"][0]["id"]
    assert graph.get("/users", params={"$filter": "jobTitle eq 'x'"}).status_code == 400
    assert graph.get("/users/nobody@contoso.com").status_code == 404


def test_a_reply_loaded_before_its_parent_still_threads(make_emulator) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import app_token, base_scenario

    s = base_scenario()
    root = "<root-1@fabrikam.com>"
    # Adele's mailbox (loaded first) holds only the reply; Bob's holds the original.
    s["users"][0]["mailFolders"] = {"inbox": {"messages": [{"subject": "RE: Pricing", "internetMessageHeaders": [
        {"name": "Message-ID", "value": "<reply-1@fabrikam.com>"}, {"name": "In-Reply-To", "value": root}, {"name": "References", "value": root}]}]}}
    s["users"][1]["mailFolders"] = {"inbox": {"messages": [{"subject": "Pricing", "internetMessageId": root}]}}
    emu = make_emulator(s)
    with httpx.Client(base_url=emu.graph_url, verify=emu.ssl_context(), headers={"Authorization": f"Bearer {app_token(emu)}"}) as c:
        reply = c.get(f"{U}/mailFolders/inbox/messages", params={"$select": "conversationId,conversationIndex"}).json()["value"][0]
        original = c.get(f"{B}/mailFolders/inbox/messages", params={"$select": "conversationId,conversationIndex"}).json()["value"][0]
    assert reply["conversationId"] == original["conversationId"]
    assert base64.b64decode(reply["conversationIndex"])[:22] == base64.b64decode(original["conversationIndex"])
