"""Sample media files for tests and demos: short clips of moving shapes, and broken files.

Everything is encoded locally with PyAV (no downloads) and is deterministic: the same call
writes the same bytes. Clips are H.264 (``libx264``, single-threaded for identical bytes) in
MP4, falling back to MPEG-4 Part 2 where this PyAV build has no ``libx264``.
"""

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch


WIDTH, HEIGHT = 320, 240
_DURATIONS_S = (2.0, 4.0, 6.0, 3.0, 5.0)
_RATES = (24, 30, 25, 30, 24)
_COLOURS = np.array(
    [(230, 60, 50), (50, 120, 230), (240, 200, 40), (60, 190, 90), (240, 240, 240)],
    dtype=np.uint8,
)


def moving_shapes(num_frames: int, height: int, width: int, *, seed: int = 0) -> torch.Tensor:
    """Make uint8 ``(T, 3, H, W)`` frames: a square crossing and a disc falling over a gradient.

    Vectorised (all frames at once); deterministic per ``seed``, which picks colours, sizes and
    paths.
    """
    rng = np.random.default_rng(seed)
    t = np.arange(num_frames, dtype=np.float64) / max(1, num_frames - 1)
    ys = np.arange(height, dtype=np.float64)[None, :, None]
    xs = np.arange(width, dtype=np.float64)[None, None, :]
    side = max(4, int(min(height, width) * rng.uniform(0.15, 0.3)))
    radius = max(3, side // 2)
    drift = rng.uniform(-1, 1)
    x0 = ((width - side) * t)[:, None, None]
    y0 = ((height - side) * (0.5 + 0.3 * drift * t))[:, None, None]
    square = (xs >= x0) & (xs < x0 + side) & (ys >= y0) & (ys < y0 + side)
    cx = (width / 2 + drift * width * 0.3 * (1 - 2 * t))[:, None, None]
    cy = (height * (0.2 + 0.6 * t))[:, None, None]
    disc = (xs - cx) ** 2 + (ys - cy) ** 2 <= radius**2
    background = np.stack(
        np.broadcast_arrays(ys[0] / height * 80, xs[0] / width * 80, np.full((1, 1), 40.0)),
        axis=-1,
    ).astype(np.uint8)
    frames = np.broadcast_to(background, (num_frames, height, width, 3)).copy()
    frames[square] = _COLOURS[seed % len(_COLOURS)]
    frames[disc] = _COLOURS[(seed + 2) % len(_COLOURS)]
    return torch.from_numpy(frames).permute(0, 3, 1, 2).contiguous()


_X264_OPTIONS = {
    "preset": "veryfast",
    "crf": "26",
    # x264 output varies from run to run with its default threading, even at one thread.
    "x264-params": "threads=1:lookahead-threads=1:sliced-threads=0:no-mbtree=1",
}
_BITEXACT = {"fflags": "+bitexact"}
"""Muxer option: no random ids or version strings (Matroska writes random UIDs otherwise)."""


def _av() -> Any:
    import av

    return av


def video_codec() -> str:
    av = _av()
    try:
        av.codec.Codec("libx264", "w")
    except av.codec.codec.UnknownCodecError:  # pragma: no cover - depends on the PyAV build
        return "mpeg4"
    return "libx264"


def _atomic_write(path: Path, write: Callable[[Path], object]) -> Path:
    """Call ``write`` on a temporary sibling of ``path``, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}-{os.getpid()}-{threading.get_ident()}{path.suffix}")
    try:
        write(tmp)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_video(
    path: Path | str,
    frames: torch.Tensor,
    fps: int,
    *,
    faststart: bool = False,
    audio_s: float = 0.0,
) -> Path:
    """Encode uint8 ``(T, 3, H, W)`` frames as an MP4/MKV video at ``fps`` (even ``H`` and ``W``).

    Args:
        path: the file to write (its extension picks the container).
        frames: the frames.
        fps: frames per second.
        faststart: put the MP4 index first (so a cut-off copy still promises every frame).
        audio_s: add this many seconds of silent AAC audio (0: no audio stream).
    """
    av = _av()
    video = frames.permute(0, 2, 3, 1).contiguous().numpy()
    codec = video_codec()
    options = {**_BITEXACT, "movflags": "faststart"} if faststart else _BITEXACT

    def write(tmp: Path) -> None:
        with av.open(str(tmp), mode="w", format=_format(path), options=options) as container:
            opts = _X264_OPTIONS if codec == "libx264" else {}
            stream = container.add_stream(codec, rate=fps, options=opts)
            stream.width, stream.height = int(video.shape[2]), int(video.shape[1])
            stream.pix_fmt = "yuv420p"
            stream.codec_context.thread_count = 1  # frame threads make x264 output vary
            for array in video:
                frame = av.VideoFrame.from_ndarray(array, format="rgb24")
                container.mux(stream.encode(frame))
            container.mux(stream.encode(None))
            if audio_s > 0:
                _mux_silence(container, audio_s)

    return _atomic_write(Path(path), write)


def _format(path: Path | str) -> str:
    return {".mkv": "matroska", ".webm": "webm", ".mov": "mov"}.get(Path(path).suffix, "mp4")


def _mux_silence(container: Any, seconds: float, rate: int = 16000) -> None:
    av = _av()
    stream = container.add_stream("aac", rate=rate)
    stream.layout = "mono"
    samples = np.zeros((1, int(rate * seconds)), dtype=np.float32)
    frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
    frame.sample_rate = rate
    container.mux(stream.encode(frame))
    container.mux(stream.encode(None))


def sample_videos(dest: Path | str, n: int = 3, *, seed: int = 0) -> list[Path]:
    """Write ``n`` short MP4 clips of moving coloured shapes into ``dest``; return their paths.

    Clip ``i`` is ``sample-{i:02d}.mp4``: 320x240, durations cycling 2, 4, 6, 3, 5 s at
    24, 30, 25, 30, 24 fps (48, 120, 150, 90 and 120 frames), content from
    :func:`moving_shapes` with seed ``seed + i``. Deterministic.
    """
    out = Path(dest)
    paths = []
    for i in range(n):
        fps = _RATES[i % len(_RATES)]
        num_frames = round(_DURATIONS_S[i % len(_DURATIONS_S)] * fps)
        clip = moving_shapes(num_frames, HEIGHT, WIDTH, seed=seed + i)
        paths.append(write_video(out / f"sample-{i:02d}.mp4", clip, fps))
    return paths


def sample_image(path: Path | str, *, seed: int = 0) -> Path:
    """Write a 320x240 still image (PNG, JPEG or WebP by the extension) of coloured shapes."""
    av = _av()
    frame = moving_shapes(2, HEIGHT, WIDTH, seed=seed)[0].permute(1, 2, 0).contiguous().numpy()
    p = Path(path)
    image = av.VideoFrame.from_ndarray(frame, format="rgb24").to_image()
    return _atomic_write(p, lambda tmp: image.save(tmp, format=_image_format(p)))


def _image_format(path: Path) -> str:
    return {".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}.get(path.suffix.lower(), "PNG")


def write_corrupt(path: Path | str, size: int = 4096) -> Path:
    """Write ``size`` deterministic random bytes (no container signature) to ``path``."""
    data = np.random.default_rng(1234).integers(0, 256, size, dtype=np.uint8).tobytes()
    return _atomic_write(Path(path), lambda tmp: tmp.write_bytes(data))


def write_empty(path: Path | str) -> Path:
    """Write a zero-byte file."""
    return _atomic_write(Path(path), lambda tmp: tmp.write_bytes(b""))


def write_audio_only(path: Path | str, seconds: float = 1.0) -> Path:
    """Write an MP4 with one silent AAC audio stream and no video stream."""
    av = _av()

    def write(tmp: Path) -> None:
        with av.open(str(tmp), mode="w", format="mp4", options=_BITEXACT) as container:
            _mux_silence(container, seconds)

    return _atomic_write(Path(path), write)


def write_no_frames(path: Path | str) -> Path:
    """Write a Matroska file that declares a video stream but holds only audio packets."""
    av = _av()

    def write(tmp: Path) -> None:
        with av.open(str(tmp), mode="w", format="matroska", options=_BITEXACT) as container:
            stream = container.add_stream("mpeg4", rate=25)
            stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
            _mux_silence(container, 1.0)

    return _atomic_write(Path(path), write)


def write_truncated(path: Path | str, keep: float = 0.5, *, seed: int = 0) -> Path:
    """Write a 4 s, 30 fps MP4 whose index promises 120 frames, cut to ``keep`` of its bytes."""
    p = Path(path)
    full = p.with_name(f".{p.stem}-full{p.suffix}")
    write_video(full, moving_shapes(120, HEIGHT, WIDTH, seed=seed), 30, faststart=True)
    data = full.read_bytes()
    full.unlink()
    return _atomic_write(p, lambda tmp: tmp.write_bytes(data[: int(len(data) * keep)]))


def broken_media(dest: Path | str) -> dict[str, Path]:
    """Write one file per way a media file can fail; keys are :attr:`MediaError.kind` values.

    ``corrupt`` (random bytes), ``empty`` (0 bytes), ``no_video`` (audio-only MP4),
    ``no_frames`` (a video stream without frames), ``unsupported`` (a ``.bin`` file),
    ``too_short`` (a 3-frame MP4), ``truncated`` (an MP4 cut in half).
    """
    d = Path(dest)
    return {
        "corrupt": write_corrupt(d / "corrupt.mp4"),
        "empty": write_empty(d / "empty.mp4"),
        "no_video": write_audio_only(d / "audio_only.mp4"),
        "no_frames": write_no_frames(d / "no_frames.mkv"),
        "unsupported": _atomic_write(d / "notes.bin", lambda tmp: tmp.write_bytes(b"not media")),
        "too_short": write_video(d / "too_short.mp4", moving_shapes(3, 64, 64, seed=7), 30),
        "truncated": write_truncated(d / "truncated.mp4"),
    }
