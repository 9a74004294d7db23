"""Durable, resumable result writers: JSON Lines and Parquet (the I/O edge of the output).

Both keep exactly one row per key ``(source, window_index, fingerprint)`` across any number of
runs killed at any moment (SIGKILL included) and resumed:

- **JSON Lines** (``*.jsonl``): one object per line, appended batch by batch; each batch is
  written, flushed and ``fsync``-ed before the job reports its rows. A kill can only tear the
  *last* line; on resume that torn tail (bytes after the last newline) is cut off, and the
  windows of the lost batch are captioned again. A malformed line before the tail is not
  silently dropped: it stops the run with :class:`SinkError`.
- **Parquet** (``*.parquet``): the path is a **folder** of part files, the layout Spark, Hive
  and ``pyarrow.dataset`` use; read it whole with ``pyarrow.parquet.read_table(path)`` or
  ``pandas.read_parquet(path)``. Each batch is written to a hidden temporary file, ``fsync``-ed
  and renamed to ``part-NNNNNN.parquet`` (atomic), then the folder is ``fsync``-ed: a part file
  is either complete or absent. Stale temporary files are removed on resume.

While a writer is open it holds an exclusive ``flock`` on the output (JSONL) or on
``.vlmcap.lock`` in the folder (Parquet), so two runs cannot append to one output at once.
``resume=False`` starts the output afresh: the JSONL file is emptied, the folder's part files
are removed.
"""

import fcntl
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any, Protocol

from vlmcap._errors import ConfigError, VlmcapError
from vlmcap.video._results import ROW_FIELDS, RowKey, WindowCaption


class SinkError(VlmcapError, OSError):
    """The output cannot be read back, is locked by another run, or would get a duplicate row."""


class ResultSink(Protocol):
    """**Protocol:** where the job's rows go; see :func:`open_sink`."""

    @property
    def path(self) -> Path:
        """The output file or folder."""
        ...

    @property
    def existing(self) -> tuple[WindowCaption, ...]:
        """Rows found in the output when it was opened (all fingerprints, marked ``resumed``)."""
        ...

    def append(self, rows: Sequence[WindowCaption]) -> None:
        """Store ``rows``; they are durable when this returns.

        Raises:
            SinkError: a row whose key the output already holds.

        """
        ...

    def close(self) -> None:
        """Release the output (idempotent)."""
        ...


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _lock(handle: IO[Any], what: Path) -> None:
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        raise SinkError(f"{what} is being written by another run") from exc


class _KeySet:
    """Keys held by an output, to refuse a second row for one key."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._keys: set[RowKey] = set()

    def add_existing(self, rows: Sequence[WindowCaption]) -> None:
        self._keys.update(r.key for r in rows)

    def claim(self, rows: Sequence[WindowCaption]) -> None:
        new: set[RowKey] = set()
        for row in rows:
            if row.key in self._keys or row.key in new:
                raise SinkError(
                    f"{self._path} already holds a row for {row.source} window "
                    f"{row.window_index} (fingerprint {row.fingerprint})"
                )
            new.add(row.key)
        self._keys |= new


class JsonlSink:
    """Append-only JSON Lines output with a torn-tail repair on open (see the module doc)."""

    def __init__(self, path: Path | str, *, resume: bool = True) -> None:
        self._path = Path(path)
        self._path.parent.mkdir(parents=True, exist_ok=True)
        created = not self._path.exists()
        self._file: IO[bytes] | None = self._path.open("ab")
        try:
            _lock(self._file, self._path)
            if created:
                _fsync_dir(self._path.parent)
            if resume:
                self._existing = self._read_and_repair()
            else:
                self._file.truncate(0)
                os.fsync(self._file.fileno())
                self._existing = ()
        except BaseException:
            self.close()
            raise
        self._keys = _KeySet(self._path)
        self._keys.add_existing(self._existing)

    @property
    def path(self) -> Path:
        """The ``.jsonl`` file."""
        return self._path

    @property
    def existing(self) -> tuple[WindowCaption, ...]:
        """Rows read on open."""
        return self._existing

    def _read_and_repair(self) -> tuple[WindowCaption, ...]:
        data = self._path.read_bytes()
        end = data.rfind(b"\n") + 1
        if end < len(data):  # a torn last line from a killed run: cut it off
            assert self._file is not None  # noqa: S101 - set by __init__
            self._file.truncate(end)
            os.fsync(self._file.fileno())
        rows = []
        for lineno, line in enumerate(data[:end].split(b"\n")[:-1], start=1):
            if not line.strip():
                continue
            try:
                rows.append(WindowCaption.from_row(json.loads(line)))
            except (ValueError, KeyError, TypeError) as exc:
                raise SinkError(
                    f"{self._path}:{lineno}: not a vlmcap result row ({exc}); refusing to append"
                ) from exc
        return tuple(rows)

    def append(self, rows: Sequence[WindowCaption]) -> None:
        """Append ``rows``, one line each, flushed and ``fsync``-ed before returning."""
        if self._file is None:
            raise SinkError(f"{self._path} is closed")
        if not rows:
            return
        self._keys.claim(rows)
        blob = "".join(
            json.dumps(r.to_row(), ensure_ascii=False, allow_nan=False) + "\n" for r in rows
        )
        self._file.write(blob.encode())
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        """Close the file (and release its lock)."""
        if self._file is not None:
            self._file.close()
            self._file = None


_PART = re.compile(r"^part-(\d{6,})\.parquet$")
_TMP_PREFIX = ".part-"
_LOCK_NAME = ".vlmcap.lock"


def _list_parts(folder: Path) -> list[tuple[int, Path]]:
    """``(sequence number, path)`` of the folder's part files, in order."""
    found = []
    for p in folder.iterdir():
        m = _PART.match(p.name)
        if m:
            found.append((int(m.group(1)), p))
    return sorted(found)


