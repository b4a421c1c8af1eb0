"""What email tracking adds to the engine's per-message cost, end to end.

Figures only (no pass/fail). One emulator process serves one mailbox of `--messages` generated messages
(threads with In-Reply-To/References, internal and external senders, Sent Items copies, HTML bodies).
A CRM of `--contacts` contacts and `--accounts` accounts is built around the addresses that mail uses
(every external correspondent is a contact; some also have an account's address; some contacts are
inactive; the rest are filler) and imported into each store with the real `import_records`. Then
`SyncEngine.sync_once` syncs the mailbox into a fresh store, each run in its own child process:

- engine  - tracking off: every message mapped and written;
- tracked - tracking on with `track: all` (every message evaluated, correlated, its parties resolved,
            a decision recorded; the same emails written), the late re-check included.

Each variant runs `--repeats` times, alternating, and the fastest run of each counts (this machine is
shared and noisy). The ratio is the issue's budget: tracking may add at most 30% per message.

`--breakdown` then runs each variant once more with timers on the engine's and the tracker's phases and
prints where each variant's time goes, per message, side by side (those runs are slower and never count
for the figures above). Each phase is timed exclusive of the phases it calls.

`--writes-only` adds a third variant, what tracking's writes alone cost: one uncounted tracked run records what the
tracker returns for each message and the decision rows it writes per page; then each repeat also runs

- writes    - tracking on, but every message's records and every page's decision rows are the recorded ones: the
              tracker's indexes are created and the same rows written (the late re-check's updates aside), and
              nothing is evaluated.

So the tracked variant's cost splits into writing (writes - engine) and evaluating (tracked - writes).

`--instructions` (needs valgrind) then counts the instructions each variant's sync executes, per message:
each variant once under cachegrind, less the same run stopped just before the sync (its imports and CRM
import). Unlike time, the count barely moves from run to run (0.2% between two runs at 2,000 messages), so it
shows changes of a percent or two that this machine's timing noise hides; it leaves out what the CPU waits for
(disk, memory).

Run: ``python benchmarks/tracking_cost.py [--messages 100000] [--contacts 50000] [--accounts 5000] [--repeats 2] [--writes-only] [--breakdown] [--instructions]``
(``TRACKING_COST_KEEP=1`` keeps the emulator up and prints how to run one variant by hand, e.g. under a profiler.)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import re
import shutil
import ssl
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import sync_throughput as st  # noqa: E402  (emulator start-up and the scenario are shared)


async def harvest(info: dict[str, str]) -> tuple[list[str], list[str]]:
    """(external correspondents, tenant addresses) of the mailbox's mail, read through Graph."""
    import httpx

    token = await st._token(info)
    ext: dict[str, None] = {}
    own: dict[str, None] = {}
    url: str | None = f"{info['graph_url']}/users/{st.USER}/messages?$select=from,toRecipients,ccRecipients&$top=1000"
    async with httpx.AsyncClient(verify=ssl.create_default_context(cafile=info["ca_bundle"]), timeout=120) as client:
        while url:
            page = (await client.get(url, headers={"Authorization": f"Bearer {token}"})).json()
            for m in page["value"]:
                for r in [m.get("from") or {}, *(m.get("toRecipients") or []), *(m.get("ccRecipients") or [])]:
                    a = ((r.get("emailAddress") or {}).get("address") or "").lower()
                    if a:
                        (own if a.endswith("@contoso.com") else ext)[a] = None
            url = page.get("@odata.nextLink")
    return list(ext), list(own)


