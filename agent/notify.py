"""Run summaries by notification rules, evaluated when the launch finishes (ReportPortal's rules).

With no SMTP integration the message is written as an ``.eml`` file under ``.rp-bts/outbox/``,
so a new user sees what would be sent without a mail server.
"""

from __future__ import annotations

import email
import email.policy
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Final

import jinja2

from . import kinds
from .config_types import Config, Integration, Rule
from .content import one_line
from .deadline import spent
from .files import write_bytes_atomic
from .hooks import HookManager
from .kinds import Mailer, SendError
from .model import RunResults, TestResult
from .redact import Redactor
from .report import counts_line, first_line, printable, render_capped, web_url
from .state import State
from .summary import display_path

log = logging.getLogger("rp_bts_agent")

OWNER: Final = "OWNER"
#: send cases ``more_N``: the share of tests with an issue must exceed N percent.
_SHARE: Final = {"more_10": 0.10, "more_20": 0.20, "more_50": 0.50}
_LINKED: Final = frozenset(
    ("created", "already filed", "commented", "already commented", "linked", "known")
)
DEFAULT_SENDER: Final = "rp-bts <rp-bts@localhost>"
_SAFE_NAME: Final = re.compile(r"[^A-Za-z0-9._-]+")
#: the header of a kept message that names the e-mail integration to send it through
_VIA: Final = "X-RP-BTS-Integration"

_ENV: Final = jinja2.Environment(
    autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True
)
_ENV.filters["web"] = web_url
_HTML: Final = _ENV.from_string(
    """<!doctype html>
<html><head><meta charset="utf-8"><title>{{ subject }}</title></head>
<body style="margin:0;padding:16px;font-family:Arial,Helvetica,sans-serif;font-size:14px;
color:#222222">
<h2 style="margin:0 0 8px;font-size:18px">{{ subject }}</h2>
<p style="margin:0 0 12px">{{ totals }}</p>
{% for note in notes %}<p style="margin:0 0 12px;color:#b00000">{{ note }}</p>{% endfor %}
{% if failures %}
<table style="border-collapse:collapse" cellpadding="4" cellspacing="0">
<tr style="background:#eeeeee"><th align="left">Test</th><th align="left">Outcome</th>
<th align="left">Issues</th><th align="left">Links</th></tr>
{% for f in failures %}
<tr><td style="border-top:1px solid #dddddd;font-family:monospace">{{ f.nodeid }}
{% if f.message %}<br><span style="color:#666666">{{ f.message }}</span>{% endif %}
{% if f.attributes %}<br><span style="color:#666666">attributes: {{ f.attributes }}</span>
{% endif %}</td>
<td style="border-top:1px solid #dddddd;color:#b00000">{{ f.outcome }}</td>
<td style="border-top:1px solid #dddddd">{% for i in f.issues %}
{% if i.url|web %}<a href="{{ i.url|web }}">{{ i.key or "-" }}</a>
{% else %}{{ i.key or "-" }}{% endif %}
 ({{ i.action }}{% if i.status %}, {{ i.status }}{% endif %})<br>
{% else %}<span style="color:#b00000">to investigate</span>{% endfor %}</td>
<td style="border-top:1px solid #dddddd">{% for link in f.links %}
{% if link.url|web %}<a href="{{ link.url|web }}">{{ link.title }}</a><br>{% endif %}
{% endfor %}</td></tr>
{% endfor %}
</table>
{% if more %}<p>... and {{ more }} more failures (see the attached report).</p>{% endif %}
{% endif %}
{% if attributes %}<p>Launch attributes: {{ attributes }}</p>{% endif %}
{% if ci_job|web %}<p><a href="{{ ci_job|web }}">CI job</a></p>{% endif %}
</body></html>
"""
)
#: failures listed in the message body; the rest are counted.
MAIL_FAILURES: Final = 50


@dataclass(frozen=True, slots=True)
class Notice:
    """One message a rule produced: where it went, or why it did not."""

    rule: str
    recipients: tuple[str, ...]
    path: str = ""
    error: str = ""
    #: the e-mail integration that sent it
    sent_via: str = ""
    #: not sent because the run end's time budget ran out (``error`` says so): kept, not failed
    late: bool = False

    def describe(self, start: Path | None = None) -> str:
        to = ", ".join(self.recipients) or "nobody"
        if self.late and self.path:
            where = display_path(self.path, start)
            return (
                f"mail      '{self.rule}' to {to} kept for `rp-bts flush` in {where}: {self.error}"
            )
        if self.error:
            kept = f"; kept for `rp-bts flush` in {display_path(self.path, start)}"
            return f"mail      '{self.rule}' to {to} not sent: {self.error}" + (
                kept if self.path else ""
            )
        if self.sent_via:
            return f"mail      '{self.rule}' to {to}: sent via '{self.sent_via}'"
        return f"mail      '{self.rule}' to {to}: written to {display_path(self.path, start)}"


def _linked(result: TestResult) -> bool:
    return any(ref.action in _LINKED for ref in result.issues)


