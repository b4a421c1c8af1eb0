"""What email tracking adds to the engine's per-message cost (mapping + store write).

100,000 messages against 50,000 contacts and 5,000 accounts, written the way the engine commits
them (pages of 200, one transaction per page, the page's records in one batch + item links; with
tracking, `prepare_page` before the page's `evaluate` calls). The same messages go through
two stores: one without tracking (the engine's cost) and one with the tracker's `evaluate`
(tracking, correlation, party resolution, the decision row). The messages mix replies (In-Reply-To),
token subjects, threads (conversationIndex), auto-replies, Cc and unknown senders; every mailbox
tracks all mail so both runs write the same emails.

Run: ``python benchmarks/tracking_cost.py [--messages 100000 --contacts 50000 --accounts 5000]``.
Budget: tracking adds at most 30% to the engine's per-message cost.
"""

from __future__ import annotations

import argparse
import base64
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from connector.mapping import MappingContext, Record, load_mapping_set  # noqa: E402
from connector.settings import Settings  # noqa: E402
from connector.store.sqlite import SqliteStore  # noqa: E402
from connector.sync.resources import Container  # noqa: E402
from connector.tracking import Tracker  # noqa: E402

PAGE = 200
MAILBOXES = [f"user{i}@contoso.com" for i in range(20)]


def reference_rows(contacts: int, accounts: int) -> list[Record]:
    """Users, accounts and contacts (some inactive, some sharing an address)."""
    rows = [Record("systemuser", f"u{i}", {"internalemailaddress": a, "firstname": "U", "lastname": str(i)}) for i, a in enumerate(MAILBOXES)]
    rows += [Record("account", f"a{i}", {"name": f"Account {i}", "accountnumber": f"A-{i}", "emailaddress1": f"info@acct{i}.example", "statecode": 0})
             for i in range(accounts)]
    for i in range(contacts):
        dom = i % accounts
        rows.append(Record("contact", f"c{i}", {"firstname": "C", "lastname": str(i), "emailaddress1": f"c{i}@acct{dom}.example",
                                                 "statecode": 1 if i % 50 == 0 else 0, "ownerid": f"u{i % len(MAILBOXES)}"}))
    return rows


def messages(n: int, contacts: int, seed: int = 7) -> list[tuple[str, dict[str, Any]]]:
    """(mailbox, Graph message) pairs."""
    rnd = random.Random(seed)
    out: list[tuple[str, dict[str, Any]]] = []
    ids: list[str] = []
    body = "<html><body>" + "<p>Lorem ipsum dolor sit amet.</p>" * 20 + "</body></html>"
    for i in range(n):
        mb = MAILBOXES[i % len(MAILBOXES)]
        c = rnd.randrange(contacts)
        sender = f"c{c}@acct{c % 5000}.example" if rnd.random() < 0.85 else f"stranger{i}@unknown.example"
        mid = f"<m{i}@bench.example>"
        headers = [{"name": "Message-ID", "value": mid}]
        subject = f"Order {rnd.randrange(10**6)} delivery schedule"
        thread = uuid.UUID(int=rnd.getrandbits(128)).bytes
        r = rnd.random()
        if ids and r < 0.30:
            parent = rnd.choice(ids[-5000:])
            headers += [{"name": "In-Reply-To", "value": parent}, {"name": "References", "value": parent}]
            subject = "RE: " + subject
        elif r < 0.40:
            subject += f" CRM:0{rnd.randrange(1, 20):03d}{rnd.randrange(1000):03d}"
        elif r < 0.42:
            headers.append({"name": "Auto-Submitted", "value": "auto-replied"})
            subject = "Automatic reply: " + subject
        ids.append(mid)
        out.append((mb, {
            "id": f"g{i}", "changeKey": "ck", "internetMessageId": mid, "subject": subject, "importance": "normal",
            "receivedDateTime": f"2026-11-{1 + i % 28:02d}T10:{i % 60:02d}:00Z", "sentDateTime": f"2026-11-{1 + i % 28:02d}T10:{i % 60:02d}:00Z",
            "conversationId": f"conv{i // 3}", "conversationIndex": base64.b64encode(b"\x01" + thread[:16] + b"\x00" * 5).decode(),
            "hasAttachments": False, "isRead": False, "categories": [], "body": {"contentType": "html", "content": body},
            "from": {"emailAddress": {"name": "C", "address": sender}}, "sender": {"emailAddress": {"name": "C", "address": sender}},
            "toRecipients": [{"emailAddress": {"address": mb}}],
            "ccRecipients": [{"emailAddress": {"address": f"c{rnd.randrange(contacts)}@acct{rnd.randrange(5000)}.example"}}],
            "internetMessageHeaders": headers,
        }))
    return out


