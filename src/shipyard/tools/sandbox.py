"""Run one Python function in a child process with a wall-time and a memory limit.

The parent starts `python -m shipyard.tools.sandbox`, writes the call as JSON on its stdin
and reads the outcome as JSON from its stdout. The child caps its own address space
(`RLIMIT_AS`) before importing the function's module, redirects `print` output to stderr
(so it cannot corrupt the answer), calls the function — awaiting it if it is a coroutine —
and answers `{"ok": result}` or `{"error": {...}}`, the failure described by fields (its
kind, and for an exception its class, the classes it derives from, its arguments and
attributes). The parent kills the child's whole process group when the wall time runs
out. Whatever the function does — loops forever, allocates without end, segfaults, calls
`os._exit` — the parent gets an `IsolatedError` subclass saying what happened, and carries
on; and an exception of a class the caller names in `reraise` (a job's `Discard`, a
handler's `Reject`) comes back as that class, as if the function had run in-process.
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
    """The isolated call failed; the subclass says how, the message says it in words."""


class IsolatedTimeout(IsolatedError):
    """The call ran past its wall time; the child was killed."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"timed out after {seconds:g} s (wall time limit)")
        self.seconds = seconds


class IsolatedMemoryLimit(IsolatedError):
    """The function allocated past the memory limit (a `MemoryError` in the child)."""

    def __init__(self, limit_mb: int) -> None:
        super().__init__(f"memory limit of {limit_mb} MB exceeded")
        self.limit_mb = limit_mb


class IsolatedCrash(IsolatedError):
    """The child ended without an answer: killed by a signal (`signal`: its name) or exited
    (`status`: its exit status)."""

    def __init__(self, message: str, *, signal: str | None = None, status: int | None = None):
        super().__init__(message)
        self.signal = signal
        self.status = status


class IsolatedDataError(IsolatedError):
    """The call or its answer cannot cross the boundary: arguments or result not JSON, or
    an answer over `MAX_OUTPUT`."""


class IsolatedException(IsolatedError):
    """The function raised. `type_name` is the exception's class as a traceback names it
    (`ValueError`, `pkg.mod.Error`), `message` its `str()`, `classes` the qualified names of
    its class and every base (to ask `raised(cls)`), `traceback` the innermost frames.
    The exception's own text reads as a traceback's last line, then those frames."""

    def __init__(
        self, type_name: str, message: str, classes: tuple[str, ...], traceback: str
    ) -> None:
        head = f"{type_name}: {message}" if message else type_name
        super().__init__(f"{head}\n{traceback}".strip())
        self.type_name = type_name
        self.message = message
        self.classes = classes
        self.traceback = traceback

    def raised(self, cls: type[BaseException]) -> bool:
        """Whether the function raised `cls` or a subclass of it."""
        return qualified_name(cls) in self.classes


def qualified_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


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
    reraise: tuple[type[Exception], ...] = (),
) -> Any:
    """Call `module.qualname(*args)` in a fresh interpreter; return its JSON result. With
    `context`, the first argument is that dict as an object (attributes, not keys).

    A failure raises an `IsolatedError` subclass, except that an exception of a class in
    `reraise` (or of a subclass) is raised here as that class, with the arguments and the
    JSON-serializable attributes it had in the child, and the child's frames as a note."""
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
        raise IsolatedDataError(f"arguments are not JSON-serializable: {exc}") from None
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
        raise IsolatedTimeout(timeout) from None
    except BaseException:  # cancelled: never leave the child running
        _kill_group(proc.pid)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(proc.wait(), timeout=5)
        raise
    finally:
        _kill_group(proc.pid)  # a grandchild it left behind
    if out is None:
        raise IsolatedDataError(f"the answer is larger than {MAX_OUTPUT} bytes")
    tail = err.decode(errors="replace")[-STDERR_TAIL:].strip()
    try:
        answer = orjson.loads(out) if out else None
    except orjson.JSONDecodeError:
        answer = None
    if isinstance(answer, dict) and "ok" in answer:
        return answer["ok"]
    if isinstance(answer, dict) and isinstance(answer.get("error"), dict):
        raise _failure(answer["error"], reraise)
    rc = proc.returncode
    if rc is not None and rc < 0:
        try:
            name = signal.Signals(-rc).name
        except ValueError:
            name = str(-rc)
        hint = _SIGNAL_HINTS.get(name, "")
        raise IsolatedCrash(f"the process was killed by {name}{hint}", signal=name)
    raise IsolatedCrash(
        f"the process exited with status {rc} without an answer" + (f": {tail}" if tail else ""),
        status=rc,
    )


