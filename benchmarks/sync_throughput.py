"""Sync throughput: the engine end to end, beside the raw-fetch floor and the msgraph-sdk model path.

Figures only, not pass/fail. One run starts the emulator (a separate process, so its memory is not
counted) with one mailbox of `--messages` generated messages (realistic HTML bodies), then syncs it
three ways, each in a fresh child process so peak RSS is its own:

1. engine  - `SyncEngine` end to end: delta pages -> mapping -> SQLite, page + checkpoint per transaction
             (email tracking off, so every message is written, like the floor).
   tracked - the same with email tracking on (`track: all`, correlation and party resolution).
2. raw     - the floor: the same delta pages (same $select, page size, Prefer) fetched with httpx,
             parsed with orjson, the bare JSON inserted with executemany into one SQLite table.
3. sdk     - msgraph-sdk `...messages.delta.get()` into Kiota models, on the first `--sdk-messages`.

Targets from the issue: engine >= 50% of raw items/s and >= 50x the SDK path; peak RSS < 250 MB at
100,000 messages and flat from 10,000 to 100,000; requests per 1,000 messages <= 1000/page_size + 2.

Run: ``python benchmarks/sync_throughput.py [--messages 100000] [--sizes 10000,100000] [--page-size 1000]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
CLIENT_ID = "bench-app"
SECRET = "bench-secret"
USER = "adele@contoso.com"


def scenario(messages: int) -> dict[str, Any]:
    return {
        "tenant": {"id": TENANT, "domain": "contoso.com"},
        "apps": [{"client_id": CLIENT_ID, "client_secret": SECRET, "permissions": ["User.Read.All", "Mail.ReadWrite"]}],
        "throttling": {"requests_per_window": 1_000_000},
        "users": [{"userPrincipalName": USER, "displayName": "Adele Vance"}],
        "generate": {"seed": 1, "messages": messages, "mailboxes": [USER], "folders": ["inbox"]},
    }


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


# --- variants (each runs in its own process) -------------------------------------------------------


async def run_engine(info: dict[str, str], page_size: int, db: str, tracking: bool = False) -> dict[str, Any]:
    from connector.settings import Settings
    from connector.sync.engine import SyncEngine

    settings = Settings.load(None, tenant_id=info["tenant_id"], client_id=CLIENT_ID, client_secret=SECRET, authority_host=info["authority"],
                             graph_url=info["graph_url"], ca_bundle=info["ca_bundle"], store_url=f"sqlite:///{db}", mailboxes=[{"address": USER, "track": "all"}],
                             resources=["mail"], page_size=page_size, tracking={"enabled": tracking})
    engine = SyncEngine.from_settings(settings)
    try:
        t = time.perf_counter()
        report = await engine.sync_once()
        seconds = time.perf_counter() - t
    finally:
        await engine.aclose()
    mail = report.mailboxes[0].resources["mail"]
    inbox_requests = mail.pages  # delta requests only; discovery requests are reported apart
    return {"items": mail.created + mail.updated, "seconds": seconds, "requests": mail.requests, "delta_requests": inbox_requests, "ok": report.ok}


async def _token(info: dict[str, str]) -> str:
    from azure.identity.aio import ClientSecretCredential

    cred = ClientSecretCredential(info["tenant_id"], CLIENT_ID, SECRET, authority=info["authority"], connection_verify=info["ca_bundle"],
                                  disable_instance_discovery=True)
    try:
        return (await cred.get_token("https://graph.microsoft.com/.default")).token
    finally:
        await cred.close()


async def run_raw(info: dict[str, str], page_size: int, db: str) -> dict[str, Any]:
    import ssl

    import httpx
    import orjson

    from connector.sync.resources import MESSAGE_SELECT

    token = await _token(info)
    con = sqlite3.connect(db, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    con.execute("CREATE TABLE IF NOT EXISTS raw (id TEXT PRIMARY KEY, json TEXT)")
    headers = {"Authorization": f"Bearer {token}", "Prefer": f'odata.maxpagesize={page_size}, IdType="ImmutableId"'}
    items = requests = 0
    t = time.perf_counter()
    async with httpx.AsyncClient(verify=ssl.create_default_context(cafile=info["ca_bundle"]), timeout=120) as client:
        for folder in ("inbox", "sentitems"):  # the engine's default folders
            url = f"{info['graph_url']}/users/{USER}/mailFolders/{folder}/messages/delta?$select={','.join(MESSAGE_SELECT)}"
            while url:
                page = orjson.loads((await client.get(url, headers=headers)).content)
                requests += 1
                rows = [(m["id"], orjson.dumps(m).decode()) for m in page["value"]]
                con.execute("BEGIN")
                con.executemany("INSERT OR REPLACE INTO raw VALUES (?, ?)", rows)
                con.execute("COMMIT")
                items += len(rows)
                url = page.get("@odata.nextLink")
    return {"items": items, "seconds": time.perf_counter() - t, "requests": requests, "delta_requests": requests, "ok": True}


async def run_sdk(info: dict[str, str], page_size: int, limit: int) -> dict[str, Any]:
    import ssl

    import httpx
    from azure.identity.aio import ClientSecretCredential
    from kiota_abstractions.base_request_configuration import RequestConfiguration
    from kiota_authentication_azure.azure_identity_authentication_provider import AzureIdentityAuthenticationProvider
    from msgraph import GraphServiceClient
    from msgraph.graph_request_adapter import GraphRequestAdapter, options
    from msgraph_core import GraphClientFactory

    from connector.sync.resources import MESSAGE_SELECT

    cred = ClientSecretCredential(info["tenant_id"], CLIENT_ID, SECRET, authority=info["authority"], connection_verify=info["ca_bundle"],
                                  disable_instance_discovery=True)
    http = GraphClientFactory.create_with_default_middleware(
        client=httpx.AsyncClient(verify=ssl.create_default_context(cafile=info["ca_bundle"]), timeout=120), options=options)
    adapter = GraphRequestAdapter(AzureIdentityAuthenticationProvider(cred, scopes=["https://graph.microsoft.com/.default"]), client=http)
    adapter.base_url = info["graph_url"]
    client = GraphServiceClient(request_adapter=adapter)
    from msgraph.generated.users.item.mail_folders.item.messages.delta.delta_request_builder import DeltaRequestBuilder

    builder = client.users.by_user_id(USER).mail_folders.by_mail_folder_id("inbox").messages.delta
    cfg = RequestConfiguration(query_parameters=DeltaRequestBuilder.DeltaRequestBuilderGetQueryParameters(select=MESSAGE_SELECT))
    cfg.headers.add("Prefer", f"odata.maxpagesize={page_size}")
    items = requests = 0
    t = time.perf_counter()
    page = await builder.get(request_configuration=cfg)
    while True:
        requests += 1
        items += len(page.value or [])
        if items >= limit or not page.odata_next_link:
            break
        page = await builder.with_url(page.odata_next_link).get(request_configuration=RequestConfiguration(headers=cfg.headers))
    seconds = time.perf_counter() - t
    await cred.close()
    return {"items": items, "seconds": seconds, "requests": requests, "delta_requests": requests, "ok": True}


def child(args: argparse.Namespace) -> None:
    info = json.loads(args.info)
    if args.variant in ("engine", "tracked"):
        out = asyncio.run(run_engine(info, args.page_size, args.db, tracking=args.variant == "tracked"))
    elif args.variant == "raw":
        out = asyncio.run(run_raw(info, args.page_size, args.db))
    else:
        out = asyncio.run(run_sdk(info, args.page_size, args.sdk_messages))
    out["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(out))


# --- driver ---------------------------------------------------------------------------------------


def start_emulator(messages: int, workdir: Path) -> tuple[subprocess.Popen[str], dict[str, str]]:
    path = workdir / f"bench-{messages}.yaml"
    path.write_text(yaml.safe_dump(scenario(messages)))
    proc = subprocess.Popen([sys.executable, "-m", "connector.cli", "emulator", "serve", "--scenario", str(path)],
                            stdout=subprocess.PIPE, text=True, cwd=ROOT)
    line = proc.stdout.readline() if proc.stdout else ""
    if not line:
        raise SystemExit("the emulator did not start")
    return proc, json.loads(line)


def spawn_script_child(script: str, variant: str, options: list[str], prefix: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `[PREFIX...] python script --child --variant VARIANT OPTIONS` in a fresh process, its output captured."""
    cmd = [*(prefix or []), sys.executable, script, "--child", "--variant", variant, *options]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONHASHSEED": "0"})


