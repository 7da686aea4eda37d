"""What an issue or a comment says about a group of failures that share a fingerprint.

Content stays structured (:class:`Body` sections); each tracker renders and escapes it for its own
format, so a test's output can never inject markup into any of them.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO, Final

from .config_types import Integration
from .model import Launch, TestResult
from .tracker import AttachmentFile, Body, CommentDraft, IssueDraft, Section

SUMMARY_LIMIT: Final = 255
#: how much of a traceback goes into the description; the whole text goes as an attachment.
TRACEBACK_LIMIT: Final = 20_000
#: tests named in an issue or comment; all of them are in its affected-tests.txt
TESTS_SHOWN: Final = 10
#: why a group's tests share an issue, by the rule that grouped them (``grouped_by``)
_WHY: Final = {
    "cause": "raised at the same place in the code under test",
    "fixture": "the same shared fixture failed",
    "collection": "the test module could not be collected",
    "hook": "the same fingerprint from an rp_bts_fingerprint hook",
}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
#: the parts of failure-details.txt: (heading, result field)
_DETAILS: Final = (
    ("traceback", "longrepr"),
    ("log", "log"),
    ("stdout", "stdout"),
    ("stderr", "stderr"),
)


def one_line(text: str, limit: int) -> str:
    """Collapse control characters (CR/LF among them) so a value cannot break a header or title."""
    flat = _CONTROL.sub(" ", text).strip()
    return flat if len(flat) <= limit else flat[: limit - 1] + "\u2026"


def test_name(nodeid: str) -> str:
    """``path/test_x.py::Class::test_a[1]`` -> ``Class::test_a``: short, yet unambiguous enough."""
    name = nodeid.split("::", 1)[-1]
    return name.split("[", 1)[0]


def failure_line(result: TestResult) -> str:
    """``ValueError: boom``: the exception and the first line of its message."""
    message = result.message.strip().splitlines()[0] if result.message.strip() else ""
    return f"{result.exc_type}: {message}" if message else result.exc_type or result.outcome


def summary(results: Sequence[TestResult], storm: str = "") -> str:
    """The issue's title: the test and its failure; a group by cause counts its tests, a
    collection error names its module, the storm guard says the run is broken."""
    first = results[0]
    what = failure_line(first)
    if storm or first.grouped_by == "storm":  # a replay from the outbox knows no reason
        title = f"Run broken: {storm or f'{len(results)} tests failed'}"
    elif first.grouped_by == "collection":
        title = f"Collection error in {first.nodeid}: {what}"
    elif len(results) > 1 and first.grouped_by in ("cause", "fixture"):
        title = f"{what} ({len(results)} tests)"
    else:
        title = f"{test_name(first.nodeid)}: {what}"
    return one_line(title, SUMMARY_LIMIT)


def _tail(text: str, lines: int) -> str:
    return "\n".join(text.splitlines()[-lines:])


def _clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}\n... [{len(text) - limit} characters cut] ...\n{text[-half:]}"


def _sections(
    results: Sequence[TestResult],
    launch: Launch,
    include: Sequence[str],
    *,
    head: str,
    log_lines: int,
) -> list[Section]:
    first = results[0]
    tests = "\n".join(_test_line(r, first) for r in results[:TESTS_SHOWN])
    if len(results) > TESTS_SHOWN:
        tests += f"\n... and {len(results) - TESTS_SHOWN} more (all in {TESTS_FILE})"
    attrs = ", ".join(str(a) for a in launch.attributes) or "none"
    env = "\n".join(f"{k}: {v}" for k, v in sorted(launch.environment.items()))
    sections = [
        Section("", head),
        Section(f"Tests ({len(results)})", tests),
        Section("Launch", f"{launch.name} (run {launch.run_id}); attributes: {attrs}"),
    ]
    if env:
        sections.append(Section("Environment", env))
    if "comments" in include and first.description:
        sections.append(Section("Description", first.description))
    sections.append(
        Section("Failure", _clip(first.longrepr or first.message, TRACEBACK_LIMIT), True)
    )
    for result in results:  # pytest's other errors of these tests (teardown after a failure)
        for also in result.also_failed:
            where = f" of {result.nodeid}" if len(results) > 1 else ""
            text = also.longrepr or f"{also.exc_type}: {also.message}"
            sections.append(
                Section(f"Error in {also.phase}{where}", _clip(text, TRACEBACK_LIMIT), True)
            )
    if "logs" in include:
        log = _tail(first.log or first.stderr or first.stdout, log_lines)
        if log and log_lines > 0:
            sections.append(Section(f"Log (last {log_lines} lines)", log, True))
    links = [f"{r.nodeid}: {link.title}: {link.url}" for r in results for link in r.links]
    if links:
        sections.append(Section("Links", "\n".join(links)))
    sections.append(Section("Fingerprint", first.fingerprint))
    return sections


TESTS_FILE: Final = "affected-tests.txt"


def _test_line(result: TestResult, first: TestResult) -> str:
    """One test of the group, a teardown error after its failure, its attributes
    (``rp_attributes``, ``rp_bts.attribute()``, SLID: where people look for them), and its own
    failure where it differs from the first's (a storm)."""
    errors = "".join(f"; {f.phase} error" for f in result.also_failed)
    line = f"{result.nodeid} ({result.outcome}, {result.phase}{errors})"
    if result.flaky:
        line += " flaky"
    if result.attributes:
        line += "; attributes: " + ", ".join(str(a) for a in result.attributes)
    what = failure_line(result)
    return line if what == failure_line(first) else f"{line}: {one_line(what, 200)}"


