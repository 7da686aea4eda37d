"""``rp-bts integrations test NAME``: does an integration work, and if not, what to fix.

Each kind's check lives in its own package (``Kind.check``); this module holds the verdict's
shape, so a kind's package needs nothing else of the core to report one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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


def check(integration: Integration, options: CheckOptions) -> CheckResult:
    """The kind's own check; a kind that has none says so."""
    from . import kinds

    try:
        checker = kinds.get(integration.kind).check
    except kinds.KindError as exc:
        return CheckResult(False, str(exc))
    if checker is None:
        return CheckResult(False, f"kind {integration.kind!r} has no connection test")
    return checker(integration, options)
