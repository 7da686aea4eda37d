"""What every ``rp-bts`` command shares: finding the project root and loading its config."""

from __future__ import annotations

import argparse
from pathlib import Path

from .config import load_config
from .config_types import Config
from .rootdir import default_env_file, find_root


def project_root(args: argparse.Namespace) -> Path:
    """``--root``, else found from the current directory the way pytest finds its rootdir."""
    root: Path | None = getattr(args, "root", None)
    return root.resolve() if root is not None else find_root(Path.cwd())


def load(args: argparse.Namespace, *, fill: bool = True) -> Config:
    """The project's config; ``fill=False`` leaves ``${VAR}`` values as references."""
    root = project_root(args)
    return load_config(
        root,
        project_file=getattr(args, "config", None),
        global_file=getattr(args, "global_config", None),
        env_file=getattr(args, "env_file", None) or default_env_file(root),
        fill=fill,
    )
