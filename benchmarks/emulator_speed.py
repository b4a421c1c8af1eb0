"""Emulator speed: building generated mail, and serving 1,000-message delta pages.

Figures only (no pass/fail). Targets from the issue, printed beside the figures:
100,000 generated messages built in <= 30 s; a 1,000-message delta page in <= 50 ms.

(a) `build_state` of a scenario whose `generate:` block puts `--messages` messages in one mailbox.
(b) messages/delta pages with `Prefer: odata.maxpagesize=1000`, median and p95 over `--pages`
    pages, measured in-process (`Dispatcher.dispatch_graph` on the emulator loop) and over HTTPS
    with httpx; beside them, `orjson.dumps` of the same 1,000 item dicts (the floor any JSON
    API pays). Each row is run twice: whole messages, and a typical sync `$select` without body.

Run: ``python benchmarks/emulator_speed.py [--messages 100000] [--pages 20]``.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from connector.emulator import Emulator, Scenario, runner  # noqa: E402
from connector.emulator.http import Prefer, Request  # noqa: E402

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
CLIENT_ID = "bench-app"
SECRET = "bench-secret"
USER = "adele@contoso.com"
SELECT = "subject,from,toRecipients,ccRecipients,receivedDateTime,sentDateTime,isRead,categories,conversationId,internetMessageId,hasAttachments,importance"
PREFER = 'odata.maxpagesize=1000, IdType="ImmutableId"'


def scenario(messages: int) -> Scenario:
    """One bulk mailbox (everything in the Inbox, plus ~10% Sent Items) and one small one."""
    return Scenario.model_validate({
        "tenant": {"id": TENANT, "domain": "contoso.com"},
        "apps": [{"client_id": CLIENT_ID, "client_secret": SECRET, "permissions": ["User.Read.All", "Mail.ReadWrite"]}],
        "throttling": {"requests_per_window": 1_000_000},
        "users": [{"userPrincipalName": USER, "displayName": "Adele Vance"}, {"userPrincipalName": "bob@contoso.com", "displayName": "Bob Kelly"}],
        "generate": {"seed": 1, "messages": messages, "mailboxes": [USER], "folders": ["inbox"]},
    })


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))]


def token(emu: Emulator) -> str:
    r = httpx.post(f"{emu.authority}/{emu.tenant_id}/oauth2/v2.0/token", verify=emu.ssl_context(), data={
        "client_id": CLIENT_ID, "client_secret": SECRET, "grant_type": "client_credentials", "scope": "https://graph.microsoft.com/.default"})
    r.raise_for_status()
    return str(r.json()["access_token"])


def first_url(emu: Emulator, select: str | None) -> str:
    url = f"{emu.graph_url}/users/{USER}/mailFolders/inbox/messages/delta"
    return url + (f"?$select={select}" if select else "")


def in_process(emu: Emulator, bearer: str, select: str | None, pages: int) -> tuple[float, list[float], list[bytes]]:
    """(first-page ms, later page ms, bodies) calling dispatch_graph on the emulator's loop."""
    headers = {"authorization": f"Bearer {bearer}", "prefer": PREFER}

    def request(url: str) -> Request:
        parts = urlsplit(url)
        path = parts.path.removeprefix("/v1.0")
        query = {k.lower(): v for k, v in parse_qsl(parts.query, keep_blank_values=True)}
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        return Request("GET", path, target, query, headers, b"", emu.origin, prefer=Prefer.parse(PREFER))

    async def run() -> tuple[float, list[float], list[bytes]]:
        times: list[float] = []
        bodies: list[bytes] = []
        url = first_url(emu, select)
        first = 0.0
        for i in range(pages + 1):
            req = request(url)
            t = time.perf_counter()
            resp = await emu.dispatcher.dispatch_graph(req)
            ms = (time.perf_counter() - t) * 1000
            assert resp.status == 200, resp.body[:300]
            if i == 0:
                first = ms
            else:
                times.append(ms)
                bodies.append(resp.body)
            page = orjson.loads(resp.body)
            url = page.get("@odata.nextLink") or ""
            if not url:
                break
        return first, times, bodies

    return emu.run(run(), timeout=600)  # type: ignore[no-any-return]


