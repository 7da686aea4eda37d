"""Rally rich text (HTML) for a Defect's Description and discussion posts, test text made inert.

Every text that came from a test goes through :func:`html.escape` (quotes too), so a failure
message cannot open a tag, a link, a script or a style; tracebacks and logs go in ``<pre>``,
where the escaped text keeps its lines. Rally keeps at most 32,768 characters in a rich-text
field, so long sections are cut (their tail kept: the end of a traceback matters) and the whole
text is left to the attachment.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from typing import Final

from rp_bts_agent.model import Link
from rp_bts_agent.tracker import Body, Section

__all__ = ["TEXT_LIMIT", "escape", "render"]

#: Rally refuses a rich-text value longer than 32,768 characters; some room for our own tags.
TEXT_LIMIT: Final = 32_000
#: a section keeps at most this much of its text at first, halved until the whole fits.
SECTION_LIMIT: Final = 12_000
_SCHEMES: Final = ("https://", "http://")
#: links listed at most (each URL at most 500 characters), so they never crowd out the failure
MAX_LINKS: Final = 20


def escape(text: str) -> str:
    """Text shown literally: no tag, entity or attribute survives."""
    return html.escape(text, quote=True)


def _clip_tail(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return f"... [{len(text) - limit} characters cut; the full text is attached]\n" + text[-limit:]


def _section(section: Section, limit: int) -> str:
    title = f"<p><b>{escape(section.title)}</b></p>" if section.title else ""
    text = _clip_tail(section.text.rstrip("\n"), limit)
    if section.preformatted:
        return f"{title}<pre>{escape(text)}</pre>"
    return f"{title}<p>{escape(text).replace(chr(10), '<br />')}</p>"


def _links(links: Sequence[Link]) -> str:
    """Web pages about the failure (a Sauce Labs job, its video) as links; only http(s)."""
    items = [
        f'<li><a href="{escape(link.url)}">{escape((link.title or link.url)[:200])}</a></li>'
        for link in links[:MAX_LINKS]
        if link.url.startswith(_SCHEMES) and len(link.url) <= 500
    ]
    return f"<p><b>Pages</b></p><ul>{''.join(items)}</ul>" if items else ""


def render(body: Body, *, links: Sequence[Link] = (), trailer: Iterable[str] = ()) -> str:
    """The body as Rally HTML, at most :data:`TEXT_LIMIT` characters; ``trailer`` lines are
    ours (a run marker), escaped all the same."""
    tail = [f"<p>{escape(line)}</p>" for line in trailer]
    pages = _links(links)
    limit = SECTION_LIMIT
    while True:
        text = "".join([*(_section(s, limit) for s in body.sections), pages, *tail])
        if len(text) <= TEXT_LIMIT or limit <= 100:
            return text
        limit //= 2
