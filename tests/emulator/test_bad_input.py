"""Bad input gets clear answers: scenario errors name file, line and field; Graph errors are Graph-shaped, never a traceback.

Covers malformed scenario files, unknown routes and methods, unreadable bodies, bad or foreign tokens,
missing permissions, application access policies, unknown users, rejected delta options and tampered
tokens. (The control API's loopback-only rule and the `m365sync emulator serve` CLI are tested elsewhere.)
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from certs import ssl_context
from conftest import APP_ID, TENANT_ID, app_token, base_scenario

from connector.emulator import ControlError, Emulator, load_scenario
from connector.emulator.jwt import sign
from connector.yamlfile import YamlFileError

ADELE = "adele@contoso.com"
BOB = "bob@contoso.com"
DIRECTORY_APP = "55555555-5555-5555-5555-555555555555"  # User.Read.All only
SCOPED_APP = "66666666-6666-6666-6666-666666666666"  # Mail.Read, limited to Adele's mailbox
SECRET = "other-secret"

GOOD_SCENARIO = """\
tenant:
  id: 11111111-1111-1111-1111-111111111111
  domain: contoso.com
apps:
  - client_id: 22222222-2222-2222-2222-222222222222
    client_secret: s3cret
    permissions: [Mail.Read]
users:
  - userPrincipalName: adele@contoso.com
    mailFolders:
      inbox:
        messages:
          - subject: Hello
"""


def scenario() -> dict[str, Any]:
    """The base tenant plus a directory-only app and a mailbox-scoped app; Adele has one message."""
    data = base_scenario()
    data["apps"] += [
        {"client_id": DIRECTORY_APP, "client_secret": SECRET, "permissions": ["User.Read.All"]},
        {"client_id": SCOPED_APP, "client_secret": SECRET, "permissions": ["Mail.Read"], "mailboxes": [ADELE]},
    ]
    data["users"][0]["mailFolders"] = {"inbox": {"messages": [{"subject": "Hello"}]}}
    return data


@pytest.fixture
def emu(make_emulator: Callable[..., Emulator]) -> Emulator:
    """The scenario above, running."""
    return make_emulator(scenario())


@pytest.fixture
def graph(emu: Emulator) -> Iterator[httpx.Client]:
    """An httpx client on the Graph root with the all-permission app's token."""
    with httpx.Client(base_url=emu.graph_url, verify=ssl_context(emu.ca_bundle), headers={"Authorization": f"Bearer {app_token(emu)}"}) as c:
        yield c


