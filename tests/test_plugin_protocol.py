"""The plugin contract as code: both plugin forms, the protocols at runtime, the executable
validators, VllmConfig's cosmos-curate fields, the frames plugins receive, boundary checks."""

import logging
import secrets
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from contracts.reference_plugins.current_images import VllmCurrentImages
from contracts.reference_plugins.current_qwen import VllmCurrentQwen
from contracts.reference_plugins.current_text import VllmCurrentText
from contracts.reference_plugins.image_frames import VllmImageFrames
from contracts.reference_plugins.text_prompt import VllmTextPrompt
from contracts.reference_plugins.videollama import VllmVideoLLaMA
from hypothesis import given, strategies as st

import vlmcap
from vlmcap import PluginForm, plugin_form
from vlmcap._contract import Video, check_llm_input, refined_request_violation
from vlmcap._plugin import call_make_llm_input, copy_weights, protocol_problems
from vlmcap._registry import unregister_plugin
from vlmcap._vllm_compat import adapt_llm_kwargs
from vlmcap.testing._fake import FakeEngine

from . import static_plugin_protocol as static
from ._plugins import ONE_FRAME, EchoPlugin


COSMOS_METADATA_KEYS = {
    "fps",
    "duration",
    "width",
    "height",
    "total_num_frames",
    "frames_indices",
    "video_backend",
    "do_sample_frames",
}


# --- the protocols, statically (tests/static_plugin_protocol.py) and at runtime ---------------


@pytest.mark.parametrize("plugin", static.GOOD, ids=lambda p: p.__name__)
def test_plugins_mypy_accepts_are_accepted_at_runtime(plugin: vlmcap.PluginClass) -> None:
    assert protocol_problems(plugin) == {}
    try:
        assert vlmcap.register_plugin(plugin) is plugin
    finally:
        unregister_plugin(plugin.model_variant())


@pytest.mark.parametrize(
    ("plugin", "member", "words"),
    [
        (static.DecodeReturnsInt, "decode", "declared to return int; the protocol needs str"),
        (static.TwoArgInput, "make_llm_input", "lacks parameter 'processor'"),
        (static.FourArgInput, "make_llm_input", "lacks parameter 'config'"),
    ],
    ids=lambda v: getattr(v, "__name__", str(v)),
)
def test_plugins_mypy_rejects_are_rejected_at_runtime_naming_the_member(
    plugin: Any, member: str, words: str
) -> None:
    problems = protocol_problems(plugin)
    assert set(problems) == {member}
    assert words in problems[member]
    with pytest.raises(vlmcap.PluginError, match=member):
        vlmcap.register_plugin(plugin)


@pytest.mark.parametrize(
    ("plugin", "form"),
    [
        (VllmVideoLLaMA, PluginForm.GUIDE),
        (VllmTextPrompt, PluginForm.GUIDE),
        (VllmImageFrames, PluginForm.GUIDE),
        (VllmCurrentQwen, PluginForm.CURRENT),
        (VllmCurrentText, PluginForm.CURRENT),
        (VllmCurrentImages, PluginForm.CURRENT),
    ],
    ids=lambda v: getattr(v, "__name__", str(v)),
)
def test_reference_plugins_of_both_forms_satisfy_their_protocol(
    plugin: type, form: PluginForm
) -> None:
    assert plugin_form(plugin) is form
    assert protocol_problems(plugin) == {}


# --- how each form is called -----------------------------------------------------------------


class _Recorder:
    """Records what make_llm_input received, in either form."""

    seen: dict[str, Any] = {}  # noqa: RUF012 - test scratch space

    @staticmethod
    def model_variant() -> str:
        return "recorder"

    @classmethod
    def processor(cls) -> Any:
        return None

    @classmethod
    def model(cls, config: vlmcap.VllmConfig) -> Any:
        return None

    @staticmethod
    def make_refined_llm_request(
        request: vlmcap.VllmCaptionRequest, processor: Any, refine_prompt: str | None = None
    ) -> vlmcap.VllmCaptionRequest:
        return request

    @staticmethod
    def decode(vllm_output: Any) -> str:
        return ""