def over_https(emu: Emulator, bearer: str, select: str | None, pages: int) -> tuple[float, list[float], int]:
    """(first-page ms, later page ms, bytes per page) through TLS, aiohttp and httpx."""
    times: list[float] = []
    size = 0
    first = 0.0
    with httpx.Client(verify=emu.ssl_context(), headers={"Authorization": f"Bearer {bearer}", "Prefer": PREFER}, timeout=120) as client:
        url = first_url(emu, select)
        for i in range(pages + 1):
            t = time.perf_counter()
            r = client.get(url)
            body = r.content
            ms = (time.perf_counter() - t) * 1000
            r.raise_for_status()
            if i == 0:
                first = ms
            else:
                times.append(ms)
                size = len(body)
            url = orjson.loads(body).get("@odata.nextLink") or ""
            if not url:
                break
    return first, times, size


def dumps_baseline(bodies: list[bytes]) -> list[float]:
    """orjson.dumps of each served page's 1,000 item dicts."""
    out = []
    for body in bodies:
        values = orjson.loads(body)["value"]
        t = time.perf_counter()
        orjson.dumps(values)
        out.append((time.perf_counter() - t) * 1000)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=100_000, help="generated messages in the bulk mailbox (default 100000)")
    parser.add_argument("--pages", type=int, default=20, help="1,000-message pages measured per row after the first (default 20)")
    parser.add_argument("--no-https", action="store_true", help="skip the HTTPS rows")
    args = parser.parse_args()

    built: dict[str, float] = {}
    real_build = runner.build_state

    def timed_build(sc: Scenario) -> Any:
        t = time.perf_counter()
        state = real_build(sc)
        built["s"] = time.perf_counter() - t
        return state

    runner.build_state = timed_build  # time exactly build_state inside Emulator(...)
    try:
        emu = Emulator(scenario(args.messages))
    finally:
        runner.build_state = real_build
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    mb = emu.state.tenant.find(USER)
    assert mb is not None
    total = sum(len(c) for n, c in mb.collections.items() if n.startswith("messages:"))
    inbox = len(mb.collection("messages:" + mb.extra["mail"].well_known["inbox"]))
    pages = min(args.pages, max(1, inbox // 1000 - 1))

    rows: list[tuple[str, str, str, str]] = []
    rows.append((f"(a) build {total:,} generated messages", f"{built['s']:.1f} s", f"{total / built['s']:,.0f} msg/s, max RSS {rss_mb:,.0f} MB", "<= 30 s"))
    with emu:
        bearer = token(emu)
        for label, select in (("whole messages", None), ("$select, no body", SELECT)):
            first, times, bodies = in_process(emu, bearer, select, pages)
            base = dumps_baseline(bodies)
            kb = statistics.mean(len(b) for b in bodies) / 1024
            rows.append((f"(b) page in-process, {label}", f"{statistics.median(times):.1f} / {pct(times, 95):.1f}",
                         f"first page (snapshot) {first:.1f} ms, {kb:,.0f} KB/page", "<= 50 ms"))
            rows.append((f"    orjson.dumps same 1,000 dicts, {label}", f"{statistics.median(base):.1f} / {pct(base, 95):.1f}", "serialisation floor", ""))
            if not args.no_https:
                first, times, size = over_https(emu, bearer, select, pages)
                rows.append((f"(b) page over HTTPS (httpx), {label}", f"{statistics.median(times):.1f} / {pct(times, 95):.1f}",
                             f"first page {first:.1f} ms, {size / 1024:,.0f} KB/page", "<= 50 ms"))

    print(f"\nemulator_speed: {total:,} messages in {USER} (inbox {inbox:,}); {pages} pages of 1,000 per delta row after the first\n")
    widths = [max(len(r[i]) for r in rows + [("figure", "median / p95 ms", "notes", "target")]) for i in range(4)]
    header = ("figure", "median / p95 ms", "notes", "target")
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)))


if __name__ == "__main__":
    main()
