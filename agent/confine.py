"""Results files from elsewhere are untrusted (issue 11, point 8).

``rp-bts process``, ``post``, ``link`` and ``notify`` read results files that CI shard jobs
wrote, jobs that do not hold the filing job's secrets. What such a file names on disk is only
taken from its own run folder: an attachment or a spilled log elsewhere (``/proc/self/environ``,
``.env``) is left out with one line, and a run id that is not a plain name is refused.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from .model import ResultsFormatError, RunResults
from .state import FOLDER, State

__all__ = ["confine"]


def run_folders(run: RunResults, source: Path, root: Path) -> list[Path]:
    """Where a results file's files may be: its run's folder under the project's ``.rp-bts``,
    and under the ``.rp-bts`` the file itself lies in (a shard's folder copied whole)."""
    try:
        folders = [State(root).run(run.launch.run_id)]
        if source.resolve().parent.name == FOLDER:
            folders.append(State(source.resolve().parent.parent).run(run.launch.run_id))
    except ValueError as exc:  # a run id that would be a path
        raise ResultsFormatError(f"{source}: {exc}") from None
    return [folder.resolve() for folder in folders]


def confine(run: RunResults, source: Path, root: Path) -> tuple[RunResults, list[str]]:
    """The run with only the files inside its run folder, and a line for each left out."""
    folders = run_folders(run, source, root)
    lines: list[str] = []
    results = []
    resolved: dict[Path, Path] = {}
    for result in run.results:
        kept = []
        for item in result.attachments:
            where = _resolve(Path(item.path), resolved)
            if any(where.is_relative_to(folder) for folder in folders):
                kept.append(item)
            else:
                lines.append(
                    f"rp-bts: {source}: {result.nodeid}: attachment {item.name!r} is outside"
                    f" the run's folder ({folders[0]}); left out"
                )
        if len(kept) != len(result.attachments):
            result = dataclasses.replace(result, attachments=tuple(kept))
        results.append(result)
    return RunResults(run.launch, tuple(results)), lines


def _resolve(path: Path, folders: dict[Path, Path]) -> Path:
    """``path.resolve()``, with each folder resolved once for all the files in it (a shard's
    1,000 attachments lie in a few folders: resolving each path whole took a tenth of the
    filing benchmark); a file that is a link itself is resolved whole, as are ``.`` and
    ``..``."""
    if path.name in ("", ".", "..") or path.is_symlink():
        return path.resolve()
    parent = path.parent
    folder = folders.get(parent)
    if folder is None:
        folder = folders[parent] = parent.resolve()
    return folder / path.name
