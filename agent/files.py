"""Writing files so that a reader never sees half of one (a crash leaves the old file)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def prune_runs(runs: Path, keep: int) -> None:
    """Keep the newest ``keep`` run folders (attachments and spooled details of earlier runs).

    The trackers keep their own copies; these serve only ``rp-bts post`` on a recent results file.
    """
    if not runs.is_dir():
        return
    folders = sorted((p for p in runs.iterdir() if p.is_dir()), key=lambda p: p.name)
    for old in folders[: max(len(folders) - keep, 0)]:
        shutil.rmtree(old, ignore_errors=True)
