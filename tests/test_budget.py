"""The visual token budget per window: fit_window's invariants (Hypothesis), and the rows'
prompt_tokens within budget + the text prompt's tokens through the real engine."""

from pathlib import Path
from typing import Any

import attrs
import pytest
import torch
from hypothesis import assume, given, strategies as st

from vlmcap._budget import (
    PatchSpec,
    VideoBudgetError,
    WindowFit,
    apply_budget,
    even_indices,
    fit_window,
    patch_spec,
    window_tokens,
)
from vlmcap._prompts import get_prompt
from vlmcap._records import VideoMetadata
from vlmcap._resize import smart_resize
from vlmcap.plugins.qwen import video_prompt_ids
from vlmcap.testing._samples import sample_image, sample_videos
from vlmcap.video import WindowSettings, caption_paths, plan_media, probe
from vlmcap.video._decode import target_size


SPECS = st.builds(
    lambda patch, merge, temporal, lo_cells, hi_cells: PatchSpec(
        patch, merge, temporal, lo_cells * (patch * merge) ** 2, hi_cells * (patch * merge) ** 2
    ),
    st.sampled_from([14, 16]),
    st.sampled_from([1, 2]),
    st.sampled_from([1, 2]),
    st.integers(1, 8),
    st.integers(8, 2000),
)
SIDES = st.integers(16, 2000)
FRAMES = st.integers(1, 64)


def _fit(t: int, h: int, w: int, n: int, spec: PatchSpec) -> WindowFit | None:
    try:
        return fit_window(t, h, w, n, spec)
    except VideoBudgetError:
        return None


@given(FRAMES, SIDES, SIDES, st.integers(1, 5000), SPECS)
def test_never_over_budget_never_below_the_minimum(
    t: int, h: int, w: int, n: int, spec: PatchSpec
) -> None:
    assume(max(h, w) / min(h, w) <= 20)
    fit = _fit(t, h, w, n, spec)
    if fit is None:
        return
    f = spec.factor
    assert fit.tokens <= n
    assert fit.tokens == window_tokens(fit.frames, fit.height, fit.width, spec)
    assert fit.height % f == 0 and fit.width % f == 0
    h0, w0 = smart_resize(h, w, factor=f, min_pixels=spec.min_pixels, max_pixels=spec.max_pixels)
    # the model's smallest frame: min_pixels, or its own size where its rounding goes below
    assert fit.height * fit.width >= min(spec.min_pixels, h0 * w0)
    assert fit.height <= max(h0, f) and fit.width <= max(w0, f), "never above its own size"
    assert min(t, spec.temporal) <= fit.frames <= t, "at least one temporal patch of frames"


@given(FRAMES, SIDES, SIDES, st.integers(1, 5000), SPECS)
def test_aspect_ratio_is_kept_within_rounding(
    t: int, h: int, w: int, n: int, spec: PatchSpec
) -> None:
    assume(max(h, w) / min(h, w) <= 4)
    fit = _fit(t, h, w, n, spec)
    assume(fit is not None and fit.height > spec.factor and fit.width > spec.factor)
    assert fit is not None
    # each side is the exact scaled side give or take one factor: |h'W - w'H| <= f (H + W)
    assert abs(fit.height * w - fit.width * h) <= spec.factor * (h + w)


@given(FRAMES, SIDES, SIDES, st.integers(1, 3000), st.integers(0, 3000), SPECS)
def test_monotone_in_the_budget(
    t: int, h: int, w: int, n: int, more: int, spec: PatchSpec
) -> None:
    assume(max(h, w) / min(h, w) <= 20)
    small, large = _fit(t, h, w, n, spec), _fit(t, h, w, n + more, spec)
    if small is None:
        return
    assert large is not None, "a budget that fits keeps fitting when raised"
    assert large.tokens >= small.tokens
    assert large.frames >= small.frames


@given(FRAMES, SIDES, SIDES, st.integers(0, 1000), SPECS)
def test_a_budget_the_window_fits_changes_nothing(
    t: int, h: int, w: int, spare: int, spec: PatchSpec
) -> None:
    assume(max(h, w) / min(h, w) <= 20)
    f = spec.factor
    h0, w0 = smart_resize(h, w, factor=f, min_pixels=spec.min_pixels, max_pixels=spec.max_pixels)
    natural = window_tokens(t, h0, w0, spec)
    assert fit_window(t, h, w, natural + spare, spec) == WindowFit(t, h0, w0, natural)


