"""The video job on a local Ray cluster: engine actors, decoder actors, the driver's sink.

One run uses two real vLLM engine actors on the tiny checkpoint; the fault tests use engine
actors whose :class:`vlmcap.Captioner` drives a slow :class:`FakeEngine`, so a kill lands while
batches are unfinished (two more real engines would not fit two cores in the time budget).
"""

import logging
import os
import re
import signal
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


ray = pytest.importorskip("ray")

from vlmcap.ray import ClusterError, RayOptions, caption_paths_ray  # noqa: E402
from vlmcap.testing import FakeEngine, sample_videos  # noqa: E402
from vlmcap.testing._fake import default_text  # noqa: E402
from vlmcap.video import (  # noqa: E402
    JobStats,
    WindowCaption,
    WindowSettings,
    plan_media,
    probe,
    read_rows,
)


pytestmark = pytest.mark.engine

SETTINGS = WindowSettings(window_size=32, remainder_threshold=16)


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return sample_videos(tmp_path_factory.mktemp("rayvideos"), n=4)


def _expected(paths: list[Path]) -> set[tuple[str, int]]:
    return {(str(p), i) for p in paths for i in range(len(plan_media(probe(p), SETTINGS)))}


def _once(rows: list[WindowCaption]) -> set[tuple[str, int]]:
    counts = Counter((r.source, r.window_index) for r in rows)
    assert max(counts.values()) == 1, [k for k, n in counts.items() if n > 1]
    return set(counts)


def _slow_fake(delay_s: float) -> Any:
    """An engine factory (pickled into the actors): a FakeEngine taking ``delay_s`` a caption."""

    def text(inputs: Any) -> str:
        time.sleep(delay_s)
        return default_text(inputs)

    return lambda _config: FakeEngine(text=text)


def _name() -> str:
    return f"t{uuid.uuid4().hex[:8]}"


def test_two_real_engine_actors_caption_every_window_once(
    cluster: None, videos: list[Path], qwen_config: Any, tmp_path: Path
) -> None:
    inputs = videos[:2]
    out = tmp_path / "captions.jsonl"
    stats = JobStats()
    rows = list(
        caption_paths_ray(
            inputs, qwen_config, options=RayOptions(engines=2, name=_name()), out=out,
            progress=False, settings=SETTINGS, batch_windows=2, stats=stats,
        )
    )
    assert _once(rows) == _expected(inputs)
    assert all(r.ok and r.caption for r in rows), [r.error for r in rows if not r.ok]
    assert _once(read_rows(out)) == _expected(inputs), "every row is in the output, once"
    assert stats.files == len(inputs)


def test_fake_engines_every_window_once_and_a_rerun_resumes(
    cluster: None, videos: list[Path], qwen_config: Any, tmp_path: Path
) -> None:
    out = tmp_path / "captions.parquet"
    kw: dict[str, Any] = {
        "out": out, "progress": False, "settings": SETTINGS, "batch_windows": 2,
        "build": _slow_fake(0.0),
    }
    rows = list(
        caption_paths_ray(videos, qwen_config, options=RayOptions(engines=2, name=_name()), **kw)
    )
    assert _once(rows) == _expected(videos)
    assert not any(r.resumed for r in rows)
    again = list(
        caption_paths_ray(videos, qwen_config, options=RayOptions(engines=2, name=_name()), **kw)
    )
    assert all(r.resumed for r in again) and _once(again) == _expected(videos)
    assert _once(read_rows(out)) == _expected(videos)


@pytest.mark.parametrize("restart", [True, False], ids=["restarted", "gone"])
def test_a_killed_engine_actor_loses_and_doubles_nothing(
    cluster: None, videos: list[Path], qwen_config: Any, tmp_path: Path,
    restart: bool, caplog: pytest.LogCaptureFixture,
) -> None:
    """Kill engine 0 once the first rows are in: with ``restart`` Ray restarts it and retries
    its batches there; without, the driver hands them to engine 1. Either way every window is
    written exactly once."""
    out = tmp_path / "captions.jsonl"
    name = _name()
    job = caption_paths_ray(
        videos, qwen_config, options=RayOptions(engines=2, name=name, max_restarts=1),
        out=out, progress=False, settings=SETTINGS, batch_windows=2, build=_slow_fake(0.3),
    )
    victim = None
    old_pid = 0
    rows: list[WindowCaption] = []
    with caplog.at_level(logging.WARNING, logger="vlmcap"):
        for row in job:
            rows.append(row)
            if victim is None:
                victim = ray.get_actor(f"{name}-engine-0")
                old_pid = ray.get(victim.pid.remote())
                ray.kill(victim, no_restart=not restart)
            elif restart and len(rows) == 4:
                assert ray.get(victim.pid.remote()) != old_pid, "the actor was restarted"
    assert _once(rows) == _expected(videos)
    assert all(r.ok for r in rows)
    assert _once(read_rows(out)) == _expected(videos)
    if not restart:
        assert "retrying" in caplog.text, "the dead actor's batches went to the other one"