def assert_graph_error(r: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """`r` is Graph's error envelope with `status` (and `code`); returns the error object."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert "Traceback" not in r.text and 'File "' not in r.text
    body = r.json()
    assert set(body) == {"error"}
    err = body["error"]
    assert {"code", "message", "innerError"} <= set(err), err
    assert err["message"] and isinstance(err["message"], str)
    assert err["innerError"]["request-id"] and err["innerError"]["date"]
    if code is not None:
        assert err["code"] == code, err
    return err  # type: ignore[no-any-return]


def first_message_id(graph: httpx.Client) -> str:
    """The id of Adele's first message."""
    return str(graph.get(f"/users/{ADELE}/messages").json()["value"][0]["id"])


# scenario files ---------------------------------------------------------------------------


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tenant.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_good_scenario_file_loads(tmp_path: Path) -> None:
    """The reference for the broken variants below."""
    s = load_scenario(write(tmp_path, GOOD_SCENARIO))
    assert s.users[0].mailFolders["inbox"].messages == [{"subject": "Hello"}]


def test_yaml_syntax_error_names_file_line_and_column(tmp_path: Path) -> None:
    """A YAML syntax error: `file:line:col: invalid YAML`."""
    path = write(tmp_path, GOOD_SCENARIO.replace("    permissions: [Mail.Read]", "    permissions: [Mail.Read"))
    with pytest.raises(YamlFileError) as err:
        load_scenario(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}:")
    line, col = (int(x) for x in msg[len(str(path)) + 1:].split(":")[:2])
    assert 7 <= line <= 8 and col >= 1
    assert "invalid YAML" in msg


def test_misspelled_field_names_file_line_and_field_path(tmp_path: Path) -> None:
    """A typo'd key deep in the tree: the message points at its line and spells the field path."""
    path = write(tmp_path, GOOD_SCENARIO.replace("        messages:", "        mesages:"))
    with pytest.raises(YamlFileError) as err:
        load_scenario(path)
    assert f"{path}:12:9: users.0.mailFolders.inbox.mesages:" in str(err.value)
    assert "Extra inputs are not permitted" in str(err.value)


def test_wrong_type_names_file_line_and_field_path(tmp_path: Path) -> None:
    """A value of the wrong type: points at the value's line."""
    path = write(tmp_path, GOOD_SCENARIO + "identity:\n  token_lifetime: soon\n")
    with pytest.raises(YamlFileError) as err:
        load_scenario(path)
    assert f"{path}:15:" in str(err.value) and "identity.token_lifetime" in str(err.value)


def test_several_problems_are_all_listed(tmp_path: Path) -> None:
    """Every problem gets its own `file:line:col: field: problem` line."""
    text = GOOD_SCENARIO.replace("  domain: contoso.com", "  domian: contoso.com").replace("    client_secret: s3cret", "    client_secrett: s3cret")
    with pytest.raises(YamlFileError) as err:
        load_scenario(write(tmp_path, text))
    problems = err.value.problems
    assert any(":3:3: tenant.domian:" in p for p in problems), problems
    assert any(":6:5: apps.0.client_secrett:" in p for p in problems), problems


def test_emulator_given_a_bad_scenario_file_raises_the_same_error(tmp_path: Path) -> None:
    """`Emulator(path)` surfaces the loader's error before binding anything."""
    path = write(tmp_path, GOOD_SCENARIO.replace("userPrincipalName", "userPrincipleName"))
    with pytest.raises(YamlFileError, match=r"tenant\.yaml:9:5: users\.0\.userPrincipleName"):
        Emulator(path)


def test_unreadable_app_certificate_names_the_app(tmp_path: Path) -> None:
    """A `certificate:` path that does not exist: the error names the app and the path."""
    path = write(tmp_path, GOOD_SCENARIO.replace("    client_secret: s3cret", "    certificate: missing.pem"))
    with pytest.raises(ValueError, match=r"22222222-2222-2222-2222-222222222222.*missing\.pem"):
        Emulator(path)


# routes, methods, bodies ------------------------------------------------------------------


def test_unknown_route_is_graph_shaped_400(graph: httpx.Client) -> None:
    """An unknown Graph segment: Graph's 400 "Resource not found for the segment"."""
    err = assert_graph_error(graph.get("/users/adele@contoso.com/notAThing"), 400, "BadRequest")
    assert "notAThing" in err["message"]
    assert_graph_error(graph.get("/frobnicate"), 400)


def test_unknown_path_outside_graph_is_graph_shaped_404(emu: Emulator) -> None:
    """Neither Graph nor identity: 404 in the same envelope."""
    r = httpx.get(f"{emu.origin}/nowhere/at/all", verify=ssl_context(emu.ca_bundle))
    assert_graph_error(r, 404)


def test_wrong_method_is_graph_shaped_405(graph: httpx.Client) -> None:
    """A known path with a method it does not take."""
    err = assert_graph_error(graph.delete("/users"), 405)
    assert "DELETE" in err["message"]
    assert_graph_error(graph.post(f"/users/{ADELE}/mailFolders/inbox/messages/delta", json={}), 405)


@pytest.mark.parametrize("body", [b"{not json", b"", b"[1, 2]", b'"text"'])
def test_unreadable_patch_body_is_400(graph: httpx.Client, body: bytes) -> None:
    """Invalid JSON, no body, or JSON that is not an object: 400, not a crash."""
    mid = first_message_id(graph)
    r = graph.patch(f"/users/{ADELE}/messages/{mid}", content=body, headers={"Content-Type": "application/json"})
    assert_graph_error(r, 400, "BadRequest")


@pytest.mark.parametrize(("method", "path", "body"), [
    ("POST", f"/users/{ADELE}/mailFolders", b"[]"),
    ("POST", f"/users/{ADELE}/messages", b"[]"),
    ("POST", f"/users/{ADELE}/outlook/masterCategories", b"[]"),
    ("POST", "/users/{ADELE}/messages/{mid}/move", b"[1]"),
])
def test_non_object_bodies_on_writes_are_400(graph: httpx.Client, method: str, path: str, body: bytes) -> None:
    """Arrays where Graph expects an object: 400 BadRequest, never a 500."""
    path = path.replace("{ADELE}", ADELE).replace("{mid}", first_message_id(graph))
    assert_graph_error(graph.request(method, path, content=body, headers={"Content-Type": "application/json"}), 400, "BadRequest")


def test_patch_of_a_property_graph_does_not_have_is_400(graph: httpx.Client) -> None:
    """An unknown property names itself in the message."""
    mid = first_message_id(graph)
    err = assert_graph_error(graph.patch(f"/users/{ADELE}/messages/{mid}", json={"subjekt": "x"}), 400)
    assert "subjekt" in err["message"]


def test_bad_query_values_are_400(graph: httpx.Client) -> None:
    """Malformed $top and $filter values are rejected, not crashed on."""
    assert_graph_error(graph.get("/users", params={"$top": "lots"}), 400)
    assert_graph_error(graph.get("/users", params={"$filter": "startswith(nonsense"}), 400)
    assert_graph_error(graph.get(f"/users/{ADELE}/messages/{first_message_id(graph)}", params={"$expand": "attachmentz"}), 400)


# tokens -----------------------------------------------------------------------------------


def test_missing_and_garbage_tokens_are_401(emu: Emulator) -> None:
    """No Authorization header, a non-JWT, a JWT with a bad signature segment: 401 InvalidAuthenticationToken."""
    verify = ssl_context(emu.ca_bundle)
    assert_graph_error(httpx.get(f"{emu.graph_url}/users", verify=verify), 401, "InvalidAuthenticationToken")
    for token in ("not-a-jwt", "a.b.c", "eyJhbGciOiJub25lIn0.eyJhdWQiOiJ4In0."):
        r = httpx.get(f"{emu.graph_url}/users", headers={"Authorization": f"Bearer {token}"}, verify=verify)
        assert_graph_error(r, 401, "InvalidAuthenticationToken")


def test_token_from_another_emulator_is_401(emu: Emulator, make_emulator: Callable[..., Emulator]) -> None:
    """A token another tenant's identity platform signed does not verify here."""
    other = make_emulator(base_scenario(tenant={"id": "99999999-9999-9999-9999-999999999999", "domain": "fabrikam.com"}))
    r = httpx.get(f"{emu.graph_url}/users", headers={"Authorization": f"Bearer {app_token(other)}"}, verify=ssl_context(emu.ca_bundle))
    assert_graph_error(r, 401, "InvalidAuthenticationToken")


@pytest.mark.parametrize(("change", "words"), [
    ({"tid": "99999999-9999-9999-9999-999999999999"}, "tenant"),
    ({"aud": "https://management.azure.com"}, "audience"),
    ({"exp": int(time.time()) - 60}, "expired"),
])
def test_correctly_signed_but_wrong_tokens_are_401(emu: Emulator, change: dict[str, Any], words: str) -> None:
    """Signed with the emulator's own key but for another tenant, another audience, or expired."""
    now = int(time.time())
    claims = {"aud": "https://graph.microsoft.com", "iss": f"https://sts.windows.net/{TENANT_ID}/", "iat": now, "nbf": now, "exp": now + 600,
              "appid": APP_ID, "tid": TENANT_ID, "idtyp": "app", "oid": "x", "sub": "x", "roles": ["User.Read.All"], **change}
    token = sign(claims, emu.state.signing_key, headers={"kid": emu.state.kid})
    r = httpx.get(f"{emu.graph_url}/users", headers={"Authorization": f"Bearer {token}"}, verify=ssl_context(emu.ca_bundle))
    err = assert_graph_error(r, 401, "InvalidAuthenticationToken")
    assert words in err["message"].lower()


def test_token_endpoint_errors_are_aad_shaped(emu: Emulator) -> None:
    """The identity platform answers bad requests with OAuth2 error JSON and AADSTS codes, never a crash."""
    verify = ssl_context(emu.ca_bundle)
    token_url = f"{emu.authority}/{TENANT_ID}/oauth2/v2.0/token"
    cases = [
        (httpx.post(token_url, data={}, verify=verify), 400, 900144),
        (httpx.post(token_url, data={"grant_type": "client_credentials", "client_id": APP_ID, "client_secret": "x", "scope": "User.Read"}, verify=verify), 400, 1002012),
        (httpx.post(token_url, data={"grant_type": "password", "client_id": APP_ID}, verify=verify), 400, 70003),
        (httpx.post(token_url, content=b"\xff\xfe\x00", headers={"Content-Type": "application/x-www-form-urlencoded"}, verify=verify), 400, 900144),
        (httpx.get(f"{emu.authority}/not-a-tenant/v2.0/.well-known/openid-configuration", verify=verify), 400, 90002),
    ]
    for r, status, code in cases:
        assert r.status_code == status, r.text
        body = r.json()
        assert body["error_codes"] == [code] and body["error_description"].startswith(f"AADSTS{code}:")


# permissions and mailboxes ----------------------------------------------------------------


def test_missing_permission_is_403(emu: Emulator) -> None:
    """An app with only User.Read.All may list users but not read mail."""
    headers = {"Authorization": f"Bearer {app_token(emu, DIRECTORY_APP, SECRET)}"}
    with httpx.Client(base_url=emu.graph_url, verify=ssl_context(emu.ca_bundle), headers=headers) as c:
        assert c.get("/users").status_code == 200
        assert_graph_error(c.get(f"/users/{ADELE}/mailFolders/inbox/messages/delta"), 403, "ErrorAccessDenied")
        assert_graph_error(c.get(f"/users/{ADELE}/mailFolders"), 403, "ErrorAccessDenied")


def test_application_access_policy_is_403_outside_the_allowed_mailboxes(emu: Emulator) -> None:
    """An app limited to Adele's mailbox reads hers and gets 403 on Bob's."""
    headers = {"Authorization": f"Bearer {app_token(emu, SCOPED_APP, SECRET)}"}
    with httpx.Client(base_url=emu.graph_url, verify=ssl_context(emu.ca_bundle), headers=headers) as c:
        assert c.get(f"/users/{ADELE}/mailFolders/inbox/messages/delta").status_code == 200
        err = assert_graph_error(c.get(f"/users/{BOB}/mailFolders/inbox/messages/delta"), 403, "ErrorAccessDenied")
        assert "AccessPolicy" in err["message"]


def test_unknown_user_is_404(graph: httpx.Client) -> None:
    """Unknown mailbox and unknown directory user: 404 with Graph's codes."""
    assert_graph_error(graph.get("/users/nobody@contoso.com/mailFolders/inbox/messages/delta"), 404, "ErrorInvalidUser")
    assert_graph_error(graph.get("/users/nobody@contoso.com"), 404, "Request_ResourceNotFound")


def test_unknown_folder_and_message_are_404(graph: httpx.Client) -> None:
    """Outlook's ErrorItemNotFound for ids it does not hold."""
    assert_graph_error(graph.get(f"/users/{ADELE}/mailFolders/AAMkADnope/messages/delta"), 404, "ErrorItemNotFound")
    assert_graph_error(graph.get(f"/users/{ADELE}/messages/AAMkAGnope"), 404, "ErrorItemNotFound")


# delta ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("params", "mentions"), [
    ({"$search": '"hello"'}, "$search"),
    ({"$orderby": "subject"}, "receivedDateTime desc"),
    ({"$filter": "subject eq 'x'"}, "receivedDateTime"),
    ({"$count": "true"}, "$count"),
    ({"changeType": "exploded"}, "exploded"),
])
def test_message_delta_option_rejections_are_400(graph: httpx.Client, params: dict[str, str], mentions: str) -> None:
    """Options Outlook's message delta does not take are refused with a message naming them."""
    err = assert_graph_error(graph.get(f"/users/{ADELE}/mailFolders/inbox/messages/delta", params=params), 400)
    assert mentions in err["message"]