def run(store: SqliteStore, msgs: list[tuple[str, dict[str, Any]]], tracker: Tracker | None) -> tuple[float, float, int]:
    """(total seconds, seconds inside `evaluate`, emails written), committing pages like the engine."""
    mapping = load_mapping_set()
    inbox = Container("mail", "inbox-id", "Inbox", "inbox", lambda: None)  # type: ignore[arg-type,return-value]
    ctxs = {mb: MappingContext(mailbox=mb, folder="inbox", lookup=store.lookup) for mb in MAILBOXES}
    in_hook = 0.0
    written = 0
    t0 = time.perf_counter()
    for start in range(0, len(msgs), PAGE):
        page = msgs[start:start + PAGE]
        mapped = [(mb, item, mapping.map_item("message", item, ctxs[mb])) for mb, item in page]
        with store.transaction() as tx:
            pending: list[Record] = []
            batched: set[tuple[str, str]] = set()
            links: dict[str, list[tuple[str, str, str, str | None]]] = {}
            if tracker is not None:
                h = time.perf_counter()
                for mb in MAILBOXES:  # the engine pages per mailbox; here a page mixes mailboxes, so each gets its own prepare
                    mine = [(item, records) for m, item, records in mapped if m == mb]
                    if mine:
                        tracker.prepare_page(tx, mb, inbox, [item for item, _ in mine], [records[0].key for _, records in mine])
                in_hook += time.perf_counter() - h
            for mb, item, records in mapped:
                store.find_link(mb, "messages", item["id"])
                if tracker is not None:
                    h = time.perf_counter()
                    records = tracker.evaluate(tx, mb, "uid", inbox, item, records)
                    in_hook += time.perf_counter() - h
                    if not records:
                        continue
                    rk = (records[0].table, records[0].key)
                    if rk in batched:  # as the engine does: a second copy of one record waits for the first
                        tx.upsert_records(pending)
                        pending, batched = [], set()
                    batched.add(rk)
                pending.extend(records)  # the engine writes a page in one batch
                links.setdefault(mb, []).append((item["id"], records[0].table, records[0].key, item.get("changeKey")))
                written += 1
            tx.upsert_records(pending)
            for mb, rows in links.items():
                tx.link_items(mb, "messages", rows, container="inbox-id")
            if tracker is not None:
                h = time.perf_counter()
                tracker.page_done(tx)
                in_hook += time.perf_counter() - h
            tx.set_checkpoint("bench", "messages", "inbox-id", next_link="x")
    return time.perf_counter() - t0, in_hook, written


def main() -> None:
    """Print the engine's per-message cost, tracking's, and the ratio."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--contacts", type=int, default=50_000)
    parser.add_argument("--accounts", type=int, default=5_000)
    args = parser.parse_args()
    refs = reference_rows(args.contacts, args.accounts)
    msgs = messages(args.messages, args.contacts)
    settings = Settings.load(None, mailboxes=[{"address": a, "track": "all"} for a in MAILBOXES])
    with tempfile.TemporaryDirectory() as tmp:
        plain = SqliteStore(Path(tmp) / "plain.db")
        plain.upsert_records(refs)
        base_s, _, base_n = run(plain, msgs, None)
        tracked_store = SqliteStore(Path(tmp) / "tracked.db")
        tracked_store.upsert_records(refs)
        tracker = Tracker.from_settings(settings, tracked_store, load_mapping_set())
        t = time.perf_counter()
        _ = tracker.index  # the run's precomputation: every email-format column of the email-enabled tables
        index_s = time.perf_counter() - t
        total_s, hook_s, n = run(tracked_store, msgs, tracker)
        decisions = tracked_store.query("SELECT COUNT(*), SUM(tracked), SUM(correlationmethod = 3), SUM(correlationmethod = 4), "
                                        "SUM(correlationmethod = 5) FROM tracking_decision")[0]
    per_msg = base_s / args.messages * 1e6
    hook_per = (hook_s + index_s) / args.messages * 1e6
    extra = (total_s - base_s + index_s) / args.messages * 1e6
    print(f"python {sys.version.split()[0]}; {args.messages:,} messages, {args.contacts:,} contacts, {args.accounts:,} accounts, "
          f"{len(MAILBOXES)} mailboxes, pages of {PAGE}")
    print(f"engine per message (mapping + store write), no tracking : {per_msg:8.1f} us  ({base_n:,} emails)")
    print(f"tracking per message (evaluate + index build)           : {hook_per:8.1f} us  ({n:,} emails; index build {index_s * 1000:.0f} ms)")
    print(f"  wall-clock difference per message                     : {extra:8.1f} us")
    print(f"tracking / engine                                       : {hook_per / per_msg * 100:8.1f} %  (budget 30 %)")
    print(f"decisions {decisions[0]:,}; tracked {decisions[1]:,}; InReplyTo {decisions[2]:,}; token {decisions[3]:,}; conversation {decisions[4]:,}")


if __name__ == "__main__":
    main()