def test_every_engine_gone_is_a_cluster_error(
    cluster: None, videos: list[Path], qwen_config: Any, tmp_path: Path
) -> None:
    name = _name()
    job = caption_paths_ray(
        videos, qwen_config, options=RayOptions(engines=1, name=name, max_restarts=0),
        out=tmp_path / "c.jsonl", progress=False, settings=SETTINGS, batch_windows=2,
        build=_slow_fake(0.3),
    )
    first = next(job)
    ray.kill(ray.get_actor(f"{name}-engine-0"), no_restart=True)
    with pytest.raises(ClusterError):
        list(job)
    assert first.ok
    written = read_rows(tmp_path / "c.jsonl")
    assert first.key in {r.key for r in written}


@pytest.mark.parametrize(
    "option", [["--address", "127.0.0.1:6379"], ["--ray-engines", "2"],
               ["--ray-decoders-per-engine", "2"]],
)
def test_cli_caption_ray_needs_ray_for_its_options(
    tmp_path: Path, videos: list[Path], option: list[str]
) -> None:
    from vlmcap.cli import main

    code = main([
        "caption", str(videos[0]), "--model", "qwen", "--out", str(tmp_path / "c.jsonl"), *option,
    ])
    assert code == 2


def test_cli_caption_ray_on_the_running_cluster(
    cluster: None, videos: list[Path], tiny_qwen: Path, tmp_path: Path
) -> None:
    from vlmcap.cli import main

    out = tmp_path / "c.jsonl"
    code = main([
        "caption", str(videos[0]), "--model", "qwen", "--model-path", str(tiny_qwen),
        "--out", str(out), "--max-tokens", "8", "--max-model-len", "4096", "--window-size", "32",
        "--remainder-threshold", "16", "--batch-windows", "2", "--no-progress",
        "--ray", "--ray-engines", "1",
    ])
    assert code == 0
    assert _once(read_rows(out)) == _expected(videos[:1])


def test_a_layout_the_cluster_cannot_place_is_refused_not_a_hang(
    cluster: None, videos: list[Path], qwen_config: Any
) -> None:
    import vlmcap

    options = RayOptions(engines=3, decoders=2, cpus_per_engine=1.0, name=_name())  # 5 > 4 CPUs
    with pytest.raises(vlmcap.ConfigError, match=r"need 5 CPU but the cluster has 4 CPU"):
        list(caption_paths_ray(videos[:1], qwen_config, options=options, progress=False))


@pytest.fixture(scope="module")
def long_videos(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two files of 8 windows each (small frames: decoding is not what is tested)."""
    from vlmcap.testing._samples import moving_shapes, write_video

    dest = tmp_path_factory.mktemp("longvideos")
    return [
        write_video(dest / f"long-{i}.mp4", moving_shapes(8 * 32, 64, 64, seed=i), 16)
        for i in range(2)
    ]


@pytest.mark.parametrize("attempts", [4, 1], ids=["retried", "no-retry"])
def test_a_decoder_killed_mid_file_is_retried_every_window_once(
    cluster: None, long_videos: list[Path], qwen_config: Any, tmp_path: Path, attempts: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """SIGKILL the only decoder once the first row is in. The pipeline holds at most four
    windows ahead of that row (one handed over, one queued, two in the generator's buffer), so
    the kill lands mid-file; a fresh decoder decodes only the windows still missing, and every
    window is yielded and written exactly once, in this same run (no re-run). With one pass
    allowed, the file's missing windows get error rows instead (still one row per window)."""
    name = _name()
    out = tmp_path / "captions.jsonl"
    options = RayOptions(
        engines=1, decoders=1, name=name, inflight_per_engine=1, max_queued_batches=1,
        file_attempts=attempts,
    )
    job = caption_paths_ray(
        long_videos, qwen_config, options=options, out=out, progress=False, settings=SETTINGS,
        batch_windows=1, build=_slow_fake(0.1),
    )
    rows: list[WindowCaption] = []
    with caplog.at_level(logging.WARNING, logger="vlmcap"):
        for row in job:
            rows.append(row)
            if len(rows) == 1:
                _node, pid = ray.get(ray.get_actor(f"{name}-decode-0").where.remote())
                os.kill(pid, signal.SIGKILL)
    expected = _expected(long_videos)
    assert _once(rows) == expected
    assert _once(read_rows(out)) == expected
    lost = [
        int(m.group(1))
        for m in re.finditer(r"lost the file after (\d+) of its rows", caplog.text)
    ]
    assert len(lost) == 1, caplog.text
    per_file = len(expected) // len(long_videos)
    assert per_file >= 6
    assert 0 < lost[0] < per_file, "the pass stopped mid-file, with rows already delivered"
    failed = [r for r in rows if not r.ok]
    if attempts > 1:
        assert not failed, [r.error for r in failed]
    else:
        killed = str(long_videos[0])
        assert failed and {r.source for r in failed} == {killed}
        assert all("gave up after 1 passes" in (r.error or "") for r in failed)
        assert len(failed) <= per_file - lost[0], "rows delivered before the kill are kept"
        assert all(r.ok for r in rows if r.source != killed)
