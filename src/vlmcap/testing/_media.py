"""Synthetic clips: moving coloured shapes, deterministic per seed (no files, no downloads)."""

import torch

from vlmcap._frames import ByteFrames


_COLOURS = ((230, 60, 50), (50, 120, 230), (240, 200, 40), (60, 190, 90), (240, 240, 240))


def synthetic_clip(
    num_frames: int = 8, height: int = 224, width: int = 224, *, seed: int = 0
) -> ByteFrames:
    """A ``(num_frames, 3, height, width)`` uint8 clip of moving shapes.

    A square and a disc move over a gradient background; different seeds give different
    colours, sizes and paths.
    """
    g = torch.Generator().manual_seed(seed)
    ys = torch.arange(height).view(height, 1).float()
    xs = torch.arange(width).view(1, width).float()
    bg = torch.stack(
        [
            (ys / height * 80).expand(height, width),
            (xs / width * 80).expand(height, width),
            torch.full((height, width), 40.0),
        ]
    )
    c1 = torch.tensor(_COLOURS[seed % len(_COLOURS)], dtype=torch.float32).view(3, 1, 1)
    c2 = torch.tensor(_COLOURS[(seed + 2) % len(_COLOURS)], dtype=torch.float32).view(3, 1, 1)
    side = max(4, int(min(height, width) * (0.15 + 0.1 * float(torch.rand(1, generator=g)))))
    radius = max(3, side // 2)
    vx, vy = (torch.rand(2, generator=g) * 2 - 1).tolist()
    frames = torch.empty(num_frames, 3, height, width)
    for t in range(num_frames):
        frame = bg.clone()
        frac = t / max(1, num_frames - 1)
        x0 = int((width - side) * frac)
        y0 = int((height - side) * (0.5 + 0.4 * vy * frac)) % max(1, height - side)
        frame[:, y0 : y0 + side, x0 : x0 + side] = c1
        cx = width / 2 + vx * width * 0.3 * (1 - 2 * frac)
        cy = height / 2 + height * 0.3 * (2 * frac - 1)
        disc = (xs - cx) ** 2 + (ys - cy) ** 2 <= radius**2
        frame = torch.where(disc, c2, frame)
        frames[t] = frame
    return frames.round().clamp(0, 255).to(torch.uint8)
