"""The HTML run report: one self-contained file, readable without JavaScript.

Rendered by Jinja2 with autoescaping, so nothing a test prints can become markup; links are kept
only for web addresses (never ``javascript:``). No script, no external style, font or image: small
image attachments are inlined as ``data:`` URIs. Failure texts share a budget, so a 20,000-test run
stays near :data:`TARGET_BYTES`. :func:`render_capped` gives the e-mail attachment: the top
failures and a count of the rest, under :data:`ATTACHMENT_LIMIT` bytes.
"""

from __future__ import annotations

import base64
import os
import re
from collections import Counter
from pathlib import Path
from typing import Final
from urllib.parse import quote

import jinja2
from markupsafe import Markup, escape

from .model import RunResults, TestResult

#: per failure; the results JSON and the issues carry the whole text.
FAILURE_TEXT_LIMIT: Final = 8_000
#: the failure texts of one report, shared among the failures (about 10 MB for 20,000 tests).
FAILURE_TEXT_BUDGET: Final = 5_000_000
#: a failure's text is never cut below this, however many failures share the budget.
FAILURE_TEXT_FLOOR: Final = 100
TARGET_BYTES: Final = 10_000_000
#: images up to this size are shown inline; the inline images of a report share a budget.
INLINE_IMAGE_LIMIT: Final = 256_000
INLINE_IMAGE_BUDGET: Final = 2_000_000
#: the report attached to an e-mail.
ATTACHMENT_LIMIT: Final = 1_000_000
ATTACHMENT_FAILURES: Final = 200

_CONTROL: Final = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_WEB: Final = re.compile(r"https?://[^\s\"'<>]+\Z", re.IGNORECASE)


def printable(text: str) -> str:
    """Text any encoder and browser takes: undecodable bytes (lone surrogates from
    ``surrogateescape``) and control characters other than newline and tab become ``\\xNN``.
    """
    if text.isascii() and text.isprintable():
        return text
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def web_url(url: object) -> str:
    """``url`` when it is an http(s) address, else ``""``: a link never runs script."""
    text = str(url).strip()
    return text if _WEB.match(text) else ""


_ENV: Final = jinja2.Environment(
    autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True
)
_ENV.filters["web"] = web_url
_TEMPLATE: Final = _ENV.from_string(
    """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'self'; script-src 'self';
 style-src 'self' 'unsafe-inline'; img-src 'self' data:; object-src 'none'; base-uri 'none';
 form-action 'none'">
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>{{ title }}</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222}
table{border-collapse:collapse;width:100%}td,th{padding:4px 8px;border-bottom:1px solid #ddd;
text-align:left;vertical-align:top}pre{white-space:pre-wrap;background:#f6f6f6;padding:8px;
max-height:30em;overflow:auto}.o{font-weight:bold}.failed,.error{color:#b00}.passed{color:#070}
.skipped,.xfailed{color:#777}.badge{display:inline-block;padding:0 6px;border-radius:8px;
background:#eef;margin-right:4px}.n{font-family:monospace}img{max-width:320px;display:block}
</style></head><body>
<h1>{{ title }}</h1>
<p>{{ totals }}{% if duration %} &middot; {{ duration }}{% endif %}
{% if attributes %} &middot; attributes: {{ attributes }}{% endif %}
{% if ci_job|web %} &middot; <a href="{{ ci_job|web }}">CI job</a>{% endif %}</p>
{% if omitted %}<p><strong>{{ omitted }}</strong></p>{% endif %}
<table><tr><th>Test</th><th>Outcome</th><th>Duration</th><th>Issues</th></tr>
{% for r in rows %}
<tr><td class="n">{{ r.nodeid }}
{% if r.failure %}<details><summary>{{ r.exc_type or "failure" }}</summary>
{{- "" }}<pre>{{ r.failure }}</pre></details>{% endif %}
{% for a in r.attachments %}
{% if a.data %}<div>attachment: {{ a.name }}<img alt="{{ a.name }}" src="{{ a.data }}"></div>
{% elif a.href %}<div>attachment: <a href="{{ a.href }}">{{ a.name }}</a></div>
{% else %}<div>attachment: {{ a.name }}</div>{% endif %}
{% endfor %}
{% for link in r.links %}{% if link.url|web %}
<div><a href="{{ link.url|web }}">{{ link.title }}</a></div>{% endif %}{% endfor %}
</td><td class="o {{ r.outcome }}">{{ r.outcome }}</td>
{{- "" }}<td>{{ "%.2f"|format(r.duration) }} s</td><td>
{%- for i in r.issues %}<span class="badge">
{%- if i.url|web %}<a href="{{ i.url|web }}">{{ i.key or "-" }}</a>
{%- else %}{{ i.key or "-" }}{% endif %}
 {{ i.action }}{% if i.status %}, {{ i.status }}{% endif %}</span>{% endfor -%}
</td></tr>
{% endfor %}
</table></body></html>
"""
)


