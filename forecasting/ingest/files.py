"""Whole-file checks done before any row is parsed: encoding, truncation, content hash.

A file that fails here is rejected whole with :class:`InputFileError`; nothing of it is loaded,
so a half-written export never leaves half its sessions in the lake.
"""

from __future__ import annotations

import csv
import hashlib
import io
from pathlib import Path

from forecasting.errors import InputFileError


def compute_content_hash(data: bytes) -> str:
    """Return the SHA-256 hex digest of a file's bytes (names its quarantine file)."""
    return hashlib.sha256(data).hexdigest()


def read_bytes(path: Path) -> bytes:
    """Read a whole input file, raising :class:`InputFileError` when it cannot be opened."""
    try:
        return path.read_bytes()
    except OSError as exc:
        msg = f"cannot read input file {str(path)!r}: {exc.strerror}; check the path"
        raise InputFileError(msg) from exc


def decode_utf8(data: bytes, *, path: Path) -> str:
    """Decode ``data`` as UTF-8 (a leading byte-order mark is dropped).

    Raises
    ------
    InputFileError
        Naming the file, the line and the byte offset of the first invalid byte.
    """
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        msg = (
            f"input file {path.name!r} is not UTF-8: byte {data[exc.start]:#04x} at offset "
            f"{exc.start} (line {line}); re-export it as UTF-8 (e.g. iconv -f cp1252 -t utf-8)"
        )
        raise InputFileError(msg) from exc


def check_csv_complete(text: str, *, path: Path, delimiter: str) -> None:
    """Refuse a delimited text file that was cut short.

    Two signs of truncation: an odd number of double quotes (a field cut inside its quotes),
    and a last line without a line end that has fewer fields than the header.

    Raises
    ------
    InputFileError
        Naming the file and the sign of truncation found.
    """
    if not text.strip():
        msg = f"input file {path.name!r} is empty; nothing to ingest"
        raise InputFileError(msg)
    if text.count('"') % 2:
        msg = (
            f"input file {path.name!r} looks truncated: a quoted field is never closed; "
            "fetch the complete export again"
        )
        raise InputFileError(msg)
    if text.endswith(("\n", "\r")):
        return
    lines = text.splitlines()
    header, last = (
        next(csv.reader(io.StringIO(x), delimiter=delimiter)) for x in (lines[0], lines[-1])
    )
    if len(lines) > 1 and len(last) < len(header):
        msg = (
            f"input file {path.name!r} looks truncated: its last line (line {len(lines)}) has "
            f"{len(last)} of {len(header)} fields and no line end; fetch the complete export again"
        )
        raise InputFileError(msg)
