"""``rp-bts issues list|show|close``: look at the local tracker without a server.

Reading never creates the database (``list`` on a fresh checkout just says there is nothing
yet); only ``close`` writes. Text in issues came from tests, so control characters are escaped
before they reach the terminal.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from rp_bts_agent._cli_common import load
from rp_bts_agent.state import State
from rp_bts_agent.tracker import TrackerError

from . import LocalSettings
from .tracker import IssueDetails, LocalIssue, LocalTracker, UnknownIssue

__all__ = ["add_parser", "tracker_path"]

#: exit status for a key that is not in the database (a usage error, like argparse's).
EXIT_UNKNOWN: Final = 2
EXIT_ERROR: Final = 1
_CONTROL: Final = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F) if chr(c) not in "\n\t"}


def tracker_path(args: argparse.Namespace) -> Path:
    """The database to read: ``--db``, else the configured local tracker, else the default one."""
    db = getattr(args, "db", None)
    if db:
        return Path(db).expanduser().absolute()
    config = load(args)
    wanted = getattr(args, "integration", None)
    for integration in config.of_kind("local"):
        path = integration.settings_as(LocalSettings).path
        if (wanted is None or integration.name == wanted) and path:
            return Path(path)
    return State(config.root).tracker_db


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``issues`` and its sub-commands; each sets ``func(args) -> int``."""
    db_help = "the local tracker database (default: <root>/.rp-bts/tracker.db)"
    issues = subparsers.add_parser(
        "issues",
        help="list, show and close issues of the local tracker",
        description="Issues filed in the built-in local tracker.",
    )
    issues.add_argument("--db", metavar="PATH", help=db_help)
    commands = issues.add_subparsers(dest="issues_command", metavar="COMMAND", required=True)

    def leaf(name: str, text: str) -> argparse.ArgumentParser:
        parser = commands.add_parser(name, help=text, description=text)
        # Also accepted after the sub-command; SUPPRESS keeps ``issues --db X list`` working.
        parser.add_argument("--db", metavar="PATH", default=argparse.SUPPRESS, help=db_help)
        return parser

    list_parser = leaf("list", "list issues")
    list_parser.add_argument("--json", action="store_true", help="print a JSON array")
    list_parser.add_argument(
        "--status",
        choices=("open", "closed", "all"),
        default="open",
        help="which issues (default: open)",
    )
    list_parser.add_argument("--integration", metavar="NAME", help="only issues filed by NAME")
    list_parser.set_defaults(func=run_list)

    show_parser = leaf("show", "show one issue with its comments and attachments")
    show_parser.add_argument("key", metavar="KEY", help="issue key (LOCAL-3) or its URL")
    show_parser.add_argument("--json", action="store_true", help="print a JSON object")
    show_parser.set_defaults(func=run_show)

    close_parser = leaf("close", "close an issue (its next failure files anew or reopens it)")
    close_parser.add_argument("key", metavar="KEY", help="issue key (LOCAL-3) or its URL")
    close_parser.set_defaults(func=run_close)


def _clean(text: str) -> str:
    """Escape control characters (ANSI escapes included) that a test may have put in its text."""
    return text.translate(_CONTROL)


def _line(text: str) -> str:
    return _clean(text.replace("\r\n", "\n").replace("\n", " ").replace("\t", " "))


def _fail(message: str, status: int) -> int:
    print(f"rp-bts: {message}", file=sys.stderr)
    return status


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns; the last one is not padded, so long summaries don't add blanks."""
    widths = [max(len(row[i]) for row in (headers, *rows)) for i in range(len(headers) - 1)]
    lines = []
    for row in (headers, *rows):
        cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True)]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    return "\n".join(lines)


def run_list(args: argparse.Namespace) -> int:
    """``issues list``: a table, or a JSON array with ``--json``."""
    path = tracker_path(args)
    status: str = getattr(args, "status", "open")
    as_json: bool = getattr(args, "json", False)
    if not path.is_file():
        if as_json:
            print("[]")
        else:
            print(f"no local issues yet ({path})")
        return 0
    try:
        with LocalTracker(path, read_only=True) as tracker:
            issues = tracker.list_issues(status, integration=getattr(args, "integration", None))
    except TrackerError as exc:
        return _fail(str(exc), EXIT_ERROR)
    if as_json:
        print(json.dumps([issue.to_json() for issue in issues], indent=1, ensure_ascii=False))
        return 0
    if not issues:
        which = "" if status == "all" else f"{status} "
        print(f"no {which}local issues ({path})")
        return 0
    print(_table(("KEY", "STATUS", "COMMENTS", "UPDATED", "INTEGRATION", "SUMMARY"), _rows(issues)))
    return 0


def _rows(issues: Sequence[LocalIssue]) -> list[tuple[str, ...]]:
    return [
        (
            issue.key,
            issue.status,
            str(issue.comments),
            issue.updated,
            _line(issue.integration),
            _line(issue.summary),
        )
        for issue in issues
    ]


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KiB"
    return f"{n / (1024 * 1024):.1f} MiB"


def _human(details: IssueDetails) -> str:
    issue = details.issue
    out = [
        f"{issue.key}  {_line(issue.summary)}",
        f"status:      {issue.status}",
        f"integration: {_line(issue.integration)}",
    ]
    if issue.issue_type:
        out.append(f"type:        {_line(issue.issue_type)}")
    if issue.labels:
        out.append(f"labels:      {_line(', '.join(issue.labels))}")
    if issue.relates_to:
        out.append(f"relates to:  {_line(issue.relates_to)}")
    out += [
        f"fingerprint: {_line(issue.fingerprint)}",
        f"created:     {issue.created}",
        f"updated:     {issue.updated}",
        f"url:         {_line(issue.url)}",
        "",
        _clean(issue.description.rstrip("\n")),
    ]
    out += ["", f"comments ({len(details.comments)}):"]
    for comment in details.comments:
        out.append(f"--- {comment.created}  run {_line(comment.run_id)}")
        out.append(_clean(comment.body.rstrip("\n")))
    out += ["", f"attachments ({len(details.attachments)}):"]
    for attachment in details.attachments:
        out.append(
            f"  {_line(attachment.name)}  ({_size(attachment.size)}, {_line(attachment.mime)})"
            f"  {_line(attachment.path)}"
        )
    return "\n".join(out)


def run_show(args: argparse.Namespace) -> int:
    """``issues show KEY``: the issue, its comments and attachments."""
    path = tracker_path(args)
    try:
        with LocalTracker(path, read_only=True) as tracker:
            details = tracker.show(args.key)
    except UnknownIssue as exc:
        return _fail(str(exc), EXIT_UNKNOWN)
    except TrackerError as exc:
        return _fail(str(exc), EXIT_ERROR)
    if getattr(args, "json", False):
        print(json.dumps(details.to_json(), indent=1, ensure_ascii=False))
    else:
        print(_human(details))
    return 0


def run_close(args: argparse.Namespace) -> int:
    """``issues close KEY``: mark it Closed; closing a closed issue is not an error."""
    path = tracker_path(args)
    try:
        # Read-only first: a typo in the path must not leave an empty database behind.
        with LocalTracker(path, read_only=True) as reader:
            before = reader.get(args.key)
        with LocalTracker(path) as tracker:
            issue = tracker.close_issue(before.key)
    except UnknownIssue as exc:
        return _fail(str(exc), EXIT_UNKNOWN)
    except TrackerError as exc:
        return _fail(str(exc), EXIT_ERROR)
    if before.closed:
        print(f"{issue.key} was already closed")
    else:
        print(f"closed {issue.key}")
    return 0
