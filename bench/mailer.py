"""How fast the SMTP mailer comes back, delivered or failed, against a real SMTP server
(aiosmtpd) on localhost: a failure must come back promptly with its clear error, never hang
a request. Timings live here, never in tests (tests/tools/test_mailer.py checks the errors).

    python bench/mailer.py              # 20 sends per case
    python bench/mailer.py --rounds 5
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shipyard.tools.mailer import Mailer, MailError, Message
from tests.helpers.servers import free_port
from tests.helpers.smtp import PASSWORD, USER, silent_server, smtp_server

# the local server accepts AUTH over plain TCP on purpose (no certificates here)
warnings.filterwarnings("ignore", "Requiring AUTH while not requiring TLS")
logging.getLogger("mail.log").setLevel(logging.ERROR)  # aiosmtpd says so on every session

TIMEOUT = 2.0  # the mailer's timeout in every case but the silent server
SILENT_TIMEOUT = 0.5
MESSAGE = Message(to="dave@example.com", subject="bench", html="<p>Hello <b>you</b></p>")


@contextmanager
def _smtp(auth: bool) -> Iterator[int]:
    with smtp_server(auth=auth) as srv:
        yield srv.port


@contextmanager
def _nobody() -> Iterator[int]:
    yield free_port()  # nothing listens there: connection refused


@dataclass
class Case:
    name: str
    expect: str  # "sent", or a phrase of the MailError's message
    server: Callable[[], AbstractContextManager[int]]  # gives the port to send to
    budget: float  # seconds: the slowest send allowed
    timeout: float = TIMEOUT
    login: bool = False
    password: str = PASSWORD

    def mailer(self, port: int) -> Mailer:
        return Mailer(
            host="127.0.0.1",
            port=port,
            tls="off",
            username=USER if self.login else "",
            password=self.password if self.login else "",
            sender_address="noreply@shipyard.test",
            timeout=self.timeout,
        )


# A failure that waits for nothing must come back well within the mailer's timeout; the
# silent server takes one timeout, and may take at most twice that.
CASES = [
    Case("delivered", "sent", lambda: _smtp(False), TIMEOUT),
    Case("delivered with login", "sent", lambda: _smtp(True), TIMEOUT, login=True),
    Case(
        "login rejected (535)",
        "rejected the login",
        lambda: _smtp(True),
        TIMEOUT,
        login=True,
        password=PASSWORD + "x",
    ),
    Case("connection refused", "cannot connect", _nobody, TIMEOUT, login=True),
    Case(
        f"silent server (timeout {SILENT_TIMEOUT:g} s)",
        "did not answer",
        silent_server,
        2 * SILENT_TIMEOUT,
        timeout=SILENT_TIMEOUT,
    ),
]


async def _once(mailer: Mailer) -> tuple[float, str]:
    start = time.perf_counter()
    try:
        await mailer.send(MESSAGE)
        outcome = "sent"
    except MailError as exc:
        outcome = str(exc)
    return time.perf_counter() - start, outcome


def main(rounds: int) -> int:
    """Prints the markdown table; 1 when a case had another outcome or was over budget."""
    print(f"| case ({rounds} sends each) | outcome | median ms | max ms | budget ms | ok |")
    print("|---|---|---:|---:|---:|---|")
    failed = 0
    for case in CASES:
        with case.server() as port:
            mailer = case.mailer(port)
            asyncio.run(_once(mailer))  # warm-up: imports, first connection
            runs = [asyncio.run(_once(mailer)) for _ in range(rounds)]
        times = [t for t, _ in runs]
        wrong = [o for _, o in runs if case.expect not in o]
        ok = not wrong and max(times) <= case.budget
        failed += not ok
        print(
            f"| {case.name} | {wrong[0] if wrong else case.expect} | "
            f"{statistics.median(times) * 1e3:.1f} | {max(times) * 1e3:.1f} | "
            f"{case.budget * 1e3:.0f} | {'yes' if ok else 'NO'} |"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20, help="sends per case (default 20)")
    sys.exit(main(parser.parse_args().rounds))
