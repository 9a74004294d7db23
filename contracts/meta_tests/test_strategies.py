"""The public Hypothesis strategies produce what they promise."""

import torch
from hypothesis import given, settings, strategies as st

from vlmcap import VllmCaptionRequest, check_frames
from vlmcap.testing import strategies as vst


@settings(max_examples=50, deadline=None)
@given(vst.frames())
def test_frames_keep_the_frame_contract(frames: torch.Tensor) -> None:
    check_frames(frames)
    t, c, h, w = frames.shape
    assert 1 <= t <= vst.MAX_FRAMES
    assert c == 3
    assert h in vst.FRAME_SIDES
    assert w in vst.FRAME_SIDES
    assert frames.dtype in vst.FRAME_DTYPES


@settings(max_examples=20, deadline=None)
@given(vst.frames(min_frames=2, max_frames=2, heights=[56], widths=[28], dtypes=[torch.uint8]))
def test_frames_can_be_narrowed(frames: torch.Tensor) -> None:
    assert tuple(frames.shape) == (2, 3, 56, 28)
    assert frames.dtype == torch.uint8


@given(vst.prompts(), vst.captions(), vst.request_ids())
def test_text_is_never_blank(prompt: str, caption: str, request_id: str) -> None:
    assert prompt.strip()
    assert prompt.isascii()
    assert caption.strip() == caption
    assert caption
    assert request_id


@settings(max_examples=20, deadline=None)
@given(vst.requests())
def test_requests_are_stage1_requests_over_a_video(request: VllmCaptionRequest) -> None:
    assert request.caption
    video = request.inputs["multi_modal_data"]["video"]
    frames = video[0] if isinstance(video, tuple) else video
    check_frames(frames)
    if isinstance(video, tuple):
        assert video[1]["total_num_frames"] == frames.shape[0]
    assert all(0 <= i < 512 for i in request.inputs["prompt_token_ids"])


@settings(max_examples=10, deadline=None)
@given(vst.requests(caption=st.none(), stage2_prompt=st.just("Refine: ")))
def test_requests_can_lack_a_caption(request: VllmCaptionRequest) -> None:
    assert request.caption is None
    assert request.stage2_prompt == "Refine: "


@settings(max_examples=20, deadline=None)
@given(vst.request_outputs())
def test_request_outputs_are_real_finished_vllm_outputs(output: object) -> None:
    from vllm.outputs import RequestOutput

    assert isinstance(output, RequestOutput)
    assert output.finished
    assert isinstance(output.outputs[0].text, str)
    assert output.outputs[0].finish_reason in {"stop", "length"}
