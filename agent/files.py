"""Writing files: atomically (a reader never sees half of one), and long captured output
spilled to disk so that no process after the test ever holds a whole log in memory."""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import closing, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from .model import Attachment

log = logging.getLogger("rp_bts_agent")

#: a captured text longer than this (characters) is written in full to a file in the run folder;
#: most failures print less, and theirs stays whole on the result with no file made.
SPILL_LIMIT: Final = 64 * 1024
#: what a spilled text keeps on the result: enough for the description's log tail and the report,
#: while 1,000 such failures keep the results JSON (and the agent reading it) near 16 MB.
SPILL_TAIL: Final = 16 * 1024
#: the attachment name of each spilled text, by the result field it comes from
SPILL_NAMES: Final = {
    "longrepr": "traceback.txt",
    "log": "log.txt",
    "stdout": "stdout.txt",
    "stderr": "stderr.txt",
}


def write_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_bytes_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def prune_runs(runs: Path, keep: int, needed: Collection[str] = ()) -> None:
    """Keep the newest ``keep`` run folders (attachments and spooled details of earlier runs),
    and those ``needed`` (run ids the outbox still holds work of: their replay attaches the
    files, whatever the clock says).

    The trackers keep their own copies; these serve only ``rp-bts post`` on a recent results file.
    """
    if not runs.is_dir():
        return
    folders = sorted((p for p in runs.iterdir() if p.is_dir()), key=lambda p: p.name)
    for old in folders[: max(len(folders) - keep, 0)]:
        if old.name not in needed:
            shutil.rmtree(old, ignore_errors=True)


def _keep(field: str, text: str, attached: bool) -> str:
    """A traceback keeps its start and its end (where it failed); output keeps its end."""
    where = "; the whole text is attached" if attached else ""
    cut = f"[... {len(text) - SPILL_TAIL} characters cut{where} ...]"
    if field != "longrepr":
        return f"{cut}\n{text[-SPILL_TAIL:]}"
    half = SPILL_TAIL // 2
    return f"{text[:half]}\n{cut}\n{text[-half:]}"


def spill(
    texts: Mapping[str, str],
    directory: Path | None,
    redact: Callable[[str], str] | None = None,
) -> tuple[dict[str, str], list[Attachment]]:
    """Captured texts (``longrepr``, ``log``, ``stdout``, ``stderr``) as a result carries them.

    A text over :data:`SPILL_LIMIT` is written whole (through ``redact``: the file goes to
    trackers as it is) under ``directory`` and keeps only its tail inline, plus an
    :class:`Attachment` naming the file. Without a directory (nothing will file the run) it is
    only cut.
    """
    inline: dict[str, str] = {}
    files: list[Attachment] = []
    for field, text in texts.items():
        if len(text) <= SPILL_LIMIT:
            inline[field] = text
            continue
        written = None if directory is None else _write(directory, field, text, redact)
        inline[field] = _keep(field, text, written is not None)
        if written is not None:
            files.append(written)
    return inline, files


def _write(
    directory: Path, field: str, text: str, redact: Callable[[str], str] | None
) -> Attachment | None:
    """None when the disk refuses (full, read-only): the result keeps the tail, as without."""
    name = SPILL_NAMES.get(field, f"{field}.txt")
    path = directory / f"{os.urandom(6).hex()}-{name}"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with open(path, "w", encoding="utf-8", errors="replace", newline="") as out:
            out.write(redact(text) if redact is not None else text)
        size = path.stat().st_size
    except OSError as exc:
        log.warning("rp-bts: %s not spilled to %s: %s", field, directory, exc)
        return None
    from .model import Attachment  # with the first long output

    return Attachment(name, str(path), "text/plain", size, spilled=field)


@contextmanager
def sqlite_store(path: Path, schema: str, *, read_only: bool) -> Iterator[sqlite3.Connection]:
    """A connection to one of rp-bts' own SQLite records (filed issues, known issues, runs), in
    a transaction; ``read_only`` (dry-run) never creates or changes the file."""
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    uri = f"file:{path}?mode={'ro' if read_only else 'rwc'}"
    with closing(sqlite3.connect(uri, uri=True, timeout=30)) as conn:
        if not read_only:
            conn.executescript(schema)
        with conn:
            yield conn
