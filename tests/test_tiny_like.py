"""``tiny_checkpoint_like``: a tiny checkpoint of an architecture vlmcap ships no recipe for.

The architecture is Idefics3 (SmolVLM's; vLLM takes only images for it), built from
``transformers.Idefics3Config`` and ``Idefics3Processor`` by ``tests/_idefics3_plugin.py``, then
checked (``vlmcap check --engine``) and used to caption (``vlmcap caption --model
pkg.module:Class``) through a plugin that is not installed, in subprocesses, as an author would.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import transformers
from transformers.models.auto.configuration_auto import CONFIG_MAPPING
from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

from tests import _idefics3_plugin as plugin
from tests.test_chat_architectures import GEMMA3, INTERNVL
from vlmcap import ConfigError
from vlmcap.cli import main
from vlmcap.testing import sample_videos, tiny_checkpoint_like, tiny_variants
from vlmcap.testing._tiny_like import shrink_config
from vlmcap.video import read_rows


ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SPEC = "tests._idefics3_plugin:VllmIdefics3"


def _instantiable(model_type: str) -> bool:
    try:
        CONFIG_MAPPING[model_type]()
    except Exception:
        return False
    return True


IMAGE_TEXT_CONFIGS = sorted(
    t for t in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES if _instantiable(t)
)


def _get(config: Any, field: str) -> Any:
    try:
        return getattr(config, field, None)
    except RuntimeError:  # a per-layer field of a heterogeneous config (Gemma 4)
        return None


def _all_configs(config: Any) -> list[Any]:
    subs = [v for v in vars(config).values() if isinstance(v, transformers.PretrainedConfig)]
    return [config, *subs]


@pytest.mark.parametrize("model_type", IMAGE_TEXT_CONFIGS)
def test_every_image_text_config_shrinks_consistently(model_type: str) -> None:
    """Every image-text-to-text config transformers ships: tiny, consistent, input untouched."""
    original = CONFIG_MAPPING[model_type]()
    before = original.to_dict()
    shrunk = shrink_config(original)
    assert original.to_dict() == before, "the given config is not modified"
    for c in _all_configs(shrunk):
        name = type(c).__name__
        hidden, heads = _get(c, "hidden_size"), _get(c, "num_attention_heads")
        if isinstance(hidden, int):
            assert hidden <= 128, name
            if isinstance(heads, int):
                assert hidden % heads == 0, name
        kv = _get(c, "num_key_value_heads")
        if isinstance(heads, int) and isinstance(kv, int):
            assert heads % kv == 0, name
        layers = _get(c, "num_hidden_layers") or _get(c, "depth")
        if isinstance(layers, int):
            assert layers <= 2, name
            types = _get(c, "layer_types")
            if isinstance(types, list):
                assert len(types) == layers, name
        patch, side = _get(c, "patch_size"), _get(c, "image_size")
        if isinstance(patch, int) and isinstance(side, int):
            assert side % patch == 0, name
        if isinstance(patch, list | tuple) and isinstance(side, list | tuple):  # (height, width)
            assert [s // p for s, p in zip(side, patch, strict=True)] == [4, 4], name


def test_a_config_class_is_shrunk_from_its_defaults() -> None:
    shrunk = shrink_config(transformers.Idefics3Config)
    vision, text = shrunk.vision_config, shrunk.text_config
    assert (vision.image_size // vision.patch_size) % shrunk.scale_factor == 0  # pixel shuffle
    assert text.hidden_size % text.num_attention_heads == 0
    assert text.max_position_embeddings >= 4096  # vlmcap's checks run max_model_len 4096
    assert shrunk.tie_word_embeddings is False
    assert text.tie_word_embeddings is False


def test_an_image_size_in_height_and_width_shrinks_too() -> None:
    """InternVL gives its vision sizes as (height, width): 448x448 in 14x14 patches become 56x56."""
    vision = shrink_config(transformers.InternVLConfig).vision_config
    assert list(vision.patch_size) == [14, 14]
    assert list(vision.image_size) == [56, 56]


def test_a_shipped_config_json_shrinks_as_its_class(tmp_path: Path) -> None:
    transformers.Idefics3Config(scale_factor=4).save_pretrained(tmp_path)
    expected = shrink_config(transformers.Idefics3Config(scale_factor=4)).to_dict()
    assert shrink_config(tmp_path).to_dict() == expected
    assert shrink_config(str(tmp_path / "config.json")).to_dict() == expected


def test_not_a_config_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="transformers config"):
        shrink_config({"hidden_size": 64})
    with pytest.raises(ConfigError, match="cannot read a transformers config"):
        shrink_config(tmp_path)


def test_a_token_id_left_outside_the_vocabulary_is_named(tmp_path: Path) -> None:
    """Without ``token_ids``, Idefics3's image_token_id (128257) cannot fit the tiny vocabulary."""
    with pytest.raises(ConfigError, match=r"image_token_id=128257.*token_ids="):
        tiny_checkpoint_like(
            tmp_path / "m",
            transformers.Idefics3Config,
            plugin.make_processor,
            special_tokens=plugin.SPECIAL_TOKENS,
            chat_template=plugin.CHAT_TEMPLATE,
            eos_token="<end_of_utterance>",
        )
    assert not (tmp_path / "m").exists(), "a failed build leaves no folder behind"


