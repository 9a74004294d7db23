"""The Ray job across nodes, simulated on one machine with ``ray.cluster_utils.Cluster``.

Three nodes: the head (the driver and its output only), a decode node and an engine node, told
apart by custom resources that the job's actors reserve (``RayOptions.decoder_resources`` and
``engine_resources``); the last test removes the decode node mid-run and adds another.
Engines are fake (a :class:`~vlmcap.testing.FakeEngine` inside each engine actor's
:class:`vlmcap.Captioner`): what is tested is placement, faults and the rows, not vLLM.
Decoders are real (PyAV and the tiny checkpoint's processor).
"""

import logging
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest


ray = pytest.importorskip("ray")
cluster_utils = pytest.importorskip("ray.cluster_utils")

from vlmcap.ray import RayOptions, caption_paths_ray  # noqa: E402
from vlmcap.testing import FakeEngine, sample_videos  # noqa: E402
from vlmcap.video import WindowCaption, WindowSettings, plan_media, probe, read_rows  # noqa: E402


pytestmark = pytest.mark.engine

SETTINGS = WindowSettings(window_size=32, remainder_threshold=16)


@attrs.define
class Nodes:
    """The simulated cluster and its node ids by role: the head (the driver), decode, engine."""

    cluster: Any
    decode_node: Any
    ids: dict[str, str]


@pytest.fixture(scope="module")
def nodes() -> Iterator[Nodes]:
    cluster = cluster_utils.Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 1,
            "include_dashboard": False,
            # a removed node is declared dead in about a second, not fifteen
            "_system_config": {"health_check_period_ms": 300, "health_check_failure_threshold": 3},
        },
    )
    decode = cluster.add_node(num_cpus=1, resources={"decode_node": 1})
    engine = cluster.add_node(num_cpus=1, resources={"engine_node": 2})
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    try:
        yield Nodes(
            cluster,
            decode,
            {
                "head": ray.get_runtime_context().get_node_id(),
                "decode": decode.node_id,
                "engine": engine.node_id,
            },
        )
    finally:
        ray.shutdown()
        cluster.shutdown()


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return sample_videos(tmp_path_factory.mktemp("clustervideos"), n=3)


def _fake(_config: Any) -> FakeEngine:
    return FakeEngine()


def test_decoders_and_engines_on_their_own_nodes_rows_exact_on_the_driver(
    nodes: Nodes, videos: list[Path], qwen_config: Any, tmp_path: Path
) -> None:
    ids = nodes.ids
    out = tmp_path / "captions.parquet"
    name = "multinode"
    options = RayOptions(
        engines=2, decoders=1, cpus_per_engine=0.25, cpus_per_decoder=0.25,
        engine_resources={"engine_node": 1}, decoder_resources={"decode_node": 1}, name=name,
    )
    job = caption_paths_ray(
        videos, qwen_config, options=options, out=out, progress=False, settings=SETTINGS,
        batch_windows=2, build=_fake,
    )
    rows: list[WindowCaption] = []
    placed: dict[str, str] = {}
    for row in job:
        rows.append(row)
        if not placed:  # every actor is alive while rows come in
            for actor in ("engine-0", "engine-1", "decode-0"):
                handle = ray.get_actor(f"{name}-{actor}")
                placed[actor] = ray.get(handle.where.remote())[0]
    assert placed == {
        "engine-0": ids["engine"], "engine-1": ids["engine"], "decode-0": ids["decode"]
    }
    assert ids["head"] not in (ids["engine"], ids["decode"])
    expected = {(str(p), i) for p in videos for i in range(len(plan_media(probe(p), SETTINGS)))}
    counts = Counter((r.source, r.window_index) for r in rows)
    assert set(counts) == expected and max(counts.values()) == 1
    assert all(r.ok and r.caption for r in rows), [r.error for r in rows if not r.ok]
    stored = Counter((r.source, r.window_index) for r in read_rows(out))
    assert set(stored) == expected and max(stored.values()) == 1, "written once, by the driver"


def test_a_layout_needing_a_missing_custom_resource_is_refused(
    nodes: Nodes, videos: list[Path], qwen_config: Any
) -> None:
    import vlmcap

    options = RayOptions(
        engines=3, cpus_per_engine=0.25, engine_resources={"engine_node": 1}, name="toomany"
    )
    with pytest.raises(vlmcap.ConfigError, match=r"need 3 engine_node but the cluster has 2"):
        list(caption_paths_ray(videos[:1], qwen_config, options=options, progress=False))


def _slow_fake(_config: Any) -> FakeEngine:
    from vlmcap.testing._fake import default_text

    def text(inputs: Any) -> str:
        time.sleep(0.2)
        return default_text(inputs)

    return FakeEngine(text=text)


def test_a_decode_node_lost_mid_file_loses_and_doubles_nothing(
    nodes: Nodes, videos: list[Path], qwen_config: Any, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Remove the decode node (its raylet, its decoder and whatever lived in its object store)
    once the first row is in, mid-file, and start another: the file's missing windows are
    decoded again there and every window is written once. Runs last: it replaces a node."""
    longest_first = sorted(videos, key=lambda p: -len(plan_media(probe(p), SETTINGS)))
    out = tmp_path / "captions.jsonl"
    options = RayOptions(
        engines=1, decoders=1, cpus_per_engine=0.25, cpus_per_decoder=0.25,
        engine_resources={"engine_node": 1}, decoder_resources={"decode_node": 1},
        inflight_per_engine=1, max_queued_batches=1, name="nodeloss",
    )
    job = caption_paths_ray(
        longest_first, qwen_config, options=options, out=out, progress=False,
        settings=SETTINGS, batch_windows=1, build=_slow_fake,
    )
    rows: list[WindowCaption] = []
    with caplog.at_level(logging.WARNING, logger="vlmcap"):
        for row in job:
            rows.append(row)
            if len(rows) == 1:
                nodes.cluster.remove_node(nodes.decode_node)
                nodes.decode_node = nodes.cluster.add_node(
                    num_cpus=1, resources={"decode_node": 1}
                )
    expected = {(str(p), i) for p in videos for i in range(len(plan_media(probe(p), SETTINGS)))}
    counts = Counter((r.source, r.window_index) for r in rows)
    assert set(counts) == expected and max(counts.values()) == 1
    assert all(r.ok for r in rows), [r.error for r in rows if not r.ok]
    stored = Counter((r.source, r.window_index) for r in read_rows(out))
    assert set(stored) == expected and max(stored.values()) == 1
    assert f"{longest_first[0]}: decode pass 1 lost the file after" in caplog.text, caplog.text
