"""A watchdog that kills a job's leftover processes when the job dies, by any signal.

vLLM runs its engine in child processes (``EngineCore``, and ``Worker`` processes under it).
A job that is SIGKILLed cannot stop them: they are re-parented to init and keep their memory
(gigabytes of model weights and KV cache) and their shared-memory files. vLLM (0.26 to 0.32)
does not watch its parent, so ``vlmcap caption`` starts this watchdog: a separate process in
its own session (so a signal sent to the job's process group does not reach it) that

1. records the job's descendants (pid and start time, from ``/proc``) every 0.5 s while the
   job lives (vLLM's processes live for the whole job), and notices the job's death within
   that time (its parent pid changes);
2. then SIGKILLs every recorded process still alive (the start time rules out a reused pid)
   and their own descendants, and removes the ``/dev/shm`` files they had open that no live
   process uses any more.

A job that ends normally has shut its engine down already; anything it left is killed too.
The file is run as a script (``python -I _reaper.py JOB_PID``), never imported by the job, so
the watchdog starts in milliseconds and imports nothing but the standard library. Linux only;
:func:`start_reaper` does nothing elsewhere.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path


POLL_S = 0.5
SHM = Path("/dev/shm")  # noqa: S108 - where vLLM's shared memory lives


def _stat(pid: int | str) -> list[str] | None:
    """The fields of ``/proc/PID/stat`` after the command name, ``None`` if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rfind(")") + 2 :].split()


def _start_time(pid: int) -> int | None:
    """Start time of a process in clock ticks (field 22 of ``stat``), ``None`` if gone."""
    fields = _stat(pid)
    return int(fields[19]) if fields is not None and len(fields) > 19 else None


def _descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (from the parent pids of all processes)."""
    kids: dict[int, list[int]] = {}
    for proc in Path("/proc").glob("[0-9]*"):
        fields = _stat(proc.name)
        if fields is not None and len(fields) > 1:
            kids.setdefault(int(fields[1]), []).append(int(proc.name))
    out: list[int] = []
    todo = list(kids.get(pid, ()))
    while todo:
        child = todo.pop()
        out.append(child)
        todo.extend(kids.get(child, ()))
    return out


def _shm_files(pid: int) -> set[Path]:
    """Shared-memory files a process maps or holds open."""
    found: set[Path] = set()
    try:
        maps = Path(f"/proc/{pid}/maps").read_text()
        fds = [str(fd.readlink()) for fd in Path(f"/proc/{pid}/fd").iterdir()]
    except OSError:
        return found
    found |= {Path(line.split(None, 5)[-1]) for line in maps.splitlines() if f" {SHM}/" in line}
    found |= {Path(fd) for fd in fds if fd.startswith(f"{SHM}/")}
    return {Path(str(p).removesuffix(" (deleted)")) for p in found}


def _shm_in_use() -> set[Path]:
    used: set[Path] = set()
    for proc in Path("/proc").glob("[0-9]*"):
        used |= _shm_files(int(proc.name))
    return used


def reap(tracked: dict[int, int]) -> list[int]:
    """SIGKILL the tracked processes still alive (and their descendants); return their pids."""
    me = os.getpid()
    victims = {pid for pid, start in tracked.items() if _start_time(pid) == start}
    for pid in list(victims):
        victims.update(_descendants(pid))
    victims.discard(me)
    shm: set[Path] = set()
    for pid in victims:
        shm |= _shm_files(pid)
    for pid in victims:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            continue
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_start_time(p) is not None for p in victims):
        time.sleep(0.05)
    for path in shm - _shm_in_use():
        try:
            path.unlink()
        except OSError:
            continue
    return sorted(victims)


def watch(job: int) -> None:
    """Track ``job``'s descendants until it dies, then kill those still alive."""
    me = os.getpid()
    tracked: dict[int, int] = {}
    while os.getppid() == job:
        for pid in _descendants(job):
            if pid != me and pid not in tracked:
                start = _start_time(pid)
                if start is not None:
                    tracked[pid] = start
        time.sleep(POLL_S)
    reap(tracked)


_STARTED: list["subprocess.Popen[bytes]"] = []


def start_reaper() -> "subprocess.Popen[bytes] | None":
    """Start the watchdog for the calling process, once (Linux; elsewhere ``None``)."""
    if _STARTED:
        return _STARTED[0]
    if not sys.platform.startswith("linux") or not Path("/proc/self/stat").is_file():
        return None
    watchdog = subprocess.Popen(  # noqa: S603 - our own script, by path, with our interpreter
        [sys.executable, "-I", str(Path(__file__).resolve()), str(os.getpid())],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        close_fds=True,
    )
    _STARTED.append(watchdog)
    return watchdog


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    watch(int(sys.argv[1]))
