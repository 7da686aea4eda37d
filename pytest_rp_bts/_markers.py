"""The checks of the plugin's markers' arguments (their documentation is in ``plugin.py``).

A wrong argument is reported as one line naming the test and the fix; the marker is ignored and
the test still runs, because a typo in a marker must not cost a test run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from rp_bts_agent.model import Attribute, KnownIssue, Route


class MarkerError(ValueError):
    """A marker used with the wrong arguments; the message says how to write it."""


@dataclass(slots=True)
class Found:
    """What a test's markers say: its attributes, known issues and route."""

    attributes: list[Attribute] = field(default_factory=list)
    known: list[KnownIssue] = field(default_factory=list)
    route: Route | None = None


def _text(value: Any, what: str) -> str:
    if not isinstance(value, (str, int)) or isinstance(value, bool) or str(value).strip() == "":
        raise MarkerError(f"{what} must be a non-empty string, got {value!r}")
    return str(value).strip()


def _optional(kwargs: Mapping[str, Any], name: str, what: str) -> str | None:
    value = kwargs.get(name)
    return None if value is None else _text(value, what)


def _check_kwargs(marker: pytest.Mark, allowed: tuple[str, ...], usage: str) -> None:
    unknown = sorted(set(marker.kwargs) - set(allowed))
    if unknown:
        raise MarkerError(f"@pytest.mark.{marker.name}: unknown argument {unknown[0]!r}; {usage}")


def _slid(marker: pytest.Mark) -> list[Attribute]:
    usage = "use @pytest.mark.slid('job-id', data_center='eu-central-1')"
    _check_kwargs(marker, ("job_id", "data_center"), usage)
    args = list(marker.args)
    job = args.pop(0) if args else marker.kwargs.get("job_id")
    center = args.pop(0) if args else marker.kwargs.get("data_center")
    if job is None or args:
        raise MarkerError(f"@pytest.mark.slid: expected one job id; {usage}")
    attrs = [Attribute("SLID", _text(job, "@pytest.mark.slid job_id"))]
    if center is not None:
        attrs.append(Attribute("SLDC", _text(center, "@pytest.mark.slid data_center")))
    return attrs


def _rp_attributes(marker: pytest.Mark) -> list[Attribute]:
    attrs = []
    for arg in marker.args:
        text = _text(arg, "@pytest.mark.rp_attributes argument")
        if ":" not in text:
            raise MarkerError(
                f"@pytest.mark.rp_attributes: {text!r} is not 'key:value'; "
                "use rp_attributes('env:prod', browser='chrome')"
            )
        attrs.append(Attribute.parse(text))
    for key, value in marker.kwargs.items():
        attrs.append(Attribute(key, _text(value, f"@pytest.mark.rp_attributes {key}")))
    return attrs


def _issues(marker: pytest.Mark) -> list[KnownIssue]:
    """Ours, or pytest-reportportal's form (``issue_id`` one id or a list, ``reason``,
    ``issue_type`` its defect type such as ``"PB"``): the same known issue either way."""
    usage = "use @pytest.mark.issue('SHOP-17', integration='Shop bugs')"
    _check_kwargs(marker, ("issue_id", "integration", "url", "reason", "issue_type"), usage)
    args = list(marker.args)
    issue_id = args.pop(0) if args else marker.kwargs.get("issue_id")
    if issue_id is None or args:
        raise MarkerError(f"@pytest.mark.issue: expected one issue id; {usage}")
    ids = issue_id if isinstance(issue_id, (list, tuple)) and issue_id else [issue_id]
    integration = _optional(marker.kwargs, "integration", "@pytest.mark.issue integration")
    url = _optional(marker.kwargs, "url", "@pytest.mark.issue url")
    reason = _optional(marker.kwargs, "reason", "@pytest.mark.issue reason") or ""
    kind = _optional(marker.kwargs, "issue_type", "@pytest.mark.issue issue_type") or ""
    return [
        KnownIssue(_text(i, "@pytest.mark.issue issue_id"), integration, url, reason, kind)
        for i in ids
    ]


def _bts(marker: pytest.Mark) -> Route:
    usage = "use @pytest.mark.bts(integration='Shop bugs', issue_type='Bug', fields={...})"
    _check_kwargs(marker, ("integration", "issue_type", "fields"), usage)
    args = list(marker.args)
    if len(args) > 1:
        raise MarkerError(f"@pytest.mark.bts: too many positional arguments; {usage}")
    integration = args[0] if args else marker.kwargs.get("integration")
    fields = marker.kwargs.get("fields") or {}
    if not isinstance(fields, Mapping) or not all(isinstance(k, str) for k in fields):
        raise MarkerError(f"@pytest.mark.bts: fields must be a dict of field names; {usage}")
    return Route(
        None if integration is None else _text(integration, "@pytest.mark.bts integration"),
        _optional(marker.kwargs, "issue_type", "@pytest.mark.bts issue_type"),
        dict(fields),
    )


def read_markers(item: pytest.Item) -> Found:
    found = Found()
    for marker in reversed(list(item.iter_markers("slid"))):
        found.attributes += _slid(marker)
    for marker in reversed(list(item.iter_markers("rp_attributes"))):
        found.attributes += _rp_attributes(marker)
    found.known = [known for m in item.iter_markers("issue") for known in _issues(m)]
    closest = item.get_closest_marker("bts")
    if closest is not None:
        found.route = _bts(closest)
    return found
