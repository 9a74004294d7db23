"""The watchdog that takes a job's child processes with it, without an engine.

A stand-in job starts the watchdog and a child that holds a shared-memory file mapped (as
vLLM's engine process does), with a grandchild of its own; the job is then SIGKILLed.
The engine end of it runs in ``test_caption_cli.py``.
"""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest


_JOB = textwrap.dedent(
    """
    import mmap, os, subprocess, sys, time
    from vlmcap.video._reaper import start_reaper

    start_reaper()
    child = '''
    import mmap, os, subprocess, sys, time
    fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
    os.ftruncate(fd, 4096)
    region = mmap.mmap(fd, 4096)
    os.close(fd)
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    time.sleep(600)
    '''
    subprocess.Popen([sys.executable, "-c", child, sys.argv[1]])
    print("started", flush=True)
    time.sleep(600)
    """
)


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] != "Z"


def _descendants(pid: int) -> list[int]:
    kids: dict[int, list[int]] = {}
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            stat = (proc / "stat").read_text()
        except OSError:
            continue
        kids.setdefault(int(stat[stat.rfind(")") + 2 :].split()[1]), []).append(int(proc.name))
    out, todo = [], list(kids.get(pid, ()))
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, ()))
    return out


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="Linux /proc")
@pytest.mark.skipif(not Path("/dev/shm").is_dir(), reason="needs /dev/shm")  # noqa: S108
def test_children_and_their_shared_memory_die_with_a_killed_job() -> None:
    shm = Path(f"/dev/shm/vlmcap-test-{os.getpid()}")  # noqa: S108
    job = subprocess.Popen(
        [sys.executable, "-c", _JOB, str(shm)], stdout=subprocess.PIPE, start_new_session=True
    )
    try:
        assert job.stdout is not None
        assert job.stdout.readline() == b"started\n"
        deadline = time.monotonic() + 60
        while len(_descendants(job.pid)) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)  # the watchdog, the child and the grandchild
        kids = [p for p in _descendants(job.pid) if "_reaper.py" not in _cmdline(p)]
        assert len(kids) == 2, kids
        assert shm.exists()
        time.sleep(1.5)  # the watchdog has seen them (it looks every 0.5 s)
        os.kill(job.pid, signal.SIGKILL)
        job.wait()
        deadline = time.monotonic() + 15
        while any(map(_alive, kids)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(map(_alive, kids)), "the job's processes died with it"
        deadline = time.monotonic() + 5
        while shm.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not shm.exists(), "their shared memory was removed"
    finally:
        for pid in _descendants(job.pid):
            os.kill(pid, signal.SIGKILL)
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
        shm.unlink(missing_ok=True)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""
