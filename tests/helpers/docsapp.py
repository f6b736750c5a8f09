"""What the doc-example tests share: an SMTP inbox, an app with a hooks module, waiting for
jobs, and comparing a documented JSON example with a real answer."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from starlette.testclient import TestClient

from shipyard.app import create_app
from shipyard.auth import superusers
from shipyard.settings import load_settings
from tests.helpers.servers import SUPERUSER
from tests.helpers.smtp import SMTPServer, smtp_server
from tests.helpers.wait import wait_until

H = dict[str, str]
HEADER = "from shipyard.functions import Functions\n\nfunctions = Functions()\n\n"
FINAL = {"completed", "discarded", "cancelled"}


class Inbox:
    """The mails an SMTP server (tests/helpers/smtp.py) received."""

    def __init__(self, server: SMTPServer) -> None:
        self.port = server.port
        self._handler = server.handler

    @property
    def messages(self) -> list[EmailMessage]:
        return [r.message for r in self._handler.received]

    def wait(self, count: int, timeout: float = 30.0) -> list[EmailMessage]:
        return wait_until(
            lambda: self.messages if len(self.messages) >= count else None,
            timeout,
            what=f"{count} mail(s)",
        )


def body_of(msg: EmailMessage, ctype: str) -> str:
    part = next(p for p in msg.walk() if p.get_content_type() == ctype)
    payload = part.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload.decode()


@contextmanager
def inbox_running() -> Iterator[Inbox]:
    with smtp_server() as server:
        yield Inbox(server)


@contextmanager
def app(
    tmp_path: Path, database_url: str, inbox: Inbox, hooks: str = "", **extra: Any
) -> Iterator[tuple[TestClient, H]]:
    """An app (with the hooks module `hooks`, mail to `inbox`) and superuser headers."""
    hooks_path = ""
    if hooks:
        path = tmp_path / "hooks.py"
        path.write_text(hooks)
        hooks_path = str(path)
    settings = load_settings(
        env={},
        data_dir=str(tmp_path / "data"),
        database_url=database_url,
        hooks=hooks_path,
        smtp_host="127.0.0.1",
        smtp_port=inbox.port,
        smtp_tls="off",
        webhook_allow_private="127.0.0.1",
        **extra,
    )
    with TestClient(create_app(settings)) as c:
        svc = c.app.state.services  # type: ignore[attr-defined]
        c.portal.call(superusers.upsert, svc, *SUPERUSER)  # type: ignore[union-attr]
        r = c.post(
            "/api/collections/_superusers/auth-with-password",
            json={"identity": SUPERUSER[0], "password": SUPERUSER[1]},
        )
        yield c, {"Authorization": r.json()["token"]}


def ok(r: Any, status: int = 200) -> Any:
    assert r.status_code == status, r.text
    return r.json() if r.content else None


def wait_jobs(c: TestClient, su: H, timeout: float = 60.0) -> list[dict[str, Any]]:
    """Every job once none is due or running; fails at the first failed attempt."""
    deadline = time.monotonic() + timeout
    while True:
        jobs = ok(c.get("/api/jobs?perPage=500", headers=su))["items"]
        failed = [j for j in jobs if j["errors"]]
        assert not failed, failed
        if all(j["state"] in FINAL or j["state"] == "scheduled" for j in jobs):
            return list(jobs)
        assert time.monotonic() < deadline, jobs
        time.sleep(0.05)


def all_completed_first_time(jobs: list[dict[str, Any]]) -> None:
    for j in jobs:
        assert (j["state"], j["attempt"], j["errors"]) == ("completed", 1, []), j


def same_shape(doc: Any, real: Any, path: str = "$", maps: frozenset[str] = frozenset()) -> None:
    """The documented example has the real answer's shape: the same keys at every level
    (a `{"...": …}` object stands for any object; at the paths in `maps`, keys are data and
    every value has the shape of the documented ones) and the same JSON types where both
    are set (null stands for any type)."""
    if path in maps:
        assert isinstance(doc, dict), path
        assert isinstance(real, dict), path
        for key, value in real.items():
            same_shape(next(iter(doc.values())), value, f"{path}.{key}", maps)
        return
    if isinstance(doc, dict) and set(doc) == {"..."}:
        assert isinstance(real, dict) or real is None, path
        return
    if isinstance(doc, dict):
        assert isinstance(real, dict), f"{path}: {real!r} is not an object"
        assert set(doc) == set(real), f"{path}: documented {sorted(doc)}, real {sorted(real)}"
        for key in doc:
            same_shape(doc[key], real[key], f"{path}.{key}", maps)
    elif isinstance(doc, list):
        assert isinstance(real, list), f"{path}: {real!r} is not a list"
        if doc and real:
            same_shape(doc[0], real[0], f"{path}[0]", maps)
    elif doc is not None and real is not None:
        number = (int, float)
        if isinstance(doc, bool) or isinstance(real, bool):
            assert type(doc) is type(real), f"{path}: {doc!r} vs {real!r}"
        elif isinstance(doc, number):
            assert isinstance(real, number), f"{path}: {doc!r} vs {real!r}"
        else:
            assert type(doc) is type(real), f"{path}: {doc!r} vs {real!r}"


DATE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}Z$")
