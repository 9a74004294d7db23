"""Properties of the pure windowing and sampling maths (vlmcap.video._windows)."""

import itertools
import math

import pytest
from hypothesis import assume, example, given, strategies as st

from vlmcap import ConfigError
from vlmcap.video import (
    Window,
    WindowSettings,
    compute_windows,
    plan_windows,
    sample_indices,
    window_metadata,
)
from vlmcap.video._windows import image_plan, sample_count, sampled_fps, window_seconds


fps_values = st.floats(min_value=1.0, max_value=240.0, allow_nan=False, allow_infinity=False)
target_fps_values = st.floats(min_value=0.05, max_value=60.0, allow_nan=False)


@st.composite
def window_args(draw: st.DrawFn) -> tuple[int, int, int, int]:
    min_frames = draw(st.integers(1, 16))
    window_size = draw(st.integers(max(2, min_frames), 600))
    remainder_threshold = draw(st.integers(1, 700))
    total = draw(
        st.one_of(
            st.integers(0, 3 * window_size + 5),
            st.integers(0, 50_000),
        )
    )
    return total, window_size, remainder_threshold, min_frames


@given(window_args())
@example((3, 256, 128, 4))
@example((4, 256, 128, 4))
@example((256, 256, 128, 4))
@example((257, 256, 128, 4))
@example((256 + 128, 256, 128, 4))
@example((256 + 127, 256, 128, 4))
def test_windows_partition_the_frames(args: tuple[int, int, int, int]) -> None:
    total, ws, rt, mf = args
    windows = compute_windows(total, ws, rt, mf)
    if total < mf:
        assert windows == ()
        return
    assert windows, "a video with enough frames has at least one window"
    assert [w.index for w in windows] == list(range(len(windows)))
    assert windows[0].start == 0
    assert windows[-1].end == total - 1, "the inclusive end covers the last frame"
    for a, b in itertools.pairwise(windows):
        assert b.start == a.end + 1, "no gap, no overlap"
    assert sum(w.num_frames for w in windows) == total
    assert all(w.num_frames >= mf for w in windows)


@given(window_args())
def test_window_count_rules(args: tuple[int, int, int, int]) -> None:
    total, ws, rt, mf = args
    assume(total >= mf)
    windows = compute_windows(total, ws, rt, mf)
    if total <= ws:
        assert windows == (Window(0, 0, total - 1),)
        return
    full, remainder = divmod(total, ws)
    own = remainder >= max(rt, mf)
    assert len(windows) == full + (1 if own else 0)
    assert all(w.num_frames == ws for w in windows[:full - 1])
    if own:
        assert windows[full - 1].num_frames == ws
        assert windows[-1].num_frames == remainder
    else:
        assert windows[-1].num_frames == ws + remainder, "a short tail joins the last window"


def test_reference_window_examples() -> None:
    """The windows of the reference's worked examples (8.3) at 30 fps, 256/128."""
    assert compute_windows(300) == (Window(0, 0, 299),)
    assert [(w.start, w.end) for w in compute_windows(900)] == [
        (0, 255), (256, 511), (512, 767), (768, 899)
    ]
    sixty = compute_windows(1800)
    assert len(sixty) == 7
    assert (sixty[-1].start, sixty[-1].end) == (1536, 1799)


def test_reference_sample_counts_include_the_end_frame() -> None:
    """Counts from windows with inclusive ends (the reference drops the end frame, see 8.2).

    10 s at 30 fps sampled at 2 fps: 300 frames = 10 s -> 20 frames. A 256-frame window is
    8.53 s -> 17.07 -> 18 frames (the reference, counting 255 frames, gets 16). A 132-frame
    tail is 4.4 s -> 8.8 -> 8 frames.
    """
    assert sample_count(300, 30.0, 2.0) == 20
    assert sample_count(256, 30.0, 2.0) == 18
    assert sample_count(132, 30.0, 2.0) == 8
    assert sample_indices(Window(0, 0, 299), 30.0)[-1] == 299


@st.composite
def sampled_windows(draw: st.DrawFn) -> tuple[Window, float, float, int, int]:
    start = draw(st.integers(0, 1_000_000))
    n = draw(st.integers(2, 20_000))
    min_frames = draw(st.integers(2, 16))
    max_frames = draw(st.integers(min_frames, 1000))
    return (
        Window(draw(st.integers(0, 100)), start, start + n - 1),
        draw(fps_values),
        draw(target_fps_values),
        min_frames,
        max_frames,
    )


def _floor_even(n: int) -> int:
    return n - n % 2


