"""Run summaries by notification rules, evaluated when the launch finishes (ReportPortal's rules).

With no SMTP integration the message is written as an ``.eml`` file under ``.rp-bts/outbox/``,
so a new user sees what would be sent without a mail server.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Final

import jinja2

from .config_types import Config, Rule
from .content import one_line
from .hooks import HookManager
from .model import RunResults, TestResult
from .sauce import job_links
from .summary import display_path

log = logging.getLogger("rp_bts_agent")

OWNER: Final = "OWNER"
#: send cases ``more_N``: the share of tests with an issue must exceed N percent.
_SHARE: Final = {"more_10": 0.10, "more_20": 0.20, "more_50": 0.50}
_LINKED: Final = frozenset(("created", "commented", "linked", "known"))
DEFAULT_SENDER: Final = "rp-bts <rp-bts@localhost>"

_HTML: Final = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined).from_string(
    """<!doctype html>
<html><body style="font-family:Arial,sans-serif;font-size:14px;color:#222">
<h2 style="margin:0 0 8px">{{ subject }}</h2>
<p>{{ totals }}</p>
{% if failures %}<table style="border-collapse:collapse" cellpadding="4">
<tr style="background:#eee"><th align="left">Test</th><th align="left">Outcome</th>
<th align="left">Issues</th></tr>
{% for f in failures %}<tr style="border-top:1px solid #ddd"><td>{{ f.nodeid }}</td>
<td>{{ f.outcome }}</td><td>{% for i in f.issues %}{% if i.url.startswith("http") %}
<a href="{{ i.url }}">{{ i.key }}</a>{% else %}{{ i.key }}{% endif %} ({{ i.action }}{% if i.status
%}, {{ i.status }}{% endif %}) {% endfor %}{% for link in f.links %}
<a href="{{ link.url }}">{{ link.title }}</a>{% endfor %}
</td></tr>
{% endfor %}</table>{% endif %}
{% if attributes %}<p>Launch attributes: {{ attributes }}</p>{% endif %}
{% if ci_job %}<p><a href="{{ ci_job }}">CI job</a></p>{% endif %}
</body></html>"""
)


@dataclass(frozen=True, slots=True)
class Notice:
    """One message a rule produced: where it went, or why it did not."""

    rule: str
    recipients: tuple[str, ...]
    path: str = ""
    error: str = ""

    def describe(self, start: Path | None = None) -> str:
        to = ", ".join(self.recipients) or "nobody"
        if self.error:
            return f"mail      '{self.rule}' to {to} not sent: {self.error}"
        return f"mail      '{self.rule}' to {to}: written to {display_path(self.path, start)}"


def _linked(result: TestResult) -> bool:
    return any(ref.action in _LINKED for ref in result.issues)


def rule_applies(rule: Rule, run: RunResults) -> bool:
    """ReportPortal's send cases, launch-name filter and attribute filter (and / or)."""
    if not rule.enabled:
        return False
    launch = run.launch
    if rule.launch_names and launch.name not in rule.launch_names:
        return False
    if rule.attributes:
        have = {str(a) for a in launch.attributes}
        hits = [wanted in have for wanted in rule.attributes]
        if not (all(hits) if rule.attributes_operator == "and" else any(hits)):
            return False
    failing = [r for r in run.results if r.failing]
    if rule.send_case == "always":
        return True
    if rule.send_case == "failed":
        return bool(failing)
    if rule.send_case == "to_investigate":
        return any(not _linked(r) for r in failing)
    share = sum(1 for r in failing if _linked(r)) / max(len(run.results), 1)
    return share > _SHARE[rule.send_case]


def recipients(rule: Rule, owner: str) -> tuple[str, ...]:
    """``OWNER`` is the launch owner; duplicates are dropped, order kept."""
    found: dict[str, None] = {}
    for address in rule.recipients:
        address = owner if address == OWNER else address
        if address:
            found.setdefault(address.strip().lower() if "@" in address else address, None)
    return tuple(found)


def subject(run: RunResults) -> str:
    launch = run.launch
    failed = sum(1 for r in run.results if r.failing)
    number = launch.environment.get("ci_build") or launch.run_id
    project = f"[{launch.project}] " if launch.project else ""
    text = f"{project}launch '{launch.name}' #{number} finished: {failed} failed of "
    return one_line(text + str(len(run.results)), 250)


def _counts(run: RunResults) -> str:
    counts: dict[str, int] = {}
    for result in run.results:
        counts[result.outcome] = counts.get(result.outcome, 0) + 1
    return ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items())) or "no tests"


def message(rule: Rule, run: RunResults, to: Sequence[str], sender: str) -> EmailMessage:
    """Text and HTML; every value from tests is escaped (HTML) or flattened (headers)."""
    title = subject(run)
    failures = [r for r in run.results if r.failing]
    lines = [title, "", _counts(run), ""]
    for result in failures:
        refs = ", ".join(f"{i.key or '-'} ({i.action})" for i in result.issues) or "no issue"
        lines.append(f"- {result.nodeid}: {result.outcome}; {refs}")
    attrs = ", ".join(str(a) for a in run.launch.attributes)
    ci_job = run.launch.environment.get("ci_job", "")
    if attrs:
        lines += ["", f"Launch attributes: {attrs}"]
    if ci_job:
        lines += ["", f"CI job: {ci_job}"]
    msg = EmailMessage()
    msg["Subject"] = title
    msg["From"] = one_line(sender, 200)
    msg["To"] = ", ".join(one_line(a, 200) for a in to)
    msg["Date"] = formatdate(localtime=True)
    msg["Message-ID"] = make_msgid("rp-bts")
    msg["X-RP-BTS-Rule"] = one_line(rule.name, 200)
    msg.set_content("\n".join(lines) + "\n")
    rows = [
        {
            "nodeid": r.nodeid,
            "outcome": r.outcome,
            "issues": r.issues,
            "links": job_links(r),
        }
        for r in failures
    ]
    html = _HTML.render(
        subject=title, totals=_counts(run), failures=rows, attributes=attrs, ci_job=ci_job
    )
    msg.add_alternative(html, subtype="html")
    return msg


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")[:40] or "rule"


def notify(config: Config, run: RunResults, hooks: HookManager) -> list[Notice]:
    """Evaluate every rule and deliver its message; errors are notices, never exceptions."""
    notices = []
    outbox = Path(config.root) / ".rp-bts" / "outbox"
    mail = config.of_kind("email")
    sender = mail[0].sender if mail and mail[0].sender else DEFAULT_SENDER
    for rule in config.rules:
        if not rule_applies(rule, run):
            continue
        to = recipients(rule, run.launch.owner)
        if not to:
            notices.append(Notice(rule.name, (), error="no recipients (OWNER is not known)"))
            continue
        msg = message(rule, run, to, sender)
        verdicts = hooks.hook.rp_bts_email(message=msg, launch=run.launch, rule_name=rule.name)
        if any(v is False for v in verdicts):
            notices.append(Notice(rule.name, to, error="dropped by an rp_bts_email hook"))
            continue
        try:
            outbox.mkdir(parents=True, exist_ok=True)
            path = outbox / f"{run.launch.run_id}-{_slug(rule.name)}.eml"
            path.write_bytes(msg.as_bytes())
        except OSError as exc:
            notices.append(Notice(rule.name, to, error=f"cannot write the message: {exc}"))
            continue
        notices.append(Notice(rule.name, to, path=str(path)))
    return notices
