"""Hooks that users implement to change what the agent does.

Plain functions named ``rp_bts_*`` in a ``conftest.py`` (or any module registered with the agent's
plugin manager) implement them; no decorator is needed, as with pytest's own hooks. They run in
the agent, so they also apply to ``rp-bts process`` when it is given ``--hooks MODULE``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from email.message import EmailMessage

    from .config_types import Config, Integration
    from .model import Launch, TestResult
    from .tracker import IssueDraft

PROJECT = "rp_bts"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec(firstresult=True)
def rp_bts_fingerprint(result: TestResult, default: str) -> str | None:
    """Return the fingerprint of a failure to replace ``default`` (or None to keep it).

    Runs where the failure happened (the xdist worker), before the result travels.
    """


@hookspec(firstresult=True)
def rp_bts_route(result: TestResult, config: Config) -> str | None:
    """Return the name of the integration a failure goes to, or None for the usual routing."""


@hookspec
def rp_bts_issue_fields(
    draft: IssueDraft, results: list[TestResult], integration: Integration, launch: Launch
) -> IssueDraft | None:
    """Return a changed draft (``dataclasses.replace``) before it is posted, or None.

    The draft is already redacted. When several implementations return a draft, the one called
    last wins (pluggy calls the most recently registered implementation first).
    """


@hookspec
def rp_bts_email(message: EmailMessage, launch: Launch, rule_name: str) -> bool | None:
    """Edit the summary e-mail in place before it is sent; return False to drop it."""


def hook_impl_opts(plugin: Any, name: str) -> dict[str, Any] | None:
    """Accept undecorated ``rp_bts_*`` functions as implementations, as pytest does."""
    method = getattr(plugin, name, None)
    if name.startswith("rp_bts_") and callable(method):
        opts = getattr(method, PROJECT + "_impl", None)
        return dict(opts) if opts is not None else {}
    return None
