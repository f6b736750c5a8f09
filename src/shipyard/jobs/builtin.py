"""Built-in jobs, registered through the same `Functions` API as the team's hooks:
`send_email` and
`export_collection`. (The `webhook` kind is the webhooks capability's own.)"""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path
from typing import Any

import orjson

from shipyard.kernel.errors import ApiError
from shipyard.kernel.functions import Functions
from shipyard.kernel.mail import mailer_from_settings
from shipyard.settings import Settings
from shipyard.tools.mailer import MailError, Message
from shipyard.tools.worker import Discard

EXPORT_FORMATS = ("csv", "jsonl")
EXPORT_PAGE = 500
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


def builtin_functions(settings: Settings) -> Functions:
    f = Functions()
    f.add_job("send_email", send_email, builtin=True, queue="mail")
    f.add_job(
        "export_collection",
        export_collection,
        builtin=True,
        queue="exports",
        max_attempts=3,
        timeout=3600.0,
        concurrency=2,
    )
    return f


async def send_email(ctx: Any, args: Any) -> dict[str, Any]:
    """args: {to, subject, html?, text?}; SMTP settings from docs/mail.md."""
    if not isinstance(args, dict):
        raise Discard("send_email: args must be an object {to, subject, html?, text?}")
    to, subject = args.get("to"), args.get("subject")
    html, text = args.get("html") or "", args.get("text") or ""
    if not isinstance(to, str) or not _EMAIL.match(to):
        raise Discard("send_email: 'to' must be one e-mail address")
    if not isinstance(subject, str) or not subject or len(subject) > 998:
        raise Discard("send_email: 'subject' must be 1..998 characters")
    if "\r" in subject or "\n" in subject:  # header injection
        raise Discard("send_email: 'subject' must be one line")
    if not isinstance(html, str) or not isinstance(text, str) or not (html or text):
        raise Discard("send_email: give 'html' or 'text'")
    mailer = mailer_from_settings(await ctx.services.runtime.current())
    if mailer is None:
        raise MailError("mail is disabled: set SHIPYARD_SMTP_HOST")  # retried: may be set later
    if not html:
        html = "<pre>" + _escape(text) + "</pre>"
    message = Message(to=to, subject=subject, html=html, text=text)
    try:
        mailer.build(message)  # a message that cannot be built never will be: no retries
    except MailError as exc:
        raise Discard(f"send_email: {exc}") from None
    await mailer.send(message)
    return {"to": to}


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def export_path(settings: Settings, name: str) -> Path | None:
    """The file of an export by its name; None for anything export_collection does not
    write (other names, hidden or temporary files, paths)."""
    if len(name) > 200 or not _SAFE_NAME.match(name) or name.startswith("."):
        return None
    if name.rpartition(".")[2] not in EXPORT_FORMATS:
        return None
    return settings.exports_path / name


async def export_collection(ctx: Any, args: Any) -> dict[str, Any]:  # noqa: C901  (a flat sequence of argument checks, then one loop)
    """args: {collection, filter?, sort?, format: csv|jsonl, fields?}; writes
    `<exports dir>/<job id>-<collection>.<format>` and returns its download URL. Hidden
    fields (passwords and token keys included) are never written."""
    svc = ctx.services
    if not isinstance(args, dict):
        raise Discard("export_collection: args must be an object")
    cname = args.get("collection")
    if not isinstance(cname, str) or not cname:
        raise Discard("export_collection: 'collection' must name a collection")
    c = svc.store.get(cname)
    if c is None:
        raise Discard(f"export_collection: no collection {cname!r}")
    fmt = args.get("format", "csv")
    if fmt not in EXPORT_FORMATS:
        raise Discard(f"export_collection: format must be one of {EXPORT_FORMATS}")
    params = {"perPage": str(EXPORT_PAGE), "cursor": "", "skipTotal": "1"}
    for key in ("filter", "sort", "fields"):
        if args.get(key):
            params[key] = str(args[key])
    hidden = {f.name for f in c.fields if f.hidden}
    out_dir = ctx.settings.exports_path
    out_dir.mkdir(parents=True, exist_ok=True)
    name = f"{ctx.job.id}-{c.name}.{fmt}"
    final = out_dir / name
    tmp = out_dir / f".{name}.part"
    rows = 0
    columns: list[str] | None = None
    try:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            while True:
                try:
                    page = await ctx.records.list(c.name, **params)
                except ApiError as exc:
                    if exc.status == 400:
                        detail = (
                            f"{exc.message} {orjson.dumps(exc.data).decode() if exc.data else ''}"
                        )
                        raise Discard(f"export_collection: {detail.strip()}") from None
                    raise
                items = [{k: v for k, v in it.items() if k not in hidden} for it in page["items"]]
                if fmt == "jsonl":
                    for it in items:
                        fh.write(orjson.dumps(it).decode())
                        fh.write("\n")
                else:
                    if columns is None and items:
                        columns = list(items[0].keys())
                        w.writerow(columns)
                    for it in items:
                        w.writerow([_cell(it.get(k)) for k in columns or []])
                rows += len(items)
                nxt = page.get("nextCursor")
                if not nxt:
                    break
                params["cursor"] = nxt
            if fmt == "csv" and columns is None and "fields" not in params:
                # no rows: still a header, so the file opens as the expected table
                names = [f.name for f in c.fields if not f.hidden]
                w.writerow(["collectionId", "collectionName", *names])
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)  # a failed attempt leaves no half-written file behind
    return {
        "file": name,
        "rows": rows,
        "bytes": final.stat().st_size,
        "format": fmt,
        "url": f"/api/exports/{name}",
    }


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return orjson.dumps(value).decode()
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        # a spreadsheet would run "=HYPERLINK(…)" typed by a user: keep it text (OWASP CSV
        # injection); numbers stay numbers
        return "'" + value
    return str(value)


__all__ = ["builtin_functions", "export_path"]
