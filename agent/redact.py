"""Remove secrets from text and JSON-like values before anything is written, posted or mailed.

A secret can leak in forms other than its own text: URL-encoded in a query string, or inside the
base64 of an ``Authorization: Basic`` header. Each form is matched, the longest first, so a secret
that contains another is never half-masked.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Mapping
from typing import Any, Final, final
from urllib.parse import parse_qsl, quote, quote_plus, urlencode, urlsplit, urlunsplit

from .keys import SECRET_KEYS

__all__ = ["MASK", "Redactor", "is_weak", "redact_url_credentials"]

MASK: Final = "***"
#: shorter values would mask ordinary words and numbers all over a traceback.
MIN_SECRET_LENGTH: Final = 4
#: a secret shorter than this, or made of letters only (a word), is weak: it is masked only as
#: a token of its own, never in pytest's own lines, and the config warns about it once.
WEAK_LENGTH: Final = 8
#: what continues a token: a secret next to one of these is part of a longer word
_TOKEN_CHARS: Final = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
#: a base64 fragment shorter than this could match unrelated base64 text.
_MIN_BASE64_CORE: Final = 8
_REFERENCE: Final = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}")
#: a cut through a secret leaves a piece the whole forms miss, and may show most of it: pytest
#: shortens long values ('ghp_abcdefgh...z0123456789AB' == 'x'), rp-bts keeps the tail of long
#: output after "[... N characters cut ...]". A head of a secret right before such a "..." (or
#: "\n[...") and a tail right after one (or "...]\n"), this long or longer, is masked too.
_MIN_PARTIAL: Final = 6
_MAX_PARTIAL: Final = 120
_ELLIPSIS: Final = "..."
#: what may stand between a piece and the "..." of a cut (read forwards and reversed).
_CUT: Final = r"(?=\s?[\[\]]?\.\.\.)"
_QUERY_SECRETS: Final = SECRET_KEYS | {"key", "apikey", "secret", "sig", "signature"}


def _base64_cores(secret: str) -> set[str]:
    """The base64 text that encodes ``secret`` wherever it sits in a longer encoded value.

    Base64 packs 3 bytes into 4 characters, so a secret encodes differently at each of 3 byte
    offsets; at each offset only the characters made of the secret's bits alone are kept.
    """
    raw = secret.encode()
    cores = set()
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + raw).decode().rstrip("=")
        first = -(-offset * 8 // 6)  # first character with none of the padding bytes' bits
        last = (offset + len(raw)) * 8 // 6  # characters past this one take following bytes
        core = encoded[first:last]
        if len(core) >= _MIN_BASE64_CORE:
            cores.add(core)
    return cores


def is_weak(secret: str) -> bool:
    """Short, or a word: such a value also stands in ordinary text (``test`` in ``test_add``)."""
    return len(secret) < WEAK_LENGTH or secret.isalpha()


def _token(form: str) -> str:
    """A secret's text matched only where it stands as a token of its own: ``test`` masks
    ``password=test`` and ``a%20test`` (URL-encoded text), but not ``def test_add``."""
    before = r"(?:(?<![A-Za-z0-9_])|(?<=%[0-9A-Fa-f]{2}))" if form[0] in _TOKEN_CHARS else ""
    after = r"(?![A-Za-z0-9_])" if form[-1] in _TOKEN_CHARS else ""
    return f"{before}{re.escape(form)}{after}"


def _patterns(secret: str) -> dict[str, str]:
    """Each form of a secret and its pattern. A weak secret (:func:`is_weak`) is matched as a
    token only; a strong one anywhere, as no ordinary word holds it; base64 cores anywhere, as
    they sit inside a longer encoded value."""
    whole = _token if is_weak(secret) else re.escape
    forms = {form: whole(form) for form in (secret, quote(secret, safe=""), quote_plus(secret))}
    return forms | {core: re.escape(core) for core in _base64_cores(secret)}


def _head(secret: str) -> str:
    """A head of ``secret`` (``_MIN_PARTIAL`` characters or more) right before a cut.

    One literal, then nested optional characters: the pattern grows with the secret's length,
    not its square, and starts with a literal, so the regex engine scans fast."""
    cut = secret[: _MAX_PARTIAL + 1]
    rest = ""
    for char in reversed(cut[_MIN_PARTIAL:-1]):
        rest = f"(?:{re.escape(char)}{rest})?"
    return f"{re.escape(cut[:_MIN_PARTIAL])}{rest}{_CUT}"


def _heads(secrets: Iterable[str]) -> re.Pattern[str] | None:
    heads = sorted({_head(s) for s in secrets if len(s) > _MIN_PARTIAL}, key=lambda p: -len(p))
    return re.compile("|".join(heads)) if heads else None


@final
class Redactor:
    """Masks a fixed set of secrets with ``***``; cheap to call when there are none."""

    __slots__ = ("_ends", "_forms", "_heads", "_pattern", "_tails")

    def __init__(self, secrets: Iterable[str], *, strong_only: bool = False) -> None:
        """``strong_only``: leave weak secrets (:func:`is_weak`) alone, for pytest's own lines."""
        kept = [
            s
            for s in secrets
            if isinstance(s, str)
            and len(s) >= MIN_SECRET_LENGTH
            and not (strong_only and is_weak(s))
        ]
        forms = {form: pattern for secret in kept for form, pattern in _patterns(secret).items()}
        ordered = [forms[form] for form in sorted(forms, key=lambda s: (-len(s), s))]
        self._pattern = re.compile("|".join(ordered)) if ordered else None
        #: every pattern needs its form's text: a text holding none skips the regex scan (a
        #: substring search per form is several times faster than the alternation)
        self._forms = tuple(forms)
        self._heads = _heads(kept)
        # a tail right after a cut is a head right before it in the reversed text
        self._tails = _heads(s[::-1] for s in kept)
        #: the shortest head and tail of each secret: a text holding none of them has no piece
        #: to mask, and skips the two scans (one of them over the reversed text)
        long_enough = [s for s in kept if len(s) > _MIN_PARTIAL]
        self._ends = tuple({e for s in long_enough for e in (s[:_MIN_PARTIAL], s[-_MIN_PARTIAL:])})

    def __bool__(self) -> bool:
        return self._pattern is not None

    def redact(self, text: str) -> str:
        if self._pattern is None or not text:
            return text
        if (
            self._heads is not None
            and self._tails is not None
            and _ELLIPSIS in text
            and any(end in text for end in self._ends)
        ):
            text = self._heads.sub(MASK, text)
            text = self._tails.sub(MASK, text[::-1])[::-1]
        if not any(form in text for form in self._forms):
            return text
        return self._pattern.sub(MASK, text)

    def redact_obj(self, value: Any) -> Any:
        """A copy of a JSON-like value with secrets masked in every string and under secret keys."""
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, Mapping):
            return {
                k: MASK if k in SECRET_KEYS and _value_set(v) else self.redact_obj(v)
                for k, v in value.items()
            }
        if isinstance(value, (list, tuple)):
            return type(value)(self.redact_obj(v) for v in value)
        return value


def _value_set(value: Any) -> bool:
    """Whether a value under a secret key is a secret: not empty, not a ``${VAR}`` reference
    (which ``integrations list`` marks ``(unset)`` when the variable has no value)."""
    if isinstance(value, str):
        return bool(value) and _REFERENCE.fullmatch(value.removesuffix(" (unset)")) is None
    return value is not None


def redact_url_credentials(url: str) -> str:
    """A URL with its password and credential query parameters masked, for logs and reports."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return url
    netloc = parts.netloc
    if password is not None:
        userinfo, _, host = netloc.rpartition("@")
        user = userinfo.partition(":")[0]
        netloc = f"{user}:{MASK}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(k.lower() in _QUERY_SECRETS for k, _ in pairs):
            masked = [(k, MASK if k.lower() in _QUERY_SECRETS else v) for k, v in pairs]
            query = urlencode(masked, safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
