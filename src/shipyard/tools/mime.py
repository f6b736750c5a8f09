"""MIME types detected from content (never from the client's word), and file names made
the way PocketBase makes them: a sanitised stem, `_`, 10 random `[a-z0-9]`, the extension."""

from __future__ import annotations

import re
import secrets

import filetype

HEAD_BYTES = 8192  # what detection reads of a file
_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
_EXT_INVALID = re.compile(r"[^\w.*\-+=#]+", re.ASCII)
_SPLIT = re.compile(r"[\W_]+", re.ASCII)
_TEXT = "text/plain; charset=utf-8"
_EXTENSIONS = {_TEXT: ".txt", "application/octet-stream": ""}


def detect(head: bytes) -> str:
    """The MIME type of a file from its first bytes: a known signature, UTF-8 text, or
    `application/octet-stream` (as PocketBase's detector answers)."""
    kind = filetype.guess(head)
    if kind is not None:
        return str(kind.mime)
    if not head:
        return _TEXT
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # a character cut at the end of the head is fine
            return "application/octet-stream"
    if b"\x00" in head:
        return "application/octet-stream"
    return _TEXT


def extension_of(mime: str) -> str:
    if mime in _EXTENSIONS:
        return _EXTENSIONS[mime]
    for kind in filetype.TYPES:
        if kind.mime == mime:
            return "." + str(kind.extension)
    return ""


def mime_matches(mime: str, allowed: str) -> bool:
    """`allowed` names `mime` (parameters such as `; charset=utf-8` aside)."""
    return mime.split(";")[0].strip().lower() == allowed.split(";")[0].strip().lower()


def random_part(n: int = 10) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(n))


def _extension(name: str) -> str:
    """PocketBase's extractExtension: the last one or two dotted parts (`.tar.gz`)."""
    primary = name.rfind(".")
    if primary == -1:
        return ""
    secondary = name.rfind(".", 0, primary)
    return name[secondary:] if secondary >= 0 else name[primary:]


def snakecase(text: str) -> str:
    out: list[str] = []
    for word in _SPLIT.split(text):
        if not word:
            continue
        if out:
            out.append("_")
        for i, ch in enumerate(word):
            if ch.isupper() and i > 0 and not word[i - 1].isupper():
                out.append("_")
            out.append(ch)
    return "".join(out).lower()


def stored_name(original: str, mime: str) -> str:
    """The name PocketBase stores an upload under (tools/filesystem normalizeName)."""
    name = original[-300:]
    ext = _extension(name)
    clean_ext = "." + _EXT_INVALID.sub("", ext).strip(".")
    if clean_ext == ".":
        clean_ext = extension_of(mime)
    if len(clean_ext) > 20:
        clean_ext = "." + clean_ext[-20:].strip(".")
    stem = snakecase(name[: len(name) - len(ext)].strip(".") if ext else name.strip("."))
    if len(stem) < 3:
        stem += random_part()
    elif len(stem) > 100:
        stem = stem[:100]
    return f"{stem}_{random_part()}{clean_ext}"
