"""Tools for plugin authors and tests: the conformance suite, tiny checkpoints, sample media.

- Conformance (contracts/README.md): :func:`check_plugin`, :func:`plugin_checks`,
  :func:`parametrize_with_checks`, :class:`ConformanceReport`. Hypothesis strategies live in
  :mod:`vlmcap.testing.strategies` (needs the ``testing`` extra).
- Models without downloads: :func:`tiny_checkpoint` (vlmcap's recipes),
  :func:`tiny_checkpoint_like` (any transformers architecture, from its config and processor).
- Media: :func:`synthetic_clip` (a tensor), :func:`sample_videos`, :func:`sample_image`,
  :func:`broken_media` (files).
- Fault injection: :class:`FakeEngine`.
"""

from vlmcap.testing._checks import (
    Check as Check,
    check_plugin as check_plugin,
    load_plugin as load_plugin,
    parametrize_with_checks as parametrize_with_checks,
    plugin_checks as plugin_checks,
)
from vlmcap.testing._contracts import CONTRACTS as CONTRACTS, Contract as Contract
from vlmcap.testing._fake import FakeEngine as FakeEngine
from vlmcap.testing._media import synthetic_clip as synthetic_clip
from vlmcap.testing._report import (
    CheckSkipped as CheckSkipped,
    ConformanceError as ConformanceError,
    ConformanceReport as ConformanceReport,
    ContractFailure as ContractFailure,
    ContractViolation as ContractViolation,
    SkippedCheck as SkippedCheck,
)
from vlmcap.testing._samples import (
    broken_media as broken_media,
    moving_shapes as moving_shapes,
    sample_image as sample_image,
    sample_videos as sample_videos,
    write_video as write_video,
)
from vlmcap.testing._tiny import tiny_checkpoint as tiny_checkpoint, tiny_variants as tiny_variants
from vlmcap.testing._tiny_like import tiny_checkpoint_like as tiny_checkpoint_like


__all__ = [
    "CONTRACTS",
    "Check",
    "CheckSkipped",
    "ConformanceError",
    "ConformanceReport",
    "Contract",
    "ContractFailure",
    "ContractViolation",
    "FakeEngine",
    "SkippedCheck",
    "broken_media",
    "check_plugin",
    "load_plugin",
    "moving_shapes",
    "parametrize_with_checks",
    "plugin_checks",
    "sample_image",
    "sample_videos",
    "synthetic_clip",
    "tiny_checkpoint",
    "tiny_checkpoint_like",
    "tiny_variants",
    "write_video",
]
