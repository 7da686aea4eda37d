"""pytest entry point of pytest-rp-bts (``-p no:rp_bts`` turns it off).

Glue only: options, markers and the fixture are always there (so ``--strict-markers`` runs clean
with the plugin off); the agent is imported and the session object registered only with
``--rp-bts``.
"""

from __future__ import annotations

import os

import pytest

from ._fixture import RpBts
from ._markers import MARKERS
from ._options import add_options, resolve


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


@pytest.hookimpl(trylast=True)  # after the terminal reporter, whose record of reports we read
def pytest_configure(config: pytest.Config) -> None:
    for line in MARKERS:
        config.addinivalue_line("markers", line)
    settings = resolve(config, os.environ)
    if not settings.enabled:
        return
    from ._session import RpBtsSession, XdistHooks

    session = RpBtsSession(config, settings)
    config.pluginmanager.register(session, "rp_bts_session")
    if config.pluginmanager.hasplugin("xdist") and session.is_controller:
        config.pluginmanager.register(XdistHooks(session), "rp_bts_xdist")


@pytest.fixture
def rp_bts(request: pytest.FixtureRequest) -> RpBts:
    """Add attributes, a Sauce Labs job id or attachments to the current test's result."""
    return RpBts(request.node)
