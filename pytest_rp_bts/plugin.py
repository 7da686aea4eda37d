"""pytest entry point of pytest-rp-bts (``-p no:rp_bts`` turns it off).

Glue only: options, markers and the fixture are always there (so ``--strict-markers`` runs clean
with the plugin off); the agent is imported and the session object registered only with
``--rp-bts``.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Final

import pytest

from ._options import add_options, resolve

if TYPE_CHECKING:
    from ._fixture import RpBts

MARKERS: Final = (
    "slid(job_id, data_center=None): the Sauce Labs job this test ran in (attribute SLID)",
    "rp_attributes(*attributes, **kv): attributes of this test's result, as 'key:value' "
    "strings or key=value arguments",
    "issue(issue_id, integration=None, url=None, reason=None, issue_type=None): a known issue "
    "(also pytest-reportportal's form); its failures are linked, never filed",
    "bts(integration=None, issue_type=None, fields=None): where this test's failures are filed",
)


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


@pytest.hookimpl(trylast=True)  # after the terminal reporter, whose record of reports we read
def pytest_configure(config: pytest.Config) -> None:
    for line in MARKERS:
        config.addinivalue_line("markers", line)
    settings = resolve(config, os.environ)
    if not settings.enabled:
        return
    from ._session import RpBtsSession, WorkerCapture, XdistHooks

    session = RpBtsSession(config, settings)
    config.pluginmanager.register(session, "rp_bts_session")
    if session.is_controller and session.pytest_redactor:
        from ._scrub import scrub_pytest_writers

        scrub_pytest_writers(config, session.pytest_redactor)
    if session.masks_ids:
        from ._scrub import IdMasking

        # on an xdist worker, redact_id reads the config (for its secrets) at the first id
        config.pluginmanager.register(IdMasking(session.redact_id), "rp_bts_ids")
    if not session.is_controller:
        config.pluginmanager.register(WorkerCapture(session.capture), "rp_bts_worker")
        if config.getoption("log_file", None) or config.getini("log_file"):
            from ._scrub import scrub_log_handlers

            # the worker reads the config (for its secrets) at its first log record
            scrub_log_handlers(config, session._redact_spilled)
    if config.pluginmanager.hasplugin("xdist") and session.is_controller:
        config.pluginmanager.register(XdistHooks(session), "rp_bts_xdist")
    reporters = session.live_reporters()
    if reporters:
        from ._live import LiveReporting

        config.pluginmanager.register(LiveReporting(reporters), "rp_bts_live")


@pytest.fixture
def rp_bts(request: pytest.FixtureRequest) -> RpBts:
    """Add attributes, a Sauce Labs job id or attachments to the current test's result."""
    from ._fixture import RpBts  # imported on first use: the plugin loads light when it is off

    return RpBts(request.node)