def test_a_token_the_processor_adds_must_be_listed(tmp_path: Path) -> None:
    """The processor must not grow the vocabulary after the config's size was taken from it.

    ``make_processor`` may take the tokenizer alone; Idefics3Processor adds its three tokens.
    """

    def make_processor(tokenizer: Any) -> Any:
        image_processor = transformers.Idefics3ImageProcessor()
        return transformers.Idefics3Processor(image_processor, tokenizer, image_seq_len=4)

    with pytest.raises(ConfigError, match=r"added token\(s\) \['<fake_token_around_image>'\]"):
        tiny_checkpoint_like(
            tmp_path / "m",
            transformers.Idefics3Config,
            make_processor,
            special_tokens=[t for t in plugin.SPECIAL_TOKENS if t != "<fake_token_around_image>"],
            chat_template=plugin.CHAT_TEMPLATE,
            eos_token="<end_of_utterance>",
            token_ids={"image_token_id": "<image>"},
        )


@pytest.mark.parametrize(
    ("named", "match"),
    [
        ({"image": "<image>"}, r"named token 'image' must end in '_token'"),
        ({"boi_token": "<boi>"}, r"named token boi_token='<boi>' is not in special_tokens"),
    ],
)
def test_a_named_token_must_be_listed_and_named_so(
    tmp_path: Path, named: dict[str, str], match: str
) -> None:
    with pytest.raises(ConfigError, match=match):
        plugin_checkpoint(tmp_path / "m", named_tokens=named)
    assert not (tmp_path / "m").exists()


def plugin_checkpoint(dest: Path, **kw: Any) -> Path:
    """The Idefics3 plugin's tiny checkpoint with other arguments."""
    return tiny_checkpoint_like(
        dest,
        transformers.Idefics3Config,
        plugin.make_processor,
        special_tokens=plugin.SPECIAL_TOKENS,
        chat_template=plugin.CHAT_TEMPLATE,
        eos_token="<end_of_utterance>",
        token_ids={"image_token_id": "<image>"},
        **kw,
    )


def test_named_tokens_are_the_tokenizers_own() -> None:
    """Gemma 3's processor reads its image tokens off the tokenizer (``tokenizer.boi_token``)."""
    path = GEMMA3.build()
    config = json.loads((path / "config.json").read_text())
    processor = transformers.AutoProcessor.from_pretrained(path)
    tokenizer = processor.tokenizer
    assert (tokenizer.boi_token, tokenizer.eoi_token) == ("<start_of_image>", "<end_of_image>")
    assert tokenizer.boi_token_id == config["boi_token_index"]
    assert tokenizer.image_token_id == config["image_token_index"]
    soft = processor.full_image_sequence.count("<image_soft_token>")
    assert soft == config["mm_tokens_per_image"] == 4
    tokens = json.loads((path / "tokenizer_config.json").read_text())
    assert tokens["boi_token"] == "<start_of_image>"  # noqa: S105 - saved as on the Hub


def _weight_names(path: Path) -> list[str]:
    from safetensors import safe_open

    with safe_open(path / "model.safetensors", "pt") as weights:
        return list(weights.keys())


