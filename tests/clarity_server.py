"""A stateful Clarity PPM REST v1 server on 127.0.0.1 that checks each request against the contract.

Each request under ``/ppm/rest/v1`` is validated with openapi-core against
``tests/contracts/clarity-ppm-rest-v1.yaml`` (loaded once per process) before it is served; a
violation is recorded, and the fixtures fail the test at teardown. Everything else is a small,
honest Clarity: Basic, session-token (``/auth/login``, ``authToken``, ``/auth/logout``), API-key
(``Bearer`` + ``x-api-ppm-client``) and OAuth 1.0a (RSA-SHA1, the provider's three URLs under
``/ppm/oauth/``) authentication; projects; project issues with lookups (status, priority),
custom ``c_`` attributes, ``/describe``; the documented ``filter`` language; paging with
``_next``; fault switches (latency, outage, injected 429/503, random faults).

Error bodies have the contract's shape (``resourceId``, ``httpStatus``, ``errorCode``,
``errorMessage``). Broadcom documents the shape, ``API-1005`` (as an example) and ``API-1029``
("Authentication Error", a user without the *API - Access* right); the other codes in
:data:`ERRORS` are this server's own, one per cause, so a client can tell them apart.

Test modules import the fixtures by their function names:
``from clarity_server import clarity_fixture, clarity_contract_fixture, make_clarity_fixture``.

For a client's tests: ``clarity`` (a fresh server) or ``make_clarity(**switches)`` (see
:data:`SWITCHES`) give a :class:`RunningClarity`: ``url`` (what a user types; the REST API is
``api``), ``project_id(code)``, ``issues(project_code)``, ``issue(code_or_id)``,
``set_status(code_or_id, "Closed")``, ``change(code_or_id, **attributes)``, ``patch_count``,
``visit(authorization_url)`` (the user reading the verification code),
``integration_toml(auth=..., **overrides)``, ``login_env(monkeypatch)``; its ``state``
(:class:`ClarityState`) holds the data, the switches, ``requests`` (secrets replaced by
``***``), ``calls(method, path)``, ``expire_sessions()``, ``throttle(n)``, ``unavailable(n)``,
``add_issue(...)``, ``issue_attributes`` and ``take_violations()``.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import functools
import html
import itertools
import json
import operator
import random
import re
import shutil
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import pytest
import requests
from server_kit import Faults, Handler, Server, one_server, serve, server_factory, wait_idle

CONTRACT = Path(__file__).parent / "contracts" / "clarity-ppm-rest-v1.yaml"
#: the spec's own server: its paths carry the ``/ppm/rest/v1`` prefix, so requests are
#: validated path-only, as if sent there (the local port never has to match ``servers``).
SPEC_BASE = "https://clarity.example.com"
API = "/ppm/rest/v1"
OAUTH = "/ppm/oauth"

USER = "qa.robot"
PASSWORD = "clarity-pw-123"
API_KEY = "ppm-api-key-7f3a9c"
CLIENT_ID = "rp_bts"
OAUTH_CONSUMER = "rp-bts-clarity"
ACCESS_TOKEN = "clarity-access-token-31337"
ACCESS_TOKEN_SECRET = "clarity-access-secret"

#: errorCode -> what it means here (see the module docstring for which ones Broadcom documents).
ERRORS: dict[str, str] = {
    "API-1000": "no credentials at all",
    "API-1001": "Basic: wrong user name or password",
    "API-1002": "authToken unknown, expired or logged out: log in again",
    "API-1005": "invalid filter: syntax, quoting, value type, operator or unknown attribute",
    "API-1007": "unknown attribute (body, fields or sort)",
    "API-1008": "read-only attribute in a write",
    "API-1009": "resource not found",
    "API-1010": "malformed request: JSON body, offset or limit",
    "API-1018": "validation: mandatory, max length, type, lookup value, duplicate code",
    "API-1029": "Authentication Error: the user lacks the API - Access right",
    "API-1030": "API keys are not enabled on this server",
    "API-1031": "the API key has expired",
    "API-1032": "the API key has been revoked",
    "API-1033": "API key unknown or x-api-ppm-client missing/not the key's client",
    "API-1034": "OAuth: bad signature, unknown consumer or access token",
    "API-1042": "too many requests (429, with Retry-After)",
    "API-1099": "method not allowed on this resource",
    "API-1500": "internal error (random fault)",
}

STATUS_LOOKUP = "RIM_ISSUE_STATUS"
PRIORITY_LOOKUP = "RIM_ISSUE_PRIORITY"
#: lookup code -> [(id, displayValue)]; the id is what an issue's attribute holds and takes.
LOOKUPS: dict[str, list[tuple[str, str]]] = {
    STATUS_LOOKUP: [
        ("OPEN", "Open"),
        ("IN_PROGRESS", "In Progress"),
        ("RESOLVED", "Resolved"),
        ("CLOSED", "Closed"),
    ],
    PRIORITY_LOOKUP: [("LOW", "Low"), ("MEDIUM", "Medium"), ("HIGH", "High")],
}


def _attr(
    name: str, label: str, data_type: str, *, mandatory: bool = False, read_only: bool = False,
    **extra: Any,
) -> dict[str, Any]:  # fmt: skip
    return {
        "name": name,
        "label": label,
        "dataType": data_type,
        "isMandatory": mandatory,
        "isReadOnly": read_only,
        "isMultiValued": False,
        **extra,
    }


#: ``/describe/issues``: the API-enabled issue attributes (the site's real contract).
ISSUE_ATTRIBUTES: list[dict[str, Any]] = [
    _attr("code", "ID", "string", maxLength=30),
    _attr("name", "Name", "string", mandatory=True, maxLength=80),
    _attr("description", "Description", "string"),
    _attr("status", "Status", "lookup", lookupType="static", lookupCode=STATUS_LOOKUP),
    _attr("priority", "Priority", "lookup", lookupType="static", lookupCode=PRIORITY_LOOKUP),
    _attr("owner", "Owner", "integer"),
    _attr("createdDate", "Created", "date", read_only=True),
    _attr("lastUpdatedDate", "Last Updated", "date", read_only=True),
    _attr("c_rp_fingerprint", "RP fingerprint", "string", maxLength=80),
    _attr("c_occurrences", "Occurrences", "number"),
    _attr("c_last_run", "Last run", "string", maxLength=80),
    _attr("c_tests", "Tests", "string"),
]
PROJECT_ATTRIBUTES: list[dict[str, Any]] = [
    _attr("code", "ID", "string", mandatory=True, maxLength=30),
    _attr("name", "Name", "string", mandatory=True, maxLength=80),
    _attr("description", "Description", "string"),
    _attr("isActive", "Active", "boolean"),
]
LOOKUP_VALUE_ATTRIBUTES: list[dict[str, Any]] = [
    _attr("id", "ID", "string", read_only=True),
    _attr("code", "Code", "string", read_only=True),
    _attr("displayValue", "Display Value", "string", read_only=True),
]
#: system attributes every resource can be filtered and sorted by
_SYSTEM = [_attr("_internalId", "Internal ID", "integer", read_only=True)]
DESCRIBED = {
    "projects": ("Projects", ["GET"], PROJECT_ATTRIBUTES),
    "issues": ("Issues", ["GET", "POST", "PATCH"], ISSUE_ATTRIBUTES),
}

PROJECTS = [("PR1001", "Shop", True), ("PR1002", "Archive", False)]


# -- the contract ----------------------------------------------------------------------------


@functools.cache
def contract() -> Any:
    """The OpenAPI object, loaded once.

    One edit, for validation only: the contract (like Broadcom's REST manuals) does not
    describe OAuth 1.0a, so an HTTP ``OAuth`` scheme is added to the global security
    alternatives; the server checks the signature itself. ``/auth/login`` and ``/auth/logout``
    keep their own security (Basic; ``authToken``)."""
    from jsonschema_path.readers import PathReader
    from openapi_core import OpenAPI

    spec: Any = PathReader(CONTRACT).read()[0]
    spec["components"]["securitySchemes"]["oauth1"] = {"type": "http", "scheme": "oauth"}
    spec["security"].append({"oauth1": []})
    return OpenAPI.from_dict(spec)


def validate(method: str, path_qs: str, headers: dict[str, str], body: bytes) -> str | None:
    """The violation text for a request, or ``None`` when the contract accepts it."""
    from openapi_core.contrib.requests import RequestsOpenAPIRequest

    spec = contract()
    keep = {k: v for k, v in headers.items() if k.lower() not in ("host", "content-length")}
    prepared = requests.Request(method, SPEC_BASE + path_qs, headers=keep, data=body).prepare()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            spec.validate_request(RequestsOpenAPIRequest(prepared))
    except Exception as exc:
        cause = exc.__cause__ or exc.__context__
        return f"{method} {path_qs}: {type(exc).__name__}: {exc}" + (f" ({cause})" if cause else "")
    return None


def validate_response(response: requests.Response) -> str | None:
    """The violation text for one of this server's answers, or ``None`` (for the server's own
    tests: its answers follow the contract too)."""
    from openapi_core.contrib.requests import RequestsOpenAPIRequest, RequestsOpenAPIResponse

    sent = response.request
    split = urlsplit(sent.url or "")
    path_qs = split.path + (f"?{split.query}" if split.query else "")
    keep = {k: v for k, v in sent.headers.items() if k.lower() not in ("host", "content-length")}
    prepared = requests.Request(
        sent.method, SPEC_BASE + path_qs, headers=keep, data=sent.body
    ).prepare()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            contract().validate_response(
                RequestsOpenAPIRequest(prepared), RequestsOpenAPIResponse(response)
            )
    except Exception as exc:
        cause = exc.__cause__ or exc.__context__
        text = f"{sent.method} {path_qs} -> {response.status_code}: {type(exc).__name__}: {exc}"
        return text + (f" ({cause})" if cause else "")
    return None


# -- the filter language ---------------------------------------------------------------------


class FilterError(ValueError):
    """A filter the server refuses: answered 400 ``API-1005`` with this message."""


_TOKEN = re.compile(
    r"""\s*(?:
      (?P<str>')                       # a string starts; read by hand for its escapes
    | (?P<num>-?\d+(?:\.\d+)?)(?![A-Za-z_])
    | (?P<op>!=|>=|<=|=|<|>)
    | (?P<punct>[(),])
    | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
    )""",
    re.X,
)
_WORD_OPS = ("startsWith", "endsWith", "contains", "in")
_STRING_TYPES = ("string", "date", "lookup")
_NUMBER_TYPES = ("number", "integer")


@dataclass(frozen=True)
class _Tok:
    kind: str  # str, num, op, punct, word
    text: str
    value: Any
    at: int


def _tokens(text: str) -> list[_Tok]:
    """Strings are single-quoted; inside them ``\\'`` is a quote and ``\\\\`` a backslash
    (the contract documents single quotes and no other escape; see the report)."""
    out: list[_Tok] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if m is None:
            bad = text[pos:].lstrip()[:1]
            where = len(text) - len(text[pos:].lstrip())
            hint = " (strings take single quotes)" if bad == '"' else ""
            raise FilterError(f"unexpected character {bad!r} at {where}{hint}")
        kind = m.lastgroup or ""
        start = m.start(kind)
        if kind == "str":
            i, chars = m.end(), []
            while True:
                if i >= len(text):
                    raise FilterError(f"unterminated string starting at {start}")
                c = text[i]
                if c == "\\" and i + 1 < len(text) and text[i + 1] in "'\\":
                    chars.append(text[i + 1])
                    i += 2
                    continue
                if c == "'":
                    break
                chars.append(c)
                i += 1
            out.append(_Tok("str", text[start : i + 1], "".join(chars), start))
            pos = i + 1
            continue
        raw = m.group(kind)
        value: Any = raw
        if kind == "num":
            value = float(raw) if "." in raw else int(raw)
        out.append(_Tok(kind, raw, value, start))
        pos = m.end()
    return out


@dataclass(frozen=True)
class Cond:
    attribute: str
    op: str
    value: Any  # str, int, float, bool, or a list of those for ``in``


@dataclass(frozen=True)
class BoolOp:
    op: str  # "and" | "or"
    left: Filter
    right: Filter


Filter = Cond | BoolOp


class _Parser:
    """``expr := conj ('or' conj)*``, ``conj := prim ('and' prim)*``,
    ``prim := '(' expr ')' | '(' attribute operator value ')'``: every condition is
    parenthesised, ``and`` binds tighter than ``or``; ``and``/``or`` are lower case."""

    def __init__(self, text: str, attributes: dict[str, str]) -> None:
        self.toks = _tokens(text)
        self.i = 0
        self.attributes = attributes  # name -> dataType

    def parse(self) -> Filter:
        if not self.toks:
            raise FilterError("empty filter")
        tree = self._or()
        if self.i < len(self.toks):
            tok = self.toks[self.i]
            raise FilterError(f"unexpected {tok.text!r} at {tok.at}")
        return tree

    def _peek(self) -> _Tok | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def _next(self, what: str) -> _Tok:
        tok = self._peek()
        if tok is None:
            raise FilterError(f"expected {what} at the end of the filter")
        self.i += 1
        return tok

    def _expect(self, text: str) -> None:
        tok = self._next(repr(text))
        if tok.text != text or tok.kind == "str":
            raise FilterError(f"expected {text!r} at {tok.at}, found {tok.text!r}")

    def _or(self) -> Filter:
        left = self._and()
        while (tok := self._peek()) is not None and tok.kind == "word" and tok.text == "or":
            self.i += 1
            left = BoolOp("or", left, self._and())
        return left

    def _and(self) -> Filter:
        left = self._prim()
        while (tok := self._peek()) is not None and tok.kind == "word" and tok.text == "and":
            self.i += 1
            left = BoolOp("and", left, self._prim())
        return left

    def _prim(self) -> Filter:
        tok = self._next("'('")
        if tok.text != "(" or tok.kind != "punct":
            raise FilterError(
                f"expected '(' at {tok.at}, found {tok.text!r}: conditions are written"
                " (attribute operator value)"
            )
        inner = self._peek()
        if inner is not None and inner.kind == "punct" and inner.text == "(":
            tree = self._or()
            self._expect(")")
            return tree
        cond = self._cond()
        self._expect(")")
        return cond

    def _cond(self) -> Cond:
        name = self._next("an attribute")
        if name.kind != "word":
            raise FilterError(f"expected an attribute at {name.at}, found {name.text!r}")
        if name.text not in self.attributes:
            raise FilterError(f"attribute '{name.text}' does not exist or cannot be filtered")
        data_type = self.attributes[name.text]
        op = self._next("an operator")
        if not (op.kind == "op" or (op.kind == "word" and op.text in _WORD_OPS)):
            raise FilterError(f"unknown operator {op.text!r} at {op.at}")
        if op.text == "in":
            self._expect("(")
            values = [self._value(data_type, name.text)]
            while (tok := self._peek()) is not None and tok.text == "," and tok.kind == "punct":
                self.i += 1
                values.append(self._value(data_type, name.text))
            self._expect(")")
            return Cond(name.text, "in", values)
        if op.text in ("startsWith", "endsWith", "contains") and data_type != "string":
            raise FilterError(f"{op.text} needs a string attribute; {name.text} is {data_type}")
        return Cond(name.text, op.text, self._value(data_type, name.text))

    def _value(self, data_type: str, attribute: str) -> Any:
        tok = self._next("a value")
        if data_type in _STRING_TYPES:
            if tok.kind != "str":
                raise FilterError(
                    f"the value for {attribute} ({data_type}) must be a string in single"
                    f" quotes, found {tok.text!r} at {tok.at}"
                )
            if data_type == "date":
                when = _date(tok.value)
                if when is None:
                    raise FilterError(
                        f"the value for {attribute} (date) is not an ISO 8601 date or"
                        f" date-time: {tok.text}"
                    )
                return when
            return tok.value
        if data_type in _NUMBER_TYPES:
            if tok.kind != "num":
                raise FilterError(
                    f"the value for {attribute} ({data_type}) must be a bare number,"
                    f" found {tok.text!r} at {tok.at}"
                )
            return tok.value
        if tok.kind != "word" or tok.text not in ("true", "false"):
            raise FilterError(
                f"the value for {attribute} (boolean) must be true or false, found {tok.text!r}"
            )
        return tok.text == "true"


def parse_filter(text: str, attributes: dict[str, str]) -> Filter:
    """The filter as a tree; :class:`FilterError` when Clarity would refuse it."""
    return _Parser(text, attributes).parse()


def matches(tree: Filter, item: dict[str, Any]) -> bool:
    if isinstance(tree, BoolOp):
        if tree.op == "and":
            return matches(tree.left, item) and matches(tree.right, item)
        return matches(tree.left, item) or matches(tree.right, item)
    have = item.get(tree.attribute)
    want = tree.value
    dated = want if not isinstance(want, list) else (want[0] if want else None)
    if isinstance(dated, dt.datetime):  # a date attribute: compared as instants, not text
        have = _date(have) if isinstance(have, str) else None
    if tree.op == "in":
        return have in want
    if tree.op == "=":
        return bool(have == want)
    if tree.op == "!=":
        return bool(have != want)
    if have is None:
        return False
    if tree.op in ("startsWith", "endsWith", "contains"):
        text = str(have)
        if tree.op == "startsWith":
            return text.startswith(want)
        if tree.op == "endsWith":
            return text.endswith(want)
        return want in text
    compare: dict[str, Callable[[Any, Any], Any]] = {
        "<": operator.lt,
        ">": operator.gt,
        "<=": operator.le,
        ">=": operator.ge,
    }
    try:
        return bool(compare[tree.op](have, want))
    except TypeError:
        return False


def _date(text: str) -> dt.datetime | None:
    """An ISO 8601 date or date-time as naive UTC (how this server stores dates)."""
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is not None:
        when = when.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return when


# -- faults and replies ----------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    body: Any = None  # JSON, or str (HTML / form-encoded), or None (empty)
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = ""


def error(status: int, code: str, message: str, resource_id: Any = None) -> Reply:
    """The contract's error body."""
    return Reply(
        status,
        {
            "resourceId": resource_id,
            "httpStatus": str(status),
            "errorCode": code,
            "errorMessage": message,
        },
    )


def _html(status: int, text: str) -> Reply:
    return Reply(status, f"<html><body>{text}</body></html>", content_type="text/html")


@dataclass(frozen=True)
class Seen:
    """One request as the server received it, secrets replaced by ``***``."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    auth: str  # basic, session, api-key, oauth1, none


_SECRET_HEADERS = ("authorization", "authtoken")


def _sanitize(headers: dict[str, str]) -> dict[str, str]:
    out = {}
    for name, value in headers.items():
        if name in _SECRET_HEADERS:
            scheme = value.partition(" ")[0] if name == "authorization" else ""
            value = f"{scheme} ***".strip()
        out[name] = value
    return out


def _auth_mode(headers: dict[str, str]) -> str:
    scheme = headers.get("authorization", "").partition(" ")[0].lower()
    if "authtoken" in headers:
        return "session"
    return {"basic": "basic", "bearer": "api-key", "oauth": "oauth1"}.get(scheme, "none")


# -- the state -------------------------------------------------------------------------------


#: the switches ``make_clarity(**switches)`` accepts (attributes of :class:`ClarityState`).
SWITCHES = (
    "api_access",
    "api_keys_enabled",
    "api_key_expired",
    "api_key_revoked",
    "session_calls",
    "latency",
    "outage",
    "faults",
    "create_status",
    "oauth_user_denies",
)


class ClarityState:
    """What the server knows; tests read and change it directly (under ``lock``)."""

    def __init__(self) -> None:
        self.base_url = ""
        self.lock = threading.RLock()
        self.users = {USER: PASSWORD}
        #: the user has the "API - Access" right; without it every call answers 401 API-1029
        self.api_access = True
        #: API keys: key -> client id; the switches below apply to every key
        self.api_keys = {API_KEY: CLIENT_ID}
        self.api_keys_enabled = True
        self.api_key_expired = False
        self.api_key_revoked = False
        #: session tokens -> calls left (None: until logout or expire_sessions())
        self.sessions: dict[str, int | None] = {}
        #: calls each new session token serves before it expires (None: no limit)
        self.session_calls: int | None = None
        self.logins = 0
        self.logouts = 0
        #: OAuth 1.0a provider: consumer key -> public key PEM; access token -> secret;
        #: request token -> (secret, verifier shown to the user or "")
        self.oauth_consumers: dict[str, str] = {}
        self.oauth_access: dict[str, str] = {ACCESS_TOKEN: ACCESS_TOKEN_SECRET}
        self.oauth_requests: dict[str, tuple[str, str]] = {}
        self.oauth_nonces: set[tuple[str, str, str]] = set()
        #: the user clicks "Deny" on the authorization page
        self.oauth_user_denies = False
        #: seconds added to every REST call; every call answers 503; random faults
        self.latency = 0.0
        #: requests being answered now (a killed client's included)
        self.busy = 0
        self.outage = False
        self.faults: Faults | None = None
        #: replies served before anything else, one per REST call (see throttle(), unavailable())
        self.inject: list[Reply] = []
        #: the status a successful create answers (the contract allows 200 and 201)
        self.create_status = 200
        #: what ``/describe/issues`` answers and writes are checked against: change it to play
        #: a site without a custom attribute, or with other limits
        self.issue_attributes = copy.deepcopy(ISSUE_ATTRIBUTES)
        self.projects: dict[int, dict[str, Any]] = {}
        self.issues: dict[int, dict[str, Any]] = {}  # _internalId -> stored attributes
        self.requests: list[Seen] = []
        self.violations: list[str] = []
        self._ids = itertools.count(5100001)
        self._tokens = itertools.count(1)
        self._last_stamp = ""
        for number, (code, name, active) in enumerate(PROJECTS):
            pid = 5000001 + number
            self.projects[pid] = {
                "_internalId": pid,
                "code": code,
                "name": name,
                "description": None,
                "isActive": active,
            }

    # -- helpers for tests -------------------------------------------------------------------

    def project(self, code_or_id: str | int) -> dict[str, Any]:
        for project in self.projects.values():
            if code_or_id in (project["code"], project["_internalId"], str(project["_internalId"])):
                return project
        raise KeyError(code_or_id)

    def issue(self, code_or_id: str | int) -> dict[str, Any]:
        """The stored issue (a live dict: change it under ``lock`` or use :meth:`change`)."""
        with self.lock:
            for issue in self.issues.values():
                if code_or_id in (issue["code"], issue["_internalId"], str(issue["_internalId"])):
                    return issue
        raise KeyError(code_or_id)

    def issues_of(self, project_code: str) -> list[dict[str, Any]]:
        """Copies of a project's issues, oldest first."""
        pid = self.project(project_code)["_internalId"]
        with self.lock:
            return [copy.deepcopy(i) for i in self.issues.values() if i["_parentId"] == pid]

    def set_status(self, code_or_id: str | int, status: str) -> None:
        """A change made in Clarity's UI: ``status`` is a display value or an id."""
        self.change(code_or_id, status=_lookup_id(STATUS_LOOKUP, status))

    def change(self, code_or_id: str | int, **attributes: Any) -> None:
        """A change made "on the server side" (another user): bumps ``lastUpdatedDate``;
        ``priority`` and ``status`` take display values or ids."""
        with self.lock:
            issue = self.issue(code_or_id)
            known = {a["name"] for a in self.issue_attributes}
            for name in attributes:
                if name not in known:
                    raise KeyError(f"issues have no attribute {name!r}")
            for name, value in attributes.items():
                if name in ("status", "priority") and value is not None:
                    value = _lookup_id(
                        STATUS_LOOKUP if name == "status" else PRIORITY_LOOKUP, value
                    )
                issue[name] = value
            self._touch(issue)

    def add_issue(self, project_code: str, name: str, **attributes: Any) -> dict[str, Any]:
        """An issue someone filed by hand, validated like a POST; ``priority`` and ``status``
        take display values or ids."""
        pid = self.project(project_code)["_internalId"]
        for attribute, lookup in (("status", STATUS_LOOKUP), ("priority", PRIORITY_LOOKUP)):
            if attributes.get(attribute) is not None:
                attributes[attribute] = _lookup_id(lookup, attributes[attribute])
        with self.lock:
            reply = self._create(pid, {"name": name, **attributes}, full=True)
        if reply.status >= 300:
            raise ValueError(reply.body)
        return dict(reply.body)

    def calls(self, method: str = "", path: str = "") -> list[Seen]:
        """The REST calls seen, by method and a piece of the path."""
        with self.lock:
            return [
                s for s in self.requests if (not method or s.method == method) and path in s.path
            ]

    @property
    def patch_count(self) -> int:
        return len(self.calls("PATCH", "/issues/"))

    def expire_sessions(self) -> None:
        """Every session token expires: the next call with one answers 401 API-1002."""
        with self.lock:
            self.sessions.clear()

    def throttle(self, times: int = 1, retry_after: str = "1") -> None:
        """The next ``times`` REST calls answer 429 with ``Retry-After`` (nothing done)."""
        reply = error(429, "API-1042", "Too many requests; retry later")
        reply.headers["Retry-After"] = retry_after
        with self.lock:
            self.inject += [reply] * times

    def unavailable(self, times: int = 1, retry_after: str | None = None) -> None:
        """The next ``times`` REST calls answer 503 from the load balancer (an HTML page)."""
        reply = _html(503, "Service Unavailable")
        if retry_after is not None:
            reply.headers["Retry-After"] = retry_after
        with self.lock:
            self.inject += [reply] * times

    def take_violations(self) -> list[str]:
        """The violations so far, forgotten: for a test that breaks the contract on purpose."""
        with self.lock:
            taken, self.violations = self.violations, []
        return taken

    # -- authentication ----------------------------------------------------------------------

    def authenticate(
        self, method: str, path: str, url: str, headers: dict[str, str]
    ) -> Reply | None:
        """``None`` when the caller may go on; else the 401 to answer."""
        auth = headers.get("authorization", "")
        scheme, _, value = auth.partition(" ")
        if path == f"{API}/auth/login":
            if scheme.lower() != "basic":
                return error(401, "API-1000", "Log in with Basic authentication")
            denied = self._basic(value)
            return denied or self._api_right()
        if "authtoken" in headers:
            token = headers["authtoken"]
            with self.lock:
                if token not in self.sessions:
                    return error(
                        401, "API-1002", "The session token is invalid or has expired; log in again"
                    )
                left = self.sessions[token]
                if left is not None:
                    if left <= 1:
                        del self.sessions[token]  # this call is its last
                    else:
                        self.sessions[token] = left - 1
            return self._api_right()
        if path == f"{API}/auth/logout":
            return error(401, "API-1002", "Log out with the session's authToken header")
        if scheme.lower() == "basic":
            return self._basic(value) or self._api_right()
        if scheme.lower() == "bearer":
            return self._api_key(value, headers.get("x-api-ppm-client")) or self._api_right()
        if scheme == "OAuth":
            if not self.oauth_verify(method, url, headers, set(self.oauth_access)):
                return error(
                    401, "API-1034", "The OAuth signature, consumer or access token is invalid"
                )
            return self._api_right()
        return error(401, "API-1000", "Authentication required")

    def _basic(self, value: str) -> Reply | None:
        try:
            user, _, password = base64.b64decode(value).decode().partition(":")
        except ValueError:
            user = password = ""
        if user and self.users.get(user) == password:
            return None
        return error(401, "API-1001", "Invalid user name or password")

    def _api_right(self) -> Reply | None:
        if self.api_access:
            return None
        return error(401, "API-1029", "Authentication Error")

    def _api_key(self, key: str, client: str | None) -> Reply | None:
        if not self.api_keys_enabled:
            return error(401, "API-1030", "API key access is not enabled on this server")
        if key not in self.api_keys:
            return error(401, "API-1033", "Invalid API key")
        if client != self.api_keys[key]:
            return error(
                401, "API-1033", "The x-api-ppm-client header does not name the API key's client"
            )
        if self.api_key_revoked:
            return error(401, "API-1032", "The API key has been revoked")
        if self.api_key_expired:
            return error(401, "API-1031", "The API key has expired")
        return None

    def login(self) -> Reply:
        with self.lock:
            token = f"{5096019 + next(self._tokens)}__{random.getrandbits(64):016X}"
            self.sessions[token] = self.session_calls
            self.logins += 1
        return Reply(200, {"authToken": token})

    def logout(self, headers: dict[str, str]) -> Reply:
        with self.lock:
            self.sessions.pop(headers["authtoken"], None)
            self.logouts += 1
        return Reply(200)

    # -- OAuth 1.0a provider -----------------------------------------------------------------

    @staticmethod
    def _oauth_params(headers: dict[str, str]) -> dict[str, str]:
        from oauthlib.oauth1.rfc5849 import utils  # type: ignore[import-untyped,unused-ignore]

        pairs = utils.parse_authorization_header(headers["authorization"])
        return {k: utils.unescape(v) for k, v in pairs}

    def oauth_verify(
        self, method: str, url: str, headers: dict[str, str], tokens: set[str] | None
    ) -> bool:
        """An RSA-SHA1 signature checked with the consumer's registered public key (oauthlib).

        ``tokens`` are the tokens accepted; ``None`` means the request must carry none (the
        request-token step). A nonce is accepted once."""
        from oauthlib.common import Request  # type: ignore[import-untyped,unused-ignore]
        from oauthlib.oauth1.rfc5849 import signature  # type: ignore[import-untyped,unused-ignore]

        if not headers.get("authorization", "").startswith("OAuth "):
            return False
        try:
            params = self._oauth_params(headers)
        except ValueError:
            return False
        consumer, token = params.get("oauth_consumer_key", ""), params.get("oauth_token")
        public_key = self.oauth_consumers.get(consumer)
        if public_key is None or params.get("oauth_signature_method") != "RSA-SHA1":
            return False
        if (tokens is None and token) or (tokens is not None and token not in tokens):
            return False
        request = Request(url, method, None, {"Authorization": headers["authorization"]})
        request.signature = params.get("oauth_signature", "")
        request.params = signature.collect_parameters(
            uri_query=urlsplit(url).query,
            headers={"Authorization": headers["authorization"]},
            exclude_oauth_signature=True,
        )
        if not signature.verify_rsa_sha1(request, public_key):
            return False
        nonce = (consumer, params.get("oauth_timestamp", ""), params.get("oauth_nonce", ""))
        with self.lock:
            if nonce in self.oauth_nonces:
                return False
            self.oauth_nonces.add(nonce)
        return True

    def oauth_dance(self, method: str, path: str, url: str, headers: dict[str, str]) -> Reply:
        """The provider's three URLs (outside the REST API, so outside the contract)."""
        step = path[len(OAUTH) + 1 :]
        form = "application/x-www-form-urlencoded"
        if step == "authorize":
            if method != "GET":
                return _html(405, "Method Not Allowed")
            token = parse_qs(urlsplit(url).query).get("oauth_token", [""])[-1]
            with self.lock:
                if token not in self.oauth_requests:
                    return _html(400, "Unknown or used request token")
                if self.oauth_user_denies:
                    return _html(200, "<p>Access denied.</p>")
                secret = self.oauth_requests[token][0]
                verifier = f"{random.getrandbits(32):08x}"
                self.oauth_requests[token] = (secret, verifier)
            return _html(
                200,
                "<p>rp-bts wants to use Clarity as qa.robot. Access allowed.</p>"
                f'<p>Verification code: <code id="verifier">{html.escape(verifier)}</code></p>',
            )
        if method != "POST":
            return _html(405, "Method Not Allowed")
        if step == "request-token":
            if not self.oauth_verify(method, url, headers, None):
                return Reply(401, "oauth_problem=signature_invalid", content_type=form)
            with self.lock:
                token = f"request-{next(self._ids)}"
                self.oauth_requests[token] = (f"rs-{token}", "")
            body = (
                f"oauth_token={token}&oauth_token_secret=rs-{token}&oauth_callback_confirmed=true"
            )
            return Reply(200, body, content_type=form)
        if step == "access-token":
            with self.lock:
                pending = set(self.oauth_requests)
            if not self.oauth_verify(method, url, headers, pending):
                return Reply(401, "oauth_problem=signature_invalid", content_type=form)
            params = self._oauth_params(headers)
            with self.lock:
                _, wanted = self.oauth_requests.pop(params["oauth_token"])
                if not wanted or params.get("oauth_verifier") != wanted:
                    return Reply(401, "oauth_problem=permission_denied", content_type=form)
                token = f"access-{next(self._ids)}"
                self.oauth_access[token] = f"as-{token}"
            return Reply(
                200, f"oauth_token={token}&oauth_token_secret=as-{token}", content_type=form
            )
        return _html(404, "Not Found")

    # -- the API -----------------------------------------------------------------------------

    def handle(
        self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: Any
    ) -> Reply:
        parts = path[len(API) + 1 :].split("/")
        full = headers.get("x-api-full-response", "").lower() == "true"
        with self.lock:
            if parts == ["auth", "login"] and method == "POST":
                return self.login()
            if parts == ["auth", "logout"] and method == "DELETE":
                return self.logout(headers)
            if parts == ["describe"] and method == "GET":
                return Reply(200, self._describe_all())
            if parts[0] == "describe" and len(parts) == 2 and method == "GET":
                return self._describe(parts[1])
            if parts[0] == "lookups" and len(parts) == 3 and parts[2] == "lookupValues":
                if method != "GET":
                    return error(405, "API-1099", f"{method} is not allowed on lookup values")
                return self._lookup_values(parts[1], path, query)
            if parts == ["projects"] and method == "GET":
                return self._page(
                    path, query, list(self.projects.values()), PROJECT_ATTRIBUTES, 500,
                    self._project_json,
                )  # fmt: skip
            if parts[0] == "projects" and len(parts) >= 2:
                return self._project_call(method, parts[1:], path, query, body, full)
        return error(404, "API-1009", f"No resource at {path}")

    def _project_call(
        self, method: str, rest: list[str], path: str, query: dict[str, str], body: Any,
        full: bool,
    ) -> Reply:  # fmt: skip
        pid = _int(rest[0])
        if pid not in self.projects:
            return error(404, "API-1009", f"Project {rest[0]} does not exist", rest[0])
        if len(rest) == 1:
            if method != "GET":
                return error(405, "API-1099", f"{method} is not allowed on a project here")
            return self._one(self._project_json(self.projects[pid]), query, PROJECT_ATTRIBUTES)
        if rest[1] != "issues" or len(rest) > 3:
            return error(404, "API-1009", f"No resource at {path}")
        if len(rest) == 2:
            if method == "GET":
                items = [i for i in self.issues.values() if i["_parentId"] == pid]
                return self._page(path, query, items, self.issue_attributes, 200, self._issue_json)
            if method == "POST":
                return self._create(pid, body, full)
            return error(405, "API-1099", f"{method} is not allowed on issues")
        iid = _int(rest[2])
        issue = self.issues.get(iid)
        if issue is None or issue["_parentId"] != pid:
            return error(
                404, "API-1009", f"Issue {rest[2]} does not exist in project {pid}", rest[2]
            )
        if method == "GET":
            return self._one(self._issue_json(issue), query, self.issue_attributes)
        if method == "PATCH":
            return self._update(issue, body, full)
        return error(405, "API-1099", f"{method} is not allowed on an issue here")

    def _describe_all(self) -> dict[str, Any]:
        return {
            "resources": [
                {
                    "resourceName": name,
                    "label": label,
                    "_self": f"{self.base_url}{API}/describe/{name}",
                }
                for name, (label, _, _) in DESCRIBED.items()
            ]
        }

    def _describe(self, resource: str) -> Reply:
        if resource not in DESCRIBED:
            return error(404, "API-1009", f"Resource '{resource}' is not public", resource)
        label, methods, attributes = DESCRIBED[resource]
        if resource == "issues":
            attributes = self.issue_attributes
        return Reply(
            200,
            {
                "resourceName": resource,
                "label": label,
                "methods": methods,
                "attributes": copy.deepcopy(attributes),
            },
        )

    def _lookup_values(self, code: str, path: str, query: dict[str, str]) -> Reply:
        if code not in LOOKUPS:
            return error(404, "API-1009", f"Lookup '{code}' does not exist", code)
        base = 5200001 + 100 * sorted(LOOKUPS).index(code)
        items = [
            {"_internalId": base + n, "id": vid, "code": vid, "displayValue": label}
            for n, (vid, label) in enumerate(LOOKUPS[code])
        ]
        return self._page(path, query, items, LOOKUP_VALUE_ATTRIBUTES, 200, dict)

    def _project_json(self, project: dict[str, Any]) -> dict[str, Any]:
        return {**project, "_self": f"{self.base_url}{API}/projects/{project['_internalId']}"}

    def _issue_json(self, issue: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in issue.items() if k != "_parentId"}
        parent = f"{self.base_url}{API}/projects/{issue['_parentId']}"
        out["_self"] = f"{parent}/issues/{issue['_internalId']}"
        out["_parent"] = parent
        out["_lastUpdatedDate"] = issue["lastUpdatedDate"]
        return out

    @staticmethod
    def _fields(query: dict[str, str], attributes: list[dict[str, Any]]) -> list[str] | Reply:
        if "fields" not in query:
            return []
        wanted = [f.strip() for f in query["fields"].split(",") if f.strip()]
        known = {a["name"] for a in attributes}
        for name in wanted:
            if name not in known and not name.startswith("_"):
                return error(400, "API-1007", f"Attribute '{name}' in fields does not exist")
        return wanted

    @staticmethod
    def _select(item: dict[str, Any], wanted: list[str]) -> dict[str, Any]:
        if not wanted:
            return item
        keep = {"_internalId", "_self", "_parent", *wanted}
        return {k: v for k, v in item.items() if k in keep}

    def _one(
        self, item: dict[str, Any], query: dict[str, str], attributes: list[dict[str, Any]]
    ) -> Reply:
        wanted = self._fields(query, attributes)
        if isinstance(wanted, Reply):
            return wanted
        return Reply(200, self._select(item, wanted))

    def _page(
        self,
        path: str,
        query: dict[str, str],
        items: list[dict[str, Any]],
        attributes: list[dict[str, Any]],
        most: int,
        render: Callable[[dict[str, Any]], dict[str, Any]],
    ) -> Reply:
        """The list envelope: filter, sort, offset/limit (default 25, at most ``most``)."""
        try:
            offset = int(query.get("offset", "0"))
            limit = int(query.get("limit", "25"))
        except ValueError:
            return error(400, "API-1010", "offset and limit take whole numbers")
        if offset < 0 or limit < 1:
            return error(400, "API-1010", "offset must be >= 0 and limit >= 1")
        limit = min(limit, most)
        types = {a["name"]: a["dataType"] for a in [*_SYSTEM, *attributes]}
        found = list(items)
        if "filter" in query:
            try:
                tree = parse_filter(query["filter"], types)
            except FilterError as exc:
                return error(400, "API-1005", f"Invalid filter: {exc}")
            found = [i for i in found if matches(tree, i)]
        for part in reversed([p.strip() for p in query.get("sort", "").split(",") if p.strip()]):
            name, _, order = part.partition(" ")
            order = order.strip().lower() or "asc"
            if name not in types or order not in ("asc", "desc"):
                return error(400, "API-1007", f"Cannot sort by '{part}'")
            found.sort(key=functools.partial(_sort_key, name), reverse=order == "desc")
        wanted = self._fields(query, attributes)
        if isinstance(wanted, Reply):
            return wanted
        page = [self._select(render(i), wanted) for i in found[offset : offset + limit]]
        envelope: dict[str, Any] = {
            "_results": page,
            "_totalCount": len(found),
            "_pageSize": limit,
            "_self": self._link(path, query, offset),
        }
        if offset + limit < len(found):
            envelope["_next"] = self._link(path, {**query, "limit": str(limit)}, offset + limit)
        if offset > 0:
            envelope["_previous"] = self._link(
                path, {**query, "limit": str(limit)}, max(0, offset - limit)
            )
        return Reply(200, envelope)

    def _link(self, path: str, query: dict[str, str], offset: int) -> str:
        params = {k: v for k, v in query.items() if k != "offset"}
        if offset:
            params["offset"] = str(offset)
        qs = urlencode(params, quote_via=quote, safe=",")
        return f"{self.base_url}{path}" + (f"?{qs}" if qs else "")

    # -- writes ------------------------------------------------------------------------------

    def _check(self, pid: int, body: Any, *, creating: bool, own: int | None) -> Reply | None:
        if not isinstance(body, dict):
            return error(400, "API-1010", "The request body must be a JSON object")
        known = {a["name"]: a for a in self.issue_attributes}
        for name, value in body.items():
            if name == "_parentId":
                if value != pid:
                    return error(400, "API-1018", "_parentId is not this project", pid)
                continue
            attr = known.get(name)
            if attr is None:
                if name.startswith("_"):
                    return error(400, "API-1008", f"Attribute '{name}' is read-only")
                return error(
                    400, "API-1007", f"Attribute '{name}' does not exist or is not API-enabled"
                )
            if attr["isReadOnly"]:
                return error(400, "API-1008", f"Attribute '{name}' is read-only")
            problem = _invalid(attr, value)
            if problem:
                return error(400, "API-1018", problem)
        if creating:
            for attr in self.issue_attributes:
                if attr["isMandatory"] and body.get(attr["name"]) in (None, ""):
                    return error(400, "API-1018", f"Attribute '{attr['name']}' is mandatory")
        code = body.get("code")
        if code is not None:
            for other in self.issues.values():
                if (
                    other["_parentId"] == pid
                    and other["code"] == code
                    and other["_internalId"] != own
                ):
                    return error(
                        400, "API-1018", f"An issue with code '{code}' already exists", code
                    )
        return None

    def _create(self, pid: int, body: Any, full: bool) -> Reply:
        denied = self._check(pid, body, creating=True, own=None)
        if denied is not None:
            return denied
        iid = next(self._ids)
        stamp = self._stamp()
        issue: dict[str, Any] = {a["name"]: None for a in self.issue_attributes}
        issue.update(
            {
                "_internalId": iid,
                "_parentId": pid,
                "status": "OPEN",
                "priority": "MEDIUM",
                "createdDate": stamp,
                "lastUpdatedDate": stamp,
            }
        )
        issue.update({k: v for k, v in body.items() if k != "_parentId"})
        if issue["code"] is None:
            issue["code"] = f"ISS{iid - 5100000:05d}"
        self.issues[iid] = issue
        shown = self._issue_json(issue)
        if not full:
            shown = self._select(shown, list(body))
        return Reply(self.create_status, shown)

    def _update(self, issue: dict[str, Any], body: Any, full: bool) -> Reply:
        denied = self._check(issue["_parentId"], body, creating=False, own=issue["_internalId"])
        if denied is not None:
            return denied
        if "name" in body and body["name"] in (None, ""):
            return error(400, "API-1018", "Attribute 'name' is mandatory")
        issue.update({k: v for k, v in body.items() if k != "_parentId"})
        self._touch(issue)
        shown = self._issue_json(issue)
        return Reply(200, shown if full else self._select(shown, list(body)))

    def _stamp(self) -> str:
        """Now, to the millisecond, strictly after the previous stamp."""
        with self.lock:
            now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
            stamp = now.isoformat(timespec="milliseconds")
            if stamp <= self._last_stamp:
                last = dt.datetime.fromisoformat(self._last_stamp)
                stamp = (last + dt.timedelta(milliseconds=1)).isoformat(timespec="milliseconds")
            self._last_stamp = stamp
            return stamp

    def _touch(self, issue: dict[str, Any]) -> None:
        issue["lastUpdatedDate"] = self._stamp()


def _sort_key(name: str, item: dict[str, Any]) -> tuple[bool, Any]:
    return item.get(name) is not None, item.get(name)


def _int(text: str) -> int:
    return int(text) if text.isdigit() else -1


def _lookup_id(lookup: str, value: str) -> str:
    for vid, label in LOOKUPS[lookup]:
        if value in (vid, label):
            return vid
    raise KeyError(f"{value!r} is not a value of {lookup}")


def _invalid(attr: dict[str, Any], value: Any) -> str:
    """Why ``value`` does not fit the described attribute, or ``""``."""
    name, data_type = attr["name"], attr["dataType"]
    if value is None:
        return f"Attribute '{name}' is mandatory" if attr["isMandatory"] else ""
    if data_type == "string":
        if not isinstance(value, str):
            return f"Attribute '{name}' takes a string"
        if "maxLength" in attr and len(value) > attr["maxLength"]:
            return f"Attribute '{name}' is longer than {attr['maxLength']} characters"
    elif data_type == "lookup":
        ids = [vid for vid, _ in LOOKUPS[attr["lookupCode"]]]
        if value not in ids:
            return (
                f"'{value}' is not a value of lookup {attr['lookupCode']} for '{name}'"
                f" (ids: {', '.join(ids)})"
            )
    elif data_type == "integer":
        if isinstance(value, bool) or not isinstance(value, int):
            return f"Attribute '{name}' takes a whole number"
    elif data_type == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"Attribute '{name}' takes a number"
    elif data_type == "boolean" and not isinstance(value, bool):
        return f"Attribute '{name}' takes true or false"
    return ""


# -- HTTP ------------------------------------------------------------------------------------


class _Handler(Handler):
    #: headers and body leave in one write: no Nagle / delayed-ACK stall on kept-alive sockets
    wbufsize = -1
    disable_nagle_algorithm = True

    def _serve(self) -> None:
        state = self.server.state
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if (
            len(raw) < length
        ):  # the client went away mid-request (a killed run): as Clarity, drop it
            self.close_connection = True
            return
        split = urlsplit(self.path)
        headers = {k.lower(): v for k, v in self.headers.items()}
        path = split.path
        url = state.base_url + self.path
        query = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        try:
            shown: Any = json.loads(raw) if raw else None
        except ValueError:
            shown = raw.decode(errors="replace")
        with state.lock:
            seen = Seen(self.command, path, query, _sanitize(headers), shown, _auth_mode(headers))
            state.requests.append(seen)
        if path.startswith(OAUTH + "/"):  # not REST: no contract to check
            self._reply(state.oauth_dance(self.command, path, url, headers))
            return
        if not path.startswith(API + "/"):
            self._reply(_html(404, "Not Found"))
            return
        violation = validate(self.command, self.path, dict(self.headers), raw)
        with state.lock:
            if violation:
                state.violations.append(violation)
            injected = state.inject.pop(0) if state.inject else None
        if injected is not None:
            self._reply(injected)
            return
        if state.latency:
            time.sleep(state.latency)
        if state.outage:
            self._reply(_html(503, "Service Unavailable"))
            return
        fault = state.faults.draw() if state.faults is not None else ""
        if fault == "error":
            self._reply(error(500, "API-1500", "Internal server error"))
            return
        if fault == "throttle":
            assert state.faults is not None
            reply = error(429, "API-1042", "Too many requests; retry later")
            reply.headers["Retry-After"] = state.faults.retry_after
            self._reply(reply)
            return
        denied = state.authenticate(self.command, path, url, headers)
        if denied is not None:
            self._reply(denied)
            return
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                self._reply(error(400, "API-1010", "The request body is not valid JSON"))
                return
        reply = state.handle(self.command, path, query, headers, body)
        if fault == "drop":  # the work is done; the client sees a closed connection
            self.close_connection = True
            return
        if fault == "slow":
            assert state.faults is not None
            time.sleep(state.faults.slow_seconds)
        self._reply(reply)

    def _reply(self, reply: Reply) -> None:
        if reply.body is None:
            data = b""
        elif isinstance(reply.body, str):
            data = reply.body.encode()
        else:
            data = json.dumps(reply.body).encode()
        self.send_response(reply.status)
        if data:
            kind = reply.content_type or "application/json"
            self.send_header("Content-Type", kind)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@functools.cache
def _consumer_keys() -> tuple[str, str]:
    """(private PEM, public PEM): one RSA pair per process, 2048 bits like a real consumer."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


#: the environment variables the integration blocks refer to
ENV = {
    "CLARITY_USER": USER,
    "CLARITY_PASSWORD": PASSWORD,
    "CLARITY_API_KEY": API_KEY,
    "CLARITY_ACCESS_TOKEN": ACCESS_TOKEN,
    "CLARITY_ACCESS_TOKEN_SECRET": ACCESS_TOKEN_SECRET,
}


@dataclass
class RunningClarity:
    state: ClarityState
    server: Server
    #: the OAuth consumer's private key (PEM, 0600), registered with the server
    private_key_file: Path

    def wait_idle(self) -> None:
        wait_idle(self.state)

    @property
    def url(self) -> str:
        """What a user types as the Clarity URL; the REST API is under :attr:`api`."""
        return self.state.base_url

    @property
    def api(self) -> str:
        return self.state.base_url + API

    @property
    def request_token_url(self) -> str:
        return self.url + OAUTH + "/request-token"

    @property
    def authorize_url(self) -> str:
        return self.url + OAUTH + "/authorize"

    @property
    def access_token_url(self) -> str:
        return self.url + OAUTH + "/access-token"

    def project_id(self, code: str) -> int:
        return int(self.state.project(code)["_internalId"])

    def issues(self, project_code: str = "PR1001") -> list[dict[str, Any]]:
        return self.state.issues_of(project_code)

    def issue(self, code_or_id: str | int) -> dict[str, Any]:
        """A copy of one stored issue, by ``code`` or ``_internalId``."""
        with self.state.lock:
            return copy.deepcopy(self.state.issue(code_or_id))

    def set_status(self, code_or_id: str | int, status: str) -> None:
        """Someone changes the status in Clarity (``"Closed"`` or ``"CLOSED"``)."""
        self.state.set_status(code_or_id, status)

    def change(self, code_or_id: str | int, **attributes: Any) -> None:
        """Someone edits the issue in Clarity; ``lastUpdatedDate`` moves on."""
        self.state.change(code_or_id, **attributes)

    @property
    def patch_count(self) -> int:
        """How many issue PATCHes the server received (refused ones included)."""
        return self.state.patch_count

    def visit(self, authorization_url: str) -> str:
        """What the user does in the browser: open the authorization page and read the
        verification code off it ("" when access was denied)."""
        page = requests.get(authorization_url, timeout=5)
        page.raise_for_status()
        found = re.search(r'<code id="verifier">([^<]*)</code>', page.text)
        return html.unescape(found.group(1)) if found else ""

    def integration_toml(self, auth: str = "basic", **overrides: Any) -> str:
        """A ``[[integrations]]`` block (``kind = "clarity"``, project PR1001) for ``auth`` =
        basic | session | api-key | oauth1, its secrets as ``${VAR}`` (see :meth:`login_env`).

        ``overrides`` replace or add keys: a ``str`` is written as given (TOML text, as
        ``RunningJira.integration_toml`` does: ``timeout="1"``, ``name='"Other"'``), other
        values are TOML-encoded (``timeout=1``, ``sync={"period": 60}``); ``None`` drops a key.
        """
        import tomlkit

        keys: dict[str, Any] = {
            "kind": '"clarity"',
            "name": '"Shop issues"',
            "url": f'"{self.url}"',
            "project_key": '"PR1001"',
            "auth": f'"{auth}"',
        }
        if auth in ("basic", "session"):
            keys |= {"username": '"${CLARITY_USER}"', "password": '"${CLARITY_PASSWORD}"'}
        elif auth == "api-key":
            keys |= {"api_key": '"${CLARITY_API_KEY}"', "client_id": f'"{CLIENT_ID}"'}
        elif auth == "oauth1":
            keys |= {
                "consumer_key": f'"{OAUTH_CONSUMER}"',
                "private_key_file": json.dumps(str(self.private_key_file)),
                "access_token": '"${CLARITY_ACCESS_TOKEN}"',
                "access_token_secret": '"${CLARITY_ACCESS_TOKEN_SECRET}"',
                "request_token_url": f'"{self.request_token_url}"',
                "authorize_url": f'"{self.authorize_url}"',
                "access_token_url": f'"{self.access_token_url}"',
            }
        else:
            raise ValueError(f"auth is basic, session, api-key or oauth1, not {auth!r}")
        for key, value in overrides.items():
            if value is None:
                keys.pop(key, None)
            elif isinstance(value, str):
                keys[key] = value
            elif isinstance(value, dict):
                table = tomlkit.inline_table()
                table.update(value)
                keys[key] = table.as_string()
            else:
                keys[key] = tomlkit.item(value).as_string()
        lines = ["[[integrations]]", *(f"{key} = {value}" for key, value in keys.items())]
        return "\n".join(lines) + "\n"

    def login_env(self, monkeypatch: pytest.MonkeyPatch | None = None) -> dict[str, str]:
        """The variables :meth:`integration_toml` refers to; set them when given
        ``monkeypatch``."""
        if monkeypatch is not None:
            for name, value in ENV.items():
                monkeypatch.setenv(name, value)
        return dict(ENV)


def start(**switches: Any) -> RunningClarity:
    """A running server with projects PR1001 "Shop" and PR1002 "Archive" (inactive), the user
    :data:`USER` / :data:`PASSWORD`, the API key :data:`API_KEY` for client :data:`CLIENT_ID`,
    and the OAuth consumer :data:`OAUTH_CONSUMER` with an access token; ``switches`` are
    :data:`SWITCHES`."""
    state = ClarityState()
    for name, value in switches.items():
        if name not in SWITCHES:
            raise TypeError(f"unknown switch {name!r}; switches: {', '.join(SWITCHES)}")
        setattr(state, name, value)
    private, public = _consumer_keys()
    state.oauth_consumers[OAUTH_CONSUMER] = public
    folder = Path(tempfile.mkdtemp(prefix="clarity-oauth-"))
    pem = folder / "clarity_consumer.pem"
    pem.write_text(private, encoding="utf-8")
    pem.chmod(0o600)
    server = Server(state, _Handler)
    serve(server)
    return RunningClarity(state, server, pem)


def stop(running: RunningClarity) -> None:
    running.server.shutdown()
    running.server.server_close()
    shutil.rmtree(running.private_key_file.parent, ignore_errors=True)


@pytest.fixture(scope="session", name="clarity_contract")
def clarity_contract_fixture() -> Any:
    """The contract, loaded once per process."""
    return contract()


@pytest.fixture(name="clarity")
def clarity_fixture(clarity_contract: Any) -> Iterator[RunningClarity]:
    """A fresh Clarity; the test fails if any request broke the contract."""
    yield from one_server(start, stop, "Clarity")


@pytest.fixture(name="make_clarity")
def make_clarity_fixture(clarity_contract: Any) -> Iterator[Callable[..., RunningClarity]]:
    """A factory for servers with switches (``make_clarity(api_access=False)``), checked the
    same way."""
    yield from server_factory(start, stop, "Clarity")
