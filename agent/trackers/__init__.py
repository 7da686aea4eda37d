"""Bug trackers, one module each, behind :class:`~rp_bts_agent.trackers.base.Tracker`.

The registry imports a tracker's module only when an integration of its kind is used, so a run
that files into the local tracker never pays for ``jira`` or ``requests``.
"""

from __future__ import annotations

import importlib
from typing import Final

from ..config_types import Integration
from .base import Tracker, TrackerError

#: kind -> "module:factory"; the factory takes (integration, read_only) and returns a Tracker.
_REGISTRY: Final = {
    "jira": "rp_bts_agent.trackers.jira:JiraTracker.from_integration",
    "local": "rp_bts_agent.trackers.local:LocalTracker.from_integration",
}


def open_tracker(integration: Integration, *, read_only: bool = False) -> Tracker:
    """The tracker behind an integration; ``read_only`` (dry-run) must change nothing."""
    target = _REGISTRY.get(integration.kind)
    if target is None:
        raise TrackerError(
            f"integration '{integration.name}': kind '{integration.kind}' cannot file issues "
            f"in this version of rp-bts (supported: {', '.join(sorted(_REGISTRY))})"
        )
    module_name, _, attr = target.partition(":")
    factory: object = importlib.import_module(module_name)
    for part in attr.split("."):
        factory = getattr(factory, part)
    tracker: Tracker = factory(integration, read_only=read_only)  # type: ignore[operator]
    return tracker


__all__ = ["Tracker", "TrackerError", "open_tracker"]