def test_only_clip_and_siglip_towers_get_the_hubs_vision_model_level() -> None:
    """vLLM loads SigLIP as ``vision_tower.vision_model.*`` and InternVL's tower without it."""
    siglip = [n for n in _weight_names(GEMMA3.build()) if n.startswith("vision_tower.")]
    assert siglip and all(n.startswith("vision_tower.vision_model.") for n in siglip)
    path = INTERNVL.build()
    intern = [n for n in _weight_names(path) if n.startswith("vision_tower.")]
    assert intern and not any(n.startswith("vision_tower.vision_model.") for n in intern)
    _, info = transformers.InternVLForConditionalGeneration.from_pretrained(
        path, output_loading_info=True
    )
    assert not info["missing_keys"] and not info["unexpected_keys"], info


@pytest.fixture(scope="module")
def tiny_idefics3(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return plugin.build_tiny(tmp_path_factory.mktemp("idefics3") / "tiny")


@pytest.mark.slow
def test_the_checkpoint_loads_and_speaks_in_words(tiny_idefics3: Path) -> None:
    """transformers loads it and runs the plugin's request: greedy decoding emits visible words."""
    import torch

    processor = transformers.AutoProcessor.from_pretrained(tiny_idefics3)
    model = transformers.AutoModelForImageTextToText.from_pretrained(tiny_idefics3)
    config = json.loads((tiny_idefics3 / "config.json").read_text())
    assert config["architectures"] == ["Idefics3ForConditionalGeneration"]
    tokenizer = processor.tokenizer
    assert config["text_config"]["vocab_size"] == len(tokenizer)
    assert config["image_token_id"] == tokenizer.convert_tokens_to_ids("<image>")
    assert tokenizer.eos_token == "<end_of_utterance>"  # noqa: S105
    assert (tiny_idefics3 / "model.safetensors").stat().st_size < 8 * 2**20
    frames = torch.full((2, 3, 64, 96), 200, dtype=torch.uint8)
    request = plugin.VllmIdefics3.make_llm_input("Describe the image.", frames, processor)
    images = request["multi_modal_data"]["image"]
    inputs = processor(images=[images], text=[request["prompt"]], return_tensors="pt")
    assert int((inputs["input_ids"] == config["image_token_id"]).sum()) > 0
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=4, do_sample=False)
    words = tokenizer.decode(out[0, inputs["input_ids"].shape[1] :]).split()
    assert len(words) == 4, words
    assert all(w.isalpha() for w in words), words


def _vlmcap(*args: str) -> "subprocess.CompletedProcess[str]":
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [str(BIN / "vlmcap"), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


@pytest.mark.engine
@pytest.mark.slow
def test_check_runs_the_engine_on_the_plugins_own_architecture(tiny_idefics3: Path) -> None:
    done = _vlmcap(
        "check", SPEC, "--engine", "--model-path", str(tiny_idefics3), "--max-examples", "3"
    )
    out = done.stdout
    assert done.returncode == 0, out + done.stderr[-3000:]
    assert f"checkpoint {tiny_idefics3} (Idefics3ForConditionalGeneration; the plugin's own)" in out
    assert "ok   C-ENGINE-001 check_engine_round_trip" in out, out
    assert out.rstrip().endswith("0 failed, 0 skipped"), out


@pytest.mark.engine
@pytest.mark.slow
def test_caption_takes_the_uninstalled_plugin(tiny_idefics3: Path, tmp_path: Path) -> None:
    [video] = sample_videos(tmp_path / "videos", n=1)
    out = tmp_path / "captions.jsonl"
    done = _vlmcap(
        "caption",
        str(video),
        "--model",
        SPEC,
        "--model-path",
        str(tiny_idefics3),
        "--out",
        str(out),
        "--max-tokens",
        "8",
        "--no-progress",
    )
    assert done.returncode == 0, done.stderr[-4000:]
    rows = read_rows(out)
    assert rows, "the command wrote rows"
    assert all(r.ok for r in rows), [r.error for r in rows]
    assert all(r.output_tokens == 8 and r.caption and r.caption.split() for r in rows)
    config = transformers.AutoConfig.from_pretrained(tiny_idefics3)
    per_image = (config.vision_config.image_size // config.vision_config.patch_size) ** 2
    per_image //= config.scale_factor**2
    for r in rows:  # every image's tokens reached the model
        assert r.prompt_tokens > min(plugin.MAX_IMAGES, r.frames) * per_image, r


def test_tiny_checkpoint_help_describes_every_recipe(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["tiny-checkpoint", "--help"])
    assert done.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert all(re.search(rf"\b{variant}\b", out) for variant in tiny_variants()), out
    assert "tiny_checkpoint_like" in out
    assert "--seed SEED seed of the random weights" in out