def _pyarrow() -> tuple[Any, Any]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:  # pragma: no cover - pyarrow is in the dev and parquet extras
        raise ConfigError("Parquet output needs pyarrow: pip install 'vlmcap[parquet]'") from exc
    return pa, pq


def _parquet_schema(pa: Any) -> Any:
    types = {
        "source": pa.string(),
        "window_index": pa.int64(),
        "num_windows": pa.int64(),
        "start_s": pa.float64(),
        "end_s": pa.float64(),
        "frames": pa.int64(),
        "caption": pa.string(),
        "status": pa.string(),
        "finish_reason": pa.string(),
        "prompt_tokens": pa.int64(),
        "output_tokens": pa.int64(),
        "error": pa.string(),
        "fingerprint": pa.string(),
    }
    return pa.schema([(name, types[name]) for name in ROW_FIELDS])


class ParquetSink:
    """A folder of Parquet part files, one per batch, each made visible by an atomic rename."""

    def __init__(self, path: Path | str, *, resume: bool = True) -> None:
        self._pa, self._pq = _pyarrow()
        self._schema = _parquet_schema(self._pa)
        self._path = Path(path)
        if self._path.exists() and not self._path.is_dir():
            raise SinkError(
                f"{self._path} is a file; Parquet output is a folder of part files, "
                "so pass a new path"
            )
        self._path.mkdir(parents=True, exist_ok=True)
        self._lock: IO[bytes] | None = (self._path / _LOCK_NAME).open("ab")
        try:
            _lock(self._lock, self._path)
            for stale in self._path.glob(f"{_TMP_PREFIX}*"):
                stale.unlink()
            if not resume:
                for _seq, part in self._parts():
                    part.unlink()
                _fsync_dir(self._path)
            parts = list(self._parts())
            self._next = parts[-1][0] + 1 if parts else 0
            self._existing = tuple(r for _s, part in parts for r in self._read(part))
        except BaseException:
            self.close()
            raise
        self._keys = _KeySet(self._path)
        self._keys.add_existing(self._existing)

    @property
    def path(self) -> Path:
        """The output folder."""
        return self._path

    @property
    def existing(self) -> tuple[WindowCaption, ...]:
        """Rows read on open."""
        return self._existing

    def _parts(self) -> list[tuple[int, Path]]:
        return _list_parts(self._path)

    def _read(self, part: Path) -> list[WindowCaption]:
        try:
            table = self._pq.read_table(part)
            return [WindowCaption.from_row(r) for r in table.to_pylist()]
        except Exception as exc:
            raise SinkError(f"{part}: unreadable part file ({exc}); refusing to append") from exc

    def append(self, rows: Sequence[WindowCaption]) -> None:
        """Write ``rows`` as the next part file (temp file, fsync, rename, fsync folder)."""
        if self._lock is None:
            raise SinkError(f"{self._path} is closed")
        if not rows:
            return
        self._keys.claim(rows)
        name = f"part-{self._next:06d}.parquet"
        tmp = self._path / f"{_TMP_PREFIX}{self._next:06d}.parquet.tmp"
        table = self._pa.Table.from_pylist([r.to_row() for r in rows], schema=self._schema)
        self._pq.write_table(table, tmp)
        with tmp.open("rb") as f:
            os.fsync(f.fileno())
        tmp.replace(self._path / name)
        _fsync_dir(self._path)
        self._next += 1

    def close(self) -> None:
        """Release the folder's lock."""
        if self._lock is not None:
            self._lock.close()
            self._lock = None


def open_sink(path: Path | str, *, resume: bool = True) -> JsonlSink | ParquetSink:
    """Open an output by its suffix: ``.jsonl`` (a file) or ``.parquet`` (a folder of parts).

    Args:
        path: the output.
        resume: keep and read back existing rows (``True``), or start the output afresh.

    Raises:
        ConfigError: another suffix.
        SinkError: the output is locked by another run, or holds a malformed row.

    """
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix == ".jsonl":
        return JsonlSink(p, resume=resume)
    if suffix == ".parquet":
        return ParquetSink(p, resume=resume)
    raise ConfigError(f"output {p}: unknown format {suffix or '(none)'!r}; use .jsonl or .parquet")


def read_rows(path: Path | str) -> list[WindowCaption]:
    """Every row of an output, in stored order (JSONL: a torn last line is ignored, not cut)."""
    p = Path(path)
    if p.suffix.lower() == ".parquet":
        _pa, pq = _pyarrow()
        parts = _list_parts(p) if p.is_dir() else []
        return [
            WindowCaption.from_row(r) for _s, part in parts for r in pq.read_table(part).to_pylist()
        ]
    data = p.read_bytes() if p.exists() else b""
    lines = data[: data.rfind(b"\n") + 1].split(b"\n")[:-1]
    return [WindowCaption.from_row(json.loads(line)) for line in lines if line.strip()]