class _CurrentRecorder(_Recorder):
    @staticmethod
    def make_llm_input(
        prompt: str,
        frames: torch.Tensor,
        metadata: dict[str, Any],
        processor: Any,
        config: vlmcap.VllmConfig,
    ) -> dict[str, Any]:
        _Recorder.seen = {"metadata": metadata, "frames": frames, "config": config}
        return {"prompt": prompt, "multi_modal_data": {"video": (frames, metadata)}}


class _GuideRecorder(_Recorder):
    @staticmethod
    def make_llm_input(
        prompt: str, frames: torch.Tensor, processor: Any, *, metadata: Any = None
    ) -> dict[str, Any]:
        _Recorder.seen = {"metadata": metadata, "frames": frames}
        return {"prompt": prompt, "multi_modal_data": {"video": frames}}


def test_current_form_gets_cosmos_curates_metadata_dict_with_the_true_fps() -> None:
    md = vlmcap.VideoMetadata(
        fps=3.0, total_num_frames=3, frames_indices=(0, 1, 2), duration=1.0, width=8, height=6
    )
    cfg = vlmcap.VllmConfig(model_variant="recorder")
    frames = torch.zeros((3, 3, 6, 8), dtype=torch.uint8)
    call_make_llm_input(_CurrentRecorder, "p", frames, None, metadata=md, config=cfg)
    got = _Recorder.seen["metadata"]
    assert type(got) is dict
    assert set(got) == COSMOS_METADATA_KEYS
    assert got["fps"] == 3.0 and got["duration"] == 1.0 and got["total_num_frames"] == 3
    assert got["frames_indices"] == [0, 1, 2] and (got["width"], got["height"]) == (8, 6)
    assert got["do_sample_frames"] is False and _Recorder.seen["config"] is cfg


@pytest.mark.parametrize("recorder", [_CurrentRecorder, _GuideRecorder])
@pytest.mark.parametrize(
    ("dtype", "declared", "received"),
    [
        (torch.uint8, (), torch.uint8),
        (torch.float32, (), torch.float32),
        (torch.bfloat16, (), torch.float32),
        (torch.float16, (), torch.float32),
        (torch.float64, (), torch.float32),
        (torch.bfloat16, (torch.bfloat16,), torch.bfloat16),
    ],
)
def test_plugins_receive_uint8_or_float32_unless_they_declare_more(
    recorder: Any, dtype: torch.dtype, declared: tuple[torch.dtype, ...], received: torch.dtype
) -> None:
    plugin = type("Declared", (recorder,), {"frame_dtypes": declared})
    vlmcap.register_plugin(plugin)
    try:
        cfg = vlmcap.VllmConfig(model_variant="recorder", sampling_fps=4.0)
        frames = torch.full((2, 3, 4, 6), 0.5).to(dtype)
        if dtype == torch.uint8:
            frames = torch.full((2, 3, 4, 6), 128, dtype=torch.uint8)
        (inputs,) = vlmcap.make_model_inputs([frames], cfg, None, "describe")
        assert _Recorder.seen["frames"].dtype == received
        md = _Recorder.seen["metadata"]
        fps = md["fps"] if isinstance(md, dict) else md.fps
        assert fps == 4.0
        video = Video.parse(inputs["multi_modal_data"]["video"])
        assert video is not None and video.metadata is not None  # metadata attached for vLLM
    finally:
        unregister_plugin("recorder")


# --- VllmConfig's cosmos-curate fields and the engine settings they reach ----------------------


