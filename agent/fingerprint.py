"""Fingerprints: one short, stable, searchable id per distinct failure.

Written by hand: no maintained library turns a Python failure into a tracker-safe id that survives
line shifts and noisy messages (Sentry's grouping lives on its server, not in its SDK).

A fingerprint is ``rpbts2-`` followed by 20 hex digits of a SHA-256 over the rule that grouped
the failure (:func:`rule_for`) and

1. the test identity: the node id without its parameter id (``test_x.py::test_a[1-foo]`` is
   ``test_x.py::test_a``), unless parameters are asked to count; only when the failure is raised
   in the test module itself (rule ``test``): a failure raised in the code under test, a shared
   fixture or a helper is grouped by cause across tests (rule ``cause``);
2. the exception type, as the caller names it (``AssertionError``, ``requests.HTTPError``);
3. the message, normalized by :func:`normalize_message` (noise such as times, ids, addresses,
   temporary paths and numbers becomes placeholders);
4. the innermost in-app frames (:func:`frames_from_traceback`): relative path, function name and
   the normalized source line, never a line number, so code added above the failure keeps the
   fingerprint; for rule ``cause`` the innermost one only (the raise site), as the callers differ.

Collection errors (rule ``collection``: the module and its error) and failing shared fixtures
(rule ``fixture``: the fixture and its error) have fingerprints of their own
(:func:`compute_for`).

It is lower-case letters, digits and one hyphen, so it is a valid Jira label, Rally tag and an
exact search term anywhere. :data:`FINGERPRINT_VERSION` is part of it: any change here that moves
fingerprints must bump it, so old issues are not matched by accident.
"""

from __future__ import annotations

import hashlib
import json
import linecache
import os
import re
import sysconfig
import types
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from keyword import kwlist
from pathlib import Path
from typing import Final, Literal

__all__ = [
    "FINGERPRINT_VERSION",
    "MESSAGE_LIMIT",
    "Frame",
    "Rule",
    "compute",
    "compute_for",
    "frames_from_traceback",
    "normalize_message",
    "normalize_source",
    "rule_for",
    "test_identity",
]

#: 2: failures raised outside the test module are grouped by cause (1 was always per test)
FINGERPRINT_VERSION: Final = 2
PREFIX: Final = f"rpbts{FINGERPRINT_VERSION}-"
DIGEST_CHARS: Final = 20
#: characters of the normalized message that count; the rest of a long diff is noise.
MESSAGE_LIMIT: Final = 500
#: raw characters read before normalizing, so a multi-megabyte message costs no time.
_RAW_LIMIT: Final = 20_000

#: top-level modules whose frames are never "in app": the test runner and this plugin.
_INTERNAL_MODULES: Final = frozenset(
    ("pytest", "_pytest", "pluggy", "rp_bts_agent", "pytest_rp_bts")
)
_SITE_DIRS: Final = frozenset(("site-packages", "dist-packages"))

#: what grouped a failure, as the results JSON says per result (``grouped_by``): its raise site
#: (``cause``), its test (``test``), a conftest hook, a collection error, a shared fixture, or the
#: storm guard (set by the agent)
Rule = Literal["cause", "test", "hook", "collection", "fixture", "storm"]


@dataclass(frozen=True, slots=True)
class Frame:
    """One in-app frame: ``path`` is relative to the rootdir (posix), ``source`` normalized."""

    path: str
    function: str
    source: str


# --------------------------------------------------------------------------------------- frames


def _library_dirs() -> tuple[str, ...]:
    """The stdlib and the installed-packages directories, resolved, with a trailing separator."""
    paths = sysconfig.get_paths()
    dirs = {paths[key] for key in ("stdlib", "platstdlib", "purelib", "platlib") if key in paths}
    dirs.add(str(Path(__file__).parent))  # the agent itself, also when run from a source tree
    return tuple(sorted({os.path.join(os.path.realpath(d), "") for d in dirs}))


