"""Decoding real files with PyAV: the right frames, one pass, typed errors for broken files."""

from pathlib import Path

import av
import numpy as np
import pytest
import torch

import vlmcap
from vlmcap.testing._samples import (
    broken_media,
    moving_shapes,
    sample_image,
    sample_videos,
    write_video,
)
from vlmcap.video import (
    CorruptMediaError,
    DecodedWindow,
    EmptyMediaError,
    MediaError,
    MediaNotFoundError,
    MediaTooShortError,
    NoFramesError,
    NoVideoStreamError,
    ResolutionTooLargeError,
    TruncatedMediaError,
    UnsupportedMediaError,
    WindowSettings,
    _decode,
    decode_windows,
    iter_decoded,
    plan_media,
    probe,
)


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("media")
    sample_videos(root, n=3)
    broken_media(root / "broken")
    for ext in ("png", "jpg", "webp"):
        sample_image(root / f"still.{ext}")
    return root


def _all_frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


@pytest.mark.parametrize(
    ("name", "frames", "fps"),
    [("sample-00.mp4", 48, 24.0), ("sample-01.mp4", 120, 30.0), ("sample-02.mp4", 150, 25.0)],
)
def test_probe_reads_count_rate_and_size(media: Path, name: str, frames: int, fps: float) -> None:
    info = probe(media / name)
    assert (info.kind, info.total_frames, info.native_fps) == ("video", frames, fps)
    assert (info.width, info.height) == (320, 240)
    assert len(_all_frames(media / name)) == frames


def test_windows_hold_exactly_the_sampled_frames(media: Path) -> None:
    """At native size the window tensors equal a plain full decode at the sampled indices."""
    path = media / "sample-02.mp4"
    settings = WindowSettings(window_size=48, remainder_threshold=24, sampling_fps=4.0)
    windows = decode_windows(path, settings, max_pixels=None)
    reference = _all_frames(path)
    assert [w.index for w in windows] == [0, 1, 2]
    assert windows[-1].plan.indices[-1] == 149, "the last frame of the video is sampled"
    for w in windows:
        assert w.frames.dtype == torch.uint8
        assert tuple(w.frames.shape) == (len(w.plan.indices), 3, 240, 320)
        for t, i in enumerate(w.plan.indices):
            expected = torch.from_numpy(reference[i]).permute(2, 0, 1)
            assert torch.equal(w.frames[t], expected), f"window {w.index} frame {t} != frame {i}"
        assert w.metadata.total_num_frames == w.frames.shape[0]
        assert w.metadata.fps == pytest.approx(w.plan.fps)
        assert (w.metadata.width, w.metadata.height) == (320, 240)
        vlmcap.check_frames(w.frames)