def test_vllm_config_carries_the_fields_current_plugins_read(tmp_path: Path) -> None:
    cfg = vlmcap.VllmConfig(model_variant="qwen", copy_weights_to=str(tmp_path))
    assert cfg.performance_mode == "throughput"
    assert cfg.copy_weights_to == tmp_path
    assert cfg.sampling_config is cfg.sampling
    with pytest.raises(ValueError, match="performance_mode"):
        vlmcap.VllmConfig(model_variant="qwen", performance_mode="fastest")  # type: ignore[arg-type]


def test_images_typo_is_read_as_image_with_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="vlmcap"):
        kw = adapt_llm_kwargs({"model": "m", "limit_mm_per_prompt": {"images": 0, "video": 1}})
    assert kw["limit_mm_per_prompt"] == {"image": 0, "video": 1}
    warnings = [r for r in caplog.records if "'images' is a typo" in r.getMessage()]
    assert len(warnings) == 1
    with pytest.raises(vlmcap.UnsupportedSettingError, match="video_frames"):
        adapt_llm_kwargs({"model": "m", "limit_mm_per_prompt": {"video_frames": 1}})
    with pytest.raises(vlmcap.UnsupportedSettingError, match="keep only 'image'"):
        adapt_llm_kwargs({"model": "m", "limit_mm_per_prompt": {"images": 0, "image": 2}})


def test_performance_mode_reaches_vllm_or_is_dropped_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from vlmcap import _vllm_compat

    assert (
        adapt_llm_kwargs({"model": "m", "performance_mode": "throughput"})["performance_mode"]
        == "throughput"
    )  # vLLM 0.26 and 0.32 both have it
    names = _vllm_compat._engine_arg_names() - {"performance_mode"}
    monkeypatch.setattr(_vllm_compat, "_engine_arg_names", lambda: names)
    with caplog.at_level(logging.WARNING, logger="vlmcap"):
        kw = adapt_llm_kwargs({"model": "m", "performance_mode": "throughput"})
    assert "performance_mode" not in kw
    assert any("no setting performance_mode" in r.getMessage() for r in caplog.records)


def test_copy_weights_to_copies_once_and_model_path_prefers_the_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "store" / "ckpt"
    source.mkdir(parents=True)
    (source / "config.json").write_text("{}")
    vlmcap.register_model_id("copytest", "org/copy-test", "0" * 40)
    plugin = type("Copy", (EchoPlugin,), {"model_variant": staticmethod(lambda: "copytest")})
    fast = tmp_path / "nvme"
    cfg = vlmcap.VllmConfig(model_variant="copytest", model_path=source, copy_weights_to=fast)
    copy_weights(plugin, cfg)
    target = fast / "org" / "copy-test"
    assert (target / "config.json").read_text() == "{}"
    assert [p.name for p in fast.joinpath("org").iterdir()] == ["copy-test"]  # no temp left
    (source / "config.json").write_text('{"changed": 1}')
    copy_weights(plugin, cfg)  # present: not copied again
    assert (target / "config.json").read_text() == "{}"
    no_explicit = vlmcap.VllmConfig(model_variant="copytest", copy_weights_to=fast)
    assert vlmcap.resolve_model_path("copytest", no_explicit) == target
    monkeypatch.delenv("VLMCAP_MODEL_DIR", raising=False)


# --- the executable contract: runtime errors name the rule ----------------------------------


class _ImagesKey(EchoPlugin):
    @staticmethod
    def model_variant() -> str:
        return "images-key"

    @staticmethod
    def make_llm_input(prompt: str, frames: Any, processor: Any) -> dict[str, Any]:
        return {"prompt": prompt, "multi_modal_data": {"images": frames}}


class _KeepsCaption(EchoPlugin):
    @staticmethod
    def model_variant() -> str:
        return "keeps-caption"

    @staticmethod
    def make_refined_llm_request(
        request: vlmcap.VllmCaptionRequest, processor: Any, refine_prompt: str | None = None
    ) -> vlmcap.VllmCaptionRequest:
        refined = EchoPlugin.make_refined_llm_request(request, processor, refine_prompt)
        return vlmcap.VllmCaptionRequest(refined.request_id, refined.inputs, caption="kept")