_LIBRARY_DIRS: Final = _library_dirs()


@lru_cache(maxsize=4096)
def _relative_in_app(filename: str, root: str) -> str | None:
    """``filename`` relative to ``root`` (posix) when it is project code, else None."""
    if not filename or filename.startswith("<"):  # <string>, <frozen ...>, <doctest ...>
        return None
    real = os.path.realpath(filename)
    if real.startswith(_LIBRARY_DIRS):
        return None
    try:
        rel = Path(real).relative_to(root)
    except ValueError:
        return None
    # Judged on the part below the rootdir, so a project that itself lives in a site-packages
    # directory still has in-app frames, while a virtualenv inside the project does not.
    if _SITE_DIRS.intersection(rel.parts[:-1]):
        return None
    return rel.as_posix()


def _hidden(frame: types.FrameType) -> bool:
    """pytest's convention: ``__tracebackhide__`` in the function or its module hides the frame.

    A callable value (pytest calls it with its ExceptionInfo) cannot be evaluated here, so it
    keeps the frame: a frame too many costs less than losing the one that failed.
    """
    for scope in (frame.f_locals, frame.f_globals):
        value = scope.get("__tracebackhide__", False)
        if value and not callable(value):
            return True
    return False


def _internal(frame: types.FrameType) -> bool:
    module = frame.f_globals.get("__name__")
    return isinstance(module, str) and module.partition(".")[0] in _INTERNAL_MODULES


def frames_from_traceback(
    tb: types.TracebackType | None, rootdir: str | Path, *, limit: int = 5
) -> tuple[Frame, ...]:
    """The innermost ``limit`` in-app frames of ``tb``, innermost last.

    In app: a file under ``rootdir`` that is not in the stdlib, in a site-packages or
    dist-packages directory, in pytest, pluggy or this plugin, and whose function or module does
    not set ``__tracebackhide__``. The function is ``co_name`` (not ``co_qualname``, which Python
    3.10 lacks), so a CI matrix over Python versions agrees on fingerprints.
    """
    if limit <= 0:
        return ()
    root = os.path.realpath(rootdir)
    picked: list[tuple[str, types.FrameType, int | None]] = []
    while tb is not None:
        frame = tb.tb_frame
        rel = _relative_in_app(frame.f_code.co_filename, root)
        if rel is not None and not _internal(frame) and not _hidden(frame):
            picked.append((rel, frame, tb.tb_lineno))
        tb = tb.tb_next
    frames = []
    checked: set[str] = set()
    for rel, frame, lineno in picked[-limit:]:
        filename = frame.f_code.co_filename
        if filename not in checked:  # the file may have changed since it was cached
            linecache.checkcache(filename)
            checked.add(filename)
        line = linecache.getline(filename, lineno, frame.f_globals) if lineno else ""
        frames.append(Frame(rel, frame.f_code.co_name, normalize_source(line)))
    return tuple(frames)


# ---------------------------------------------------------------------------------- source line