def crm(external: list[str], internal: list[str], contacts: int, accounts: int) -> dict[str, list[dict[str, Any]]]:
    """Dataverse-style rows: users for the tenant, a contact per correspondent (1 in 25 inactive), filler to `contacts`;
    `accounts` accounts, one in a hundred sharing a correspondent's address (two matches for that address)."""
    rnd = random.Random(5)
    users = [{"systemuserid": f"00000000-0000-4000-8000-{i:012d}", "firstname": "User", "lastname": str(i), "internalemailaddress": a}
             for i, a in enumerate(internal)]
    owners = [u["systemuserid"] for u in users] or [None]
    rows = [{"contactid": f"10000000-0000-4000-8000-{i:012d}", "firstname": "C", "lastname": str(i),
             "emailaddress1": external[i] if i < len(external) else f"filler{i}@crm{i % 997}.example",
             "statecode": 1 if i % 25 == 24 else 0, "statuscode": 2 if i % 25 == 24 else 1, "ownerid": rnd.choice(owners)}
            for i in range(max(contacts, len(external)))]
    accts = [{"accountid": f"20000000-0000-4000-8000-{i:012d}", "name": f"Account {i}", "accountnumber": f"A-{i}",
              "emailaddress1": external[i // 100] if i % 100 == 0 and i // 100 < len(external) else f"info@acct{i}.example", "statecode": 0}
             for i in range(accounts)]
    return {"systemuser": users, "contact": rows, "account": accts}


# --- one run (a child process) -------------------------------------------------------------------


# (label, module, class, method) of each timed phase, in the order printed
PHASES = (
    ("mapping", "connector.mapping.loader", "MappingSet", "map_item"),
    ("tracking: page loads", "connector.tracking.tracker", "Tracker", "prepare_page"),
    ("tracking: evaluate", "connector.tracking.tracker", "Tracker", "evaluate"),
    ("tracking: decision rows", "connector.tracking.tracker", "Tracker", "page_done"),
    ("tracking: late re-check", "connector.tracking.tracker", "Tracker", "after_mailbox"),
    ("tracking: end of run", "connector.tracking.tracker", "Tracker", "end_run"),
    ("records upserted", "connector.store.sqlite", "Transaction", "upsert_records"),
    ("links written", "connector.store.sqlite", "Transaction", "link_items"),
    ("page transaction, the rest (commit)", "connector.sync.engine", "SyncEngine", "_commit"),
)


def time_phases() -> dict[str, float]:
    """Wrap each phase's method with a timer; seconds per phase, exclusive of the timed phases it calls (filled as the
    run goes). The coroutines (late re-check, end of run) run while no page is in flight, so they nest like the rest."""
    import functools
    import importlib
    import inspect

    spent = {label: 0.0 for label, *_ in PHASES}
    stack: list[list[Any]] = []  # [label, start, time spent in timed phases it called]

    def enter(label: str) -> None:
        stack.append([label, time.perf_counter(), 0.0])

    def leave() -> None:
        label, start, inner = stack.pop()
        took = time.perf_counter() - start
        spent[label] += took - inner
        if stack:
            stack[-1][2] += took

    for label, module, cls_name, name in PHASES:
        cls = getattr(importlib.import_module(module), cls_name)
        fn = getattr(cls, name)
        if inspect.iscoroutinefunction(fn):
            async def timed_async(*a: Any, __fn: Any = fn, __label: str = label, **k: Any) -> Any:
                enter(__label)
                try:
                    return await __fn(*a, **k)
                finally:
                    leave()
            setattr(cls, name, functools.wraps(fn)(timed_async))
        else:
            def timed(*a: Any, __fn: Any = fn, __label: str = label, **k: Any) -> Any:
                enter(__label)
                try:
                    return __fn(*a, **k)
                finally:
                    leave()
            setattr(cls, name, functools.wraps(fn)(timed))
    return spent


def record_writes(path: str) -> None:
    """Make this run's tracker keep what it returns for each message and the decision rows of each page, saved to `path`
    at exit. A returned record that the mapping made is kept as its columns' order and the values the tracker changed,
    so the recording holds no message bodies (kept whole, they made the writes variant peak at 1,972 MB at 100,000)."""
    import atexit
    import pickle

    from connector.sync.engine import SyncEngine
    from connector.tracking.tracker import Tracker

    orders: dict[tuple[str, ...], int] = {}
    # per message: what the tracker returned; per engine page: the decision rows it wrote (the tracker also flushes them
    # every 1,000 rows, and the late re-check writes its own, outside any page: those are not kept)
    kept: dict[str, Any] = {"items": {}, "pages": []}
    in_page = [False]
    commit, evaluate, page_done = SyncEngine._commit, Tracker.evaluate, Tracker.page_done

    def keep_commit(self: SyncEngine, *a: Any, **k: Any) -> Any:
        kept["pages"].append(({}, []))
        in_page[0] = True
        try:
            return commit(self, *a, **k)
        finally:
            in_page[0] = False

    def keep_item(self: Tracker, tx: Any, mailbox: str, user_id: str, container: Any, item: dict[str, Any], records: list[Any]) -> list[Any]:
        mapped = {(r.table, r.key): dict(r.values) for r in records}  # (the tracker may change the mapped records in place)
        out = evaluate(self, tx, mailbox, user_id, container, item, records)
        if in_page[0]:
            rows = []
            for r in out:
                base = mapped.get((r.table, r.key))
                if base is None:
                    rows.append((r.table, r.key, None, dict(r.values)))
                else:
                    order = orders.setdefault(tuple(r.values), len(orders))
                    rows.append((r.table, r.key, order, {k: v for k, v in r.values.items() if k not in base or base[k] != v}))
            kept["items"][(mailbox, container.container, item.get("id"))] = rows
        return out

    def keep_page(self: Tracker, tx: Any) -> None:
        if in_page[0]:
            frags, rows = kept["pages"][-1]
            frags.update(self._pending_frags)
            rows.extend(self._pending)
        page_done(self, tx)

    SyncEngine._commit = keep_commit  # type: ignore[method-assign]
    Tracker.evaluate, Tracker.page_done = keep_item, keep_page  # type: ignore[method-assign]
    atexit.register(lambda: Path(path).write_bytes(pickle.dumps({**kept, "orders": list(orders)}, protocol=5)))


def replay_writes(path: str) -> None:
    """Make this run's tracker write the rows `record_writes` kept, evaluating nothing (its indexes are still created). The
    mapped records are rebuilt with the kept changes, in the kept column order: 14-19 us per message at 20,000, timed with
    `--breakdown`'s timers on, so the variant's figure is an upper bound on the writes."""
    import pickle
    from operator import itemgetter

    from connector.mapping.records import Record
    from connector.tracking.tracker import Tracker

    kept = pickle.loads(Path(path).read_bytes())
    items, pages = kept["items"], iter(kept["pages"])
    page_done = Tracker.page_done
    # (column names, a function returning their values in that order: itemgetter returns a bare value for one name)
    orders = [(names, itemgetter(*names) if len(names) > 1 else lambda d, names=names: tuple(d[n] for n in names)) for names in kept["orders"]]

    def written(self: Tracker, tx: Any, mailbox: str, user_id: str, container: Any, item: dict[str, Any], records: list[Any]) -> list[Any]:
        rows = items.get((mailbox, container.container, item.get("id")))
        if rows is None:
            return records
        mapped = {(r.table, r.key): r.values for r in records}
        out = []
        for table, key, order, values in rows:
            if order is None:
                out.append(Record(table, key, dict(values)))
            else:
                names, pick = orders[order]
                out.append(Record(table, key, dict(zip(names, pick(mapped[(table, key)] | values)))))
        return out

    def page_rows(self: Tracker, tx: Any) -> None:
        self._pending_frags, self._pending = next(pages)  # written as the tracker writes them
        page_done(self, tx)

    async def nothing(self: Tracker, *a: Any, **k: Any) -> None:
        return None

    Tracker.evaluate, Tracker.page_done = written, page_rows  # type: ignore[method-assign]
    Tracker.prepare_page = lambda self, *a, **k: None  # type: ignore[method-assign]
    Tracker.after_mailbox = Tracker.end_run = nothing  # type: ignore[method-assign]


async def run_engine(info: dict[str, str], db: str, crm_file: str, tracking: bool, page_size: int, setup_only: bool = False) -> dict[str, Any]:
    from connector.settings import Settings
    from connector.store.sqlite import SqliteStore
    from connector.sync.engine import SyncEngine
    from connector.tracking import import_records

    settings = Settings.load(None, tenant_id=info["tenant_id"], client_id=st.CLIENT_ID, client_secret=st.SECRET, authority_host=info["authority"],
                             graph_url=info["graph_url"], ca_bundle=info["ca_bundle"], store_url=f"sqlite:///{db}",
                             mailboxes=[{"address": st.USER, "track": "all"}], resources=["mail"], page_size=page_size,
                             tracking={"enabled": tracking})
    with SqliteStore(db) as store:
        import_records(store, [crm_file])
    engine = SyncEngine.from_settings(settings)
    if setup_only:  # (`--instructions`: everything but the sync, to subtract)
        await engine.aclose()
        return {}
    try:
        t, cpu = time.perf_counter(), time.process_time()
        report = await engine.sync_once()
        seconds, cpu = time.perf_counter() - t, time.process_time() - cpu
        counts = engine.store.query("SELECT COUNT(*) FROM email")[0][0], engine.store.query("SELECT COUNT(*) FROM activityparty WHERE partyid IS NOT NULL")[0][0]
        decisions = engine.store.query("SELECT COUNT(*), COALESCE(SUM(correlationmethod = 3), 0), COALESCE(SUM(correlationmethod = 5), 0) "
                                       "FROM tracking_decision")[0] if tracking else (0, 0, 0)
    finally:
        await engine.aclose()
    mail = report.mailboxes[0].resources["mail"]
    return {"items": mail.created + mail.updated, "seconds": seconds, "cpu": cpu, "ok": report.ok, "emails": counts[0], "resolved_parties": counts[1],
            "decisions": decisions[0], "in_reply_to": decisions[1], "conversation": decisions[2]}


def child(args: argparse.Namespace) -> None:
    import gc
    import resource

    if args.record_writes:
        record_writes(args.record_writes)
    if args.variant == "writes":
        replay_writes(args.writes_file)
        gc.collect()
        gc.freeze()  # (the recording, held for the run, is no work for the garbage collector)
    spent = time_phases() if args.breakdown else None
    out = asyncio.run(run_engine(json.loads(args.info), args.db, args.crm, args.variant != "engine", args.page_size, args.setup_only))
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if spent is not None:
        out["phases"] = spent
    print(json.dumps(out))


def child_options(info: dict[str, str], crm_file: Path, db: Path, page_size: int, *flags: str) -> list[str]:
    """The options one variant's child process runs with."""
    return ["--info", json.dumps(info), "--db", str(db), "--crm", str(crm_file), "--page-size", str(page_size), *flags]


def run_child(variant: str, info: dict[str, str], crm_file: Path, db: Path, page_size: int, *flags: str) -> dict[str, Any]:
    return st.run_script_child(__file__, variant, child_options(info, crm_file, db, page_size, *flags))


def count_instructions(variant: str, info: dict[str, str], crm_file: Path, db: Path, page_size: int, setup_only: bool) -> int:
    """Instructions one child run executes, counted by valgrind's cachegrind (no cache simulation)."""
    out = st.spawn_script_child(__file__, variant, child_options(info, crm_file, db, page_size, *(["--setup-only"] if setup_only else [])),
                                prefix=["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null"])
    found = re.search(r"I\s+refs:\s+([\d,]+)", out.stderr)
    if out.returncode != 0 or found is None:
        raise SystemExit(f"{variant} under valgrind failed:\n{out.stderr[-3000:]}")
    return int(found.group(1).replace(",", ""))


def sync_instructions(info: dict[str, str], crm_file: Path, work: Path, page_size: int, messages: int) -> dict[str, float]:
    """Instructions per message of each variant's sync: a run less the same run stopped before the sync."""
    out = {}
    for v in ("engine", "tracked"):
        full = count_instructions(v, info, crm_file, work / f"{v}-instr.db", page_size, setup_only=False)
        setup = count_instructions(v, info, crm_file, work / f"{v}-instr-setup.db", page_size, setup_only=True)
        out[v] = (full - setup) / messages
        print(f"  {v:<8} {full:,} instructions, {setup:,} of them before the sync", flush=True)
    return out


def print_breakdown(e: dict[str, Any], k: dict[str, Any]) -> None:
    """Per message, per phase: tracking off, tracking on, the difference."""
    print("\nwhere the time goes: one more run of each variant, with timers (us per message)")
    print(f"  {'phase':<38s}{'off':>8} {'on':>8} {'on - off':>9}")
    rows = [(label, e["phases"][label] / e["items"] * 1e6, k["phases"][label] / k["items"] * 1e6) for label, *_ in PHASES]
    rows.append(("fetching, parsing and the rest", *((r["seconds"] - sum(r["phases"].values())) / r["items"] * 1e6 for r in (e, k))))
    for label, off, on in rows:
        print(f"  {label:<38s}{off:8.1f} {on:8.1f} {on - off:+9.1f}")
    total_e, total_k = (r["seconds"] / r["items"] * 1e6 for r in (e, k))
    print(f"  {'total':<38s}{total_e:8.1f} {total_k:8.1f} {total_k - total_e:+9.1f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--messages", type=int, default=100_000)
    p.add_argument("--contacts", type=int, default=50_000)
    p.add_argument("--accounts", type=int, default=5_000)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--page-size", type=int, default=1000)
    p.add_argument("--breakdown", action="store_true", help="then one more run of each variant, with per-phase timers")
    p.add_argument("--writes-only", action="store_true", help="a third variant: tracking's writes replayed, nothing evaluated")
    p.add_argument("--instructions", action="store_true", help="then count each variant's instructions per message under valgrind")
    p.add_argument("--record-writes", default="", help=argparse.SUPPRESS)
    p.add_argument("--writes-file", default="", help=argparse.SUPPRESS)
    p.add_argument("--setup-only", action="store_true", help=argparse.SUPPRESS)
    st.child_arguments(p)
    p.add_argument("--crm", default="", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args)
        return
    if args.instructions and shutil.which("valgrind") is None:
        raise SystemExit("--instructions needs valgrind (apt install valgrind)")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        t = time.perf_counter()
        proc, info = st.start_emulator(args.messages, work)
        try:
            external, internal = asyncio.run(harvest(info))
            crm_file = work / "crm.json"
            rows = crm(external, internal, args.contacts, args.accounts)
            crm_file.write_text(json.dumps(rows))
            print(f"{args.messages:,} messages ready in {time.perf_counter() - t:.1f} s; CRM: {len(rows['contact']):,} contacts "
                  f"({len(external):,} correspondents), {len(rows['account']):,} accounts, {len(rows['systemuser'])} users\n")
            if os.environ.get("TRACKING_COST_KEEP"):  # for profiling a run by hand: the emulator and CRM stay up
                print(json.dumps({"info": info, "crm": str(crm_file)}), flush=True)
                input("press enter to stop the emulator\n")
            variants = ("engine", "tracked", "writes") if args.writes_only else ("engine", "tracked")
            writes = work / "writes.pickle"
            if args.writes_only:
                print("  recording the tracker's writes (one tracked run, not counted)", flush=True)
                run_child("tracked", info, crm_file, work / "record.db", args.page_size, "--record-writes", str(writes))
            runs: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
            for r in range(args.repeats):
                for variant in variants:
                    got = run_child(variant, info, crm_file, work / f"{variant}-{r}.db", args.page_size, "--writes-file", str(writes))
                    runs[variant].append(got)
                    print(f"  run {r + 1} {variant:<8} {got['seconds']:7.2f} s ({got['cpu']:6.2f} s CPU)  {got['items'] / got['seconds']:8,.0f} msg/s  "
                          f"peak RSS {got['peak_rss_mb']:.0f} MB", flush=True)
            timed = {v: run_child(v, info, crm_file, work / f"{v}-timed.db", args.page_size, "--breakdown")
                     for v in ("engine", "tracked")} if args.breakdown else None
            if args.instructions:
                print("\ncounting instructions under valgrind (one run of each variant, and each again stopped before the sync)")
            instr = sync_instructions(info, crm_file, work, args.page_size, args.messages) if args.instructions else None
        finally:
            proc.terminate()
            proc.wait(30)
    best = {v: min(rs, key=lambda r: r["seconds"]) for v, rs in runs.items()}
    e, k = best["engine"], best["tracked"]
    per_e, per_k = e["seconds"] / e["items"] * 1e6, k["seconds"] / k["items"] * 1e6
    cpu_e, cpu_k = (min(r["cpu"] for r in runs[v]) / best[v]["items"] * 1e6 for v in ("engine", "tracked"))
    print()
    print(f"engine per message, tracking off : {per_e:7.1f} us  ({e['items']:,} messages, {e['emails']:,} emails)")
    print(f"engine per message, tracking on  : {per_k:7.1f} us  ({k['items']:,} messages, {k['emails']:,} emails, {k['decisions']:,} decisions, "
          f"{k['resolved_parties']:,} resolved party rows; InReplyTo {k['in_reply_to']:,}, conversation {k['conversation']:,})")
    print(f"tracking adds                    : {(per_k / per_e - 1) * 100:7.1f} %  (budget 30 %); in CPU time {cpu_e:.1f} -> {cpu_k:.1f} us, "
          f"{(cpu_k / cpu_e - 1) * 100:.1f} %")
    if "writes" in best:
        w = best["writes"]
        per_w = w["seconds"] / w["items"] * 1e6
        cpu_w = min(r["cpu"] for r in runs["writes"]) / w["items"] * 1e6
        print(f"tracking's writes alone          : {(per_w / per_e - 1) * 100:7.1f} %  ({per_w:.1f} us per message; CPU {cpu_w:.1f} us, "
              f"{(cpu_w / cpu_e - 1) * 100:.1f} %); evaluating adds the other {(per_k - per_w) / per_e * 100:.1f} points")
    print(f"peak RSS                         : {e['peak_rss_mb']:.0f} MB off, {k['peak_rss_mb']:.0f} MB on")
    if instr is not None:
        print(f"instructions per message        : {instr['engine']:,.0f} off, {instr['tracked']:,.0f} on: tracking adds "
              f"{(instr['tracked'] / instr['engine'] - 1) * 100:.1f} %")
    if timed is not None:
        print_breakdown(timed["engine"], timed["tracked"])


if __name__ == "__main__":
    main()
