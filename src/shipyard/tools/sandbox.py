"""Run one Python function in a child process with a wall-time and a memory limit.

The parent starts `python -m shipyard.tools.sandbox`, writes the call as JSON on its stdin
and reads the outcome as JSON from its stdout. The child caps its own address space
(`RLIMIT_AS`) before importing the function's module, redirects `print` output to stderr
(so it cannot corrupt the answer), calls the function — awaiting it if it is a coroutine —
and answers `{"ok": result}` or `{"error": message, "type": "memory"|"exception"}`. The
parent kills the child's whole process group when the wall time runs out. Whatever the
function does — loops forever, allocates without end, segfaults, calls `os._exit` — the
parent gets an `IsolatedError` with a clear message and carries on.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.util
import inspect
import os
import signal
import sys
from typing import Any

import orjson

MAX_OUTPUT = 16 * 1024 * 1024  # bytes of answer accepted from the child
STDERR_TAIL = 2000
_SIGNAL_HINTS = {
    "SIGKILL": " (out of memory?)",
    "SIGSEGV": " (a crash in native code, or out of memory)",
}


class IsolatedError(Exception):
    """The isolated call failed; the message says how (timeout, memory, exception, crash)."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind  # timeout | memory | exception | crash


async def run_isolated(
    module: str,
    qualname: str,
    args: list[Any],
    *,
    module_file: str | None = None,
    timeout: float = 60.0,
    memory_mb: int = 512,
    sys_path: list[str] | None = None,
    context: dict[str, Any] | None = None,
) -> Any:
    """Call `module.qualname(*args)` in a fresh interpreter; return its JSON result. With
    `context`, the first argument is that dict as an object (attributes, not keys)."""
    call = {
        "context": context,
        "module": module,
        "file": module_file,
        "qualname": qualname,
        "args": args,
        "memory_mb": memory_mb,
        "sys_path": sys_path if sys_path is not None else [p for p in sys.path if p],
    }
    try:
        payload = orjson.dumps(call)
    except TypeError as exc:
        raise IsolatedError(f"arguments are not JSON-serializable: {exc}", "exception") from None
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "shipyard.tools.sandbox",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,  # its own process group: a timeout kills its children too
    )
    err = bytearray()
    try:
        out = await asyncio.wait_for(_exchange(proc, payload, err), timeout=timeout)
    except TimeoutError:
        _kill_group(proc.pid)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(proc.wait(), timeout=5)
        raise IsolatedError(f"timed out after {timeout:g} s (wall time limit)", "timeout") from None
    except BaseException:  # cancelled: never leave the child running
        _kill_group(proc.pid)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(proc.wait(), timeout=5)
        raise
    finally:
        _kill_group(proc.pid)  # a grandchild it left behind
    if out is None:
        raise IsolatedError(f"the answer is larger than {MAX_OUTPUT} bytes", "exception")
    tail = err.decode(errors="replace")[-STDERR_TAIL:].strip()
    try:
        answer = orjson.loads(out) if out else None
    except orjson.JSONDecodeError:
        answer = None
    if isinstance(answer, dict) and "ok" in answer:
        return answer["ok"]
    if isinstance(answer, dict) and "error" in answer:
        raise IsolatedError(str(answer["error"]), str(answer.get("type", "exception")))
    rc = proc.returncode
    if rc is not None and rc < 0:
        try:
            name = signal.Signals(-rc).name
        except ValueError:
            name = str(-rc)
        hint = _SIGNAL_HINTS.get(name, "")
        raise IsolatedError(f"the process was killed by {name}{hint}", "crash")
    raise IsolatedError(
        f"the process exited with status {rc} without an answer" + (f": {tail}" if tail else ""),
        "crash",
    )


async def _exchange(
    proc: asyncio.subprocess.Process, payload: bytes, err: bytearray
) -> bytes | None:
    """Send the call, read the answer (None: too large) and the end of stderr.

    The answer ends when the child closes its answer pipe, i.e. when it is done: then its
    process group is killed, because a process it started (and left running) would hold
    stderr open and make a finished call look like a timeout."""
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    stderr = proc.stderr

    async def drain_stderr() -> None:
        while chunk := await stderr.read(65536):
            err.extend(chunk)
            del err[: max(0, len(err) - 4 * STDERR_TAIL)]

    reader = asyncio.create_task(drain_stderr())
    try:
        try:
            proc.stdin.write(payload)
            await proc.stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            pass  # it ended before reading the call: its exit status says why
        finally:
            proc.stdin.close()
        out = bytearray()
        while chunk := await proc.stdout.read(65536):
            out.extend(chunk)
            if len(out) > MAX_OUTPUT:
                return None
        _kill_group(proc.pid)
        await proc.wait()
        with contextlib.suppress(TimeoutError):  # a process that left the group keeps it
            await asyncio.wait_for(asyncio.shield(reader), timeout=1.0)
        return bytes(out)
    finally:
        reader.cancel()


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


# ---------------------------------------------------------------------- the child


def _limit_memory(mb: int) -> None:
    import resource

    limit = mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def load_module(name: str, file: str | None) -> Any:
    """Import `name` — from `file` when given (a hooks file outside any package). A module
    already loaded from that file is reused; one that fails to load is not left behind."""
    if not file:
        return importlib.import_module(name)
    loaded = sys.modules.get(name)
    if loaded is not None and getattr(loaded, "__file__", None) == file:
        return loaded
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {file}")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    try:
        spec.loader.exec_module(mod)
    except BaseException:
        del sys.modules[name]
        raise
    return mod


def _child() -> int:
    answer_fd = os.dup(1)
    os.dup2(2, 1)  # the function's prints go to stderr
    sys.stdout = sys.stderr

    def answer(doc: dict[str, Any]) -> None:
        try:
            data = orjson.dumps(doc)
        except TypeError as exc:
            data = orjson.dumps({"error": f"result is not JSON-serializable: {exc}"})
        with os.fdopen(answer_fd, "wb") as f:
            f.write(data)

    try:
        call = orjson.loads(sys.stdin.buffer.read())
        for p in reversed(call.get("sys_path") or []):
            if p not in sys.path:
                sys.path.insert(0, p)
        _limit_memory(int(call["memory_mb"]))
        obj: Any = load_module(call["module"], call.get("file"))
        for part in str(call["qualname"]).split("."):
            obj = getattr(obj, part)
        args = list(call["args"])
        if call.get("context") is not None:
            import types

            args.insert(0, types.SimpleNamespace(**call["context"]))
        result = obj(*args)
        if inspect.isawaitable(result):
            result = asyncio.run(_await(result))
        answer({"ok": result})
    except MemoryError:
        answer({"error": f"memory limit of {call['memory_mb']} MB exceeded", "type": "memory"})
    except BaseException as exc:  # report everything, SystemExit included
        import traceback

        text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        tb = "".join(traceback.format_tb(exc.__traceback__)[-5:])
        answer({"error": f"{text}\n{tb}".strip(), "type": "exception"})
    return 0


async def _await(aw: Any) -> Any:
    return await aw


if __name__ == "__main__":
    sys.exit(_child())