@given(FRAMES, SIDES, SIDES, SPECS)
def test_a_budget_under_one_minimal_patch_is_an_error(
    t: int, h: int, w: int, spec: PatchSpec
) -> None:
    assume(max(h, w) / min(h, w) <= 20)
    lowest = next(n for n in range(1, 10**6) if _fit(t, h, w, n, spec) is not None)
    fit = fit_window(t, h, w, lowest, spec)
    assert fit.frames == min(t, spec.temporal), "the cheapest window is one temporal patch"
    if lowest > 1:
        with pytest.raises(VideoBudgetError, match="below the model's minimum"):
            fit_window(t, h, w, lowest - 1, spec)


@given(st.integers(1, 200), st.integers(1, 200))
def test_even_indices_are_sorted_unique_and_span_the_window(total: int, keep: int) -> None:
    idx = even_indices(total, keep)
    assert len(idx) == min(total, keep)
    assert idx == sorted(set(idx)) and idx[0] == 0 and all(0 <= i < total for i in idx)
    if min(total, keep) > 1:
        assert idx[-1] == total - 1


def test_apply_budget_keeps_the_window_duration() -> None:
    frames = torch.zeros(8, 3, 240, 320, dtype=torch.uint8)
    md = VideoMetadata.uniform(8, 2.0, width=320, height=240)
    spec = PatchSpec(min_pixels=3136, max_pixels=50176)
    out, md2, fit = apply_budget(frames, md, 8, spec)
    assert tuple(out.shape) == (fit.frames, 3, fit.height, fit.width) and fit.frames < 8
    assert md2.total_num_frames == fit.frames and md2.duration == pytest.approx(md.duration)
    assert (md2.width, md2.height) == (fit.width, fit.height)


def test_patch_spec_reads_the_qwen_processor(qwen_config: Any) -> None:
    import vlmcap

    spec = patch_spec(vlmcap.auto_processor(qwen_config))
    vp = vlmcap.auto_processor(qwen_config).video_processor
    assert (spec.patch, spec.merge, spec.temporal) == (
        vp.patch_size, vp.merge_size, vp.temporal_patch_size
    )
    assert (spec.min_pixels, spec.max_pixels) == (
        vp.size["shortest_edge"], vp.size["longest_edge"]
    )


# --- through the real engine ----------------------------------------------------------------

BUDGETS = (None, 60, 8, 5)


@pytest.mark.engine
def test_prompt_tokens_stay_within_the_budget(
    qwen_engine: Any, qwen_config: Any, tmp_path: Path
) -> None:
    """One engine for every budget: each row's video tokens (prompt_tokens less the text
    prompt's) are the fit's and within the budget; a budget under the minimum is an error row."""
    llm, processor, _params = qwen_engine
    media = [*sample_videos(tmp_path / "v", n=2), sample_image(tmp_path / "still.png")]
    settings = WindowSettings(window_size=48, remainder_threshold=24)
    spec = patch_spec(processor)
    prompt = get_prompt()
    natural_tokens = []
    for budget in BUDGETS:
        config = attrs.evolve(qwen_config, max_video_tokens=budget, max_output_tokens=4)
        rows = list(caption_paths(
            media, config, llm=llm, processor=processor, settings=settings, progress=False,
        ))
        assert rows
        for row in rows:
            info = probe(row.source, sampling_fps=settings.sampling_fps)
            (plan,) = [p for p in plan_media(info, settings) if p.window.index == row.window_index]
            h, w = target_size(info.height, info.width, 768 * 28 * 28)
            if budget is not None and budget < 6:  # the smallest 240x320-shaped frame: 6 tokens
                assert not row.ok and "below the model's minimum" in (row.error or ""), row
                continue
            fit = fit_window(plan.num_frames, h, w, budget or 10**9, spec)
            video = torch.zeros(fit.frames, 3, fit.height, fit.width, dtype=torch.uint8)
            text_tokens = len(video_prompt_ids(processor, prompt, video)) - 1  # less the pad
            assert row.ok, row.error
            assert row.frames == fit.frames
            assert row.prompt_tokens == text_tokens + fit.tokens, (budget, row)
            print(f"budget {budget}: {Path(row.source).name} window {row.window_index}: "
                  f"{fit.frames} frames of {fit.width}x{fit.height}, {fit.tokens} video tokens, "
                  f"prompt_tokens {row.prompt_tokens} = {text_tokens} text + {fit.tokens}")
            if budget is not None:
                assert row.prompt_tokens <= text_tokens + budget
            else:
                natural_tokens.append(fit.tokens)
    assert max(natural_tokens) > 60, "the smaller budgets did shrink the windows"
