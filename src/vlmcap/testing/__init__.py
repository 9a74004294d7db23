"""Tools for testing vlmcap and plugins: tiny checkpoints (more in later releases)."""

from vlmcap.testing._tiny import tiny_checkpoint as tiny_checkpoint, tiny_variants as tiny_variants


__all__ = ["tiny_checkpoint", "tiny_variants"]
