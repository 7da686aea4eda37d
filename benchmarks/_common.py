"""What the benchmark scripts share; each runs as ``python benchmarks/NAME.py``, which puts this
folder first on ``sys.path``."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version


def package_version(dist: str) -> str:
    """The installed version of ``dist`` for a table's heading, ``?`` when it is not installed."""
    try:
        return version(dist)
    except PackageNotFoundError:
        return "?"


def rp_bts_version() -> str:
    return package_version("pytest-rp-bts")
