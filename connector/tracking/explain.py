"""Reading decisions back: `m365sync explain` and mailbox alerts."""

from __future__ import annotations

from typing import Any

from ..store.sqlite import SqliteStore
from .tracker import METHOD_NAME, parties_of

_COLS = ("mailbox", "graph_id", "messageid", "subject", "folder", "tracked", "tracked_by", "reason", "activityid", "correlationmethod",
         "correlated_activityid", "regarding_table", "regarding_id", "regarding_why", "accepting_table", "accepting_id", "parties", "decided_at")


def find_decisions(store: SqliteStore, query: str) -> list[dict[str, Any]]:
    """Decisions for an internetMessageId (with or without <>), else for subjects containing the text."""
    q = query.strip()
    sel = f"SELECT {', '.join(_COLS)} FROM tracking_decision"
    ids = [q] if q.startswith("<") else [q, f"<{q}>"]
    rows = store.query(f"{sel} WHERE messageid IN ({','.join('?' * len(ids))}) ORDER BY mailbox", ids)
    if not rows:
        rows = store.query(f"{sel} WHERE subject LIKE ? ESCAPE '\\' ORDER BY subject, mailbox", (f"%{_like(q)}%",))
    decisions = [dict(zip(_COLS, r)) for r in rows]
    for d, parties in zip(decisions, parties_of(store.query, [d["parties"] for d in decisions])):
        d["parties"] = parties
    return [_decision(d) for d in decisions]


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _decision(row: dict[str, Any]) -> dict[str, Any]:
    method = row["correlationmethod"]
    return {
        "messageid": row["messageid"],
        "subject": row["subject"],
        "mailbox": row["mailbox"],
        "folder": row["folder"],
        "tracked": bool(row["tracked"]),
        "tracked_by": row["tracked_by"],
        "reason": row["reason"],
        "activityid": row["activityid"],
        "correlationmethod": method,
        "correlation": METHOD_NAME.get(method) if method is not None else None,
        "correlatedactivityid": row["correlated_activityid"],
        "regarding": {"table": row["regarding_table"], "id": row["regarding_id"], "why": row["regarding_why"]} if row["regarding_id"] or row["regarding_why"] else None,
        "acceptingentity": {"table": row["accepting_table"], "id": row["accepting_id"]} if row["accepting_table"] else None,
        "parties": row["parties"],
        "decided_at": row["decided_at"],
    }


def alerts(store: SqliteStore, mailbox: str | None = None) -> list[dict[str, Any]]:
    """Mailbox alerts, newest first (level 1 Information, 2 Warning, 3 Error)."""
    sql = "SELECT mailbox, level, code, text, created_at FROM tracking_alert"
    args: tuple[Any, ...] = ()
    if mailbox:
        sql += " WHERE mailbox = ?"
        args = (mailbox.lower(),)
    rows = store.query(sql + " ORDER BY id DESC", args)
    return [dict(zip(("mailbox", "level", "code", "text", "created_at"), r)) for r in rows]


def render_text(decisions: list[dict[str, Any]]) -> str:
    """A readable account of each decision."""
    out: list[str] = []
    for d in decisions:
        out.append(f"{d['subject']!s}  {d['messageid']}")
        out.append(f"  mailbox {d['mailbox']}, folder {d['folder']}")
        out.append(f"  {'TRACKED' if d['tracked'] else 'not tracked'}" + (f" by {d['tracked_by']}" if d["tracked_by"] else "") + f": {d['reason']}")
        if d["correlationmethod"] is not None:
            out.append(f"  correlation: {d['correlation']} ({d['correlationmethod']})" + (f" -> email {d['correlatedactivityid']}" if d["correlatedactivityid"] else ""))
        if d["regarding"]:
            r = d["regarding"]
            out.append(f"  regarding: {r['table'] or '-'} {r['id'] or '-'} ({r['why']})")
        for p in d["parties"]:
            got = ", ".join(f"{x['table']} {x['id']}" for x in p["resolved"]) or "unresolved"
            out.append(f"  {p['role']:>4} {p['address']}: {got} ({p['why']})")
        out.append("")
    return "\n".join(out).rstrip() + "\n" if out else ""
