"""Secrets out of what pytest writes while tests run: the live log, ``--log-file`` and
``--junitxml`` see each log record and report at once, before the session's end, where the
rest of what pytest prints is scrubbed (``_session``); parameter ids before the tests are
named after them. A test's own ``caplog`` is left as it is.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, final

import pytest

from rp_bts_agent.redact import Redactor


@final
class _Redacting(logging.Formatter):
    """A log handler's own formatter, its output masked."""

    def __init__(self, inner: logging.Formatter | None, redact: Callable[[str], str]) -> None:
        super().__init__()
        self._inner = inner or logging.Formatter()
        self._redact = redact

    def format(self, record: logging.LogRecord) -> str:
        return self._redact(self._inner.format(record))


@final
class _Masked:
    """A failure's masked text that keeps its one-line crash message, which the short summary
    and JUnit XML show (a plain string would make them show the traceback's first line)."""

    def __init__(self, text: str, reprcrash: Any) -> None:
        self.text = text
        self.reprcrash = reprcrash

    def toterminal(self, tw: Any) -> None:
        tw.line(self.text)

    def __str__(self) -> str:
        return self.text


def _crash(longrepr: Any, redact: Callable[[str], str]) -> Any:
    """pytest's crash line (a dataclass with ``message``) masked, or None."""
    crash: Any = getattr(longrepr, "reprcrash", None)
    message = getattr(crash, "message", None)
    if not isinstance(message, str):
        return None
    try:
        return dataclasses.replace(crash, message=redact(message))
    except TypeError:  # not a dataclass in this pytest: no crash line, the text stays
        return None


@final
class _ReportScrub:
    """Each report loses its secrets before JUnit XML and the terminal read it."""

    def __init__(self, redact: Callable[[str], str]) -> None:
        self.redact = redact

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        redact = self.redact
        if report.failed and report.longrepr is not None:
            text = report.longreprtext
            clean = redact(text)
            if clean != text:
                report.longrepr = _Masked(clean, _crash(report.longrepr, redact))  # type: ignore[assignment]
        if report.sections:
            report.sections = [(title, redact(content)) for title, content in report.sections]


def scrub_pytest_writers(config: pytest.Config, redactor: Redactor) -> None:
    scrub_log_handlers(config, redactor.redact)
    config.pluginmanager.register(_ReportScrub(redactor.redact), "rp_bts_report_scrub")


def scrub_log_handlers(config: pytest.Config, redact: Callable[[str], str]) -> None:
    """The live log and ``--log-file`` masked; on an xdist worker too, which writes the log
    file itself (issue 11, point 10)."""
    logs = config.pluginmanager.get_plugin("logging-plugin")
    for name in ("log_cli_handler", "log_file_handler"):
        handler = getattr(logs, name, None)
        if isinstance(handler, logging.Handler):
            handler.setFormatter(_Redacting(handler.formatter, redact))


@final
class IdMasking:
    """Parameter ids masked before pytest names the tests after them (generated or explicit:
    ``ids=[...]``, ``pytest.param(..., id=...)``): node ids, the short summary,
    ``--collect-only``, ``-v`` lines, the cache and JUnit XML all show them masked, and xdist's
    workers, masking alike, agree on the node ids. Registered only with strong secrets
    configured: each test function would otherwise pay a hook call for nothing."""

    def __init__(self, redact: Callable[[str], str]) -> None:
        self._redact = redact

    @pytest.hookimpl(trylast=True)  # after every parametrize call has made its ids
    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        if metafunc._calls:
            metafunc._calls = masked_calls(metafunc._calls, self._redact)


def masked_calls(calls: Sequence[Any], redact: Callable[[str], str]) -> list[Any]:
    """pytest's parametrizations (``CallSpec2``), each id masked; ids the mask made equal are
    told apart as pytest tells equal ids apart, by a counter (``***0``, ``***1``), so node ids
    stay unique."""
    ids = [[redact(part) for part in call._idlist] for call in calls]
    names = ["-".join(parts) for parts in ids]
    seen, counters = Counter(names), Counter[str]()
    for parts, name in zip(ids, names, strict=True):
        if seen[name] > 1 and parts:
            parts[-1] += f"{'_' if name[-1:].isdigit() else ''}{counters[name]}"
            counters[name] += 1
    return [
        call if list(call._idlist) == parts else dataclasses.replace(call, _idlist=parts)
        for call, parts in zip(calls, ids, strict=True)
    ]
