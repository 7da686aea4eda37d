"""The state folder, ``.rp-bts/`` under the project root: the one place that names its files.

Everything rp-bts keeps between runs lives here: the local tracker, the outbox of work not sent
yet, our record of what was filed, each run's folder (attachments, spilled output), the last
results and the report. Like ``.pytest_cache`` it ignores itself in git.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final, final

__all__ = ["FOLDER", "State"]

FOLDER: Final = ".rp-bts"
_RUN_ID: Final = re.compile(r"[A-Za-z0-9._-]{1,100}")
_GITIGNORE: Final = "# created by rp-bts: its state between runs, not for version control\n*\n"


@final
class State:
    """Paths under ``<root>/.rp-bts``; nothing is created until :meth:`ensure` or a writer."""

    __slots__ = ("folder", "root")

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.folder = self.root / FOLDER

    def __repr__(self) -> str:
        return f"State({str(self.root)!r})"

    @property
    def tracker_db(self) -> Path:
        """The embedded local tracker's default database."""
        return self.folder / "tracker.db"

    @property
    def outbox_db(self) -> Path:
        """Tracker work a run could not finish, replayed by ``rp-bts flush``."""
        return self.folder / "outbox.db"

    @property
    def outbox_dir(self) -> Path:
        """Files other kinds keep until sent (mails, Sauce Labs updates), one folder each."""
        return self.folder / "outbox"

    def outbox_of(self, name: str) -> Path:
        return self.outbox_dir / name

    @property
    def filed_db(self) -> Path:
        """Our own record of the issues we filed, for trackers whose search lags."""
        return self.folder / "filed.db"

    @property
    def history_db(self) -> Path:
        """Our record of runs: tests an open issue waits on, their passing streaks, recent
        outcomes (``on_pass``, flaky tests); pruned with the run folders."""
        return self.folder / "history.db"

    @property
    def known_db(self) -> Path:
        """Known issues: pulled by ``rp-bts sync``, and the issues runs linked."""
        return self.folder / "known.db"

    @property
    def sync_log(self) -> Path:
        """Every step of ``rp-bts sync``, one JSON object a line."""
        return self.folder / "sync.log"

    @property
    def runs(self) -> Path:
        return self.folder / "runs"

    def run(self, run_id: str) -> Path:
        """One run's folder: files tests attached, output spilled to disk, failure details.

        A run id comes from results files too, which are not trusted: it names a folder here
        and nowhere else."""
        if not _RUN_ID.fullmatch(run_id) or run_id.strip(".") == "":
            raise ValueError(f"not a run id: {run_id!r}")
        return self.runs / run_id

    @property
    def spool(self) -> Path:
        """Failure details written by the CLI (``process``, ``post``), which has no run folder."""
        return self.folder / "spool"

    @property
    def results(self) -> Path:
        return self.folder / "results.json"

    @property
    def report(self) -> Path:
        return self.folder / "report.html"

    @property
    def oauth_dir(self) -> Path:
        return self.folder / "oauth"

    def has_leftovers(self) -> bool:
        """Whether an earlier run left work to send (cheap: two stat calls)."""
        return self.outbox_db.exists() or self.outbox_dir.is_dir()

    def ensure(self) -> Path:
        """Create the folder with its own ``.gitignore``."""
        self.folder.mkdir(parents=True, exist_ok=True)
        ignore = self.folder / ".gitignore"
        if not ignore.exists():
            ignore.write_text(_GITIGNORE, encoding="utf-8")
        return self.folder
