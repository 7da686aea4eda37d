"""The HTML run report: one self-contained file, readable without JavaScript.

Rendered by Jinja2 with autoescaping, so nothing a test prints can become markup. Long texts are
clipped so a large run stays a file a browser opens.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Final

import jinja2

from .model import RunResults, TestResult
from .sauce import job_links

#: per failure; the results JSON and the issues carry the whole text.
FAILURE_TEXT_LIMIT: Final = 8_000

_TEMPLATE: Final = jinja2.Environment(
    autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True
).from_string(
    """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>{{ title }}</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222}
table{border-collapse:collapse;width:100%}td,th{padding:4px 8px;border-bottom:1px solid #ddd;
text-align:left;vertical-align:top}pre{white-space:pre-wrap;background:#f6f6f6;padding:8px;
max-height:30em;overflow:auto}.o{font-weight:bold}.failed,.error{color:#b00}.passed{color:#070}
.skipped,.xfailed{color:#777}.badge{display:inline-block;padding:0 6px;border-radius:8px;
background:#eef;margin-right:4px}
</style></head><body>
<h1>{{ title }}</h1>
<p>{{ totals }}{% if attributes %} &middot; attributes: {{ attributes }}{% endif %}
{% if ci_job %} &middot; <a href="{{ ci_job }}">CI job</a>{% endif %}</p>
<table><tr><th>Test</th><th>Outcome</th><th>Duration</th><th>Issues</th></tr>
{% for r in rows %}
<tr><td>{{ r.nodeid }}
{% if r.failure %}<details><summary>{{ r.exc_type or "failure" }}</summary>
<pre>{{ r.failure }}</pre></details>{% endif %}
{% for a in r.attachments %}
<div>attachment: <a href="{{ a.href }}">{{ a.name }}</a></div>
{% endfor %}
{% for link in r.links %}<div><a href="{{ link.url }}">{{ link.title }}</a></div>{% endfor %}
</td>
<td class="o {{ r.outcome }}">{{ r.outcome }}</td><td>{{ "%.2f"|format(r.duration) }} s</td>
<td>{% for i in r.issues %}<span class="badge">{% if i.url.startswith("http") %}
<a href="{{ i.url }}">{{ i.key or "-" }}</a>{% else %}{{ i.key or "-" }}{% endif %}
 {{ i.action }}{% if i.status %}, {{ i.status }}{% endif %}</span>{% endfor %}</td></tr>
{% endfor %}
</table></body></html>
"""
)


def _row(result: TestResult, base: Path) -> dict[str, object]:
    failure = result.longrepr or result.message
    if len(failure) > FAILURE_TEXT_LIMIT:
        failure = failure[:FAILURE_TEXT_LIMIT] + f"\n[... {len(failure)} characters in all]"
    return {
        "nodeid": result.nodeid,
        "outcome": result.outcome,
        "duration": result.duration,
        "exc_type": result.exc_type,
        "failure": failure if result.failing else "",
        "issues": result.issues,
        "links": job_links(result),
        "attachments": [
            {"name": a.name, "href": Path(os.path.relpath(a.path, base)).as_posix()}
            for a in result.attachments
        ],
    }


def render(run: RunResults, base: Path) -> str:
    """The report's HTML; links to attachments are relative to ``base``, the report's folder."""
    launch = run.launch
    counts = Counter(r.outcome for r in run.results)
    failing = [r for r in run.results if r.failing]
    ordered = failing + [r for r in run.results if not r.failing]
    return _TEMPLATE.render(
        title=f"{launch.project + ': ' if launch.project else ''}launch '{launch.name}'",
        totals=", ".join(f"{n} {o}" for o, n in sorted(counts.items())) or "no tests",
        attributes=", ".join(str(a) for a in launch.attributes),
        ci_job=launch.environment.get("ci_job", ""),
        rows=[_row(r, base) for r in ordered],
    )
