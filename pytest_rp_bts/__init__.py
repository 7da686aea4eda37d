"""pytest plugin of pytest-rp-bts: options, markers, the ``rp_bts`` fixture and result capture."""

from __future__ import annotations

from rp_bts_agent import __version__

__all__ = ["__version__"]
