"""Make ``contracts`` importable as a package (its meta-tests import the reference plugins)."""

import sys
from pathlib import Path


_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)