def rule_applies(rule: Rule, run: RunResults) -> bool:
    """ReportPortal's send cases, launch-name filter and attribute filter (and / or)."""
    return not why_not(rule, run)


def why_not(rule: Rule, run: RunResults) -> str:
    """Why a rule sends nothing for this run, or "" when it sends (``rp-bts rules test``)."""
    if not rule.enabled:
        return "the rule is disabled"
    launch = run.launch
    if rule.launch_names and launch.name not in rule.launch_names:
        return f"launch {launch.name!r} is not one of {', '.join(rule.launch_names)}"
    if rule.attributes:
        have = {str(a) for a in launch.attributes}
        hits = [wanted in have for wanted in rule.attributes]
        if not (all(hits) if rule.attributes_operator == "and" else any(hits)):
            joined = f" {rule.attributes_operator} ".join(rule.attributes)
            return f"the launch's attributes do not match {joined}"
    failing = [r for r in run.results if r.failing]
    case = rule.send_case
    if case == "always":
        return ""
    if case == "failed":
        return "" if failing else "send_case failed: no test failed"
    if case == "to_investigate":
        if any(not _linked(r) for r in failing):
            return ""
        return "send_case to_investigate: every failure has an issue"
    share = sum(1 for r in failing if _linked(r)) / max(len(run.results), 1)
    if share > _SHARE[case]:
        return ""
    return f"send_case {case}: {share:.0%} of the tests have an issue"


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
    return one_line(printable(text + str(len(run.results))), 250)


def message(
    rule: Rule,
    run: RunResults,
    to: Sequence[str],
    sender: str,
    *,
    redact: Callable[[str], str] = str,
    notes: Sequence[str] = (),
) -> EmailMessage:
    """Text and HTML, and the report attached (capped); values from tests are escaped (HTML),
    flattened (headers) and made printable; ``redact`` masks secrets in every part. ``notes``
    are what the agent has to say about the whole run (the storm guard fired, and why).
    """
    title = redact(subject(run))
    failures = [r for r in run.results if r.failing]
    shown, more = failures[:MAIL_FAILURES], max(len(failures) - MAIL_FAILURES, 0)
    notes = [one_line(printable(note), 500) for note in notes]
    lines = [title, "", counts_line(run.launch, run.results), "", *(f"{note}\n" for note in notes)]
    rows = []
    for result in shown:
        links = result.links
        refs = "; ".join(
            f"{i.key or '-'} ({i.action}{', ' + i.status if i.status else ''})"
            + (f" {web_url(i.url)}" if web_url(i.url) else "")
            for i in result.issues
        )
        lines.append(f"- {printable(result.nodeid)}: {result.outcome}; {refs or 'to investigate'}")
        what = one_line(redact(first_line(result)), 300)  # masked before a cut splits a secret
        if what:  # the failure's message, not only its type
            lines.append(f"    {what}")
        for also in result.also_failed:
            error = printable(redact(f"{also.exc_type}: {also.message}"))
            lines.append(f"    error in {also.phase}: {one_line(error, 300)}")
        attributes = one_line(printable(redact(", ".join(str(a) for a in result.attributes))), 300)
        if attributes:
            lines.append(f"    attributes: {attributes}")
        lines += [f"    {link.title}: {link.url}" for link in links]
        rows.append(
            {
                "nodeid": printable(result.nodeid),
                "message": what,
                "attributes": attributes,
                "outcome": result.outcome,
                "issues": result.issues,
                "links": links,
            }
        )
    if more:
        lines.append(f"... and {more} more failures (see the attached report)")
    attrs = printable(", ".join(str(a) for a in run.launch.attributes))
    ci_job = printable(run.launch.environment.get("ci_job", ""))
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
    msg["X-RP-BTS-Rule"] = one_line(printable(rule.name), 200)
    msg.set_content(redact("\n".join(lines) + "\n"))
    html = _HTML.render(
        subject=title,
        totals=counts_line(run.launch, run.results),
        notes=notes,
        failures=rows,
        more=more,
        attributes=attrs,
        ci_job=ci_job,
    )
    msg.add_alternative(redact(html), subtype="html")
    report = redact(render_capped(run))
    msg.add_attachment(
        report.encode("utf-8"), maintype="text", subtype="html", filename="rp-bts-report.html"
    )
    return msg


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")[:40] or "rule"


def _deliver(
    config: Config,
    server: Integration | None,
    rule: str,
    to: tuple[str, ...],
    msg: EmailMessage,
    name: str,
    redactor: Redactor,
) -> Notice:
    """Write the ``.eml`` (no server), or send it, kept for ``rp-bts flush`` until it is sent."""
    state = State(config.root)
    if server is None:
        try:
            path = state.outbox_dir / f"{name}.eml"
            write_bytes_atomic(path, msg.as_bytes())
        except (OSError, ValueError) as exc:
            return Notice(
                rule, to, error=redactor.redact(one_line(f"cannot write the message: {exc}", 300))
            )
        return Notice(rule, to, path=str(path))
    try:  # kept before it is sent: a run killed while sending leaves it for ``rp-bts flush``
        kept: Path | None = keep_pending(state, msg, name, server.name)
        keep_error = ""
    except (OSError, ValueError) as exc:  # still worth sending
        kept, keep_error = None, str(exc)
    try:
        if spent():  # not started once the budget is spent: it waits, sent by the next flush
            raise SendError(late(config))
        _mailer(server).send(server, msg)
    except SendError as exc:
        out_of_time = spent()
        error = late(config) if out_of_time else redactor.redact(str(exc))
        if kept is None:
            lost = one_line(f"{error}; and it cannot be kept: {keep_error}", 400)
            return Notice(rule, to, error=redactor.redact(lost))
        return Notice(rule, to, path=str(kept), error=error, late=out_of_time)
    if kept is not None:
        kept.unlink(missing_ok=True)
    return Notice(rule, to, sent_via=server.name)