def _failure(error: dict[str, Any], reraise: tuple[type[Exception], ...]) -> Exception:
    """The exception a failure the child described becomes here."""
    kind = error.get("kind")
    if kind == "memory":
        return IsolatedMemoryLimit(int(error.get("limit_mb") or 0))
    if kind != "exception":
        return IsolatedDataError(str(error.get("message") or "the child's answer is malformed"))
    classes = tuple(str(c) for c in error.get("classes") or ())
    traceback = str(error.get("traceback") or "")
    args, attrs = error.get("args"), error.get("attrs")
    if isinstance(args, list) and isinstance(attrs, dict):
        for cls in reraise:
            if qualified_name(cls) in classes:
                exc = cls.__new__(cls)
                exc.args = tuple(args)
                exc.__dict__.update(attrs)
                if traceback:
                    exc.add_note(f"in the isolated process:\n{traceback}".rstrip())
                return exc
    return IsolatedException(
        str(error.get("type") or "Exception"), str(error.get("message") or ""), classes, traceback
    )


async def _exchange(
    proc: asyncio.subprocess.Process, payload: bytes, err: bytearray
) -> bytes | None:
    """Send the call, read the answer (None: too large) and the end of stderr.

    The answer ends when the child closes its answer pipe, i.e. when it is done: then its
    process group is killed, because a process it started (and left running) would hold
    stderr open and make a finished call look like a timeout."""
    assert proc.stdin is not None  # noqa: S101  (narrows a type for mypy; established above)
    assert proc.stdout is not None  # noqa: S101  (narrows a type for mypy; established above)
    assert proc.stderr is not None  # noqa: S101  (narrows a type for mypy; established above)
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
            message = f"result is not JSON-serializable: {exc}"
            data = orjson.dumps({"error": {"kind": "data", "message": message}})
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
        answer({"error": {"kind": "memory", "limit_mb": int(call["memory_mb"])}})
    except BaseException as exc:  # report everything, SystemExit included
        answer({"error": _exception_fields(exc)})
    return 0


def _exception_fields(exc: BaseException) -> dict[str, Any]:
    """An exception as the fields the parent rebuilds it from (tools/sandbox.py `_failure`):
    its arguments and attributes only when JSON can carry them."""
    import traceback

    cls = type(exc)
    own = cls.__module__ in ("builtins", "__main__")
    try:
        message = str(exc)
    except Exception:
        message = "<exception str() failed>"
    fields: dict[str, Any] = {
        "kind": "exception",
        "type": cls.__qualname__ if own else qualified_name(cls),
        "message": message,
        "classes": [qualified_name(c) for c in cls.__mro__],
        "traceback": "".join(traceback.format_tb(exc.__traceback__)[-5:]),
        "args": None,
        "attrs": {},
    }
    with contextlib.suppress(TypeError):
        orjson.dumps(exc.args)
        fields["args"] = list(exc.args)
    for name, value in getattr(exc, "__dict__", {}).items():
        with contextlib.suppress(TypeError):
            orjson.dumps(value)
            fields["attrs"][name] = value
    return fields


async def _await(aw: Any) -> Any:
    return await aw


if __name__ == "__main__":
    sys.exit(_child())