# A small lexer rather than the tokenize module: it never raises on a fragment of a statement
# (one line of a multi-line call, an unterminated string) and lexes alike on every Python version,
# where tokenize splits f-strings into parts since 3.12.
_SOURCE_TOKEN: Final = re.compile(
    r"""
    (?P<ws>\s+)
    | (?P<comment>\#.*)
    | (?P<str>(?:[rRbBuUfF]{1,2})?
        (?: '''(?:\\.|[^\\])*?(?:'''|\Z) | \"\"\"(?:\\.|[^\\])*?(?:\"\"\"|\Z)
          | '(?:\\.|[^'\\])*(?:'|\Z)     | "(?:\\.|[^"\\])*(?:"|\Z) ))
    | (?P<num>(?:0[xX][0-9a-fA-F_]+ | 0[oO][0-7_]+ | 0[bB][01_]+
        | (?:\d[\d_]*(?:\.[\d_]*)? | \.\d[\d_]*)(?:[eE][+-]?\d[\d_]*)?)[jJ]?)
    | (?P<name>\w+)
    | (?P<op>\*\*=|//=|>>=|<<=|\.\.\.|->|:=|[-+*/%@&|^<>!=]=|\*\*|//|<<|>>|\S)
    """,
    re.VERBOSE | re.DOTALL,
)
_WORDS: Final = frozenset(("str", "num", "name"))
_ARITHMETIC: Final = ("+", "-", "*", "/", "//", "%", "**", "@", "|", "&", "^", "<<", ">>")
_SPACED_OPS: Final = frozenset(
    ("==", "!=", "<", ">", "<=", ">=", "=", ":=", "->", *_ARITHMETIC)
).union(op + "=" for op in _ARITHMETIC)
#: keywords that are spaced like words: ``not (x)``, ``return -x``, ``) or``; not the constants.
_KEYWORDS: Final = frozenset(kwlist) - {"True", "False", "None"}
_UNARY: Final = frozenset(("-", "+", "~", "*", "**", "@"))
_SPACE_AFTER: Final = _SPACED_OPS | {",", ":"}


def normalize_source(line: str) -> str:
    """One source line with literals and layout taken out: stable under reformatting.

    String literals (any prefix or quotes, f-strings included) become ``<str>``, numbers ``<num>``,
    comments go, and tokens are re-spaced by a fixed rule, so ``assert x==1  # why`` and
    ``assert x == 2`` both read ``assert x == <num>``. Identifiers and structure are kept.
    """
    out: list[str] = []
    prev_kind = prev_text = ""
    prev_unary = False
    for match in _SOURCE_TOKEN.finditer(line):
        kind = match.lastgroup or "op"
        if kind in ("ws", "comment"):
            continue
        text = {"str": "<str>", "num": "<num>"}.get(kind, match.group())
        # ``-`` after an operator or an opening bracket is unary: ``f(*a, x=-1)`` stays so.
        unary = text in _UNARY and (
            not out or (prev_kind == "op" and prev_text not in ")]}") or prev_text in _KEYWORDS
        )
        if out and (
            (kind in _WORDS and prev_kind in _WORDS)
            or prev_text in _KEYWORDS
            or (text in _KEYWORDS and prev_text in ")]}")
            or (prev_kind == "op" and prev_text in _SPACE_AFTER and not prev_unary)
            or (text in _SPACED_OPS and not unary)
        ):
            out.append(" ")
        out.append(text)
        prev_kind, prev_text, prev_unary = kind, text, unary
    return "".join(out)


# -------------------------------------------------------------------------------------- message

_WEEKDAY: Final = r"(?:mon|tue|wed|thu|fri|sat|sun)[a-z]*"
_MONTH: Final = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*"
_CLOCK: Final = r"\d{1,2}:\d{2}:\d{2}(?:[.,]\d+)?"