def group_head(results: Sequence[TestResult], launch: Launch, storm: str, *, again: bool) -> str:
    """The first line of an issue or comment: how many tests, and why they share it."""
    first = results[0]
    if storm or first.grouped_by == "storm":
        storm = storm or f"{len(results)} tests failed"
        return (
            f"The run is broken (the storm guard fired): {storm}. One issue for the run instead"
            f" of one per failure; each test's failure is in {TESTS_FILE}."
        )
    why = _WHY.get(first.grouped_by, "the same fingerprint")
    if again:
        return (
            f"Failed again in launch '{launch.name}' (run {launch.run_id}):"
            f" {len(results)} test(s), {why}."
        )
    return f"{len(results)} test(s) failed in launch '{launch.name}': {why}."


def _tests_attachment(
    results: Sequence[TestResult], spool: Path | None, storm: str, name: str
) -> tuple[AttachmentFile, ...]:
    """affected-tests.txt: every test of the group with its failure and traceback, where the
    body names only the first ones or the storm guard made the group."""
    swept = storm or results[0].grouped_by == "storm"
    if spool is None or (len(results) <= TESTS_SHOWN and not swept):
        return ()
    spool.mkdir(parents=True, exist_ok=True)
    path = spool / f"{name or 'group'}-tests.txt"
    with open(path, "w", encoding="utf-8", errors="replace") as out:
        out.write(f"{len(results)} test(s)\n")
        for result in results:
            out.write(f"\n----- {result.nodeid} ({result.outcome}, {result.phase}) -----\n")
            out.write(f"{failure_line(result)}\n")
            if result.longrepr:
                out.write(f"\n{_clip(result.longrepr, TRACEBACK_LIMIT)}\n")
    return (AttachmentFile(TESTS_FILE, str(path), "text/plain"),)


def _copy_whole(path: str, out: BinaryIO) -> bool:
    """A spilled text, copied from its file in chunks; False when the file is gone (pruned)."""
    try:
        source = open(path, "rb")  # noqa: SIM115 - closed below; only opening may fall back
    except OSError:
        return False
    with source:
        shutil.copyfileobj(source, out)
    return True


