"""Jira wiki markup (API v2 ``description`` and comment ``body``), with test text made inert.

Written by hand: no maintained library escapes Jira wiki markup. Everything that came from a test
goes through :func:`escape` or :func:`noformat`, so a failure message cannot open a macro
(``{code}``, ``{panel}``, ``{noformat}``), mention someone (``[~user]``), link (``[text|url]``),
build a table (``|a|b|``), format (``*bold*``, ``_it_``, ``-strike-``, ``+u+``, ``^sup^``,
``~sub~``, ``??cite??``), embed an image (``!x.png!``), start a list or a heading (``#``, ``*``,
``h1.``, ``bq.``, ``----``) or an emoticon (``(y)``, ``:)``).

Outside ``{noformat}`` Jira renders numeric character references, so every markup character is
written as one (``{`` -> ``&#123;``) and ``&`` itself as ``&amp;``; the reader sees the original
text. Inside ``{noformat}`` nothing is interpreted except the closing tag, so the only change
there is to break any ``{noformat}`` the text contains with a zero-width space.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

from rp_bts_agent.tracker import Body, Section

#: every character with a meaning in Jira wiki markup, as a numeric character reference.
_ENTITIES: Final = {c: f"&#{ord(c)};" for c in "\\{}[]|*_-+^~?!#()"} | {"&": "&amp;"}
_TABLE: Final = str.maketrans(_ENTITIES)
#: line starts that Jira reads as block markup even without a special character.
_BLOCK_START: Final = re.compile(r"^(\s*)(h[1-6]|bq)\.", re.IGNORECASE | re.MULTILINE)
#: the letter emoticons (``:D``, ``:P``); the others need a parenthesis, which is escaped.
_EMOTICON: Final = re.compile(r":(?=[DPdp])")
_NOFORMAT_TAG: Final = re.compile(r"\{(noformat)", re.IGNORECASE)
_ZWSP: Final = "\u200b"
#: Jira refuses a description or comment longer than 32,767 characters.
TEXT_LIMIT: Final = 32_000
#: a preformatted section keeps at most this much (its tail: the end of a traceback matters).
PRE_LIMIT: Final = 12_000


def one_line(text: str, limit: int = 255) -> str:
    """A summary or title: one line, control characters folded, at most ``limit`` characters.

    Jira shows summaries as plain text, so nothing else needs escaping there.
    """
    flat = re.sub(r"[\x00-\x1f\x7f]+", " ", text).strip()
    return flat if len(flat) <= limit else flat[: limit - 1] + "\u2026"


def escape(text: str) -> str:
    """Inline text rendered literally: no markup, macro, mention, link or emoticon survives."""
    escaped = _EMOTICON.sub("&#58;", text.translate(_TABLE))
    return _BLOCK_START.sub(lambda m: f"{m.group(1)}{m.group(2)}&#46;", escaped)


def noformat(text: str) -> str:
    """A ``{noformat}`` block whose content cannot close it early."""
    inner = _NOFORMAT_TAG.sub(lambda m: "{" + _ZWSP + m.group(1), text.rstrip("\n"))
    return "{noformat}\n" + inner + "\n{noformat}"


def _clip_tail(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return f"... [{len(text) - limit} characters cut; the full text is attached]\n" + text[-limit:]


def _section(section: Section, pre_limit: int) -> str:
    title = f"*{escape(section.title)}*\n" if section.title else ""
    if section.preformatted:
        return title + noformat(_clip_tail(section.text, pre_limit))
    return title + escape(section.text.rstrip("\n"))


def render(body: Body, *, trailer: Iterable[str] = ()) -> str:
    """The body in wiki markup, at most :data:`TEXT_LIMIT` characters.

    ``trailer`` lines are ours (a run marker) and are added unescaped, so they must hold no
    markup characters; they are kept whatever is cut.
    """
    pre_limit = PRE_LIMIT
    tail = "".join(f"\n\n{line}" for line in trailer)
    limit = TEXT_LIMIT - len(tail)
    while True:
        text = "\n\n".join(_section(s, pre_limit) for s in body.sections)
        if len(text) <= limit or pre_limit <= 500:
            break
        pre_limit //= 2
    if len(text) > limit:
        # escaped text alone is too long: cut it at a line end, outside any macro
        cut = text.rfind("\n", 0, limit - 100)
        text = text[: cut if cut > 0 else limit - 100] + "\n\n... [cut]"
        if text.count("{noformat}") % 2:
            text += "\n{noformat}"
    text = (text + tail) if text else tail.lstrip("\n")
    return text