#: (placeholder, pattern), tried in this order at each position of the message. Placeholders
#: hold no digits, slashes or hex runs, so normalizing twice changes nothing.
_MESSAGE_RULES: Final[tuple[tuple[str, str], ...]] = (
    ("url", r"\b[a-z][a-z0-9+.\-]*://[^\s'\"<>()\[\]{}]+"),
    ("<email>", r"(?<![\w.+\-])[\w.+\-]+@[a-z0-9\-]+(?:\.[a-z0-9\-]+)*\.[a-z]{2,}\b"),
    ("<uuid>", r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b"),
    # RFC 2822 and ctime(): "Tue, 15 Nov 1994 08:12:31 GMT", "Mon Jan  1 10:00:00 2024"
    (
        "<datetime>",
        rf"\b{_WEEKDAY},?\s+(?:\d{{1,2}}\s+{_MONTH}|{_MONTH}\s+\d{{1,2}})\s+(?:\d{{4}}\s+)?"
        rf"{_CLOCK}(?:\s+\d{{4}})?(?:\s+(?:gmt|utc|[+\-]\d{{4}}))?\b",
    ),
    # ISO 8601: "2024-05-01", "2024-05-01T10:00:00.123+02:00"
    (
        "<datetime>",
        r"\b\d{4}-\d{2}-\d{2}(?:[t ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?)?"
        r"(?:z\b|[+\-]\d{2}:?\d{2}\b)?",
    ),
    ("<time>", rf"(?<![\d:]){_CLOCK}(?![\d:])"),
    ("at <addr>", r"\bat 0x[0-9a-f]+\b"),
    ("<hex>", r"\b0x[0-9a-f]+\b|\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{8,}\b"),
    ("<path>", r"(?<![\w])[a-z]:[\\/][^\s'\"<>|*?]*"),  # C:\Users\..., C:/Users/...
    ("<path>", r"\\\\[\w.\-]+\\[^\s'\"<>|*?]*"),  # \\server\share\...
    ("<path>", r"(?<![\w.:/\\~<>\-])/[\w.@%+~=\-]+(?:/[\w.@%+~=\-]+)*/?"),
    ("<ip>", r"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d{1,5})?\b"),
    (
        "<duration>",
        r"(?<![\w.])\d+(?:\.\d+)?"
        r"(?:\s?(?:ns|us|µs|ms|secs?|seconds?|mins?|minutes?|hrs?|hours?|days?)|s|h)\b",
    ),
    # run-together ids: request ids, tokens, random file names ("k2j3l4x9q8w7e6r5")
    ("<id>", r"\b(?=[a-z0-9]*\d)(?=[a-z0-9]*[a-z])[a-z0-9]{16,}\b"),
    ("<num>", r"(?<![\w.])\d+(?:[._]\d+)*(?:e[+\-]?\d+)?(?!\w)"),
)
_MESSAGE_NOISE: Final = re.compile(
    "|".join(f"(?P<r{i}>{pattern})" for i, (_, pattern) in enumerate(_MESSAGE_RULES)),
    re.IGNORECASE,
)
_URL_PARTS: Final = re.compile(
    r"(?P<scheme>[^:]+://)(?:[^@/?#]*@)?(?P<host>[^/?#]*)(?P<path>[^?#]*)(?P<rest>.*)", re.DOTALL
)
_HOST_PORT: Final = re.compile(r"(?P<host>.*?)(?::(?P<port>\d+))?")
_IPV4: Final = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}")


def _normalize_url(url: str) -> str:
    """Keep scheme, host and path shape; drop credentials, ports, query and ids in the path."""
    parts = _URL_PARTS.fullmatch(url)
    if parts is None:  # pragma: no cover - the URL rule always has a scheme
        return "<url>"
    host_port = _HOST_PORT.fullmatch(parts["host"])
    assert host_port is not None  # the pattern matches any string
    host = "<ip>" if _IPV4.fullmatch(host_port["host"]) else host_port["host"].lower()
    if host_port["port"]:
        host += ":<port>"
    path = "/".join(_MESSAGE_NOISE.sub(_replace, part) for part in parts["path"].split("/"))
    rest = parts["rest"]
    tail = "?<query>" if rest.startswith("?") else "#<fragment>" if rest else ""
    return f"{parts['scheme'].lower()}{host}{path}{tail}"


def _replace(match: re.Match[str]) -> str:
    name = match.lastgroup
    assert name is not None  # every alternative is a named group
    placeholder = _MESSAGE_RULES[int(name[1:])][0]
    return _normalize_url(match.group()) if placeholder == "url" else placeholder


