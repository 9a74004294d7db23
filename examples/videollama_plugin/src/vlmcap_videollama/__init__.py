"""A third-party vlmcap plugin package: the seed guide's hypothetical VideoLLaMA."""

from vlmcap_videollama.plugin import VllmVideoLLaMA


__all__ = ["VllmVideoLLaMA"]
