"""Durable, resumable result writers: JSON Lines and Parquet (the I/O edge of the output).

Both keep exactly one row per key ``(source, window_index, fingerprint)`` across any number of
runs killed at any moment (SIGKILL included) and resumed:

- **JSON Lines** (``*.jsonl``): one object per line, appended batch by batch; each batch is
  written, flushed and ``fsync``-ed before :meth:`~JsonlSink.append` returns. A kill can only
  tear the *last* line; on resume that torn tail (bytes after the last newline) is cut off, and
  the windows of the lost batch are captioned again. A malformed line before the tail is not
  silently dropped: it stops the run with :class:`SinkError`.
- **Parquet** (``*.parquet``): the path is a **folder** of part files, the layout Spark, Hive,
  ``pyarrow.dataset``, pandas, DuckDB and Ray Data read in one call
  (``pyarrow.parquet.read_table(path)``, ``pandas.read_parquet(path)``,
  ``duckdb.read_parquet(f"{path}/*.parquet")``, ``ray.data.read_parquet(path)``). Rows are
  buffered and written as one part file (one row group) when ``rows_per_part`` rows are
  waiting or ``flush_s`` seconds have passed since the oldest waiting row, and on close, so a
  kill loses at most that much work (captioned again on resume). Each part is written to a
  hidden temporary file, ``fsync``-ed and renamed to ``part-NNNNNN.parquet`` (atomic), then the
  folder is ``fsync``-ed: a part file is either complete or absent. Small parts left by time
  flushes are merged into parts of up to ``rows_per_part`` rows when the output is closed or
  reopened (a journal makes the merge atomic too), so 10,000 rows end in one or two files.

Next to the rows each output keeps a small hidden *run file* (``.NAME.vlmcap`` beside a JSONL
file, ``.vlmcap`` in a Parquet folder): the settings behind each fingerprint, so a run with
other settings can say what changed. While a writer is open it holds an exclusive ``flock`` on
that run file, so two runs cannot write one output at once. ``resume=False`` starts the output
afresh: the JSONL file is emptied, the folder's part files are removed.
"""

import fcntl
import json
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, Protocol, runtime_checkable

from vlmcap._errors import ConfigError, VlmcapError
from vlmcap.video._results import ROW_FIELDS, RowKey, WindowCaption


DEFAULT_ROWS_PER_PART = 10_000
"""Rows per Parquet part file (and per row group)."""
DEFAULT_FLUSH_S = 30.0
"""Seconds a row may wait in the Parquet buffer before its part file is written."""


class SinkError(VlmcapError, OSError):
    """The output cannot be read back, is locked by another run, or would get a duplicate row."""