def test_user_level_message_delta_is_400(graph: httpx.Client) -> None:
    """`/users/{id}/messages/delta` exists in the SDK but not in the service (graph-v1.md §7.7)."""
    err = assert_graph_error(graph.get(f"/users/{ADELE}/messages/delta"), 400)
    assert "Change tracking is not supported" in err["message"]


def test_tampered_delta_and_skip_tokens_are_400(graph: httpx.Client) -> None:
    """Editing an opaque token breaks its signature: 400, not 410 and not someone else's sync state."""
    first = graph.get(f"/users/{ADELE}/mailFolders/inbox/messages/delta", headers={"Prefer": "odata.maxpagesize=1"}).json()
    assert "@odata.deltaLink" in first  # one message, one page
    link = first["@odata.deltaLink"]
    token = link.rsplit("=", 1)[1]
    flipped = token[:-3] + ("A" if token[-3] != "A" else "B") + token[-2:]
    assert_graph_error(graph.get(link.replace(token, flipped)), 400)
    assert_graph_error(graph.get(link.replace(token, "garbage")), 400)
    assert_graph_error(graph.get(f"/users/{ADELE}/mailFolders/inbox/messages/delta", params={"$skiptoken": flipped}), 400)
    assert graph.get(link).status_code == 200  # the genuine link still works


