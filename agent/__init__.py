"""The rp-bts reporting agent: configuration, fingerprints, trackers, notifications and CLI.

It never imports pytest, so ``rp-bts process`` runs anywhere the results JSON is.
"""

from __future__ import annotations

#: the distribution's version (pyproject reads it from here; no metadata lookup at import time).
__version__ = "0.1.0"

__all__ = ["__version__"]