class _Budget:
    """What is left to spend on failure texts (escaped characters) and inline images."""

    __slots__ = ("images", "text_limit")

    def __init__(self, failures: int, text_budget: int) -> None:
        share = text_budget // max(failures, 1)
        self.text_limit = max(FAILURE_TEXT_FLOOR, min(FAILURE_TEXT_LIMIT, share))
        self.images = INLINE_IMAGE_BUDGET


def _clip_escaped(text: str, limit: int) -> Markup:
    """``text`` escaped, cut at ``limit`` escaped characters (quotes and brackets grow 4-5 times
    when escaped, so the cut is measured after it), never inside an entity.
    """
    # escaping never shortens: cut the raw text first, so a huge one is not escaped whole
    escaped = str(escape(printable(text[:limit])))
    if len(escaped) <= limit and len(text) <= limit:
        return Markup(escaped)
    cut = escaped[:limit]
    amp = cut.rfind("&")
    if amp > cut.rfind(";"):
        cut = cut[:amp]
    return Markup(cut) + escape(f"\n[... {len(text)} characters in all]")


def _attachment(
    name: str, path: str, mime: str, base: Path | None, budget: _Budget
) -> dict[str, str]:
    entry = {"name": printable(name), "href": "", "data": ""}
    if base is not None and mime.startswith("image/") and mime != "image/svg+xml":
        try:
            size = os.path.getsize(path)
            if size <= min(INLINE_IMAGE_LIMIT, budget.images):
                data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
                budget.images -= size
                entry["data"] = f"data:{mime};base64,{data}"
                return entry
        except OSError:
            pass
    if base is not None:
        entry["href"] = relative_href(path, base)
    return entry


def relative_href(path: str, base: Path) -> str:
    """A link to a file, relative to the report and always a path: a file named
    ``javascript:alert(1)`` becomes ``./javascript%3Aalert%281%29``, never a scheme."""
    relative = Path(os.path.relpath(path, base)).as_posix()
    if not relative.startswith("../"):
        relative = f"./{relative}"
    return quote(relative, safe="/.-_~")


def _row(result: TestResult, base: Path | None, budget: _Budget) -> dict[str, object]:
    failure = _clip_escaped(result.longrepr or result.message, budget.text_limit)
    return {
        "nodeid": printable(result.nodeid),
        "outcome": result.outcome,
        "duration": result.duration,
        "exc_type": printable(result.exc_type),
        "failure": failure if result.failing else "",
        "issues": result.issues,
        "links": result.links,
        "attachments": [
            _attachment(a.name, a.path, a.mime, base, budget) for a in result.attachments
        ],
    }


def _duration(run: RunResults) -> str:
    seconds = run.launch.end - run.launch.start
    if run.launch.start <= 0 or seconds <= 0:
        return ""
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes} min {secs} s" if minutes else f"{seconds:.1f} s"


def render(
    run: RunResults,
    base: Path | None,
    *,
    max_failures: int | None = None,
    passed: bool = True,
) -> str:
    """The report's HTML; links to attachments are relative to ``base``, the report's folder.

    ``base=None`` (a mailed report) names attachments without links; ``max_failures`` and
    ``passed=False`` keep the top failures only, counting what is left out.
    """
    launch = run.launch
    counts = Counter(r.outcome for r in run.results)
    failing = [r for r in run.results if r.failing]
    others = [r for r in run.results if not r.failing]
    shown = failing if max_failures is None else failing[:max_failures]
    omitted = []
    if len(shown) < len(failing):
        omitted.append(f"{len(failing) - len(shown)} more failures not shown")
    if not passed and others:
        omitted.append(f"{len(others)} other tests not shown")
    listed = shown + others if passed else shown
    text_budget = FAILURE_TEXT_BUDGET
    while True:
        budget = _Budget(len(shown), text_budget)
        html = _TEMPLATE.render(
            title=printable(
                f"{launch.project + ': ' if launch.project else ''}launch '{launch.name}'"
            ),
            totals=", ".join(f"{n} {o}" for o, n in sorted(counts.items())) or "no tests",
            duration=_duration(run),
            attributes=printable(", ".join(str(a) for a in launch.attributes)),
            ci_job=launch.environment.get("ci_job", ""),
            omitted=" and ".join(omitted)
            + ("; the full report is with the run" if omitted else ""),
            rows=[_row(r, base, budget) for r in listed],
        )
        # many failures with long texts: spend less on each text until the report fits
        if len(html) <= TARGET_BYTES or budget.text_limit <= FAILURE_TEXT_FLOOR:
            return html
        text_budget //= 2


def render_capped(run: RunResults, *, limit: int = ATTACHMENT_LIMIT) -> str:
    """The report for an e-mail: failures only, as many as fit in ``limit`` bytes (the top ones
    first), and a count of the rest.
    """
    count = ATTACHMENT_FAILURES
    while True:
        html = render(run, None, max_failures=count, passed=False)
        if count == 0 or len(html.encode("utf-8")) <= limit:
            return html
        count //= 2