@runtime_checkable
class ResultSink(Protocol):
    """**Protocol:** where the job's rows go; see :func:`open_sink`."""

    @property
    def path(self) -> Path:
        """The output file or folder."""
        ...

    @property
    def existing(self) -> tuple[WindowCaption, ...]:
        """Rows found in the output when it was opened, less those :meth:`remove` took out.

        All fingerprints, marked ``resumed``.
        """
        ...

    @property
    def settings(self) -> Mapping[str, Any]:
        """The settings recorded for each fingerprint (see :meth:`record_settings`)."""
        ...

    def record_settings(self, fingerprint: str, settings: Mapping[str, Any]) -> None:
        """Remember the settings behind ``fingerprint`` (JSON-able) in the run file."""
        ...

    def append(self, rows: Sequence[WindowCaption]) -> None:
        """Store ``rows`` (JSONL: durable when this returns; Parquet: see the module doc).

        Raises:
            SinkError: a row whose key the output already holds.

        """
        ...

    def remove(self, drop: Callable[[WindowCaption], bool]) -> int:
        """Take the stored rows for which ``drop`` is true out of the output; return how many.

        Atomic: a kill leaves the output as it was or without exactly those rows.
        """
        ...

    def close(self) -> None:
        """Store what is buffered and release the output (idempotent)."""
        ...


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_durably(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and an atomic rename."""
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)
    _fsync_dir(path.parent)


class _RunFile:
    """The output's hidden run file: holds the writer's lock and the settings per fingerprint."""

    def __init__(self, path: Path, what: Path) -> None:
        self.path = path
        self._file: IO[bytes] | None = path.open("a+b")
        try:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            self.close()
            raise SinkError(f"{what} is being written by another run") from exc
        self._file.seek(0)
        raw = self._file.read()
        try:
            data = json.loads(raw) if raw.strip() else {}
            self.settings: dict[str, Any] = dict(data.get("settings", {}))
        except (ValueError, AttributeError, TypeError):  # torn by a kill: advisory data only
            self.settings = {}

    def record(self, fingerprint: str, settings: Mapping[str, Any]) -> None:
        if self._file is None or self.settings.get(fingerprint) == settings:
            return
        self.settings[fingerprint] = dict(settings)
        blob = json.dumps({"settings": self.settings}, sort_keys=True, indent=1).encode()
        self._file.seek(0)
        self._file.truncate(0)
        self._file.write(blob)
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class _KeySet:
    """Keys held by an output, to refuse a second row for one key."""

    def __init__(self, path: Path, rows: Sequence[WindowCaption] = ()) -> None:
        self._path = path
        self._keys: set[RowKey] = {r.key for r in rows}

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

    def release(self, rows: Sequence[WindowCaption]) -> None:
        self._keys -= {r.key for r in rows}


def _encode_jsonl(rows: Sequence[WindowCaption]) -> bytes:
    return "".join(
        json.dumps(r.to_row(), ensure_ascii=False, allow_nan=False) + "\n" for r in rows
    ).encode()


class JsonlSink:
    """Append-only JSON Lines output with a torn-tail repair on open (see the module doc)."""

    def __init__(self, path: Path | str, *, resume: bool = True) -> None:
        self._path = Path(path)
        if self._path.is_dir():
            raise SinkError(f"{self._path} is a folder; JSON Lines output is one file")
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._run = _RunFile(self._path.with_name(f".{self._path.name}.vlmcap"), self._path)
        self._file: IO[bytes] | None = None
        try:
            self._path.with_name(f".{self._path.name}.tmp").unlink(missing_ok=True)  # a kill's
            created = not self._path.exists()
            self._file = self._path.open("ab")
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
        self._keys = _KeySet(self._path, self._existing)

    @property
    def path(self) -> Path:
        """The ``.jsonl`` file."""
        return self._path

    @property
    def existing(self) -> tuple[WindowCaption, ...]:
        """Rows read on open (less removed ones)."""
        return self._existing

    @property
    def settings(self) -> Mapping[str, Any]:
        """Settings recorded per fingerprint."""
        return self._run.settings

    def record_settings(self, fingerprint: str, settings: Mapping[str, Any]) -> None:
        """Remember the settings behind ``fingerprint``."""
        self._run.record(fingerprint, settings)

    def _parse(self, data: bytes) -> list[WindowCaption]:
        rows = []
        for lineno, line in enumerate(data.split(b"\n")[:-1], start=1):
            if not line.strip():
                continue
            try:
                rows.append(WindowCaption.from_row(json.loads(line)))
            except (ValueError, KeyError, TypeError) as exc:
                raise SinkError(
                    f"{self._path}:{lineno}: not a vlmcap result row ({exc}); refusing to append"
                ) from exc
        return rows

    def _read_and_repair(self) -> tuple[WindowCaption, ...]:
        data = self._path.read_bytes()
        end = data.rfind(b"\n") + 1
        if end < len(data):  # a torn last line from a killed run: cut it off
            assert self._file is not None  # noqa: S101 - set by __init__
            self._file.truncate(end)
            os.fsync(self._file.fileno())
        return tuple(self._parse(data[:end]))

    def append(self, rows: Sequence[WindowCaption]) -> None:
        """Append ``rows``, one line each, flushed and ``fsync``-ed before returning."""
        if self._file is None:
            raise SinkError(f"{self._path} is closed")
        if not rows:
            return
        self._keys.claim(rows)
        self._file.write(_encode_jsonl(rows))
        self._file.flush()
        os.fsync(self._file.fileno())

    def remove(self, drop: Callable[[WindowCaption], bool]) -> int:
        """Rewrite the file without the rows ``drop`` selects (temporary file, rename)."""
        if self._file is None:
            raise SinkError(f"{self._path} is closed")
        rows = self._parse(self._path.read_bytes())
        gone = [r for r in rows if drop(r)]
        if not gone:
            return 0
        _write_durably(self._path, _encode_jsonl([r for r in rows if not drop(r)]))
        self._file.close()
        self._file = self._path.open("ab")
        self._keys.release(gone)
        self._existing = tuple(r for r in self._existing if not drop(r))
        return len(gone)

    def close(self) -> None:
        """Close the file and release the lock."""
        if self._file is not None:
            self._file.close()
            self._file = None
        self._run.close()


_PART = re.compile(r"^part-(\d{6,})\.parquet$")
_TMP_PREFIX = ".part-"
_RUN_NAME = ".vlmcap"
_JOURNAL = ".vlmcap-merge.json"


def _part_name(seq: int) -> str:
    return f"part-{seq:06d}.parquet"


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
        "flags": pa.list_(pa.string()),
    }
    return pa.schema([(name, types[name]) for name in ROW_FIELDS])


class ParquetSink:
    """A folder of Parquet part files, written in buffered batches by atomic renames."""

    def __init__(
        self,
        path: Path | str,
        *,
        resume: bool = True,
        rows_per_part: int = DEFAULT_ROWS_PER_PART,
        flush_s: float = DEFAULT_FLUSH_S,
    ) -> None:
        if rows_per_part < 1 or not flush_s > 0:
            raise ConfigError(
                f"rows_per_part must be >= 1 and flush_s > 0, got {rows_per_part}, {flush_s}"
            )
        self._pa, self._pq = _pyarrow()
        self._schema = _parquet_schema(self._pa)
        self._rows_per_part = rows_per_part
        self._flush_s = flush_s
        self._buffer: list[WindowCaption] = []
        self._buffered_since = 0.0
        self._path = Path(path)
        if self._path.exists() and not self._path.is_dir():
            raise SinkError(
                f"{self._path} is a file; Parquet output is a folder of part files, "
                "so pass a new path"
            )
        self._path.mkdir(parents=True, exist_ok=True)
        self._run: _RunFile | None = _RunFile(self._path / _RUN_NAME, self._path)
        try:
            self._finish_merge()
            for stale in self._path.glob(f"{_TMP_PREFIX}*"):
                stale.unlink()
            if not resume:
                for _seq, part in _list_parts(self._path):
                    part.unlink()
                _fsync_dir(self._path)
            self._compact()
            self._upgrade()
            parts = _list_parts(self._path)
            self._next = parts[-1][0] + 1 if parts else 0
            self._existing = tuple(r for _s, part in parts for r in self._read(part))
        except BaseException:
            self.close()
            raise
        self._keys = _KeySet(self._path, self._existing)

    @property
    def path(self) -> Path:
        """The output folder."""
        return self._path

    @property
    def existing(self) -> tuple[WindowCaption, ...]:
        """Rows read on open (less removed ones)."""
        return self._existing

    @property
    def settings(self) -> Mapping[str, Any]:
        """Settings recorded per fingerprint."""
        return self._run.settings if self._run is not None else {}

    def record_settings(self, fingerprint: str, settings: Mapping[str, Any]) -> None:
        """Remember the settings behind ``fingerprint``."""
        if self._run is not None:
            self._run.record(fingerprint, settings)

    def _read(self, part: Path) -> list[WindowCaption]:
        try:
            table = self._pq.read_table(part)
            return [WindowCaption.from_row(r) for r in table.to_pylist()]
        except Exception as exc:
            raise SinkError(f"{part}: unreadable part file ({exc}); refusing to append") from exc

    def _write_tmp(self, rows: Sequence[WindowCaption], tag: str) -> Path:
        tmp = self._path / f"{_TMP_PREFIX}{tag}.parquet.tmp"
        table = self._pa.Table.from_pylist([r.to_row() for r in rows], schema=self._schema)
        self._pq.write_table(table, tmp, row_group_size=self._rows_per_part)
        with tmp.open("rb") as f:
            os.fsync(f.fileno())
        return tmp

    def _replace(self, seq: int, rows: Sequence[WindowCaption]) -> None:
        """Make ``rows`` the content of part ``seq`` atomically (none: remove the part)."""
        target = self._path / _part_name(seq)
        if rows:
            self._write_tmp(rows, f"{seq:06d}").replace(target)
        else:
            target.unlink(missing_ok=True)
        _fsync_dir(self._path)

    def _finish_merge(self) -> None:
        """Complete a merge that a kill interrupted (its journal says what was left to do)."""
        journal = self._path / _JOURNAL
        if not journal.exists():
            return
        try:
            plan = json.loads(journal.read_text())
            tmp, into, delete = Path(plan["tmp"]).name, Path(plan["into"]).name, plan["delete"]
        except (ValueError, KeyError, TypeError):  # torn before it was fsync-ed: not started
            journal.unlink()
            return
        if (self._path / tmp).exists():
            (self._path / tmp).replace(self._path / into)
        for name in delete:
            (self._path / Path(name).name).unlink(missing_ok=True)
        _fsync_dir(self._path)
        journal.unlink()
        _fsync_dir(self._path)

    def _upgrade(self) -> None:
        """Rewrite parts written before a column existed (``flags``) in the current schema.

        A folder whose parts disagree on columns reads, in pyarrow and pandas, with the first
        part's columns only; after this every part has every column (atomic per part).
        """
        for seq, part in _list_parts(self._path):
            if not set(ROW_FIELDS) <= set(self._pq.ParquetFile(part).schema_arrow.names):
                self._replace(seq, self._read(part))

    def _compact(self) -> None:
        """Merge runs of consecutive small parts (time flushes) into parts of full size."""
        groups: list[list[tuple[int, Path]]] = [[]]
        size = 0
        for seq, part in _list_parts(self._path):
            n = int(self._pq.ParquetFile(part).metadata.num_rows)
            if n >= self._rows_per_part or size + n > self._rows_per_part:
                groups.append([])
                size = 0
            if n < self._rows_per_part:
                groups[-1].append((seq, part))
                size += n
        for group in groups:
            if len(group) < 2:
                continue
            rows = [r for _s, part in group for r in self._read(part)]
            tmp = self._write_tmp(rows, "merge")
            journal = {
                "tmp": tmp.name,
                "into": group[0][1].name,
                "delete": [part.name for _s, part in group[1:]],
            }
            _write_durably(self._path / _JOURNAL, json.dumps(journal).encode())
            self._finish_merge()

    def append(self, rows: Sequence[WindowCaption]) -> None:
        """Buffer ``rows``; write a part once ``rows_per_part`` rows or ``flush_s`` seconds wait."""
        if self._run is None:
            raise SinkError(f"{self._path} is closed")
        if not rows:
            return
        self._keys.claim(rows)
        if not self._buffer:
            self._buffered_since = time.monotonic()
        self._buffer.extend(rows)
        full = len(self._buffer) >= self._rows_per_part
        if full or time.monotonic() - self._buffered_since >= self._flush_s:
            self.flush()

    def flush(self) -> None:
        """Write the buffered rows as the next part file (temp file, fsync, rename, fsync)."""
        while self._buffer:
            batch = self._buffer[: self._rows_per_part]
            self._replace(self._next, batch)
            self._next += 1
            del self._buffer[: len(batch)]

    def remove(self, drop: Callable[[WindowCaption], bool]) -> int:
        """Rewrite each part holding rows that ``drop`` selects without them (atomic per part)."""
        if self._run is None:
            raise SinkError(f"{self._path} is closed")
        self.flush()
        gone: list[WindowCaption] = []
        for seq, part in _list_parts(self._path):
            rows = self._read(part)
            out = [r for r in rows if drop(r)]
            if out:
                self._replace(seq, [r for r in rows if not drop(r)])
                gone.extend(out)
        self._keys.release(gone)
        self._existing = tuple(r for r in self._existing if not drop(r))
        return len(gone)

    def close(self) -> None:
        """Write the buffered rows, merge small parts, release the folder's lock."""
        if self._run is None:
            return
        try:
            self.flush()
            self._compact()
        finally:
            self._run.close()
            self._run = None


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
