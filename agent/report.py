"""The HTML run report: one self-contained file, readable without JavaScript.

Rendered by Jinja2 with autoescaping, so nothing a test prints can become markup; links are kept
only for web addresses (never ``javascript:``). No script, no external style, font or image: small
image attachments are inlined as ``data:`` URIs. Failure texts share a budget, so a 20,000-test run
stays near :data:`TARGET_BYTES`. :func:`render_capped` gives the e-mail attachment: the top
failures and a count of the rest, under :data:`ATTACHMENT_LIMIT` bytes.
"""

from __future__ import annotations

import base64
import functools
import os
import re
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote

from markupsafe import Markup, escape

from .plain import PYTEST_COUNTS, Launch, Plain

if TYPE_CHECKING:  # loaded by whoever made the results; a run where all passed has none
    from .model import RunResults, TestResult

#: per failure; the results JSON and the issues carry the whole text.
FAILURE_TEXT_LIMIT: Final = 8_000
#: the failure texts of one report, shared among the failures (about 10 MB for 20,000 tests).
FAILURE_TEXT_BUDGET: Final = 5_000_000
#: a failure's text is never cut below this, however many failures share the budget.
FAILURE_TEXT_FLOOR: Final = 100
#: a failure's message line (its text is in the details below it)
MESSAGE_LIMIT: Final = 300
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


def tally(launch: Launch, results: Sequence[TestResult | Plain]) -> dict[str, int]:
    """The run's counts as pytest counts them: its own tally when the plugin recorded it, else
    one per result plus one error per later phase that failed."""
    if launch.counts:
        return dict(launch.counts)
    counts: Counter[str] = Counter(r[1] if isinstance(r, tuple) else r.outcome for r in results)
    also = sum(len(r.also_failed) for r in results if not isinstance(r, tuple))
    if also:
        counts["error"] += also
    return dict(counts)


def counts_line(launch: Launch, results: Sequence[TestResult | Plain]) -> str:
    """``12 failed, 1 passed, 3 errors``: pytest's own words, in its order."""
    counts = tally(launch, results)
    words = [f"{counts[k]} {k}" for k in PYTEST_COUNTS if counts.get(k) and k != "error"]
    errors = counts.get("error", 0)
    if errors:
        words.append(f"{errors} error{'s' if errors > 1 else ''}")
    return ", ".join(words) or "no tests"


def web_url(url: object) -> str:
    """``url`` when it is an http(s) address, else ``""``: a link never runs script."""
    text = str(url).strip()
    return text if _WEB.match(text) else ""


@functools.cache
def _template() -> Any:
    """Compiled on the first report: a run that writes none (``--rp-bts-report=none``) or only
    mails pays nothing for it."""
    import jinja2

    env = jinja2.Environment(
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True
    )
    env.filters["web"] = web_url
    return env.from_string(_SOURCE)