def _write_details(result: TestResult, spool: Path) -> Path | None:
    """Traceback, log, stdout and stderr in one file, written piece by piece: a spilled text is
    copied from its file, so a 100 MB log never sits in memory. None when there is nothing."""
    whole = {a.spilled: a.path for a in result.attachments if a.spilled}
    pieces = [(title, getattr(result, name), whole.get(name)) for title, name in _DETAILS]
    pieces = [piece for piece in pieces if piece[1] or piece[2]]
    if not pieces:
        return None
    spool.mkdir(parents=True, exist_ok=True)
    # named from a hash: a fingerprint is data (a hook's, a results file's), never a path
    digest = hashlib.sha256(result.fingerprint.encode("utf-8", "surrogatepass")).hexdigest()
    path = spool / f"failure-{digest[:20]}.txt"
    with open(path, "wb") as out:
        for number, (title, inline, spilled) in enumerate(pieces):
            out.write(f"{chr(10) * 2 if number else ''}----- {title} -----\n".encode())
            if spilled is None or not _copy_whole(spilled, out):
                out.write(inline.encode("utf-8", errors="replace"))
    return path


def _attachments(
    results: Sequence[TestResult], include: Sequence[str], spool: Path | None, storm: str = ""
) -> tuple[AttachmentFile, ...]:
    """The tests' own files (``attachments``), failure-details.txt (``logs``), which holds
    the first result's spilled texts whole (the spilled files are not attached twice), and
    affected-tests.txt where the body names only the first tests or the storm guard fired."""
    files: list[AttachmentFile] = []
    if "attachments" in include:
        for result in results:
            files += [
                AttachmentFile(a.name, a.path, a.mime) for a in result.attachments if not a.spilled
            ]
    if "logs" in include and spool is not None:
        path = _write_details(results[0], spool)
        if path is not None:
            files.append(AttachmentFile("failure-details.txt", str(path), "text/plain"))
    return (*files, *_tests_attachment(results, spool, storm, results[0].fingerprint))


def issue_draft(
    results: Sequence[TestResult],
    integration: Integration,
    launch: Launch,
    *,
    include: Sequence[str],
    spool: Path | None = None,
    relates_to: str = "",
    log_lines: int | None = None,
    storm: str = "",
) -> IssueDraft:
    """A new issue for a group of failures; ``storm`` says why the storm guard made the group."""
    settings = integration.tracker_settings
    first = results[0]
    route = first.route
    fields = dict(settings.fields)
    if route is not None:
        fields.update(route.fields)
    head = group_head(results, launch, storm, again=False)
    if relates_to:
        head += f" An earlier issue for this failure, {relates_to}, is closed."
    return IssueDraft(
        summary=summary(results, storm),
        body=Body(
            tuple(
                _sections(
                    results,
                    launch,
                    include,
                    head=head,
                    log_lines=settings.log_lines if log_lines is None else log_lines,
                )
            )
        ),
        fingerprint=first.fingerprint,
        issue_type=(route.issue_type if route and route.issue_type else settings.issue_type),
        labels=(first.fingerprint,) if first.fingerprint else (),
        fields=fields,
        attachments=_attachments(results, include, spool, storm),
        relates_to=relates_to,
        links=tuple({link.key: link for r in results for link in r.links}.values()),
        tests=tuple(r.nodeid for r in results),
        run_id=launch.run_id,
    )


def comment_draft(
    results: Sequence[TestResult],
    launch: Launch,
    *,
    include: Sequence[str],
    log_lines: int = 50,
    spool: Path | None = None,
    storm: str = "",
    labels: Sequence[str] = (),
) -> CommentDraft:
    """The one comment a run adds to an issue that is already open for these failures, and
    the ``labels`` the issue gets with it."""
    head = group_head(results, launch, storm, again=True)
    sections = _sections(results, launch, include, head=head, log_lines=log_lines)
    files = _tests_attachment(results, spool, storm, f"{results[0].fingerprint}-{launch.run_id}")
    return CommentDraft(
        body=Body(tuple(sections)),
        run_id=launch.run_id,
        attachments=files,
        tests=tuple(r.nodeid for r in results),
        labels=tuple(labels),
    )
