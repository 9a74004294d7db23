"""The third-party example package (examples/videollama_plugin), installed the way a user would.

It is built by pip from its own pyproject.toml (offline: no index, no build isolation) into a
temporary folder put on ``sys.path``; the venv is left untouched. vlmcap must then find it through
the ``vlmcap.plugins`` entry point alone, in-process and from the ``vlmcap`` command.
"""

import importlib
import importlib.metadata
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import vlmcap
from vlmcap.testing import synthetic_clip, tiny_checkpoint
from vlmcap.testing._checks import check_plugin


EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "videollama_plugin"


def _vlmcap_plugins(pythonpath: Path | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    exe = Path(sys.executable).with_name("vlmcap")
    out = subprocess.run(
        [str(exe), "plugins"], env=env, capture_output=True, text=True, check=True, timeout=120
    )
    return out.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The package installed into a temporary site folder on ``sys.path``; removed after."""
    root = tmp_path_factory.mktemp("videollama")
    source = root / "src-copy"  # build from a copy: pip leaves build/ and egg-info behind
    shutil.copytree(EXAMPLE, source)
    site = root / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
         "--no-build-isolation", "--target", str(site), str(source)],
        check=True, timeout=300,
    )
    sys.path.insert(0, str(site))
    importlib.invalidate_caches()
    try:
        yield site
    finally:
        sys.path.remove(str(site))
        for name in [m for m in sys.modules if m.split(".")[0] == "vlmcap_videollama"]:
            del sys.modules[name]
        importlib.invalidate_caches()
        shutil.rmtree(root, ignore_errors=True)


def test_not_visible_before_install() -> None:
    assert "videollama" not in vlmcap.available_variants()
    with pytest.raises(vlmcap.UnknownVariantError):
        vlmcap.get_plugin("videollama")


def test_entry_point_makes_it_a_plugin(installed: Path) -> None:
    (ep,) = importlib.metadata.entry_points(group="vlmcap.plugins", name="videollama")
    assert ep.value == "vlmcap_videollama.plugin:VllmVideoLLaMA"
    assert ep.dist is not None and ep.dist.name == "vlmcap-videollama"
    plugin = vlmcap.get_plugin("videollama")
    assert plugin.__module__ == "vlmcap_videollama.plugin"
    assert Path(sys.modules[plugin.__module__].__file__ or "").is_relative_to(installed)
    assert "videollama" in vlmcap.available_variants()


def test_vlmcap_plugins_lists_it(installed: Path) -> None:
    assert "videollama" in _vlmcap_plugins(installed).split()
    assert "videollama" not in _vlmcap_plugins(None).split()


def test_installed_plugin_captions_inputs_and_conforms(installed: Path) -> None:
    """Inputs and refinement through vlmcap's API, then the whole (engine-free) contract suite,
    on the tiny Qwen2.5-VL checkpoint whose processor the example can load."""
    plugin = vlmcap.get_plugin("videollama")
    config = vlmcap.VllmConfig(model_variant="videollama", model_path=tiny_checkpoint("qwen"))
    processor = vlmcap.auto_processor(config)
    (inp,) = vlmcap.make_model_inputs([synthetic_clip(4, 56, 56)], config, processor, "Describe.")
    assert "Describe." in processor.tokenizer.decode(inp["prompt_token_ids"])
    stage1 = vlmcap.VllmCaptionRequest("s1", inp, caption="A red car.", stage2_prompt="r")
    stage2 = plugin.make_refined_llm_request(stage1, processor, None)
    assert "A red car." in processor.tokenizer.decode(stage2.inputs["prompt_token_ids"])
    report = check_plugin(plugin, model_path=tiny_checkpoint("qwen"), max_examples=5)
    assert report.ok, report.format()
