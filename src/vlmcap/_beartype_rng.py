"""beartype draws from a generator of its own, never from the global ``random`` module.

beartype checks one randomly chosen item of a container per call (its O(1) strategy) and draws
that choice from ``random.getrandbits``: every checked call would advance the global generator a
user may have seeded for their own work, and Hypothesis reports any use of it inside a strategy
(the conformance suite's strategies build vlmcap records). ``vlmcap`` imports this module before
anything else, so every beartype wrapper made after it (vlmcap's, and in vlmcap's own test suite
the import hook's) draws from a private generator. Where beartype has no such module-level name
(other versions than the pinned one), nothing changes.
"""

import importlib
import random


RNG = random.Random(0x5EED)
"""beartype's generator (which container item a call checks)."""


def _install() -> bool:
    """Point beartype's code generator at :data:`RNG`; False where it has no such hook."""
    try:
        codemain = importlib.import_module("beartype._check.code.codemain")
    except ImportError:  # pragma: no cover - another beartype layout: leave it as it is
        return False
    if not callable(getattr(codemain, "getrandbits", None)):  # pragma: no cover - as above
        return False
    vars(codemain)["getrandbits"] = RNG.getrandbits  # read when each wrapper is made
    return True


INSTALLED = _install()