def test_delta_link_of_another_mailbox_is_refused(graph: httpx.Client) -> None:
    """A deltaLink minted for Adele replayed against Bob's folder does not leak Adele's sync state."""
    link = graph.get(f"/users/{ADELE}/mailFolders/inbox/messages/delta").json()["@odata.deltaLink"]
    token = link.rsplit("=", 1)[1]
    r = graph.get(f"/users/{BOB}/mailFolders/inbox/messages/delta", params={"$deltatoken": token})
    assert r.status_code in (400, 410)
    assert_graph_error(r, r.status_code)


# control API and batch --------------------------------------------------------------------


def test_invalid_fault_rule_is_refused(emu: Emulator) -> None:
    """A fault rule with two actions: the control API answers 400 naming the problem."""
    with pytest.raises(ControlError) as err:
        emu.add_fault({"match": {"path": "*"}, "respond": {"status": 429}, "reset": True})
    assert err.value.status == 400 and err.value.body["error"]["code"] == "InvalidFault"


@pytest.mark.skipif(not importlib.util.find_spec("connector.emulator.batch"), reason="connector/emulator/batch.py not written yet")
def test_malformed_batches_are_400(graph: httpx.Client) -> None:
    """A batch without requests, with duplicate ids, or over 20 requests is refused as a whole."""
    get = {"method": "GET", "url": "/users"}
    assert_graph_error(graph.post("/$batch", json={}), 400)
    assert_graph_error(graph.post("/$batch", json={"requests": [{"id": "1", **get}, {"id": "1", **get}]}), 400)
    assert_graph_error(graph.post("/$batch", json={"requests": [{"id": str(i), **get} for i in range(21)]}), 400)
    r = graph.post("/$batch", json={"requests": [{"id": "1", **get}, {"id": "2", "method": "GET", "url": "/nowhere"}]})
    assert r.status_code == 200
    inner = {x["id"]: x for x in r.json()["responses"]}
    assert inner["1"]["status"] == 200 and inner["2"]["status"] == 400 and inner["2"]["body"]["error"]["code"]
