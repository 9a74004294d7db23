"""Tools for testing vlmcap and plugins: tiny checkpoints and synthetic clips."""

from vlmcap.testing._media import synthetic_clip as synthetic_clip
from vlmcap.testing._tiny import tiny_checkpoint as tiny_checkpoint
from vlmcap.testing._tiny import tiny_variants as tiny_variants


__all__ = ["synthetic_clip", "tiny_checkpoint", "tiny_variants"]