def test_decoding_opens_the_file_once(media: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    info = probe(media / "sample-01.mp4")
    plans = plan_media(info, WindowSettings(window_size=32, remainder_threshold=16))
    assert len(plans) > 1
    opened: list[Path] = []
    real_open = _decode._open

    def counting_open(path: Path) -> object:
        opened.append(path)
        return real_open(path)

    monkeypatch.setattr(_decode, "_open", counting_open)
    windows = list(iter_decoded(info, plans))
    assert len(windows) == len(plans)
    assert opened == [info.path], "one decode pass for all windows of a file"


def test_default_resize_is_28_aligned_within_the_budget(media: Path) -> None:
    (w,) = decode_windows(media / "sample-00.mp4")
    h, wd = int(w.frames.shape[2]), int(w.frames.shape[3])
    assert h % 28 == 0
    assert wd % 28 == 0
    assert h * wd <= _decode.DEFAULT_MAX_PIXELS
    assert (w.metadata.height, w.metadata.width) == (h, wd)
    (small,) = decode_windows(media / "sample-00.mp4", max_pixels=28 * 28 * 20)
    assert small.frames.shape[2] * small.frames.shape[3] <= 28 * 28 * 20
    assert small.frames.shape[2] % 28 == 0
    assert small.frames.shape[3] % 28 == 0
    assert small.frames.shape[3] > small.frames.shape[2], "landscape stays landscape"


@pytest.mark.parametrize("ext", ["png", "jpg", "webp"])
def test_an_image_is_a_two_frame_still_window(media: Path, ext: str) -> None:
    (w,) = decode_windows(media / f"still.{ext}", WindowSettings(sampling_fps=2.0), max_pixels=None)
    assert tuple(w.frames.shape) == (2, 3, 240, 320)
    assert torch.equal(w.frames[0], w.frames[1])
    assert (w.metadata.total_num_frames, w.metadata.fps, w.metadata.duration) == (2, 2.0, 1.0)
    assert (w.plan.start_s, w.plan.end_s) == (0.0, 0.0)


def test_frame_count_falls_back_to_demuxing(tmp_path: Path) -> None:
    """Matroska stores no frame count (stream.frames == 0): packets are counted instead."""
    path = write_video(tmp_path / "clip.mkv", moving_shapes(37, 48, 64), 25)
    with av.open(str(path)) as container:
        assert container.streams.video[0].frames == 0
    info = probe(path)
    assert info.total_frames == 37
    windows = decode_windows(path, WindowSettings(window_size=16, remainder_threshold=8))
    assert windows[-1].plan.indices[-1] == 36


@pytest.mark.parametrize(
    ("kind", "error", "words"),
    [
        ("corrupt", CorruptMediaError, "cannot open"),
        ("empty", EmptyMediaError, "0 bytes"),
        ("no_video", NoVideoStreamError, "no video stream"),
        ("no_frames", NoFramesError, "no frames"),
        ("unsupported", UnsupportedMediaError, "'.bin'"),
        ("too_short", MediaTooShortError, "3 frame(s)"),
        ("truncated", TruncatedMediaError, "promised 120"),
    ],
)
def test_each_broken_file_gives_its_typed_error(
    media: Path, kind: str, error: type[MediaError], words: str
) -> None:
    path = broken_media(media / "broken")[kind]
    with pytest.raises(error) as info:
        decode_windows(path)
    exc = info.value
    assert type(exc) is error
    assert exc.kind == kind
    assert exc.path == path
    assert str(path) in str(exc)
    assert words in exc.reason
    assert isinstance(exc, vlmcap.VlmcapError)
    assert isinstance(exc, ValueError)


def test_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(MediaNotFoundError, match="no such file") as info:
        probe(tmp_path / "nope.mp4")
    assert isinstance(info.value, FileNotFoundError)
    with pytest.raises(MediaNotFoundError, match="not a regular file"):
        probe(tmp_path)


def test_resolution_over_the_cap(media: Path) -> None:
    with pytest.raises(
        ResolutionTooLargeError, match=r"320x240 \(width x height\) is over the cap of 200"
    ):
        probe(media / "sample-00.mp4", max_side=200)
    info = probe(media / "sample-00.mp4", max_side=320)
    assert (info.width, info.height) == (320, 240)


def test_sizes_read_width_x_height_everywhere() -> None:
    """Every size error names width first, as the decoder and the sources do."""
    with pytest.raises(vlmcap.FrameContractError, match=r"640x1 \(width x height\)"):
        vlmcap.smart_resize(1, 640)  # height 1, width 640: the aspect ratio is too wide
    with pytest.raises(vlmcap.FrameContractError, match=r"0x480 \(width x height\)"):
        vlmcap.smart_resize(480, 0)


def test_four_frames_make_one_window(tmp_path: Path) -> None:
    path = write_video(tmp_path / "four.mp4", moving_shapes(4, 48, 64), 30)
    (w,) = decode_windows(path, max_pixels=None)
    assert w.plan.indices == (0, 1, 2, 3)
    assert w.frames.shape[0] == 4


def test_windows_before_a_truncation_are_delivered(media: Path) -> None:
    path = broken_media(media / "broken")["truncated"]
    info = probe(path)
    plans = plan_media(info, WindowSettings(window_size=16, remainder_threshold=8))
    got: list[DecodedWindow] = []
    with pytest.raises(TruncatedMediaError):
        got.extend(iter_decoded(info, plans))
    assert got, "the windows decoded before the cut are yielded, not thrown away"
    assert [w.index for w in got] == list(range(len(got)))
    assert len(got) < len(plans)


def test_a_decoder_that_stops_early_is_an_error_not_garbage(
    media: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The container promises more frames than the stream holds (no decode error on the way)."""
    monkeypatch.setattr(_decode, "_count_frames", lambda _path, _n: 60)
    promised = "stopped after 48 frames, the container promised 60"
    with pytest.raises(TruncatedMediaError, match=promised):
        decode_windows(media / "sample-00.mp4", WindowSettings(window_size=60))
