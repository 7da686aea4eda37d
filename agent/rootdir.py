"""Find the project root the way pytest finds its rootdir, and the config files that live there.

The CLI has no pytest to ask, so it repeats pytest's search; then ``rp-bts`` run from a
subdirectory edits the same ``rp-bts.toml`` that ``pytest --rp-bts`` reads.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

__all__ = ["default_global_file", "find_root", "project_config_file"]

GLOBAL_ENV: Final = "RP_BTS_GLOBAL_CONFIG"
PROJECT_FILE: Final = "rp-bts.toml"


def _toml(path: Path) -> dict[str, Any]:
    """A TOML file's content, or nothing: a broken file is reported by the loader, not here."""
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError, RecursionError):
        return {}


def _has_section(path: Path, header: str) -> bool:
    """Whether an INI file has ``[header]``; read as text so a broken file does not stop us."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return False
    return any(line.strip() == f"[{header}]" for line in lines)


def _pyproject_marks_root(path: Path) -> bool:
    tool = _toml(path).get("tool", {})
    return isinstance(tool, dict) and ("rp_bts" in tool or "pytest" in tool)


#: file name -> whether that file makes its directory the root; checked in this order per directory.
_MARKERS: Final[tuple[tuple[str, Callable[[Path], bool]], ...]] = (
    (PROJECT_FILE, Path.is_file),
    ("pytest.ini", Path.is_file),
    (".pytest.ini", Path.is_file),
    ("pyproject.toml", _pyproject_marks_root),
    ("tox.ini", lambda p: _has_section(p, "pytest")),
    ("setup.cfg", lambda p: _has_section(p, "tool:pytest")),
)


def find_root(start: Path, inifile: Path | None = None) -> Path:
    """The nearest ancestor of ``start`` holding a pytest or rp-bts config file.

    Falls back, like pytest, to the first ancestor with ``setup.py`` and then to ``start``.
    """
    if inifile is not None:
        return inifile.resolve().parent
    start = start.resolve()
    if start.is_file():
        start = start.parent
    ancestors = (start, *start.parents)
    for directory in ancestors:
        for name, marks in _MARKERS:
            candidate = directory / name
            if candidate.is_file() and marks(candidate):
                return directory
    for directory in ancestors:
        if (directory / "setup.py").is_file():
            return directory
    return start


def project_config_file(root: Path) -> Path | None:
    """``rp-bts.toml`` at the root, else ``pyproject.toml`` when it has ``[tool.rp_bts]``."""
    own = root / PROJECT_FILE
    if own.is_file():
        return own
    pyproject = root / "pyproject.toml"
    tool = _toml(pyproject).get("tool", {}) if pyproject.is_file() else {}
    if isinstance(tool, dict) and "rp_bts" in tool:
        return pyproject
    return None


def default_global_file(env: Mapping[str, str] | None = None) -> Path:
    """``$RP_BTS_GLOBAL_CONFIG``, else ``config.toml`` in the user's config directory."""
    env = os.environ if env is None else env
    override = env.get(GLOBAL_ENV)
    if override:
        return Path(override).expanduser()
    import platformdirs  # only when the default is needed: it costs every run's start-up

    return Path(platformdirs.user_config_dir("rp-bts")) / "config.toml"


def default_env_file(root: Path) -> Path | None:
    """``.env`` beside the rootdir, when there is one (python-dotenv's usual place)."""
    candidate = root / ".env"
    return candidate if candidate.is_file() else None
