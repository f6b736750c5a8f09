"""An app that reports to Shipyard with the real, unmodified `sentry-sdk` (default
transport): run as a subprocess by the tests and the bench, so the SDK's global hooks
never touch the test process. Prints a JSON list of the event ids it sent.

    python -m tests.helpers.sentry_app DSN --mode boom --count 3 --compression gzip
"""

from __future__ import annotations

import argparse
import json
import time

import sentry_sdk


class PaymentDeclined(Exception):
    pass


def charge(order: int) -> None:
    raise PaymentDeclined(f"card declined for order {order}")


def checkout(order: int) -> None:
    charge(order)


def parse_amount(text: str) -> int:
    return int(text)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("dsn")
    ap.add_argument("--mode", default="boom", choices=["boom", "other", "message", "fingerprint"])
    ap.add_argument("--count", type=int, default=1)
    ap.add_argument("--compression", default="gzip", choices=["gzip", "br", "none"])
    ap.add_argument("--users", type=int, default=0, help="cycle through this many user ids")
    ap.add_argument("--user-prefix", default="user")
    args = ap.parse_args()
    algo = {"none": ""}.get(args.compression, args.compression)
    experiments = (
        {"transport_compression_algo": algo} if algo else {"transport_compression_level": 0}
    )
    sentry_sdk.init(
        dsn=args.dsn,
        _experiments=experiments,
        transport_queue_size=max(100, args.count * 2),
        release="sdk-app@1.0",
        environment="test",
    )
    ids: list[str | None] = []
    started = time.perf_counter()
    for i in range(args.count):
        with sentry_sdk.new_scope() as scope:
            if args.users:
                scope.set_user({"id": f"{args.user_prefix}-{i % args.users}"})
            if args.mode == "message":
                ids.append(sentry_sdk.capture_message(f"queue 7{i} is {i}% full", level="warning"))
                continue
            if args.mode == "fingerprint":
                scope.fingerprint = ["{{ default }}", "tenant-a"]
            try:
                if args.mode == "other":
                    parse_amount(f"x{i}")
                else:
                    checkout(1000 + i)
            except Exception as exc:
                ids.append(sentry_sdk.capture_exception(exc))
    sentry_sdk.flush(timeout=60)
    elapsed = time.perf_counter() - started
    print(json.dumps({"ids": ids, "seconds": elapsed}))


if __name__ == "__main__":
    main()