def run_script_child(script: str, variant: str, options: list[str]) -> dict[str, Any]:
    """`script --child --variant VARIANT OPTIONS` in a fresh process (so its peak RSS is its own): the JSON it prints last."""
    out = spawn_script_child(script, variant, options)
    if out.returncode != 0:
        raise SystemExit(f"{variant} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_child(variant: str, info: dict[str, str], args: argparse.Namespace, db: Path) -> dict[str, Any]:
    return run_script_child(__file__, variant, ["--info", json.dumps(info), "--page-size", str(args.page_size), "--db", str(db),
                                                "--sdk-messages", str(args.sdk_messages)])


def child_arguments(p: argparse.ArgumentParser) -> None:
    """The hidden arguments `run_script_child` passes to a benchmark script run as one variant's child process."""
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--variant", default="engine", help=argparse.SUPPRESS)
    p.add_argument("--info", default="{}", help=argparse.SUPPRESS)
    p.add_argument("--db", default="", help=argparse.SUPPRESS)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--messages", type=int, default=100_000, help="messages in the benchmark mailbox")
    p.add_argument("--sizes", default=None, help="comma list of sizes for the RSS-flatness check (default: 10000 and --messages)")
    p.add_argument("--page-size", type=int, default=1000)
    p.add_argument("--sdk-messages", type=int, default=2000)
    p.add_argument("--variants", default="engine,tracked,raw,sdk", help="comma list of variants to run")
    child_arguments(p)
    args = p.parse_args()
    if args.child:
        child(args)
        return
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else sorted({min(10_000, args.messages), args.messages})
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()} {platform.release()}")
    print(f"page size {args.page_size}; SDK model path measured on the first {args.sdk_messages} messages\n")
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        results: dict[int, dict[str, dict[str, Any]]] = {}
        for n in sizes:
            t = time.perf_counter()
            proc, info = start_emulator(n, workdir)
            print(f"[{n:,} messages] emulator ready in {time.perf_counter() - t:.1f} s")
            try:
                results[n] = {}
                for variant in [v for v in ("engine", "tracked", "raw", "sdk") if v in args.variants.split(",")]:
                    if variant in ("sdk", "tracked") and n != sizes[-1]:
                        continue
                    results[n][variant] = run_child(variant, info, args, workdir / f"{variant}-{n}.db")
            finally:
                proc.terminate()
                proc.wait(30)
        print()
        header = f"{'messages':>9} {'variant':<7} {'items':>8} {'seconds':>8} {'items/s':>9} {'peak RSS MB':>12} {'req/1000 msg':>13}"
        print(header)
        print("-" * len(header))
        for n, by in results.items():
            for variant, r in by.items():
                rate = r["items"] / r["seconds"] if r["seconds"] else 0
                per_k = r["delta_requests"] / (r["items"] / 1000) if r["items"] else 0
                print(f"{n:>9,} {variant:<7} {r['items']:>8,} {r['seconds']:>8.2f} {rate:>9,.0f} {r['peak_rss_mb']:>12.1f} {per_k:>13.2f}")
        big = results[sizes[-1]]
        rate = {v: big[v]["items"] / big[v]["seconds"] for v in big}
        print()
        if "raw" in rate:
            print(f"engine / raw floor : {rate['engine'] / rate['raw']:.0%}   (target >= 50%)")
        if "sdk" in rate:
            print(f"engine / SDK models: {rate['engine'] / rate['sdk']:.0f}x   (target >= 50x; the raw floor itself is {rate.get('raw', 0) / rate['sdk']:.0f}x)")
        if "tracked" in rate:
            print(f"tracking adds      : {rate['engine'] / rate['tracked'] - 1:.0%} to the per-message cost (target <= 30%)")
        print(f"engine peak RSS    : {big['engine']['peak_rss_mb']:.0f} MB at {sizes[-1]:,} (target < 250 MB)"
              + (f"; {results[sizes[0]]['engine']['peak_rss_mb']:.0f} MB at {sizes[0]:,}" if len(sizes) > 1 else ""))
        limit = 1000 / args.page_size + 2
        per_k = big["engine"]["delta_requests"] / (big["engine"]["items"] / 1000)
        print(f"engine requests per 1,000 messages: {per_k:.2f} delta + discovery {big['engine']['requests'] - big['engine']['delta_requests']} (target <= {limit:.2f})")


if __name__ == "__main__":
    main()
