"""The rp-bts reporting agent: configuration, fingerprints, trackers, notifications and CLI.

It never imports pytest, so ``rp-bts process`` runs anywhere the results JSON is.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("pytest-rp-bts")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"

__all__ = ["__version__"]
