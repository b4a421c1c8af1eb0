"""A short guided walk through an emulated tenant, using the same client stack as the connector."""

from __future__ import annotations

import time

import httpx
from azure.identity import ClientSecretCredential
from rich.console import Console
from rich.table import Table

from .emulator import Emulator

GRAPH_SCOPE = "https://graph.microsoft.com/.default"


def run_tour(emu: Emulator, console: Console) -> None:
    """Print the tenant's users, their folders and message counts, then one full message delta round."""
    readers = {"Mail.Read", "Mail.ReadWrite"}
    app = next((a for a in emu.scenario.apps if a.client_secret and readers & set(a.permissions) and not a.mailboxes), None)
    if app is None:
        console.print("[red]The scenario has no app with a client secret and mail permissions.[/red]")
        return
    cred = ClientSecretCredential(emu.tenant_id, app.client_id, app.client_secret or "", authority=emu.authority,
                                  connection_verify=emu.ssl_context(), disable_instance_discovery=True)
    token = cred.get_token(GRAPH_SCOPE).token
    console.print(f"[bold]Emulator[/bold] {emu.graph_url}  tenant {emu.tenant_id}")
    console.print(f"Signed in as app [cyan]{app.display_name or app.client_id}[/cyan] with azure-identity's ClientSecretCredential.\n")
    with httpx.Client(base_url=emu.graph_url, verify=emu.ssl_context(), headers={"Authorization": f"Bearer {token}"}, timeout=60) as graph:
        users = graph.get("/users", params={"$top": "999"}).json()["value"]
        table = Table(title="Users and mailboxes")
        for col in ("user", "folders", "messages", "inbox"):
            table.add_column(col, justify="right" if col != "user" else "left")
        first_mailbox = None
        for u in users:
            upn = u["userPrincipalName"]
            r = graph.get(f"/users/{upn}/mailFolders/delta", headers={"Prefer": "odata.maxpagesize=200"})
            if r.status_code != 200:
                table.add_row(upn, "-", "-", r.json()["error"]["code"])
                continue
            folders = r.json()["value"]
            total = sum(f.get("totalItemCount", 0) for f in folders)
            inbox = graph.get(f"/users/{upn}/mailFolders/inbox").json().get("totalItemCount", 0)
            table.add_row(upn, str(len(folders)), str(total), str(inbox))
            if first_mailbox is None and inbox:
                first_mailbox = upn
        console.print(table)
        if first_mailbox is None:
            return
        console.print(f"\nOne delta round over [cyan]{first_mailbox}[/cyan]'s Inbox (Prefer: odata.maxpagesize=50):")
        url = f"/users/{first_mailbox}/mailFolders/inbox/messages/delta?$select=subject,from,receivedDateTime"
        pages = items = 0
        started = time.perf_counter()
        headers = {"Prefer": 'odata.maxpagesize=50, IdType="ImmutableId"'}
        while True:
            page = graph.get(url, headers=headers).json()
            pages += 1
            items += len(page["value"])
            if "@odata.nextLink" in page:
                url = page["@odata.nextLink"]
                continue
            delta_link = page["@odata.deltaLink"]
            break
        ms = (time.perf_counter() - started) * 1000
        console.print(f"  {items} messages in {pages} pages, {ms:.0f} ms; deltaLink saved.")
        emu.deliver(first_mailbox, {"subject": "Tour: a new message", "body": {"contentType": "html", "content": "<p>hello</p>"}})
        page = graph.get(delta_link, headers=headers).json()
        subjects = [v.get("subject") for v in page["value"]]
        console.print(f"  After one delivery the deltaLink returns {len(page['value'])} change(s): {subjects}")
