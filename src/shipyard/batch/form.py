"""Reading a batch body as PocketBase does: JSON `{"requests": [{method, url, headers,
body}]}`, or multipart with that JSON under `@jsonPayload` and each sub-request's files
under `requests.N.field` (or `requests[N].field`); then PocketBase's checks and answers
(`Failed to read the submitted batch data.`, `Invalid batch request data.` with the
problems under `data.requests`)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.datastructures import UploadFile
from starlette.requests import Request

from shipyard.kernel.errors import ApiError, bad_request
from shipyard.kernel.uploads import Upload
from shipyard.kernel.web import read_body

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")  # PocketBase's (only four do anything)
MAX_URL = 2000
MAX_FILES = 1000  # file parts of one multipart batch
_FILE_KEY = re.compile(r"^requests(?:\.(\d+)\.|\[(\d+)\]\.)(.+)$")

UNREADABLE = "Failed to read the submitted batch data."
INVALID = "Invalid batch request data."


@dataclass
class SubRequest:
    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] = field(default_factory=dict)


def _unreadable() -> ApiError:
    return bad_request(UNREADABLE)


def _item(raw: Any) -> SubRequest:
    """One entry of `requests`, typed as PocketBase binds it (a wrong type: unreadable)."""
    if not isinstance(raw, dict):
        raise _unreadable()
    method, url = raw.get("method"), raw.get("url")
    headers, body = raw.get("headers"), raw.get("body")
    if method is None:
        method = ""
    if url is None:
        url = ""
    if headers is None:
        headers = {}
    if body is None:
        body = {}
    if (
        not isinstance(method, str)
        or not isinstance(url, str)
        or not isinstance(body, dict)
        or not isinstance(headers, dict)
        or not all(isinstance(v, str) for v in headers.values())
    ):
        raise _unreadable()
    return SubRequest(method, url, dict(headers), dict(body))


def _item_problems(sub: SubRequest) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if not sub.method:
        out["method"] = {"code": "validation_required", "message": "Cannot be blank."}
    elif sub.method not in METHODS:
        out["method"] = {"code": "validation_in_invalid", "message": "Must be a valid value."}
    if not sub.url:
        out["url"] = {"code": "validation_required", "message": "Cannot be blank."}
    elif len(sub.url) > MAX_URL:
        out["url"] = {
            "code": "validation_length_too_long",
            "message": f"The length must be no more than {MAX_URL}.",
            "params": {"max": MAX_URL, "min": 0},
        }
    return out


def requests_of(payload: Any, max_requests: int) -> list[SubRequest]:
    """The sub-requests of a decoded body, checked (PocketBase's 400s)."""
    if not isinstance(payload, dict):
        raise _unreadable()
    raw = payload.get("requests")
    if raw is not None and not isinstance(raw, list):
        raise _unreadable()
    subs = [_item(r) for r in raw or []]
    if not subs:
        problem = {"code": "validation_required", "message": "Cannot be blank."}
        raise bad_request(INVALID, {"requests": problem})
    if len(subs) > max_requests:
        raise bad_request(
            INVALID,
            {
                "requests": {
                    "code": "validation_length_too_long",
                    "message": f"The length must be no more than {max_requests}.",
                    "params": {"max": max_requests, "min": 0},
                }
            },
        )
    problems = {str(i): p for i, sub in enumerate(subs) if (p := _item_problems(sub))}
    if problems:
        raise bad_request(INVALID, {"requests": problems})
    return subs


def _decode(raw: bytes | str) -> Any:
    if isinstance(raw, str):
        raw = raw.encode()
    if not raw.strip():
        return {}
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise _unreadable() from None


async def read_batch(request: Request, limit: int, max_requests: int) -> list[SubRequest]:
    """The checked sub-requests of a batch request whose body is at most `limit` bytes
    (more: 413). Uploaded files spool to temporary files; `close_all` removes them."""
    raw = await read_body(request, limit)
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "application/x-www-form-urlencoded":
        raise _unreadable()  # PocketBase reads no plain form fields into a batch
    if ctype != "multipart/form-data":
        return requests_of(_decode(raw), max_requests)
    try:
        form = await request.form(max_files=MAX_FILES, max_fields=MAX_FILES)
    except ApiError:
        raise
    except Exception:  # malformed multipart of any kind is the client's error
        raise _unreadable() from None
    files: list[tuple[int, str, Upload]] = []
    payload: Any = {}
    try:
        for key, part in form.multi_items():
            if isinstance(part, UploadFile):
                m = _FILE_KEY.match(key)
                if m:
                    index = int(m.group(1) or m.group(2))
                    files.append((index, m.group(3), Upload.of(part.filename or "", part.file)))
                else:
                    part.file.close()
            elif key == "@jsonPayload":
                payload = _decode(part)
            elif key == "requests":
                raise _unreadable()  # PocketBase reads the JSON only from @jsonPayload
        subs = requests_of(payload, max_requests)
    except BaseException:
        await form.close()
        raise
    _attach(subs, files)
    return subs


def _attach(subs: list[SubRequest], files: list[tuple[int, str, Upload]]) -> None:
    """Each file into its sub-request's body (one file: the value; more: a list)."""
    given: dict[tuple[int, str], list[Upload]] = {}
    for index, name, upload in files:
        if index < len(subs):
            given.setdefault((index, name), []).append(upload)
        else:
            upload.file.close()  # files for no sub-request are ignored, as PocketBase does
    for (index, name), uploads in given.items():
        subs[index].body[name] = uploads[0] if len(uploads) == 1 else uploads


def close_all(subs: list[SubRequest]) -> None:
    """Remove the temporary files of every sub-request's uploads."""
    for sub in subs:
        for value in sub.body.values():
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, Upload):
                    item.file.close()
