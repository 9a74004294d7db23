"""A plugin named by its import path, in cosmos-curate's current form, runs on Ray workers.

The Ray job's decoder and engine actors resolve ``VllmConfig.model_variant`` themselves, so a
plugin that is neither installed nor registered (``"pkg.module:Class"``) must import there; the
decoders call its five-argument ``make_llm_input`` with the real tiny Qwen processor. The engine
is a :class:`FakeEngine` (a real one is covered by tests/test_ray.py and the plugin's own engine
test), so this runs in seconds.
"""

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest


ray = pytest.importorskip("ray")

from vlmcap.ray import RayOptions, caption_paths_ray  # noqa: E402
from vlmcap.testing import FakeEngine, sample_videos  # noqa: E402
from vlmcap.video import WindowSettings, plan_media, probe  # noqa: E402


pytestmark = pytest.mark.engine

SPEC = "contracts.reference_plugins.current_text:VllmCurrentText"


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    root = str(Path(__file__).resolve().parent.parent)  # where `contracts` imports from
    ray.init(
        num_cpus=3,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": root}},
    )
    yield
    ray.shutdown()


def test_a_current_form_plugin_by_import_path_captions_on_ray_workers(
    cluster: None, qwen_config: Any, tmp_path: Path
) -> None:
    settings = WindowSettings(window_size=32, remainder_threshold=16)
    videos = sample_videos(tmp_path / "in", n=2)
    config = attrs.evolve(qwen_config, model_variant=SPEC, stage2_caption=True)
    rows = list(
        caption_paths_ray(
            videos,
            config,
            options=RayOptions(engines=1, name="forms"),
            out=tmp_path / "rows.jsonl",
            progress=False,
            settings=settings,
            batch_windows=2,
            build=lambda _config: FakeEngine(),
        )
    )
    expected = Counter(
        (str(p), i) for p in videos for i in range(len(plan_media(probe(p), settings)))
    )
    assert Counter((r.source, r.window_index) for r in rows) == expected
    assert all(r.ok and r.caption for r in rows), [r.error for r in rows if not r.ok]
