"""Per-message mapping cost of the shipped email mapping, beside ``orjson.loads`` of the same item.

Figures only (no pass/fail). Run: ``python benchmarks/mapping_cost.py [--n 20000]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from connector.mapping import MappingContext, load_mapping_set  # noqa: E402

MESSAGE = {
    "id": "AAMkADhMGAAA=",
    "changeKey": "CQAAABYAAAC4ofQHEIqCSbQPot83AFcbAAAnjjuZ",
    "createdDateTime": "2018-09-09T03:15:05Z",
    "lastModifiedDateTime": "2018-09-09T03:15:08Z",
    "categories": ["Tracked to Dynamics 365", "Blue category"],
    "receivedDateTime": "2018-09-09T03:15:08Z",
    "sentDateTime": "2018-09-09T03:15:06Z",
    "hasAttachments": False,
    "internetMessageId": "<MWHPR6E1BE060@MWHPR1120.namprd22.prod.outlook.com>",
    "subject": "RE: 9/9/2018: concert CRM:0001001",
    "bodyPreview": "The group represents Nevada.",
    "importance": "normal",
    "parentFolderId": "AAMkADcbAAAAAAEJAAA=",
    "conversationId": "AAQkADOUpag6yWs=",
    "conversationIndex": "AQHZq6PnEvm0g==",
    "isDeliveryReceiptRequested": False,
    "isReadReceiptRequested": False,
    "isRead": "true",
    "isDraft": False,
    "body": {
        "contentType": "html",
        "content": "<html><head></head><body><p>The group represents Nevada.</p>" + "<p>Lorem ipsum dolor sit amet.</p>" * 20 + "</body></html>",
    },
    "sender": {"emailAddress": {"name": "Adele Vance", "address": "AdeleV@contoso.OnMicrosoft.com"}},
    "from": {"emailAddress": {"name": "Adele Vance", "address": "AdeleV@contoso.OnMicrosoft.com"}},
    "toRecipients": [
        {"emailAddress": {"name": "Alex Wilber", "address": "AlexW@contoso.OnMicrosoft.com"}},
        {"emailAddress": {"name": "Megan Bowen", "address": "MeganB@contoso.OnMicrosoft.com"}},
    ],
    "ccRecipients": [{"emailAddress": {"name": "Lee Gu", "address": "LeeG@contoso.OnMicrosoft.com"}}],
    "bccRecipients": [{"emailAddress": {"name": "Nestor Wilke", "address": "NestorW@contoso.OnMicrosoft.com"}}],
    "internetMessageHeaders": [
        {"name": "Message-ID", "value": "<MWHPR6E1BE060@MWHPR1120.namprd22.prod.outlook.com>"},
        {"name": "In-Reply-To", "value": "<CAF123@mail.example.com>"},
    ],
}


def per_call_us(fn: object, n: int, repeats: int) -> float:
    """Best-of-``repeats`` mean cost of ``fn()`` in microseconds."""
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()  # type: ignore[operator]
        runs.append((time.perf_counter() - t0) / n * 1e6)
    return min(runs)


def main() -> None:
    """Print the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    mapping = load_mapping_set().mappings["email"]
    ctx = MappingContext(mailbox="alexw@contoso.onmicrosoft.com", folder="inbox")
    raw = orjson.dumps(MESSAGE)
    records = mapping.map(MESSAGE, ctx)
    parties = sum(1 for r in records if r.table == "activityparty")

    map_us = per_call_us(lambda: mapping.map(MESSAGE, ctx), args.n, args.repeats)
    loads_us = per_call_us(lambda: orjson.loads(raw), args.n, args.repeats)
    both_us = per_call_us(lambda: mapping.map(orjson.loads(raw), ctx), args.n, args.repeats)
    print(f"python {sys.version.split()[0]}; message {len(raw)} bytes; {len(records)} records ({parties} activityparty)")
    print(f"email mapping       : {map_us:7.2f} us/message")
    print(f"orjson.loads        : {loads_us:7.2f} us/message")
    print(f"loads + mapping     : {both_us:7.2f} us/message")
    print(f"mapping / loads     : {map_us / loads_us:7.1f}x")
    _ = statistics  # keep import for ad-hoc use


if __name__ == "__main__":
    main()
