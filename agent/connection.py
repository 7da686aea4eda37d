"""``rp-bts integrations test NAME``: does an integration work, and if not, what to fix.

Each kind's check lives in its own module and is found through this registry, so a tracker's
module never needs the others and adding a kind adds one line here.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from .config_types import Integration


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The verdict of a connection test; ``hints`` say what to change, one line each."""

    ok: bool
    summary: str
    hints: tuple[str, ...] = ()
    details: tuple[str, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class CheckOptions:
    #: e-mail integrations send a test message to this address
    to: str = ""


Checker = Callable[[Integration, CheckOptions], CheckResult]

#: kind -> "module:function" taking (integration, options) and returning a CheckResult.
_CHECKERS: Final[dict[str, str]] = {
    "jira": "rp_bts_agent.trackers.jira:check_connection",
    "local": "rp_bts_agent.trackers.local:check_connection",
    "sauce": "rp_bts_agent.sauce:check_connection",
    "email": "rp_bts_agent.smtp:check_connection",
}


def check(integration: Integration, options: CheckOptions) -> CheckResult:
    target = _CHECKERS.get(integration.kind)
    if target is None:
        return CheckResult(
            False, f"no connection test for kind '{integration.kind}' in this version of rp-bts"
        )
    module_name, _, attr = target.partition(":")
    checker: Checker = getattr(importlib.import_module(module_name), attr)
    return checker(integration, options)
