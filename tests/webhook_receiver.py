"""Moved to tests/helpers/webhook_receiver.py; these names stay importable from here until
the test modules that still use this path are moved over."""

from tests.helpers.wait import poll_until as wait_until
from tests.helpers.webhook_receiver import Received, Receiver, receiver_fixture

__all__ = ["Received", "Receiver", "receiver_fixture", "wait_until"]
