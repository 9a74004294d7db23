"""The seed guide's own end-to-end test, and its VideoLLaMA example, on the real CPU engine.

``test_mymodel_e2e_captioning`` is the guide's test with only its imports, the variant and
``model_path`` changed (the guide's ``env``/``slow`` markers became vlmcap's ``engine``).
"""

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from contracts.reference_plugins.videollama import VllmVideoLLaMA

import vlmcap
from vlmcap import VllmConfig
from vlmcap._registry import unregister_plugin
from vlmcap._vllm_compat import vllm_version
from vlmcap.testing import tiny_checkpoint


pytestmark = pytest.mark.engine

TINY = tiny_checkpoint("qwen")


@pytest.mark.slow
def test_mymodel_e2e_captioning():  # type: ignore[no-untyped-def]  # the guide's code, as written
    """End-to-end test for MyModel plugin."""
    from vlmcap import (
        auto_processor,
        make_model_inputs,
        sampling_params,
        vllm_caption,
        vllm_model,
    )

    config = VllmConfig(
        model_variant="qwen",
        num_gpus=1,
        batch_size=2,
        max_output_tokens=128,
        model_path=TINY,
    )

    # Setup
    llm = vllm_model(config)
    processor = auto_processor(config)
    samp_params = sampling_params(config)

    # Create test inputs
    frames = torch.rand(8, 3, 224, 224)
    model_inputs = make_model_inputs([frames], config, processor, "Describe this video")

    # Test stage 1
    captions = vllm_caption(
        model_inputs,
        llm,
        processor,
        samp_params,
        config,
        max_inflight_requests=0,
        inflight_batching=True,
    )

    assert len(captions) == 1
    assert isinstance(captions[0], str)
    assert captions[0] != "Unknown caption"
    print(f"Stage 1 caption: {captions[0]}")

    # Test stage 2
    captions_s2 = vllm_caption(
        model_inputs,
        llm,
        processor,
        samp_params,
        config,
        max_inflight_requests=0,
        inflight_batching=True,
        stage2_prompts=["Refine this caption"],
    )

    assert len(captions_s2) == 1
    assert isinstance(captions_s2[0], str)
    assert captions_s2[0] != "Unknown caption"
    print(f"Stage 2 caption: {captions_s2[0]}")


@pytest.fixture
def videollama() -> Iterator[type[VllmVideoLLaMA]]:
    vlmcap.register_plugin(VllmVideoLLaMA)
    yield VllmVideoLLaMA
    unregister_plugin("videollama")


def test_seed_plugin_with_bare_frames_runs_on_a_metadata_requiring_vllm(
    videollama: type[VllmVideoLLaMA],
) -> None:
    """The guide's VideoLLaMA example passes bare frames; vLLM 0.31+ needs metadata for
    Qwen2.5-VL. vlmcap attaches it, stage 1 and stage 2, in-flight and static."""
    config = VllmConfig(model_variant="videollama", model_path=TINY, max_output_tokens=8)
    llm = vlmcap.vllm_model(config)
    processor = vlmcap.auto_processor(config)
    params = vlmcap.sampling_params(config)
    frames = [torch.rand(8, 3, 112, 112), (torch.rand(4, 3, 112, 168) * 255).to(torch.uint8)]
    inputs = vlmcap.make_model_inputs(frames, config, processor, "Describe this video")
    video, md = inputs[0]["multi_modal_data"]["video"]
    assert video is frames[0] and md["total_num_frames"] == 8 and md["fps"] == config.sampling_fps
    bare = [
        {**inp, "multi_modal_data": {"video": inp["multi_modal_data"]["video"][0]}}
        for inp in inputs
    ]
    if vllm_version() >= (0, 31, 0):  # without vlmcap, this vLLM refuses the seed plugin's input
        with pytest.raises(ValueError, match="[Mm]etadata is required"):
            llm.generate([bare[0]], params, use_tqdm=False)
    for model_inputs in (inputs, bare):  # metadata made by make_model_inputs, or none at all
        for inflight in (True, False):
            res = vlmcap.caption_results(
                model_inputs,
                llm,
                processor,
                params,
                config,
                0,
                inflight_batching=inflight,
                stage2_prompts=["Refine: ", "Refine: "],
            )
            assert all(r.ok and r.stages == 2 for r in res), res


def test_model_path_is_required_and_every_place_tried_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VLMCAP_MODEL_DIR", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(vlmcap.ModelNotFoundError) as err:
        vlmcap.auto_processor(VllmConfig(model_variant="qwen"))
    msg = str(err.value)
    assert "Qwen/Qwen2.5-VL-7B-Instruct" in msg
    assert str(tmp_path / "Qwen/Qwen2.5-VL-7B-Instruct") in msg
    assert "Hugging Face cache" in msg
    (tmp_path / "Qwen").mkdir()
    (tmp_path / "Qwen" / "Qwen2.5-VL-7B-Instruct").symlink_to(TINY)
    assert vlmcap.auto_processor(VllmConfig(model_variant="qwen")) is not None