def late(config: Config) -> str:
    """Why a message waits when the run end's deadline passed before or while it was sent."""
    return f"the run end's time budget ({config.time_budget} s) was spent"


def _mailer(integration: Integration) -> Mailer:
    mailer = kinds.get(integration.kind).mail
    assert mailer is not None  # chosen by mail_server()
    return mailer


def mail_server(config: Config, name: str = "") -> Integration | None:
    """The integration that sends mail: the one named (a rule's ``email``), else the first of a
    kind that can."""
    for integration in config.integrations:
        if kinds.get(integration.kind).mail is not None and name in ("", integration.name):
            return integration
    return None


def keep_pending(state: State, message: EmailMessage, name: str, via: str = "") -> Path:
    """Keep a message that could not be sent, for ``rp-bts flush``; never overwrites another.
    The kept copy names the integration to send it through (``via``; "": the first one)."""
    folder = state.outbox_of("pending")
    stem = _SAFE_NAME.sub("-", name).strip("-")[:80] or "message"
    path = folder / f"{stem}.eml"
    number = 1
    while path.exists():
        number += 1
        path = folder / f"{stem}-{number}.eml"
    if via:
        message[_VIA] = via
    try:
        write_bytes_atomic(path, message.as_bytes())
    finally:
        del message[_VIA]
    return path


def flush_mail(config: Config) -> list[str]:
    """Send every kept message through the mail server; a sent one is removed. At a run's end,
    what the time budget leaves no time for stays kept."""
    folder = State(config.root).outbox_of("pending")
    paths = sorted(folder.glob("*.eml")) if folder.is_dir() else []
    if not paths:
        return []
    if mail_server(config) is None:
        return [f"failed: mail {p.name}: no e-mail integration configured" for p in paths]
    lines = []
    for path in paths:
        try:
            if spent():  # a run's end replaying kept mail: the rest waits for the next flush
                raise SendError(late(config))
            parsed = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            assert isinstance(parsed, EmailMessage)
            # the integration its rule chose, while it is configured; else the first one
            server = mail_server(config, str(parsed[_VIA] or "")) or mail_server(config)
            assert server is not None
            del parsed[_VIA]
            _mailer(server).send(server, parsed)
        except SendError as exc:
            if spent():
                lines.append(f"kept: mail {path.name}: {late(config)}")
            else:
                lines.append(f"failed: mail {path.name}: {exc}")
            continue
        except (OSError, ValueError) as exc:
            lines.append(f"failed: mail {path.name}: cannot read it ({exc})")
            continue
        path.unlink(missing_ok=True)
        lines.append(f"sent: mail {path.name} to {parsed['To']} via {server.name!r}")
    return lines


def notify(
    config: Config, run: RunResults, hooks: HookManager, notes: Sequence[str] = ()
) -> list[Notice]:
    """Evaluate every rule and deliver its message; errors are notices, never exceptions.

    With a mail server (an integration of a kind that sends mail) the message goes through it
    (a failure keeps it for ``rp-bts flush``); without, it is written as an ``.eml`` under
    ``.rp-bts/outbox/``.
    """
    notices = []
    redactor = Redactor(config.secrets())
    for rule in config.rules:
        if not rule_applies(rule, run):
            continue
        server = mail_server(config, rule.email)
        sender = (_mailer(server).sender(server) if server is not None else "") or DEFAULT_SENDER
        to = recipients(rule, run.launch.owner)
        if not to:
            notices.append(Notice(rule.name, (), error="no recipients (OWNER is not known)"))
            continue
        msg = message(rule, run, to, sender, redact=redactor.redact, notes=notes)
        try:
            verdicts = hooks.hook.rp_bts_email(message=msg, launch=run.launch, rule_name=rule.name)
        except Exception as exc:  # a user's hook never breaks the run: the message is dropped
            log.debug("rp_bts_email hook failed", exc_info=True)
            error = one_line(f"an rp_bts_email hook raised {type(exc).__name__}: {exc}", 300)
            notices.append(Notice(rule.name, to, error=redactor.redact(error)))
            continue
        if any(v is False for v in verdicts):
            notices.append(Notice(rule.name, to, error="dropped by an rp_bts_email hook"))
            continue
        name = f"{run.launch.run_id}-{_slug(rule.name)}"
        notices.append(_deliver(config, server, rule.name, to, msg, name, redactor))
    return notices