def normalize_message(message: str) -> str:
    """``message`` with noise replaced by placeholders, on one line, at most 500 characters.

    Whitespace runs (newlines included) become one space. Then, left to right:

    ============================================  =========================================
    noise                                         becomes
    ============================================  =========================================
    URL ``http://u:p@10.0.0.5:8080/a/42?x=1``     ``http://<ip>:<port>/a/<num>?<query>``
    e-mail address                                ``<email>``
    UUID                                          ``<uuid>``
    ISO 8601, RFC 2822 and ctime() date / time    ``<datetime>``; a bare ``12:30:05`` ``<time>``
    ``at 0x7f3a...`` (an object's repr)           ``at <addr>``
    ``0x1f``, hex runs of 8+ with a digit         ``<hex>`` (commit and object ids)
    absolute posix, Windows and UNC paths         ``<path>``
    IPv4 address with optional port               ``<ip>``
    ``1.5s``, ``250 ms``, ``3 hours``             ``<duration>``
    16+ letters and digits run together           ``<id>`` (request ids, random names)
    integers, floats, versions, ``1e-5``          ``<num>``
    ============================================  =========================================

    Numbers inside words stay (``utf8``, ``sha256``, ``test_2``, ``v1.2``), as do relative
    paths, which name project files rather than temporary ones. Idempotent.
    """
    text = " ".join(message[:_RAW_LIMIT].split())
    return _MESSAGE_NOISE.sub(_replace, text)[:MESSAGE_LIMIT]


# ---------------------------------------------------------------------------------- fingerprint


def test_identity(nodeid: str, *, include_params: bool = False) -> str:  # noqa: PT028 - not a test
    """The node id without its parameter id, unless ``include_params``.

    The parameter id is the bracketed tail of the last name; it may itself hold ``::`` or
    brackets, so it is found from the first ``[`` after the file part (names cannot hold one).
    """
    if include_params:
        return nodeid
    path, sep, names = nodeid.partition("::")
    if sep and names.endswith("]") and "[" in names:
        return f"{path}::{names[: names.index('[')]}"
    return nodeid


test_identity.__test__ = False  # type: ignore[attr-defined]  # not a test, despite the name


def rule_for(nodeid: str, frames: Sequence[Frame], group_by: str = "cause") -> Rule:
    """``cause`` when the innermost in-app frame is outside the test's own module (the code under
    test, a conftest fixture, a helper): every test failing there alike shares one issue. A
    failure in the test module itself (its own assert, a helper defined beside it) is the test's:
    ``test``, as is everything with ``group_by = "test"`` or no in-app frame at all."""
    if group_by != "cause" or not frames:
        return "test"
    module = nodeid.partition("::")[0]
    return "cause" if frames[-1].path != module else "test"


def _digest(parts: list[object]) -> str:
    """The parts hashed as one JSON array, so no choice of separators makes two different sets
    of parts collide."""
    blob = json.dumps(parts, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "replace")
    return PREFIX + hashlib.sha256(blob).hexdigest()[:DIGEST_CHARS]


def compute(
    nodeid: str,
    exc_type: str,
    message: str,
    frames: Sequence[Frame],
    *,
    include_params: bool = False,
    rule: Rule = "test",
) -> str:
    """The fingerprint: ``rpbts2-`` and 20 hex digits, e.g. ``rpbts2-3f9a0c4be1d27a65c0de``.

    ``rule`` (from :func:`rule_for`) ``cause`` leaves the test out and keeps the raise site only.
    """
    if rule == "cause":
        site = frames[-1:]
        return compute_for("cause", "", exc_type, message, site)
    return compute_for(
        "test", test_identity(nodeid, include_params=include_params), exc_type, message, frames
    )


def compute_for(
    rule: Rule, subject: str, exc_type: str, message: str, frames: Sequence[Frame] = ()
) -> str:
    """The fingerprint of a failure grouped by ``rule`` around ``subject``: a test identity,
    a test module (``collection``), a fixture (``fixture``: its file and name) or a cause."""
    return _digest(
        [
            FINGERPRINT_VERSION,
            rule,
            subject,
            exc_type.strip(),
            normalize_message(message),
            [[frame.path, frame.function, frame.source] for frame in frames],
        ]
    )