def test_a_plugin_output_that_breaks_a_rule_is_that_inputs_error_naming_the_rule() -> None:
    vlmcap.register_plugin(_ImagesKey)
    try:
        cfg = vlmcap.VllmConfig(model_variant="images-key")
        clip = torch.zeros((2, 3, 4, 4), dtype=torch.uint8)
        bad = vlmcap.make_model_inputs([clip], cfg, None, "describe")[0]
        good = {"prompt": "fine", "multi_modal_data": {"video": ONE_FRAME}}
        results = vlmcap.caption_results([good, bad, good], FakeEngine(), None, None, cfg)
    finally:
        unregister_plugin("images-key")
    assert [r.ok for r in results] == [True, False, True]
    assert results[1].error is not None and "[C-INPUT-003]" in results[1].error
    assert "'images' -> 'image'" in results[1].error


def test_a_stage2_request_that_breaks_a_rule_ends_only_its_input() -> None:
    vlmcap.register_plugin(_KeepsCaption)
    try:
        cfg = vlmcap.VllmConfig(model_variant="keeps-caption")
        inputs = [
            {"prompt": f"clip {i}", "multi_modal_data": {"video": ONE_FRAME}} for i in range(3)
        ]
        results = vlmcap.caption_results(
            inputs, FakeEngine(), None, None, cfg, stage2_prompts=[None, "refine: ", None]
        )
    finally:
        unregister_plugin("keeps-caption")
    assert [r.ok for r in results] == [True, False, True]
    assert results[1].error is not None and "[C-REFINE-002]" in results[1].error


def test_validators_accept_every_vllm_video_form_and_name_the_rule() -> None:
    frames = torch.zeros((2, 3, 4, 4), dtype=torch.uint8)
    md = vlmcap.VideoMetadata.uniform(2, 2.0).to_vllm()
    for video in (
        frames,
        (frames, md),
        [(frames, md)],
        [frames],
        frames.permute(0, 2, 3, 1).numpy(),
        torch.zeros((3, 4, 4, 3), dtype=torch.uint8).numpy(),  # T=3, channels-last
    ):
        check_llm_input({"prompt_token_ids": [1, 2], "multi_modal_data": {"video": video}}, 10)
    cases = {
        "C-INPUT-001": ["not a dict"],
        "C-INPUT-002": {"prompt_token_ids": [1, 99], "multi_modal_data": {"video": frames}},
        "C-INPUT-003": {"prompt": "x", "multi_modal_data": {"video_frames": frames}},
        "C-INPUT-004": {"prompt": "x", "multi_modal_data": {"video": frames.transpose(0, 1)}},
    }
    for rule, inputs in cases.items():
        with pytest.raises(vlmcap.PluginContractError, match=rf"^\[{rule}\]"):
            check_llm_input(inputs, 10)
    stage1 = vlmcap.VllmCaptionRequest("s1", {"prompt": "x", "multi_modal_data": {}}, caption="c")
    same_id = vlmcap.VllmCaptionRequest(
        "s1", {"prompt": "y", "multi_modal_data": {"video": frames}}
    )
    violation = refined_request_violation(stage1, same_id, 10)
    assert violation is not None and violation.rule_id == "C-REFINE-003"
    not_request = refined_request_violation(stage1, {"prompt": "y"}, 10)
    assert not_request is not None and not_request.rule_id == "C-REFINE-001"


_FORMS = st.sampled_from(["bare", "tuple", "list", "list_tuple"])


