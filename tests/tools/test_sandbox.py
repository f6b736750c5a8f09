"""Isolated calls (tools/sandbox.py) in real child interpreters: results, limits, crashes.

The functions live in a module file written to the test's directory and are loaded by path
in the child, as a team's hooks file is. Whatever a function does, the caller gets a result
or an `IsolatedError` subclass saying what happened — and carries on; an exception of a class
the caller names comes back as that class.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import pytest

from shipyard.functions import Discard, Reject
from shipyard.tools.sandbox import (
    IsolatedCrash,
    IsolatedDataError,
    IsolatedError,
    IsolatedException,
    IsolatedMemoryLimit,
    IsolatedTimeout,
    run_isolated,
)

FUNCTIONS = """
import asyncio, ctypes, os, subprocess, sys, time

def add(ctx, a, b):
    return {"sum": a + b, "job": ctx.job}

async def async_add(a, b):
    await asyncio.sleep(0)
    return [a, b, a + b]

def chatty(n):
    print("hello from the function")
    sys.stdout.write('{"ok": "forged"}\\n')
    sys.stdout.flush()
    os.write(1, b'{"ok": "forged by fd"}')
    print("x" * 100_000, file=sys.stderr)
    return {"n": n}

def spin(pid_file):
    open(pid_file, "w").write(str(os.getpid()))
    while True:
        pass

def hog(mb):
    block = bytearray(mb * 1024 * 1024)
    return len(block)

def segfault():
    ctypes.string_at(0)

def hard_exit():
    print("about to leave", file=sys.stderr)
    os._exit(3)

def fail(code):
    raise ValueError(f"invalid code {code!r}")

def not_json():
    return {1, 2, 3}

def refuse(message, data):
    from shipyard.functions import Reject
    raise Reject(message, data)

def give_up(reason):
    from shipyard.functions import Discard

    class Hopeless(Discard):  # a subclass the caller does not know
        pass

    raise Hopeless(reason, 42)

def give_up_oddly():
    from shipyard.functions import Discard
    raise Discard(object())  # arguments JSON cannot carry

def leave_a_process(pid_file):
    child = subprocess.Popen(["sleep", "60"])
    open(pid_file, "w").write(str(child.pid))
    return "done"
