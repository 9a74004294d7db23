"""The frame contract and the records: typed errors that name field, expected and actual."""

import math
from typing import Any

import attrs
import pytest
import torch
from hypothesis import given, strategies as st

import vlmcap
from vlmcap import CaptionResult, CaptionStatus, FrameContractError, TokenCounts, VideoMetadata
from vlmcap._contract import attach_video_metadata
from vlmcap._frames import to_uint8


@given(
    t=st.integers(1, 6),
    h=st.integers(1, 40),
    w=st.integers(1, 40),
    dtype=st.sampled_from(
        [torch.uint8, torch.float16, torch.bfloat16, torch.float32, torch.float64]
    ),
)
def test_valid_frames_pass_unchanged(t: int, h: int, w: int, dtype: torch.dtype) -> None:
    frames = (torch.rand(t, 3, h, w) * (255 if dtype == torch.uint8 else 1)).to(dtype)
    assert vlmcap.check_frames(frames) is frames


@given(
    shape=st.lists(st.integers(1, 5), min_size=1, max_size=6).filter(
        lambda s: not (len(s) == 4 and s[1] == 3)
    )
)
def test_wrong_rank_or_channels_is_rejected_with_the_shapes(shape: list[int]) -> None:
    with pytest.raises(FrameContractError) as err:
        vlmcap.check_frames(torch.rand(*shape), "videos[7]")
    msg = str(err.value)
    assert msg.startswith("videos[7]: expected a (frames, 3, height, width) tensor")
    assert f"shape {tuple(shape)}" in msg
    assert err.value.field == "videos[7]"


def test_layout_hints() -> None:
    with pytest.raises(FrameContractError, match="channels-last"):
        vlmcap.check_frames(torch.rand(8, 32, 32, 3))
    with pytest.raises(FrameContractError, match=r"transpose\(0, 1\)"):
        vlmcap.check_frames(torch.rand(3, 8, 32, 32))  # seed bug 5: (C, T, H, W)
    with pytest.raises(FrameContractError, match="unsqueeze"):
        vlmcap.check_frames(torch.rand(3, 32, 32))


@pytest.mark.parametrize(
    ("frames", "needle"),
    [
        (torch.full((2, 3, 4, 4), float("nan")), "NaN or inf"),
        (torch.full((2, 3, 4, 4), float("inf")), "NaN or inf"),
        (torch.full((2, 3, 4, 4), 200.0), "divide by 255"),
        (torch.full((2, 3, 4, 4), -0.5), r"values in \[-0.5"),
        (torch.zeros(0, 3, 4, 4), "empty axis"),
        (torch.zeros(2, 3, 4, 4, dtype=torch.int64), "unsupported dtype"),
        (torch.zeros(2, 3, 4, 4, dtype=torch.bool), "unsupported dtype"),
        ([[1, 2]], "got a list"),
    ],
)
def test_bad_values_and_types(frames: object, needle: str) -> None:
    with pytest.raises(FrameContractError, match=needle):
        vlmcap.check_frames(frames)


@given(st.floats(0, 1))
def test_to_uint8_round_trips_within_half_a_level(v: float) -> None:
    u = to_uint8(torch.full((1, 3, 2, 2), v))
    assert u.dtype == torch.uint8
    assert abs(int(u[0, 0, 0, 0]) - v * 255) <= 0.5


def test_video_metadata_is_consistent_and_immutable() -> None:
    md = VideoMetadata.uniform(8, 2.0, width=224, height=112)
    assert md.duration == 4.0 and md.frames_indices == tuple(range(8))
    d = md.to_vllm()
    assert d["do_sample_frames"] is False and d["width"] == 224
    assert VideoMetadata.from_mapping(d) == md
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        md.fps = 3.0  # type: ignore[misc]
    with pytest.raises(vlmcap.MetadataError, match="frames_indices has 3 entries"):
        VideoMetadata(fps=2.0, total_num_frames=4, frames_indices=(0, 1, 2), duration=2.0)
    with pytest.raises(vlmcap.MetadataError, match="fps must be > 0"):
        VideoMetadata.uniform(4, 0.0)
    with pytest.raises(vlmcap.MetadataError, match="finite"):
        VideoMetadata(fps=math.inf, total_num_frames=1, frames_indices=(0,), duration=1.0)
    with pytest.raises(vlmcap.MetadataError, match="malformed"):
        VideoMetadata.from_mapping({"fps": "fast"})


def test_attach_metadata_handles_every_video_form_and_copies() -> None:
    md = VideoMetadata.uniform(2, 2.0)
    frames = torch.zeros(2, 3, 4, 4)
    for video, expect in [
        (frames, (frames, md.to_vllm())),
        ([frames], [(frames, md.to_vllm())]),
    ]:
        inputs: dict[str, Any] = {"prompt": "p", "multi_modal_data": {"video": video}}
        out = attach_video_metadata(inputs, md)
        assert out["multi_modal_data"]["video"] == expect or (
            isinstance(expect, list) and out["multi_modal_data"]["video"][0][0] is frames
        )
        assert inputs["multi_modal_data"]["video"] is video  # the input is not mutated
    already = {"multi_modal_data": {"video": (frames, {"fps": 9.0})}}
    assert attach_video_metadata(already, md)["multi_modal_data"]["video"][1] == {"fps": 9.0}
    image = {"multi_modal_data": {"image": frames}}
    assert attach_video_metadata(image, md) == image


@pytest.mark.parametrize(
    ("text", "reason", "status"),
    [
        ("a cat", "stop", CaptionStatus.SUCCESS),
        ("  a cat \n", "length", CaptionStatus.TRUNCATED),
        ("   ", "stop", CaptionStatus.ERROR),
        ("", "length", CaptionStatus.ERROR),
        ("Unknown caption", "stop", CaptionStatus.SUCCESS),  # a real caption, not the sentinel
    ],
)
def test_caption_classification(text: str, reason: str, status: CaptionStatus) -> None:
    r = CaptionResult.from_caption(text, reason, TokenCounts(3, 4), 1)
    assert r.status is status
    assert r.finish_reason == reason
    assert r.text == (text.strip() if status is not CaptionStatus.ERROR else "")
    assert r.as_seed_string() == (r.text if r.ok else vlmcap.UNKNOWN_CAPTION)


def test_config_validation_and_evolve() -> None:
    cfg = vlmcap.VllmConfig(model_variant="qwen", model_path="/tmp/x")  # noqa: S108
    assert cfg.model_path is not None and cfg.model_path.name == "x"
    assert attrs.evolve(cfg, batch_size=8).batch_size == 8
    with pytest.raises(vlmcap.ConfigError, match="batch_size must be > 0"):
        vlmcap.VllmConfig(model_variant="qwen", batch_size=0)
    with pytest.raises(vlmcap.ConfigError, match="temperature must be >= 0"):
        vlmcap.VllmSamplingConfig(temperature=-1)