@given(form=_FORMS, t=st.integers(1, 6), channels_last=st.booleans())
def test_video_parse_round_trips_every_form(form: str, t: int, channels_last: bool) -> None:
    frames: Any = torch.zeros((t, 3, 2, 2), dtype=torch.uint8)
    if channels_last:
        frames = np.zeros((t, 2, 2, 3), dtype=np.uint8)
    md = vlmcap.VideoMetadata.uniform(t, 2.0).to_vllm()
    value: Any = {
        "bare": frames,
        "tuple": (frames, md),
        "list": [frames],
        "list_tuple": [(frames, md)],
    }[form]
    video = Video.parse(value)
    assert video is not None and video.form == form and video.frames is frames
    assert video.num_frames == t
    rebuilt = video.to_vllm()
    assert type(rebuilt) is type(value)
    attached = video.with_metadata(md)
    assert attached.metadata == md and Video.parse(attached.to_vllm()) == attached
    assert attached.form == ("list_tuple" if form.startswith("list") else "tuple")


# --- boundary checks (jaxtyping + beartype) ----------------------------------------------------


def test_boundary_rejects_wrong_types_naming_the_argument() -> None:
    cfg = vlmcap.VllmConfig(model_variant="echo-test")
    with pytest.raises(
        vlmcap.ArgumentTypeError,
        match=r"make_model_inputs\(\): config expected VllmConfig, got a str",
    ):
        vlmcap.make_model_inputs([ONE_FRAME], "echo-test", None, "p")  # type: ignore[arg-type]
    with pytest.raises(vlmcap.ArgumentTypeError, match="max_inflight_requests expected int"):
        vlmcap.caption_results([], FakeEngine(), None, None, cfg, "3")  # type: ignore[arg-type]
    with pytest.raises(TypeError):  # ArgumentTypeError is a TypeError (and a ConfigError)
        vlmcap.Captioner(config="qwen")  # type: ignore[arg-type]


def test_boundary_names_the_bad_frames_tensor_with_expected_and_actual_shape() -> None:
    vlmcap.register_plugin(EchoPlugin)
    try:
        cfg = vlmcap.VllmConfig(model_variant="echo-test")
        good = torch.zeros((2, 3, 4, 4), dtype=torch.uint8)
        with pytest.raises(vlmcap.FrameContractError) as err:
            vlmcap.make_model_inputs([good, torch.zeros((4, 4, 3))], cfg, None, "p")
    finally:
        unregister_plugin("echo-test")
    assert err.value.field == "videos[1]"
    assert "(frames, 3, height, width)" in err.value.expected
    assert "(4, 4, 3)" in err.value.actual


def test_request_ids_from_the_refine_are_fresh() -> None:  # keeps EchoPlugin honest
    request = vlmcap.VllmCaptionRequest(
        secrets.token_hex(4), {"prompt": "x", "multi_modal_data": {"video": ONE_FRAME}}, caption="c"
    )
    out = EchoPlugin.make_refined_llm_request(request, None)
    assert refined_request_violation(request, out, None) is None


# --- plugins that pin no model ------------------------------------------------------------


def test_a_plugin_without_a_pinned_id_is_told_to_give_a_path_not_to_download(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from vlmcap import cli
    from vlmcap._plugin import pins_no_model

    monkeypatch.delenv("VLMCAP_MODEL_DIR", raising=False)
    assert pins_no_model(vlmcap.get_plugin("chat"))  # declared (vlmcap.PinsNoModel)
    assert not pins_no_model(vlmcap.get_plugin("qwen"))
    assert pins_no_model(EchoPlugin)  # no id in vlmcap's table, no model_id() of its own
    with pytest.raises(vlmcap.ModelNotFoundError) as err:
        EchoPlugin.model_path()
    assert "pins no model" in str(err.value) and "--model-path DIR" in str(err.value)
    assert "vlmcap download" not in str(err.value)
    vlmcap.register_plugin(EchoPlugin)
    try:
        assert cli.main(["plugins"]) == 0
    finally:
        unregister_plugin("echo-test")
    (line,) = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("echo-test")]
    assert "tests._plugins:EchoPlugin" in line and "no pinned model" in line