"""


@pytest.fixture
def module(tmp_path: Path) -> str:
    path = tmp_path / "isolated_fns.py"
    path.write_text(FUNCTIONS)
    return str(path)


def call(module: str, qualname: str, *args: Any, **kw: Any) -> Any:
    opts: dict[str, Any] = {"timeout": 10.0, "memory_mb": 256, **kw}
    return asyncio.run(
        run_isolated("isolated_fns", qualname, list(args), module_file=module, **opts)
    )


def failure(module: str, qualname: str, *args: Any, **kw: Any) -> IsolatedError:
    with pytest.raises(IsolatedError) as info:
        call(module, qualname, *args, **kw)
    return info.value


def gone(pid: int) -> bool:
    """The process has ended (a zombie awaiting its reaper counts as ended)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def wait_gone(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if gone(pid):
            return True
        time.sleep(0.02)
    return False


def read_pid(path: Path, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text():
            return int(path.read_text())
        time.sleep(0.02)
    raise AssertionError(f"{path} never written")


def test_returns_the_json_result(module: str) -> None:
    got = call(module, "add", 2, 40, context={"job": {"id": 7, "attempt": 1}})
    assert got == {"sum": 42, "job": {"id": 7, "attempt": 1}}
    assert call(module, "async_add", 1, 2) == [1, 2, 3]


def test_prints_do_not_corrupt_the_answer(module: str) -> None:
    assert call(module, "chatty", 5) == {"n": 5}


def test_endless_loop_is_stopped_at_the_wall_time(module: str, tmp_path: Path) -> None:
    pid_file = tmp_path / "spin.pid"
    err = failure(module, "spin", str(pid_file), timeout=1.0)
    assert isinstance(err, IsolatedTimeout)
    assert err.seconds == 1.0
    assert str(err) == "timed out after 1 s (wall time limit)"
    assert wait_gone(read_pid(pid_file))  # killed, not left spinning


def test_allocation_past_the_memory_limit_fails(module: str) -> None:
    err = failure(module, "hog", 1024, memory_mb=128)
    assert isinstance(err, IsolatedMemoryLimit)
    assert err.limit_mb == 128
    assert str(err) == "memory limit of 128 MB exceeded"
    assert call(module, "hog", 16, memory_mb=128) == 16 * 1024 * 1024  # within the limit


def test_segfault_is_a_clear_crash(module: str) -> None:
    err = failure(module, "segfault")
    assert isinstance(err, IsolatedCrash)
    assert err.signal == "SIGSEGV"
    assert err.status is None
    assert str(err).startswith("the process was killed by SIGSEGV")


def test_os_exit_is_a_clear_crash(module: str) -> None:
    err = failure(module, "hard_exit")
    assert isinstance(err, IsolatedCrash)
    assert err.status == 3
    assert err.signal is None
    assert "exited with status 3 without an answer" in str(err)
    assert "about to leave" in str(err)  # the end of its stderr says why


def test_exception_message_comes_back(module: str) -> None:
    err = failure(module, "fail", "X-1")
    assert isinstance(err, IsolatedException)
    assert (err.type_name, err.message) == ("ValueError", "invalid code 'X-1'")
    assert err.raised(ValueError)
    assert err.raised(Exception)
    assert not err.raised(KeyError)
    assert str(err).splitlines()[0] == "ValueError: invalid code 'X-1'"
    assert "isolated_fns.py" in err.traceback
    assert "isolated_fns.py" in str(err)


def test_named_exception_classes_come_back_as_themselves(module: str) -> None:
    """A `Reject` with its data, a subclass of `Discard` as a `Discard`: the caller catches
    them by class, as if the function had run in-process."""
    with pytest.raises(Reject) as rejected:
        call(module, "refuse", "Frozen.", {"title": 1}, reraise=(Discard, Reject))
    assert type(rejected.value) is Reject
    assert (rejected.value.message, rejected.value.data) == ("Frozen.", {"title": 1})
    assert str(rejected.value) == "Frozen."
    assert any("isolated_fns.py" in note for note in rejected.value.__notes__)
    with pytest.raises(Discard) as discarded:
        call(module, "give_up", "no way", reraise=(Discard,))
    assert type(discarded.value) is Discard
    assert discarded.value.args == ("no way", 42)
    # a class the caller did not name is an ordinary failure, that says what it was
    err = failure(module, "give_up", "no way", reraise=(Reject,))
    assert isinstance(err, IsolatedException)
    assert err.raised(Discard)
    assert err.type_name == "isolated_fns.give_up.<locals>.Hopeless"
    assert err.message == "('no way', 42)"
    # one whose arguments JSON cannot carry cannot be rebuilt: an ordinary failure too
    err = failure(module, "give_up_oddly", reraise=(Discard,))
    assert isinstance(err, IsolatedException)
    assert err.raised(Discard)
    assert err.type_name == "shipyard.tools.worker.Discard"


def test_results_and_arguments_must_be_json(module: str) -> None:
    err = failure(module, "not_json")
    assert isinstance(err, IsolatedDataError)
    assert "not JSON-serializable" in str(err)
    err = failure(module, "add", object(), 1)
    assert isinstance(err, IsolatedDataError)
    assert "arguments are not JSON-serializable" in str(err)


def test_a_process_left_running_neither_delays_the_answer_nor_survives(
    module: str, tmp_path: Path
) -> None:
    pid_file = tmp_path / "left.pid"
    # its `sleep 60` keeps the child's stderr open: the call must still end with the answer
    assert call(module, "leave_a_process", str(pid_file), timeout=5.0) == "done"
    assert wait_gone(read_pid(pid_file))


def test_cancelling_the_call_kills_the_child(module: str, tmp_path: Path) -> None:
    pid_file = tmp_path / "spin.pid"

    async def main() -> int:
        task = asyncio.create_task(
            run_isolated("isolated_fns", "spin", [str(pid_file)], module_file=module, timeout=30)
        )
        deadline = time.monotonic() + 10
        while not (pid_file.exists() and pid_file.read_text()):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return int(pid_file.read_text())

    assert wait_gone(asyncio.run(main()))


def test_the_caller_survives_every_failure_and_calls_again(module: str, tmp_path: Path) -> None:
    """All the ways to fail at once, then an ordinary call: the calling process is fine."""

    async def main() -> list[Any]:
        def run(fn: str, *args: Any, **kw: Any) -> Any:
            opts: dict[str, Any] = {"timeout": 2.0, "memory_mb": 128, **kw}
            return run_isolated("isolated_fns", fn, list(args), module_file=module, **opts)

        outcomes = await asyncio.gather(
            run("spin", str(tmp_path / "p")),
            run("hog", 2048),
            run("segfault"),
            run("hard_exit"),
            run("fail", 1),
            return_exceptions=True,
        )
        kinds = [type(o) if isinstance(o, IsolatedError) else o for o in outcomes]
        return [*kinds, await run("add", 1, 1, context={"job": None}), os.getpid()]

    *kinds, last, pid = asyncio.run(main())
    assert kinds == [
        IsolatedTimeout,
        IsolatedMemoryLimit,
        IsolatedCrash,
        IsolatedCrash,
        IsolatedException,
    ]
    assert last == {"sum": 2, "job": None}
    assert pid == os.getpid()