@given(sampled_windows())
@example((Window(0, 0, 3), 30.0, 2.0, 4, 768))
@example((Window(0, 10, 14), 30.0, 2.0, 6, 768))  # 5 frames, min 6 -> the largest even, 4
@example((Window(0, 0, 9999), 1.0, 60.0, 4, 768))  # wants 600000 frames -> 768
def test_sampled_indices_are_sorted_unique_inside_and_even(
    args: tuple[Window, float, float, int, int],
) -> None:
    window, native_fps, target, lo, hi = args
    idx = sample_indices(window, native_fps, target, lo, hi)
    n = window.num_frames
    count = len(idx)
    assert count % 2 == 0
    assert 2 <= count <= n
    assert list(idx) == sorted(set(idx)), "strictly increasing, so no frame twice"
    assert idx[0] == window.start
    assert idx[-1] == window.end, "the window's last frame is sampled"
    bound_lo, bound_hi = lo + lo % 2, _floor_even(min(hi, n))
    if bound_lo <= bound_hi:
        assert bound_lo <= count <= bound_hi
        wanted = n / native_fps * target
        if bound_lo < count < bound_hi:
            assert abs(count - wanted) <= 1 + 1e-9, "nearest even count when not clamped"
    else:
        assert count == bound_hi, "impossible clamp: the largest even count that fits"
    gaps = [b - a for a, b in itertools.pairwise(idx)]
    assert max(gaps) - min(gaps) <= 1, "uniform spacing"


@given(sampled_windows())
def test_default_bounds_are_4_and_768(args: tuple[Window, float, float, int, int]) -> None:
    window, native_fps, target, _lo, _hi = args
    assume(window.num_frames >= 4)
    count = len(sample_indices(window, native_fps, target))
    assert 4 <= count <= min(768, window.num_frames)


@given(sampled_windows())
def test_metadata_uses_the_true_sampled_fps(args: tuple[Window, float, float, int, int]) -> None:
    window, native_fps, target, lo, hi = args
    t = len(sample_indices(window, native_fps, target, lo, hi))
    start_s, end_s = window_seconds(window, native_fps)
    md = window_metadata(window, native_fps, t, width=64, height=32)
    assert md.total_num_frames == t
    assert md.frames_indices == tuple(range(t))
    assert md.fps == pytest.approx(t / (end_s - start_s), rel=1e-9)
    assert md.duration == pytest.approx(end_s - start_s, rel=1e-9)
    assert md.fps == pytest.approx(sampled_fps(window, native_fps, t))
    assert (md.width, md.height) == (64, 32)
    # The i/fps timestamps of the sampled frames stay within the window's duration.
    assert (t - 1) / md.fps < md.duration


@given(st.integers(0, 20_000), fps_values, target_fps_values)
def test_plans_tile_the_video_in_time(total: int, native_fps: float, target: float) -> None:
    plans = plan_windows(total, native_fps, WindowSettings(sampling_fps=target))
    if total < 4:
        assert plans == ()
        return
    assert plans[0].start_s == 0.0
    assert plans[-1].end_s == pytest.approx(total / native_fps)
    for a, b in itertools.pairwise(plans):
        assert a.end_s == pytest.approx(b.start_s)
    for p in plans:
        assert p.fps * (p.end_s - p.start_s) == pytest.approx(p.num_frames)
        assert p.metadata().total_num_frames == p.num_frames


def test_true_fps_differs_from_nominal_when_clamped() -> None:
    """A 1 s window at 30 fps sampled at 2 fps gets 4 frames (the minimum): 4 fps, not 2."""
    (plan,) = plan_windows(30, 30.0)
    assert plan.num_frames == 4
    assert plan.fps == pytest.approx(4.0)
    assert plan.metadata().duration == pytest.approx(1.0)


def test_image_plan_repeats_the_frame() -> None:
    plan = image_plan(WindowSettings(sampling_fps=4.0))
    assert plan.indices == (0, 0)
    md = plan.metadata()
    assert (md.total_num_frames, md.fps, md.duration) == (2, 4.0, 0.5)
    assert (plan.start_s, plan.end_s) == (0.0, 0.0)


@pytest.mark.parametrize(
    "call",
    [
        lambda: compute_windows(-1),
        lambda: compute_windows(10, window_size=3, min_frames=4),
        lambda: compute_windows(10, min_frames=0),
        lambda: sample_count(1, 30.0),
        lambda: sample_count(10, 0.0),
        lambda: sample_count(10, math.nan),
        lambda: sample_count(10, 30.0, math.inf),
        lambda: sample_indices(Window(0, 0, 9), -1.0),
        lambda: Window(0, 5, 4),
        lambda: Window(-1, 0, 4),
        lambda: WindowSettings(window_size=3),
        lambda: WindowSettings(max_frames=2),
        lambda: WindowSettings(sampling_fps=0.0),
        lambda: WindowSettings(sampling_fps=math.inf),
    ],
)
def test_bad_arguments_raise_config_errors(call: object) -> None:
    with pytest.raises(ConfigError):
        call()  # type: ignore[operator]