#: the page around the failures; plain formatting with escaped values, so a run where all
#: passed renders without Jinja2 (its import and compile cost more than the rest of the report)
_SHELL: Final = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'self'; script-src 'self';
 style-src 'self' 'unsafe-inline'; img-src 'self' data:; object-src 'none'; base-uri 'none';
 form-action 'none'">
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>{title}</title>
<style>
body{{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222}}
table{{border-collapse:collapse;width:100%}}td,th{{padding:4px 8px;border-bottom:1px solid #ddd;
text-align:left;vertical-align:top}}pre{{white-space:pre-wrap;background:#f6f6f6;padding:8px;
max-height:30em;overflow:auto}}.o{{font-weight:bold}}.failed,.error{{color:#b00}}
.passed{{color:#070}}.skipped,.xfailed{{color:#777}}.badge{{display:inline-block;padding:0 6px;
border-radius:8px;background:#eef;margin-right:4px}}.n{{font-family:monospace}}
img{{max-width:320px;display:block}}tr.g th{{background:#f3f3f3;padding-top:10px}}
.msg{{color:#444;white-space:pre-wrap}}
</style></head><body>
<h1>{title}</h1>
<p>{totals}{duration}{ci_job}</p>
<p>run {run_id}{date}{attributes}</p>
{environment}{omitted}{body}{passed}</body></html>
"""

_SOURCE: Final = """{% if groups %}<h2>Failures by issue</h2>
<table><tr><th>Test</th><th>Outcome</th><th>Phase</th><th>Duration</th></tr>
{% for g in groups %}
<tr class="g"><th colspan="4">
{%- for i in g.issues %}<span class="badge">
{%- if i.url|web %}<a href="{{ i.url|web }}">{{ i.key or "-" }}</a>
{%- else %}{{ i.key or "-" }}{% endif %}
 {{ i.action }}{% if i.status %}, {{ i.status }}{% endif %}</span>{% else %}
<span class="badge failed">to investigate</span>{% endfor %}
 {{ g.title }} &middot; {{ g.count }} test(s)</th></tr>
{% for r in g.rows %}
<tr><td class="n">{{ r.nodeid }}
{% if r.message != g.title %}<div class="msg">{{ r.message }}</div>{% endif %}
{% if r.attributes %}<div>attributes: {{ r.attributes }}</div>{% endif %}
{% if r.failure %}<details><summary>{{ r.exc_type or "failure" }}</summary>
{{- "" }}<pre>{{ r.failure }}</pre></details>{% endif %}
{% for a in r.also %}<details><summary>error in {{ a.phase }}: {{ a.exc_type }}</summary>
{{- "" }}<pre>{{ a.text }}</pre></details>{% endfor %}
{% for a in r.attachments %}
{% if a.data %}<div>attachment: {{ a.name }}<img alt="{{ a.name }}" src="{{ a.data }}"></div>
{% elif a.href %}<div>attachment: <a href="{{ a.href }}">{{ a.name }}</a></div>
{% else %}<div>attachment: {{ a.name }}</div>{% endif %}
{% endfor %}
{% for link in r.links %}{% if link.url|web %}
<div><a href="{{ link.url|web }}">{{ link.title }}</a></div>{% endif %}{% endfor %}
</td><td class="o {{ r.outcome }}">{{ r.outcome }}</td><td>{{ r.phase }}</td>
{{- "" }}<td>{{ "%.2f"|format(r.duration) }} s</td></tr>
{% endfor %}
{% endfor %}
</table>
{% endif %}
{% if others %}<h2>Other tests</h2>
<table><tr><th>Test</th><th>Outcome</th><th>Duration</th><th>Reason</th></tr>
{% for r in others %}
<tr><td class="n">{{ r.nodeid }}{% if r.attributes %}<div>attributes: {{ r.attributes }}</div>
{% endif %}
{% for a in r.attachments %}
{% if a.data %}<div>attachment: {{ a.name }}<img alt="{{ a.name }}" src="{{ a.data }}"></div>
{% elif a.href %}<div>attachment: <a href="{{ a.href }}">{{ a.name }}</a></div>
{% else %}<div>attachment: {{ a.name }}</div>{% endif %}
{% endfor %}
</td><td class="o {{ r.outcome }}">{{ r.outcome }}</td>
{{- "" }}<td>{{ "%.2f"|format(r.duration) }} s</td><td>{{ r.message }}</td></tr>
{% endfor %}
</table>{% endif %}
"""


class _Budget:
    """What is left to spend on failure texts (escaped characters) and inline images."""

    __slots__ = ("images", "text_limit", "texts")

    def __init__(self, failures: int, text_budget: int) -> None:
        share = text_budget // max(failures, 1)
        self.text_limit = max(FAILURE_TEXT_FLOOR, min(FAILURE_TEXT_LIMIT, share))
        #: characters left when even the floor is too much for every failure (the first ones
        #: get their texts, the later ones none); None while each failure has its share
        self.texts: int | None = text_budget if share < FAILURE_TEXT_FLOOR else None
        self.images = INLINE_IMAGE_BUDGET

    def text(self, text: str) -> Markup:
        """A failure's text, clipped to its share; empty once the budget is spent."""
        if self.texts is not None and self.texts <= 0:
            return Markup("")
        clipped = _clip_escaped(text, self.text_limit)
        if self.texts is not None:
            self.texts -= len(clipped)
        return clipped


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
    failing = result.failing
    return {
        "nodeid": printable(result.nodeid),
        "outcome": result.outcome,
        "phase": result.phase,
        "duration": result.duration,
        "exc_type": printable(result.exc_type),
        "message": first_line(result)[:MESSAGE_LIMIT],
        "attributes": printable(", ".join(str(a) for a in result.attributes)),
        "failure": budget.text(result.longrepr or result.message) if failing else "",
        "also": [
            {
                "phase": a.phase,
                "exc_type": printable(a.exc_type),
                "text": budget.text(a.longrepr or a.message),
            }
            for a in result.also_failed
        ],
        "links": result.links,
        "attachments": [
            _attachment(a.name, a.path, a.mime, base, budget) for a in result.attachments
        ],
    }


def first_line(result: TestResult) -> str:
    """What went wrong (or why it was skipped), in one line: the message, not only its type."""
    text = result.message.strip()
    line = text.splitlines()[0] if text else ""
    if result.failing and result.exc_type and not line.startswith(result.exc_type):
        line = f"{result.exc_type}: {line}" if line else result.exc_type
    return printable(line[:500])


def _group_key(result: TestResult) -> tuple[str, ...]:
    """Failures of one bug share an issue (three parameters, one issue); unfiled ones share a
    fingerprint."""
    keys = tuple(f"{i.integration}/{i.key}" for i in result.issues if i.key)
    return keys or (result.fingerprint or result.nodeid,)


def _groups(
    failing: Sequence[TestResult], base: Path | None, budget: _Budget
) -> list[dict[str, object]]:
    grouped: dict[tuple[str, ...], list[TestResult]] = {}
    for result in failing:
        grouped.setdefault(_group_key(result), []).append(result)
    return [
        {
            "issues": members[0].issues,
            "title": first_line(members[0])[:MESSAGE_LIMIT] or members[0].outcome,
            "count": len(members),
            "rows": [_row(r, base, budget) for r in members],
        }
        for members in grouped.values()
    ]


def _duration(launch: Launch) -> str:
    seconds = launch.end - launch.start
    if launch.start <= 0 or seconds <= 0:
        return ""
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes} min {secs} s" if minutes else f"{seconds:.1f} s"


def _e(text: str) -> str:
    """Text from a run, escaped and printable, for the page's shell (markupsafe's escape is C)."""
    return str(escape(printable(text)))


def _passed(results: Sequence[Plain]) -> str:
    """Passing tests as one escaped block of lines: a 5,000-test run renders in a few
    milliseconds (no template loop, no object per test; each id checked on its own, which is
    cheaper than a search of the whole block; most tests take under 5 ms, whose duration is
    written without formatting a float)."""
    lines = "\n".join(
        [
            f"{printable(nodeid)}  {'0.00' if duration < 0.005 else f'{duration:.2f}'} s"
            for nodeid, _, _, duration in results
        ]
    )
    return str(escape(lines))


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
    return render_results(run.launch, run.results, base, max_failures=max_failures, passed=passed)


def render_results(
    launch: Launch,
    results: Sequence[TestResult | Plain],
    base: Path | None,
    *,
    max_failures: int | None = None,
    passed: bool = True,
) -> str:
    """:func:`render` of results some of which are :data:`~rp_bts_agent.model.Plain` tuples
    (the plugin's passing tests), which are listed compactly."""
    failing: list[TestResult] = []
    plain_passed: list[Plain] = []
    others: list[TestResult] = []
    for r in results:  # one pass: a large run is nearly all plain passes
        if not isinstance(r, tuple):
            (failing if r.failing else others).append(r)
        elif r[1] == "passed":
            plain_passed.append(r)
        else:
            from .model import TestResult  # a skip: listed with its outcome like a rich result

            others.append(TestResult(*r))
    shown = failing if max_failures is None else failing[:max_failures]
    omitted = []
    if len(shown) < len(failing):
        omitted.append(f"{len(failing) - len(shown)} more failures not shown")
    hidden = len(others) + len(plain_passed)
    if not passed and hidden:
        omitted.append(f"{hidden} other tests not shown")
    text_budget = FAILURE_TEXT_BUDGET
    title = _e(f"{launch.project + ': ' if launch.project else ''}launch '{launch.name}'")
    duration = _duration(launch)
    ci_job = web_url(launch.environment.get("ci_job", ""))
    date = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(launch.start))
    date = date if launch.start > 0 else ""
    attributes = ", ".join(str(a) for a in launch.attributes)
    environment = ", ".join(  # the CI job is the link above, when it is a web address
        f"{k}: {v}" for k, v in sorted(launch.environment.items()) if k != "ci_job"
    )
    left_out = " and ".join(omitted) + ("; the full report is with the run" if omitted else "")
    while True:
        budget = _Budget(len(shown), text_budget)
        groups = _groups(shown, base, budget)
        listed = [_other(r, base, budget) for r in others] if passed else []
        body = _template().render(groups=groups, others=listed) if groups or listed else ""
        page = _SHELL.format(
            title=title,
            totals=_e(counts_line(launch, results)),
            duration=f" &middot; {duration}" if duration else "",
            ci_job=f' &middot; <a href="{_e(ci_job)}">CI job</a>' if ci_job else "",
            run_id=_e(launch.run_id),
            date=f" &middot; {_e(date)}" if date else "",
            attributes=f" &middot; attributes: {_e(attributes)}" if attributes else "",
            environment=f"<p>environment: {_e(environment)}</p>\n" if environment else "",
            omitted=f"<p><strong>{_e(left_out)}</strong></p>\n" if left_out else "",
            body=body,
            passed=(
                f"<h2>Passed</h2>\n<details><summary>{len(plain_passed)} passed</summary>"
                f'<pre class="n">{_passed(plain_passed)}</pre></details>\n'
                if passed and plain_passed
                else ""
            ),
        )
        # many failures with long texts: spend less on each text until the report fits; at the
        # floor, the later failures lose their texts by as much as the report is over
        if len(page) <= TARGET_BYTES or text_budget == 0:
            return page
        if budget.text_limit > FAILURE_TEXT_FLOOR:
            text_budget //= 2
        else:
            floor = min(text_budget, FAILURE_TEXT_FLOOR * len(shown))
            text_budget = max(0, floor - (len(page) - TARGET_BYTES))


def _other(result: TestResult, base: Path | None, budget: _Budget) -> dict[str, object]:
    """A test that did not fail: its outcome, duration and, skipped or xfailed, the reason."""
    return {
        "nodeid": printable(result.nodeid),
        "outcome": result.outcome,
        "duration": result.duration,
        "message": first_line(result),
        "attributes": printable(", ".join(str(a) for a in result.attributes)),
        "attachments": [
            _attachment(a.name, a.path, a.mime, base, budget) for a in result.attachments
        ],
    }


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
