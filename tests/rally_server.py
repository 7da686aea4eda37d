"""A stateful Rally WSAPI v2.0 server on 127.0.0.1 checking every request against Rally's contract.

``contracts/rally-wsapi-v2.0.yaml`` is the OpenAPI 3.1 description Rally's own server generates.
Its request bodies are loosely typed, so each request is checked the way the contract can be
trusted: the path must match one of its templates (or a documented extension, see
:data:`DOCUMENTED_PATHS`), the method must be declared, every query parameter must be declared
for that operation (or be one of :data:`DOCUMENTED_PARAMETERS`), required ones present and
integers/booleans well formed. A violation is recorded; the fixtures fail the test at teardown.
Payload rules come from Rally's documentation and support articles (see the module's tests).

What it serves: one subscription, workspace "Shop WS" with projects "Shop" (the user is Editor)
and "Archive" (Viewer); API-key (``ZSESSIONID``) and Basic authentication, Basic writes needing
the session's security token (``?key=``); defects with allowed values, tags, attachments
(``AttachmentContent`` then ``Attachment``), discussion posts, type and attribute definitions;
Rally's query language, paging and ``fetch``; faults (latency, outage, injected 429/503,
dropped answers) and a record of every request.

Test modules import its fixtures by their function names:
``from rally_server import rally_contract_fixture, rally_fixture, make_rally_fixture``.

For a client's tests: ``rally.url`` (what a user configures), ``rally.api`` (``.../v2.0``),
``rally.integration_toml(auth="api-key" | "basic", **toml_overrides)``, ``rally.login_env(mp)``;
``rally.state`` holds the switches (``latency``, ``outage``, ``on_prem``, ``api_keys_disabled``,
``max_attachment_bytes``), fault helpers (``throttle``, ``unavailable``, ``drop_write``,
``expire_tokens``), seeding (``file``, ``tag``, ``set_state``), readers (``defects``,
``defect``, ``tags``, ``attachments_of``, ``posts_of``) and the record (``requests``, ``count``,
``violations``, ``take_violations``).
"""

from __future__ import annotations

import base64
import binascii
import collections
import copy
import importlib
import itertools
import json
import re
import secrets
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from server_kit import Handler, Server, one_server, serve, server_factory, wait_idle

CONTRACT = Path(__file__).parent / "contracts" / "rally-wsapi-v2.0.yaml"
API = "/slm/webservice/v2.0"

USER = "qa@example.com"
PASSWORD = "rally-pass-123"
API_KEY = "_rp1ApiKeyForTheShop"
#: an API key created "read-only": reads work, writes answer 401 (Rally's API key FAQ)
READ_ONLY_KEY = "_rp1ReadOnlyKey"
OTHER_USER = "dev@example.com"
WORKSPACE = "Shop WS"
PROJECT = "Shop"
VIEWER_PROJECT = "Archive"

#: Rally documents these in its WSAPI docs (https://rally1.rallydev.com/slm/doc/webservice/) but
#: the generated OpenAPI file lacks them: the security token endpoint ("Authorization: security
#: token", also Broadcom KB 57528) and the collection endpoints every v2.0 answer links to in a
#: collection attribute's ``_ref`` ("Object Collection Attributes"; Broadcom KB 57584 walks
#: ``typedefinition/{oid}/Attributes`` and ``attributedefinition/{oid}/AllowedValues``).
#: Nothing else outside the contract is served.
DOCUMENTED_PATHS: dict[str, dict[str, list[dict[str, Any]]]] = {
    f"{API}/security/authorize": {"get": []},
    **{
        f"{API}/{owner}/{{objectId}}/{name}": {
            "get": [
                {"name": p, "in": "query", "schema": {"type": t}}
                for p, t in (
                    ("fetch", "string"),
                    ("start", "integer"),
                    ("pagesize", "integer"),
                    ("order", "string"),
                    ("query", "string"),
                    ("compact", "boolean"),
                )
            ]
        }
        for owner, name in (
            ("typedefinition", "Attributes"),
            ("attributedefinition", "AllowedValues"),
            ("defect", "Tags"),
            ("defect", "Attachments"),
            ("defect", "Discussion"),
            ("workspace", "Projects"),
        )
    },
}
#: query parameters Rally's WSAPI docs list that the generated file does not declare:
#: ``key`` (the security token every create/update/delete needs with Basic authentication,
#: "Authorization" section and Broadcom KB 127054) and the project scoping of collection reads
#: ("Query parameters": project, projectScopeUp, projectScopeDown; pyral sends them too).
DOCUMENTED_PARAMETERS: dict[str, dict[str, str]] = {
    "write": {"key": "string"},
    "query": {"project": "string", "projectScopeUp": "boolean", "projectScopeDown": "boolean"},
}

#: the resources the project's trimmed copy of the contract keeps; others are violations too.
RESOURCES = {
    t.lower(): t
    for t in (
        "Defect",
        "Tag",
        "Attachment",
        "AttachmentContent",
        "ConversationPost",
        "TypeDefinition",
        "AttributeDefinition",
        "ScopedAttributeDefinition",
        "AllowedAttributeValue",
        "Workspace",
        "Project",
        "Subscription",
        "User",
        "WorkspacePermission",
        "ProjectPermission",
        "State",
        "ScheduleState",
        "WorkspaceConfiguration",
    )
}

RESOURCE_LIST = ", ".join(sorted(RESOURCES))

MAX_PAGESIZE = 2000
DEFAULT_PAGESIZE = 20
#: pyral's MAX_ATTACHMENT_SIZE ("approx 50 MB"); Rally's docs say 50 MB: the smaller reading.
MAX_ATTACHMENT_BYTES = 50_000_000
INVALID_KEY = "Not authorized to perform action: Invalid key"

ALLOWED: dict[str, list[str]] = {
    "Severity": ["None", "Crash/Data Loss", "Major Problem", "Minor Problem", "Cosmetic"],
    "Priority": ["None", "Resolve Immediately", "High Attention", "Normal", "Low"],
    "State": ["Submitted", "Open", "Fixed", "Closed"],
    "Resolution": [
        "",
        "Architecture",
        "Can't Reproduce",
        "Code Change",
        "Configuration Change",
        "Converted",
        "Database Change",
        "Duplicate",
        "Need More Information",
        "Not a Defect",
        "Software Limitation",
        "User Interface",
        "Won't Fix",
        "None",
    ],  # the contract's enum
    "ScheduleState": ["Defined", "In-Progress", "Completed", "Accepted"],
    "Environment": ["None", "Development", "Test", "Staging", "Production"],
    "c_Component": ["Checkout", "Cart", "Search"],
}

#: Defect attributes: (ElementName, display Name, AttributeType, Required, Custom, ReadOnly)
DEFECT_ATTRIBUTES: list[tuple[str, str, str, bool, bool, bool]] = [
    ("ObjectID", "Object ID", "INTEGER", False, False, True),
    ("FormattedID", "ID", "STRING", False, False, True),
    ("Name", "Name", "STRING", True, False, False),
    ("Description", "Description", "TEXT", False, False, False),
    ("Notes", "Notes", "TEXT", False, False, False),
    ("Severity", "Severity", "RATING", False, False, False),
    ("Priority", "Priority", "RATING", False, False, False),
    ("State", "State", "STATE", False, False, False),
    ("Resolution", "Resolution", "RATING", False, False, False),
    ("ScheduleState", "Schedule State", "STATE", False, False, False),
    ("Environment", "Environment", "RATING", False, False, False),
    ("FoundInBuild", "Found In", "STRING", False, False, False),
    ("FixedInBuild", "Fixed In", "STRING", False, False, False),
    ("Blocked", "Blocked", "BOOLEAN", False, False, False),
    ("Owner", "Owner", "OBJECT", False, False, False),
    ("SubmittedBy", "Submitted By", "OBJECT", False, False, False),
    ("Project", "Project", "OBJECT", False, False, False),
    ("Workspace", "Workspace", "OBJECT", False, False, True),
    ("Tags", "Tags", "COLLECTION", False, False, False),
    ("Attachments", "Attachments", "COLLECTION", False, False, True),
    ("Discussion", "Discussion", "COLLECTION", False, False, True),
    ("CreationDate", "Creation Date", "DATE", False, False, True),
    ("LastUpdateDate", "Last Update Date", "DATE", False, False, True),
    ("c_Component", "Component", "STRING", False, True, False),
    ("c_Fingerprint", "Fingerprint", "STRING", False, True, False),
]

#: attributes holding one object (stored as its ObjectID) and stored collections (ObjectIDs)
REF_FIELDS = {
    "Artifact",
    "AttributeDefinition",
    "Content",
    "Owner",
    "Parent",
    "Project",
    "SubmittedBy",
    "Subscription",
    "TypeDefinition",
    "User",
    "Workspace",
    "WorkspaceConfiguration",
}
STORED_COLLECTIONS = {"Tags": "Tag"}
#: collections computed from the other side: (owner type, name) -> (member type, back reference)
COMPUTED_COLLECTIONS: dict[tuple[str, str], tuple[str, str]] = {
    ("Defect", "Attachments"): ("Attachment", "Artifact"),
    ("Defect", "Discussion"): ("ConversationPost", "Artifact"),
    ("TypeDefinition", "Attributes"): ("AttributeDefinition", "TypeDefinition"),
    ("AttributeDefinition", "AllowedValues"): ("AllowedAttributeValue", "AttributeDefinition"),
    ("Workspace", "Projects"): ("Project", "Workspace"),
}
#: extra attributes each type's queries may name (besides what its objects hold)
COMMON = {"ObjectID", "CreationDate", "_ref", "_refObjectUUID"}
WRITABLE: dict[str, set[str]] = {
    "Defect": {a[0] for a in DEFECT_ATTRIBUTES if not a[5]},
    "Tag": {"Name", "Archived", "Description"},
    "AttachmentContent": {"Content"},
    "Attachment": {"Artifact", "Content", "Name", "ContentType", "Size", "Description", "User"},
    "ConversationPost": {"Artifact", "Text", "User"},
}
#: body elements Rally accepts on every create without storing them here
IGNORED_QUIETLY = {"Workspace"}
#: attributes the query language knows on types whose objects may not exist yet
READ_ONLY_ATTRIBUTES: dict[str, set[str]] = {
    "Tag": {"Workspace"},
    "Attachment": {"Workspace"},
    "ConversationPost": {"PostNumber", "Workspace"},
    "AttachmentContent": {"Workspace"},
}
#: the type a reference attribute points at
REF_TYPES = {
    "Artifact": "Defect",
    "Content": "AttachmentContent",
    "Owner": "User",
    "Parent": "Project",
    "Project": "Project",
    "SubmittedBy": "User",
    "Subscription": "Subscription",
    "TypeDefinition": "TypeDefinition",
    "AttributeDefinition": "AttributeDefinition",
    "User": "User",
    "Workspace": "Workspace",
    "WorkspaceConfiguration": "WorkspaceConfiguration",
}


# -- the contract ------------------------------------------------------------------------------


@cache
def contract_paths() -> dict[str, Any]:
    """The ``paths`` of the contract, parsed once per process (the whole file is 3 MB)."""
    text = CONTRACT.read_text(encoding="utf-8")
    yaml: Any = importlib.import_module("yaml")  # PyYAML comes with openapi-core; no stubs
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    start = re.search(r"^paths:\n", text, re.M)
    if start is not None:  # block style: parse the paths section alone
        end = re.search(r"^\S", text[start.end() :], re.M)
        text = text[start.start() : start.end() + end.start()] if end else text[start.start() :]
    paths: dict[str, Any] = yaml.load(text, Loader=loader)["paths"]
    return paths


@cache
def _templates() -> list[tuple[re.Pattern[str], str, dict[str, Any], bool]]:
    """(pattern, template, path item, documented extension); literal segments match first."""
    out = []
    for paths, extension in ((contract_paths(), False), (DOCUMENTED_PATHS, True)):
        for template, item in paths.items():
            pattern = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template.lower()))
            out.append((re.compile(f"^{pattern}$"), template, item, extension))
    out.sort(key=lambda t: t[1].count("{"))
    return out


def check_request(method: str, path: str, query: dict[str, list[str]]) -> list[str]:
    """Contract violations of one request (an empty list when it conforms).

    Type names in Rally URLs are case-insensitive (``TypeDefinition/1/Attributes`` in Rally's own
    articles), so paths are compared in lower case."""
    where = f"{method} {path}"
    found = next((t for t in _templates() if t[0].match(path.lower())), None)
    if found is None:
        return [f"{where}: no such path in the contract"]
    _, template, item, extension = found
    parts = template[len(API) + 1 :].split("/")
    if not extension and parts[0] not in RESOURCES:
        # the same answer before and after the project's trimmed copy replaces the full file
        return [f"{where}: no such path in the contract (the project keeps only {RESOURCE_LIST})"]
    operation = item.get(method.lower())
    if not isinstance(operation, dict) and not isinstance(operation, list):
        return [f"{where}: method not declared for {template}"]
    declared: dict[str, dict[str, Any]] = {}
    params = operation if isinstance(operation, list) else operation.get("parameters", [])
    for param in [*params, *(item.get("parameters") or [])]:
        if param.get("in") == "query":
            declared[param["name"]] = param
    kind = "write" if method in ("POST", "PUT", "DELETE") else "query"
    if kind == "query" and "query" not in declared:
        kind = ""  # a single-object read takes no project scoping
    for name, typ in DOCUMENTED_PARAMETERS.get(kind, {}).items():
        declared.setdefault(name, {"name": name, "schema": {"type": typ}})
    problems = []
    for name, values in query.items():
        param = declared.get(name)
        if param is None:
            problems.append(f"{where}: undeclared query parameter {name!r} for {template}")
            continue
        typ = param.get("schema", {}).get("type")
        for value in values:
            if typ == "integer" and not re.fullmatch(r"-?\d+", value):
                problems.append(f"{where}: query parameter {name}={value!r} is not an integer")
            if typ == "boolean" and value.lower() not in ("true", "false"):
                problems.append(f"{where}: query parameter {name}={value!r} is not a boolean")
    for name, param in declared.items():
        if param.get("required") and name not in query:
            problems.append(f"{where}: required query parameter {name!r} missing")
    return problems


# -- Rally's query language --------------------------------------------------------------------


class QueryError(Exception):
    """A query Rally cannot parse; the text is what Rally puts in ``Errors``."""


_TOKEN = re.compile(
    r'\s*(?:(?P<open>\()|(?P<close>\))|"(?P<str>(?:[^"\\]|\\.)*)"'
    r"|(?P<op>!=|<=|>=|=|<|>|!contains\b|contains\b)|(?P<word>[^\s()\"]+))",
    re.I,
)
Node = tuple[Any, ...]


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise QueryError(f'Could not parse: Error parsing expression -- near "{text[pos:]}"')
        kind = m.lastgroup or ""
        value = m.group(kind)
        if kind == "str":
            value = re.sub(r"\\(.)", r"\1", value)
        elif kind == "op":
            value = value.lower()
        out.append((kind, value))
        pos = m.end()
    return out


def parse_query(text: str) -> Node:
    """Rally's WSAPI query syntax: ``(Field op value)``, every AND/OR binary and parenthesized,
    as in ``((A = "x") AND ((B contains "y") OR (C != null)))``. Operators: ``= != < <= > >=
    contains !contains``; values quoted or one bare word (``null``, ``true``, a number)."""
    tokens = _tokens(text)
    if not tokens:
        raise QueryError("Could not parse: Error parsing expression -- the query is empty")
    node, at = _parse_group(tokens, 0)
    if at != len(tokens):
        raise QueryError(_expected("end of expression", tokens, at))
    return node


def _seen(tokens: list[tuple[str, str]], at: int) -> str:
    return tokens[at][1] if at < len(tokens) else "end of input"


def _expected(what: str, tokens: list[tuple[str, str]], at: int) -> str:
    seen = tokens[at][1] if at < len(tokens) else "end of input"
    if at < len(tokens) and tokens[at][0] in ("open", "close"):
        seen = "(" if tokens[at][0] == "open" else ")"
    return (
        f'Could not parse: Error parsing expression -- expected "{what}" but saw "{seen}" instead.'
    )


def _parse_group(tokens: list[tuple[str, str]], at: int) -> tuple[Node, int]:
    if at >= len(tokens) or tokens[at][0] != "open":
        raise QueryError(_expected("(", tokens, at))
    at += 1
    if at < len(tokens) and tokens[at][0] == "open":
        left, at = _parse_group(tokens, at)
        if at < len(tokens) and tokens[at][0] == "close":
            return left, at + 1  # ((A)): a redundant pair of parentheses
        if at >= len(tokens) or tokens[at][1].upper() not in ("AND", "OR"):
            raise QueryError(_expected("AND", tokens, at))
        conj = tokens[at][1].upper()
        right, at = _parse_group(tokens, at + 1)
        if at >= len(tokens) or tokens[at][0] != "close":
            raise QueryError(_expected(")", tokens, at))
        return (conj, left, right), at + 1
    if (
        at >= len(tokens)
        or tokens[at][0] != "word"
        or not re.fullmatch(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*", tokens[at][1])
    ):
        raise QueryError(_expected("attribute name", tokens, at))
    name = tokens[at][1]
    at += 1
    if (
        at >= len(tokens)
        or tokens[at][0] not in ("op", "word")
        or tokens[at][1].lower()
        not in (
            "=",
            "!=",
            "<",
            "<=",
            ">",
            ">=",
            "contains",
            "!contains",
        )
    ):
        raise QueryError(_expected("operator", tokens, at))
    op = tokens[at][1].lower()
    at += 1
    if at >= len(tokens) or tokens[at][0] not in ("str", "word"):
        raise QueryError(_expected("value", tokens, at))
    value, quoted = tokens[at][1], tokens[at][0] == "str"
    at += 1
    if at >= len(tokens) or tokens[at][0] != "close":
        raise QueryError(_expected(")", tokens, at))
    return ("CMP", name, op, value, quoted), at + 1


# -- state -------------------------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Recorded:
    """One request as the server saw it (secrets replaced by ``<redacted>``)."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any


def _result(kind: str, errors: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "_rallyAPIMajor": "2",
        "_rallyAPIMinor": "0",
        "Errors": errors or [],
        "Warnings": extra.pop("warnings", []),
    }
    body.update(extra)
    return {kind: body}


def _html_401(reason: str) -> Reply:
    page = (
        f"<html><head><title>Error 401 {reason}</title></head><body><h2>HTTP ERROR 401</h2>"
        f"<p>Problem accessing {API}. Reason:<pre>    {reason}</pre></p></body></html>"
    )
    return Reply(401, page, {"WWW-Authenticate": 'Basic realm="Rally ALM"'})


class RallyState:
    """What the server knows and the switches tests flip; tests read and change it directly."""

    def __init__(self, *, on_prem: bool = False, api_keys_disabled: bool = False) -> None:
        self.base_url = ""
        self.lock = threading.RLock()
        #: on-premises Rally: API keys are not supported there (401), Basic + token only
        self.on_prem = on_prem
        #: the subscription's "API Keys enabled" flag is off: existing keys answer 401
        self.api_keys_disabled = api_keys_disabled
        #: a security token is tied to the HTTP session (JSESSIONID cookie) it was issued in
        self.token_needs_session = True
        self.users = {USER: PASSWORD, OTHER_USER: "other-pass"}
        self.api_keys = {API_KEY: USER, READ_ONLY_KEY: USER}
        self.read_only_keys = {READ_ONLY_KEY}
        #: security token -> the session it belongs to
        self.tokens: dict[str, str] = {}
        self.max_attachment_bytes = MAX_ATTACHMENT_BYTES
        # faults and instrumentation
        self.latency = 0.0
        #: requests being answered now (a killed client's included)
        self.busy = 0
        self.outage = False
        #: replies served before anything else, one per request (see throttle / unavailable)
        self.inject: list[Reply] = []
        #: absolute numbers (1-based, every write counts) of writes answered by a dropped connection
        self.drop_writes: set[int] = set()
        self.writes = 0
        self.requests: list[Recorded] = []
        self.counts: collections.Counter[str] = collections.Counter()
        self.violations: list[str] = []
        # data
        self.objects: dict[int, dict[str, Any]] = {}
        self.content: dict[int, bytes] = {}
        self._oids = itertools.count(100001)
        self._defect_numbers = itertools.count(1)
        self._clock = itertools.count()
        self._epoch_ms = int(time.time() * 1000)
        self._seed()

    # -- seeding -------------------------------------------------------------------------------

    def _add(self, typ: str, **fields: Any) -> int:
        oid = next(self._oids)
        now = self.now()
        self.objects[oid] = {
            "_type": typ,
            "_version": 1,
            "ObjectID": oid,
            "CreationDate": now,
            **fields,
        }
        return oid

    def _seed(self) -> None:
        self.subscription = self._add("Subscription", Name="Shop Subscription", SubscriptionID=4242)
        self.config = self._add("WorkspaceConfiguration", Name="Shop WS", DateFormat="yyyy-MM-dd")
        self.workspace = self._add(
            "Workspace",
            Name=WORKSPACE,
            State="Open",
            Subscription=self.subscription,
            WorkspaceConfiguration=self.config,
        )
        self.project = self._add("Project", Name=PROJECT, State="Open", Workspace=self.workspace)
        self.viewer_project = self._add(
            "Project", Name=VIEWER_PROJECT, State="Open", Workspace=self.workspace
        )
        self.user = self._add(
            "User",
            UserName=USER,
            EmailAddress=USER,
            DisplayName="QA Bot",
            FirstName="QA",
            LastName="Bot",
            Disabled=False,
            SubscriptionAdmin=False,
            Subscription=self.subscription,
        )
        self.other_user = self._add(
            "User",
            UserName=OTHER_USER,
            EmailAddress=OTHER_USER,
            DisplayName="Dev Person",
            FirstName="Dev",
            LastName="Person",
            Disabled=False,
            SubscriptionAdmin=False,
            Subscription=self.subscription,
        )
        self._add(
            "WorkspacePermission",
            Name=f"{WORKSPACE} User",
            Role="User",
            User=self.user,
            Workspace=self.workspace,
        )
        for project, role in ((self.project, "Editor"), (self.viewer_project, "Viewer")):
            name = self.objects[project]["Name"]
            self._add(
                "ProjectPermission",
                Name=f"{name} {role}",
                Role=role,
                User=self.user,
                Project=project,
                Workspace=self.workspace,
            )
        self._add(
            "ProjectPermission",
            Name=f"{PROJECT} Editor",
            Role="Editor",
            User=self.other_user,
            Project=self.project,
            Workspace=self.workspace,
        )
        for state in ALLOWED["State"]:
            self._add("State", Name=state, Enabled=True, Workspace=self.workspace)
        for state in ALLOWED["ScheduleState"]:
            self._add("ScheduleState", Name=state, Workspace=self.workspace)
        defect_type = self._add(
            "TypeDefinition",
            Name="Defect",
            ElementName="Defect",
            DisplayName="Defect",
            TypePath="Defect",
            Creatable=True,
            Queryable=True,
            ReadOnly=False,
            Workspace=self.workspace,
        )
        for elem, name, atype, required, custom, read_only in DEFECT_ATTRIBUTES:
            attr = self._add(
                "AttributeDefinition",
                Name=name,
                ElementName=elem,
                AttributeType=atype,
                RealAttributeType=atype,
                Required=required,
                Custom=custom,
                ReadOnly=read_only,
                Hidden=False,
                Constrained=elem in ALLOWED,
                TypeDefinition=defect_type,
            )
            for value in ALLOWED.get(elem, []):
                self._add("AllowedAttributeValue", StringValue=value, AttributeDefinition=attr)
        for name, path in (
            ("Hierarchical Requirement", "HierarchicalRequirement"),
            ("Task", "Task"),
            ("Test Case", "TestCase"),
        ):
            self._add(
                "TypeDefinition",
                Name=name,
                ElementName=path,
                DisplayName=name,
                TypePath=path,
                Creatable=True,
                Queryable=True,
                ReadOnly=False,
                Workspace=self.workspace,
            )

    # -- helpers for tests ---------------------------------------------------------------------

    def now(self) -> str:
        """Strictly increasing timestamps, so ordering by dates is deterministic."""
        ms = self._epoch_ms + next(self._clock)
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"

    def ref(self, oid: int) -> str:
        return f"{self.base_url}{API}/{self.objects[oid]['_type'].lower()}/{oid}"

    def of_type(self, typ: str) -> list[dict[str, Any]]:
        return [o for o in self.objects.values() if o["_type"] == typ]

    def defects(self) -> list[dict[str, Any]]:
        """Every defect as Rally would answer it (full fetch), oldest first."""
        with self.lock:
            return [self.shape(d, None) for d in self.of_type("Defect")]

    def defect(self, formatted_id: str) -> dict[str, Any]:
        with self.lock:
            return self.shape(self._by_formatted_id(formatted_id), None)

    def tags(self) -> list[str]:
        return [t["Name"] for t in self.of_type("Tag")]

    def attachments_of(self, oid: int | str) -> list[dict[str, Any]]:
        """A defect's attachments (by ObjectID or FormattedID), their bytes under ``bytes``."""
        with self.lock:
            target = self._oid_of(oid)
            out = []
            for att in self.of_type("Attachment"):
                if att.get("Artifact") == target:
                    shaped = self.shape(att, None)
                    shaped["bytes"] = self.content.get(att.get("Content") or 0, b"")
                    out.append(shaped)
            return out

    def posts_of(self, oid: int | str) -> list[dict[str, Any]]:
        with self.lock:
            target = self._oid_of(oid)
            return [
                self.shape(p, None)
                for p in self.of_type("ConversationPost")
                if p.get("Artifact") == target
            ]

    def set_state(self, formatted_id: str, state: str) -> None:
        """What a person does in Rally's UI (no request, so no token and no record)."""
        assert state in ALLOWED["State"], state
        with self.lock:
            defect = self._by_formatted_id(formatted_id)
            defect["State"] = state
            defect["LastUpdateDate"] = self.now()
            defect["_version"] += 1

    def file(self, **fields: Any) -> dict[str, Any]:
        """A defect filed through the same rules as ``POST /defect/create`` (no request made);
        ``Tags`` may name tags (created when missing). Answers the created defect."""
        with self.lock:
            if "Tags" in fields:
                fields["Tags"] = [{"_ref": self.ref(self.tag(name))} for name in fields["Tags"]]
            done = self.create("Defect", {"Defect": fields}, self.user)["CreateResult"]
            assert done["Errors"] == [], done["Errors"]
            return dict(done["Object"])

    def tag(self, name: str) -> int:
        """The ObjectID of the tag ``name``, created when missing (no request made)."""
        with self.lock:
            for tag in self.of_type("Tag"):
                if tag["Name"] == name:
                    return int(tag["ObjectID"])
            return self._add("Tag", Name=name, Archived=False, Workspace=self.workspace)

    def expire_tokens(self) -> None:
        """Every security token stops working: the next Basic write answers ``Invalid key``."""
        with self.lock:
            self.tokens.clear()

    def throttle(self, times: int = 1, retry_after: str = "1") -> None:
        """The next ``times`` requests answer 429 with ``Retry-After`` (nothing done)."""
        with self.lock:
            self.inject += [
                Reply(429, "<html>Too Many Requests</html>", {"Retry-After": retry_after})
                for _ in range(times)
            ]

    def unavailable(self, times: int = 1) -> None:
        """The next ``times`` requests answer 503 (nothing done)."""
        with self.lock:
            self.inject += [Reply(503, "<html>Service Unavailable</html>") for _ in range(times)]

    def drop_write(self, nth: int = 1) -> None:
        """The ``nth`` write from now is done, then its connection closes unanswered."""
        with self.lock:
            self.drop_writes.add(self.writes + nth)

    def take_violations(self) -> list[str]:
        """The violations so far, forgotten (for a test that breaks the contract on purpose)."""
        with self.lock:
            taken, self.violations = self.violations, []
        for problem in taken:
            if problem in ALL_VIOLATIONS:
                ALL_VIOLATIONS.remove(problem)
        return taken

    def count(self, route: str) -> int:
        """Requests served on a route such as ``"POST defect/create"`` or ``"GET defect"``."""
        return self.counts[route]

    def _oid_of(self, oid: int | str) -> int:
        if isinstance(oid, str) and not oid.isdigit():
            return int(self._by_formatted_id(oid)["ObjectID"])
        return int(oid)

    def _by_formatted_id(self, formatted_id: str) -> dict[str, Any]:
        for defect in self.of_type("Defect"):
            if defect["FormattedID"].upper() == formatted_id.upper():
                return defect
        raise KeyError(formatted_id)

    # -- shapes --------------------------------------------------------------------------------

    def name_of(self, obj: dict[str, Any]) -> str:
        for key in ("Name", "DisplayName", "StringValue", "UserName", "Text"):
            if obj.get(key) is not None:
                return str(obj[key])
        return ""

    def summary(self, oid: int, fetch: set[str] | None = None) -> dict[str, Any]:
        obj = self.objects[oid]
        out = {
            "_rallyAPIMajor": "2",
            "_rallyAPIMinor": "0",
            "_ref": self.ref(oid),
            "_refObjectUUID": str(uuid.uuid5(uuid.NAMESPACE_URL, str(oid))),
            "_refObjectName": self.name_of(obj),
            "_type": obj["_type"],
        }
        if fetch:  # v2.0 applies the fetch list to referenced objects too
            for name in fetch:
                value = obj.get(name)
                if name in obj and name not in REF_FIELDS and not isinstance(value, list):
                    out[name] = value
        return out

    def collection(self, oid: int, name: str) -> dict[str, Any]:
        obj = self.objects[oid]
        members = self.members(oid, name)
        member_type = STORED_COLLECTIONS.get(name) or COMPUTED_COLLECTIONS[(obj["_type"], name)][0]
        out: dict[str, Any] = {
            "_rallyAPIMajor": "2",
            "_rallyAPIMinor": "0",
            "_ref": f"{self.ref(oid)}/{name}",
            "_type": member_type,
            "Count": len(members),
        }
        if name == "Tags":
            out["_tagsNameArray"] = [
                {"Name": self.objects[t]["Name"], "_ref": self.ref(t)} for t in members
            ]
        return out

    def members(self, oid: int, name: str) -> list[int]:
        obj = self.objects[oid]
        if name in STORED_COLLECTIONS:
            return [t for t in obj.get(name, []) if t in self.objects]
        member_type, back = COMPUTED_COLLECTIONS[(obj["_type"], name)]
        return [o["ObjectID"] for o in self.of_type(member_type) if o.get(back) == oid]

    def collections_of(self, typ: str) -> list[str]:
        names = [n for (t, n) in COMPUTED_COLLECTIONS if t == typ]
        return (["Tags"] if typ == "Defect" else []) + names

    def shape(self, obj: dict[str, Any], fetch: set[str] | None) -> dict[str, Any]:
        """An object as Rally answers it: ``fetch`` None means every attribute."""
        oid = obj["ObjectID"]
        out = self.summary(oid)
        out["_objectVersion"] = str(obj["_version"])
        if fetch is not None and not fetch:
            return out
        nested = fetch if fetch else None
        for key, value in obj.items():
            if key.startswith("_") or (fetch is not None and key not in fetch):
                continue
            if key in REF_FIELDS:
                out[key] = self.summary(value, nested) if value in self.objects else None
            elif key in STORED_COLLECTIONS:
                out[key] = self.collection(oid, key)
            else:
                out[key] = copy.deepcopy(value)
        for name in self.collections_of(obj["_type"]):
            if name not in obj and (fetch is None or name in fetch):
                out[name] = self.collection(oid, name)
        return out

    # -- the query language --------------------------------------------------------------------

    def attributes_of(self, typ: str) -> set[str]:
        names = set(COMMON) | WRITABLE.get(typ, set()) | READ_ONLY_ATTRIBUTES.get(typ, set())
        for obj in self.of_type(typ):
            names |= {k for k in obj if not k.startswith("_")}
        if typ == "Defect":
            names |= {a[0] for a in DEFECT_ATTRIBUTES}
        names |= set(self.collections_of(typ))
        return names

    def _check_fields(self, node: Node, typ: str) -> None:
        if node[0] != "CMP":
            self._check_fields(node[1], typ)
            self._check_fields(node[2], typ)
            return
        current = typ
        for segment in node[1].split("."):
            if current == "" or segment not in self.attributes_of(current):
                raise QueryError(
                    f'Could not parse: Could not find attribute "{segment}" on type {current}'
                    f' in the query segment "{node[1]}"'
                )
            current = self._type_behind(current, segment)

    def _type_behind(self, typ: str, attribute: str) -> str:
        if attribute in STORED_COLLECTIONS:
            return STORED_COLLECTIONS[attribute]
        if (typ, attribute) in COMPUTED_COLLECTIONS:
            return COMPUTED_COLLECTIONS[(typ, attribute)][0]
        return REF_TYPES.get(attribute, "")

    def _values(self, obj: dict[str, Any], path: list[str]) -> list[Any]:
        """The leaves a dotted attribute reaches: references stay ``("ref", oid)``."""
        head, rest = path[0], path[1:]
        oid = obj["ObjectID"]
        if head in STORED_COLLECTIONS or (obj["_type"], head) in COMPUTED_COLLECTIONS:
            targets = self.members(oid, head)
        elif head in REF_FIELDS:
            value = obj.get(head)
            targets = [value] if value in self.objects else []
            if not rest:
                return [("ref", t) for t in targets] or [None]
        else:
            if head == "_ref":
                return [self.ref(oid)]
            return [obj.get(head)]
        if not rest:
            return [("ref", t) for t in targets]
        out: list[Any] = []
        for target in targets:
            out += self._values(self.objects[target], rest)
        return out

    def matches(self, obj: dict[str, Any], node: Node) -> bool:
        if node[0] == "AND":
            return self.matches(obj, node[1]) and self.matches(obj, node[2])
        if node[0] == "OR":
            return self.matches(obj, node[1]) or self.matches(obj, node[2])
        _, name, op, value, quoted = node
        leaves = self._values(obj, name.split("."))
        if op.startswith("!"):
            positive = {"!=": "=", "!contains": "contains"}[op]
            return not any(self._compare(leaf, positive, value, quoted) for leaf in leaves)
        return any(self._compare(leaf, op, value, quoted) for leaf in leaves)

    def _compare(self, leaf: Any, op: str, value: str, quoted: bool) -> bool:
        if not quoted and value.lower() == "null":
            return (leaf is None or leaf == "") == (op == "=")
        if leaf is None:
            return False
        if isinstance(leaf, tuple):  # a reference: compared by the ref (or ObjectID) given
            wanted = _oid_in_ref(value)
            return op in ("=", "contains") and wanted == leaf[1]
        if isinstance(leaf, bool):
            return op == "=" and str(leaf).lower() == value.lower()
        if op == "contains":
            return value.lower() in str(leaf).lower()
        a: tuple[float, str] = (0.0, str(leaf).lower())
        b: tuple[float, str] = (0.0, value.lower())
        if isinstance(leaf, (int, float)) and re.fullmatch(r"-?\d+(\.\d+)?", value):
            a, b = (float(leaf), ""), (float(value), "")
        return {"=": a == b, "<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]

    # -- requests ------------------------------------------------------------------------------

    def query(
        self, typ: str, q: dict[str, str], members: list[int] | None = None
    ) -> dict[str, Any]:
        errors: list[str] = []
        warnings: list[str] = []
        start = int(q.get("start", "1") or 1)
        size = int(q.get("pagesize", str(DEFAULT_PAGESIZE)) or DEFAULT_PAGESIZE)
        if start < 1:
            errors.append("The start index must be greater than or equal to 1")
        if size < 1:
            errors.append("The page size must be greater than or equal to 1")
        if size > MAX_PAGESIZE:
            warnings.append(f"The maximum page size is {MAX_PAGESIZE}; it was used instead")
            size = MAX_PAGESIZE
        found = [self.objects[m] for m in members] if members is not None else self.of_type(typ)
        if q.get("workspace"):
            ws = _oid_in_ref(q["workspace"])
            if ws not in self.objects or self.objects[ws]["_type"] != "Workspace":
                errors.append(f"Could not read: Workspace {q['workspace']} not found")
        if q.get("project") and typ in ("Defect", "ProjectPermission"):
            project = _oid_in_ref(q["project"])
            found = [o for o in found if o.get("Project") == project]
        if q.get("query", "").strip() and not errors:
            try:
                node = parse_query(q["query"])
                self._check_fields(node, typ)
            except QueryError as exc:
                errors.append(str(exc))
            else:
                found = [o for o in found if self.matches(o, node)]
        if errors:
            return _result(
                "QueryResult",
                errors,
                warnings=warnings,
                TotalResultCount=0,
                StartIndex=0,
                PageSize=0,
                Results=[],
            )
        for key, descending in reversed(_order(q.get("order", ""))):
            found.sort(key=_sort_key(key), reverse=descending)
        fetch = _fetch(q.get("fetch"), default=set())
        page = found[start - 1 : start - 1 + size]
        return _result(
            "QueryResult",
            warnings=warnings,
            TotalResultCount=len(found),
            StartIndex=start,
            PageSize=size,
            Results=[self.shape(o, fetch) for o in page],
        )

    def handle(
        self, method: str, parts: list[str], q: dict[str, str], body: Any, user: int
    ) -> Reply:
        """Serve one authenticated request; ``parts`` are the path segments after ``v2.0``."""
        typ = RESOURCES.get(parts[0].lower(), "")
        if len(parts) == 1 and method == "GET":
            if typ in ("User", "Subscription") and "query" not in q:
                # GET /user answers the authenticated user, /subscription their subscription
                oid = user if typ == "User" else self.subscription
                return Reply(200, {typ: self._single(self.shape(self.objects[oid], None))})
            return Reply(200, self.query(typ, q))
        if len(parts) == 2 and parts[1].lower() == "create" and method == "POST":
            return Reply(200, self.create(typ, body, user))
        oid = int(parts[1]) if parts[1].isdigit() else -1
        obj = self.objects.get(oid)
        if obj is None or obj["_type"] != typ:
            if method == "GET":
                return Reply(200, _result("OperationResult", ["Cannot find object to read"]))
            action = "update" if method == "POST" else "delete"
            reason = f"Could not read: Could not read {typ} {parts[1]} to {action}."
            return Reply(200, _result("OperationResult", [reason]))
        if len(parts) == 3:
            if parts[2].lower() == "copy":
                return Reply(200, _result("OperationResult", ["Copy is not served here"]))
            name = next(n for n in self.collections_of(typ) if n.lower() == parts[2].lower())
            member_type = STORED_COLLECTIONS.get(name) or COMPUTED_COLLECTIONS[(typ, name)][0]
            return Reply(200, self.query(member_type, q, self.members(oid, name)))
        if method == "GET":
            shaped = self.shape(obj, _fetch(q.get("fetch"), default=None))
            if typ == "AttachmentContent":
                shaped["Content"] = base64.b64encode(self.content.get(oid, b"")).decode()
            return Reply(200, {typ: self._single(shaped)})
        if method == "DELETE":
            return Reply(200, self.delete(obj, user))
        return Reply(200, self.update(obj, body, user))

    @staticmethod
    def _single(shaped: dict[str, Any]) -> dict[str, Any]:
        return {**shaped, "Errors": [], "Warnings": []}

    def _element(self, typ: str, body: Any, kind: str) -> tuple[dict[str, Any] | None, Any]:
        """The object in ``{"Defect": {...}}`` (root name case-insensitive, as Rally reads it)."""
        if not isinstance(body, dict) or len(body) != 1:
            return None, _result(kind, [f"Could not read: expected a single {typ} element"])
        root, value = next(iter(body.items()))
        if root.lower() != typ.lower() or not isinstance(value, dict):
            return None, _result(kind, [f"Could not read: expected a single {typ} element"])
        return value, None

    def _project_role(self, project: int, user: int) -> str:
        for perm in self.of_type("ProjectPermission"):
            if perm["Project"] == project and perm["User"] == user:
                return str(perm["Role"])
        return ""

    def _apply(
        self, typ: str, values: dict[str, Any], target: dict[str, Any], root: str
    ) -> tuple[list[str], list[str]]:
        """Validate and copy writable values into ``target``; (errors, warnings) like Rally's."""
        errors: list[str] = []
        warnings: list[str] = []
        for key, value in values.items():
            if key not in WRITABLE[typ]:
                if key not in IGNORED_QUIETLY:
                    warnings.append(
                        f"Ignored JSON element {root}.{key} during processing of this request."
                    )
                continue
            if key in REF_FIELDS and typ != "AttachmentContent":
                if value is None:
                    target[key] = None
                    continue
                oid = _oid_in_ref(value)
                if oid not in self.objects:
                    errors.append(f"Could not read: Could not read referenced object {value}")
                    continue
                if self.objects[oid]["_type"] != REF_TYPES[key]:
                    errors.append(f"Validation error: {typ}.{key} must be a {REF_TYPES[key]}")
                    continue
                target[key] = oid
            elif key in STORED_COLLECTIONS:
                if not isinstance(value, list):
                    errors.append(
                        f"Could not read: {typ}.{key} must be an array of objects with _ref"
                    )
                    continue
                refs = [_oid_in_ref(v) for v in value]
                bad = [
                    v
                    for v, o in zip(value, refs, strict=True)
                    if self.objects.get(o, {}).get("_type") != "Tag"
                ]
                if bad:
                    errors.append(f"Could not read: Could not read referenced object {bad[0]}")
                    continue
                target[key] = list(dict.fromkeys(refs))
            elif key in ALLOWED and value is not None and value not in ALLOWED[key]:
                errors.append(f'Validation error: {typ}.{key} "{value}" is not an allowed value')
            elif key == "Blocked" and not isinstance(value, bool):
                errors.append(f"Validation error: {typ}.{key} must be a boolean")
            else:
                target[key] = value
        return errors, warnings

    def create(self, typ: str, body: Any, user: int) -> dict[str, Any]:
        if typ not in WRITABLE:
            return _result("CreateResult", [f"Not authorized to create: {typ}"])
        values, problem = self._element(typ, body, "CreateResult")
        if values is None:
            return dict(problem)
        root = next(iter(body))
        record: dict[str, Any] = {}
        data = b""
        errors, warnings = self._apply(typ, values, record, root)
        if typ == "Defect":
            project = record.get("Project") or self.project
            if self.objects[project]["_type"] != "Project":
                errors.append("Validation error: Defect.Project must be a Project")
            elif self._project_role(project, user) not in ("Editor", "Admin"):
                errors.append("Not authorized to create: Defect")
            record["Project"] = project
            record["Workspace"] = self.workspace
            for name in ("Severity", "Priority", "Environment"):
                record.setdefault(name, "None")
            record.setdefault("State", "Submitted")
            record.setdefault("ScheduleState", "Defined")
            record.setdefault("Tags", [])
            record.setdefault("Blocked", False)
            record.setdefault("SubmittedBy", user)
        elif typ == "Tag":
            record.setdefault("Archived", False)
            record["Workspace"] = self.workspace
            name = str(record.get("Name") or "")
            if any(t["Name"].lower() == name.lower() for t in self.of_type("Tag")):
                errors.append(f"Validation error: Tag.Name conflicts with {name}")
        elif typ == "AttachmentContent":
            try:
                data = base64.b64decode(str(record.get("Content") or ""), validate=True)
            except (binascii.Error, ValueError):
                errors.append("Validation error: AttachmentContent.Content is not valid base64")
                data = b""
            if len(data) > self.max_attachment_bytes:
                errors.append(
                    "Validation error: AttachmentContent.Content exceeds the maximum attachment"
                    f" size of {self.max_attachment_bytes} bytes"
                )
            record["Content"] = None
            record["Workspace"] = self.workspace
        elif typ == "Attachment":
            errors += self._check_attachment(record, user)
        elif typ == "ConversationPost":
            errors += self._check_post(record, user)
        for required in {
            "Defect": ["Name"],
            "Tag": ["Name"],
            "Attachment": ["Name", "Content", "ContentType", "Size"],
            "ConversationPost": ["Artifact", "Text"],
            "AttachmentContent": [],
        }[typ]:
            if record.get(required) in (None, ""):
                errors.insert(0, f"Validation error: {typ}.{required} should not be null")
        if errors:
            return _result("CreateResult", errors, warnings=warnings)
        oid = self._add(typ, **record)
        obj = self.objects[oid]
        if typ == "AttachmentContent":
            del obj["Content"]
            self.content[oid] = data
        if typ == "Defect":
            obj["FormattedID"] = f"DE{next(self._defect_numbers)}"
            obj["LastUpdateDate"] = obj["CreationDate"]
        return _result("CreateResult", warnings=warnings, Object=self.shape(obj, None))

    def _check_attachment(self, record: dict[str, Any], user: int) -> list[str]:
        errors = []
        artifact = self.objects.get(record.get("Artifact") or 0)
        if artifact is not None and artifact["_type"] != "Defect":
            errors.append("Validation error: Attachment.Artifact must be an artifact")
        elif artifact is not None and self._project_role(artifact["Project"], user) not in (
            "Editor",
            "Admin",
        ):
            errors.append("Not authorized to create: Attachment")
        content = record.get("Content")
        if content is not None:
            if self.objects[content]["_type"] != "AttachmentContent":
                errors.append("Validation error: Attachment.Content must be an AttachmentContent")
            else:
                size = len(self.content.get(content, b""))
                if not isinstance(record.get("Size"), int) or record["Size"] != size:
                    errors.append(
                        f"Validation error: Attachment.Size {record.get('Size')!r} does not match"
                        f" the size of its content ({size} bytes)"
                    )
        if isinstance(record.get("Size"), int) and record["Size"] > self.max_attachment_bytes:
            errors.append(
                f"Validation error: Attachment.Size exceeds the maximum attachment size of"
                f" {self.max_attachment_bytes} bytes"
            )
        record.setdefault("User", user)
        record.setdefault("Description", "")
        record["Workspace"] = self.workspace
        return errors

    def _check_post(self, record: dict[str, Any], user: int) -> list[str]:
        artifact = self.objects.get(record.get("Artifact") or 0)
        if artifact is not None and artifact["_type"] != "Defect":
            return ["Validation error: ConversationPost.Artifact must be an artifact"]
        record.setdefault("User", user)
        record["Workspace"] = self.workspace
        record["PostNumber"] = len(
            [p for p in self.of_type("ConversationPost") if p["Artifact"] == record.get("Artifact")]
        )
        return []

    def update(self, obj: dict[str, Any], body: Any, user: int) -> dict[str, Any]:
        typ = obj["_type"]
        if typ not in WRITABLE or typ == "AttachmentContent":
            return _result("OperationResult", [f"Not authorized to update: {typ}"])
        values, problem = self._element(typ, body, "OperationResult")
        if values is None:
            return dict(problem)
        project = obj.get("Project")
        if typ == "Defect" and self._project_role(project or 0, user) not in ("Editor", "Admin"):
            return _result("OperationResult", [f"Not authorized to update: {typ}"])
        changed = dict(obj)
        errors, warnings = self._apply(typ, values, changed, next(iter(body)))
        if typ == "Defect" and self._project_role(changed["Project"], user) not in (
            "Editor",
            "Admin",
        ):
            errors.append("Not authorized to update: Defect")
        if typ == "Tag" and any(
            t["Name"].lower() == str(changed.get("Name", "")).lower() and t is not obj
            for t in self.of_type("Tag")
        ):
            errors.append(f"Validation error: Tag.Name conflicts with {changed['Name']}")
        if errors:
            return _result("OperationResult", errors, warnings=warnings)
        obj.update(changed)
        obj["_version"] += 1
        if typ == "Defect":
            obj["LastUpdateDate"] = self.now()
        return _result("OperationResult", warnings=warnings, Object=self.shape(obj, None))

    def delete(self, obj: dict[str, Any], user: int) -> dict[str, Any]:
        typ = obj["_type"]
        if typ not in WRITABLE:
            return _result("OperationResult", [f"Not authorized to delete: {typ}"])
        project = obj.get("Project")
        if project and self._project_role(project, user) not in ("Editor", "Admin"):
            return _result("OperationResult", [f"Not authorized to delete: {typ}"])
        del self.objects[obj["ObjectID"]]
        self.content.pop(obj["ObjectID"], None)
        return _result("OperationResult")


def _oid_in_ref(value: Any) -> int:
    """The ObjectID in a ref: a full URL, ``/defect/1``, ``defect/1.js``, ``{"_ref": ...}``."""
    if isinstance(value, dict):
        value = value.get("_ref", "")
    if isinstance(value, int):
        return value
    m = re.search(r"(?:^|/)(\d+)(?:\.js)?/?$", str(value))
    return int(m.group(1)) if m else -1


def _fetch(value: str | None, default: set[str] | None) -> set[str] | None:
    """``fetch=true`` is everything (None), ``fetch=A,B`` those, absent is ``default``."""
    if value is None or value.strip() == "" or value.strip().lower() == "false":
        return default
    if value.strip().lower() == "true":
        return None
    return {f.strip() for f in value.strip('"').split(",") if f.strip()}


def _order(value: str) -> list[tuple[str, bool]]:
    keys = []
    for item in value.split(","):
        words = item.split()
        if words:
            keys.append((words[0], len(words) > 1 and words[1].lower() == "desc"))
    return keys or [("ObjectID", False)]


def _sort_key(name: str) -> Callable[[dict[str, Any]], tuple[int, float, str]]:
    def key(obj: dict[str, Any]) -> tuple[int, float, str]:
        value = obj.get(name)
        if value is None:
            return (0, 0.0, "")
        if isinstance(value, (int, float)):
            return (1, float(value), "")
        return (2, 0.0, str(value).lower())

    return key


# -- HTTP --------------------------------------------------------------------------------------


class _Handler(Handler):
    def setup(self) -> None:
        super().setup()
        # headers and body leave in two writes: without this, delayed ACKs cost 40 ms a call
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _serve(self) -> None:
        state = self.server.state
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if len(raw) < length:  # the client went away mid-request (a killed run): as Rally, drop it
            self.close_connection = True
            return
        split = urlsplit(self.path)
        path = unquote(split.path)
        query = parse_qs(split.query, keep_blank_values=True)
        method = self.command
        body: Any = None
        bad_json = ""
        if raw:
            try:
                body = json.loads(raw)
            except ValueError as exc:
                bad_json = str(exc)
        secret = {"authorization", "zsessionid", "cookie"}
        headers = {k: ("<redacted>" if k.lower() in secret else v) for k, v in self.headers.items()}
        recorded_query = {k: (["<redacted>"] if k == "key" else v) for k, v in query.items()}
        with state.lock:
            state.requests.append(Recorded(method, path, recorded_query, headers, body))
            outage = state.outage
        if outage:
            self.close_connection = True
            return
        problems = check_request(method, path, query)
        if problems:
            with state.lock:
                state.violations += problems
                ALL_VIOLATIONS.extend(problems)
            if any("no such path" in p for p in problems):
                self._reply(Reply(404, "<html>Not Found</html>"))
                return
            if any("method not declared" in p for p in problems):
                self._reply(Reply(405, "<html>Method Not Allowed</html>"))
                return
        with state.lock:
            injected = state.inject.pop(0) if state.inject else None
        if injected is not None:
            self._reply(injected)
            return
        if state.latency:
            time.sleep(state.latency)
        parts = [p for p in path[len(API) + 1 :].split("/") if p]
        write = method in ("POST", "PUT", "DELETE")
        q = {k: v[-1] for k, v in query.items()}
        with state.lock:
            who = self._authenticate(state, write)
            if isinstance(who, Reply):
                self._reply(who)
                return
            user, session, new_session = who
            cookie = (
                {"Set-Cookie": f"JSESSIONID={session}; Path=/; HttpOnly"} if new_session else {}
            )
            route = self._route(method, parts)
            state.counts[route] += 1
            if parts == ["security", "authorize"]:
                token = secrets.token_hex(16)
                state.tokens[token] = session
                self._reply(Reply(200, _result("OperationResult", SecurityToken=token), cookie))
                return
            drop = False
            if write:
                kind = "CreateResult" if parts[-1].lower() == "create" else "OperationResult"
                if user < 0 and not self._token_ok(state, q.get("key", ""), session):
                    self._reply(Reply(200, _result(kind, [INVALID_KEY]), cookie))
                    return
                if bad_json:
                    error = (
                        f"Cannot parse input stream due to I/O error as JSON document: {bad_json}"
                    )
                    self._reply(Reply(200, _result(kind, [error]), cookie))
                    return
                state.writes += 1
                drop = state.writes in state.drop_writes
            try:
                reply = state.handle(method, parts, q, body, abs(user))
            except Exception as exc:  # a bug of this server: fail the test that met it
                problem = f"{method} {path}: the test server failed: {exc!r}"
                state.violations.append(problem)
                ALL_VIOLATIONS.append(problem)
                reply = Reply(500, _result("OperationResult", [problem]))
        if drop:  # the work is done; the client sees a closed connection
            self.close_connection = True
            return
        reply.headers.update(cookie)
        self._reply(reply)

    @staticmethod
    def _route(method: str, parts: list[str]) -> str:
        shown = [p.lower() if not p.isdigit() else "{oid}" for p in parts]
        return f"{method} {'/'.join(shown)}"

    @staticmethod
    def _token_ok(state: RallyState, key: str, session: str) -> bool:
        if key not in state.tokens:
            return False
        return not state.token_needs_session or state.tokens[key] == session

    def _authenticate(self, state: RallyState, write: bool) -> tuple[int, str, bool] | Reply:
        """(user ObjectID, session, session is new), negative for Basic (writes need a token)."""
        api_key = self.headers.get("ZSESSIONID")
        cookies = {}
        for part in (self.headers.get("Cookie") or "").split(";"):
            name, _, value = part.strip().partition("=")
            cookies[name] = value
        session = cookies.get("JSESSIONID", "")
        new_session = not session
        session = session or secrets.token_hex(12)
        if api_key:
            if state.on_prem or state.api_keys_disabled or api_key not in state.api_keys:
                return _html_401("Full authentication is required to access this resource")
            if write and api_key in state.read_only_keys:
                return _html_401("Full authentication is required to access this resource")
            user = self._user_oid(state, state.api_keys[api_key])
            return user, session, new_session
        scheme, _, value = (self.headers.get("Authorization") or "").partition(" ")
        if scheme.lower() == "basic":
            try:
                name, _, password = base64.b64decode(value).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                name = password = ""
            if name in state.users and state.users[name] == password:
                return -self._user_oid(state, name), session, new_session
            return _html_401("The username or password you entered is incorrect.")
        return _html_401("Full authentication is required to access this resource")

    @staticmethod
    def _user_oid(state: RallyState, name: str) -> int:
        return next(int(u["ObjectID"]) for u in state.of_type("User") if u["UserName"] == name)

    def _reply(self, reply: Reply) -> None:
        if reply.body is None:
            data = b""
        elif isinstance(reply.body, str):
            data = reply.body.encode()
        else:
            data = json.dumps(reply.body).encode()
        self.send_response(reply.status)
        html = isinstance(reply.body, str)
        self.send_header(
            "Content-Type", "text/html;charset=utf-8" if html else "application/json;charset=utf-8"
        )
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


#: every violation of the session, for the session-level assertion.
ALL_VIOLATIONS: list[str] = []


@dataclass
class RunningRally:
    state: RallyState
    server: Server

    def wait_idle(self) -> None:
        wait_idle(self.state)

    @property
    def url(self) -> str:
        """The server's base URL (what a user types: ``https://rally1.rallydev.com``)."""
        return self.state.base_url

    @property
    def api(self) -> str:
        """The WSAPI root: ``{url}/slm/webservice/v2.0``."""
        return self.state.base_url + API

    def integration_toml(self, auth: str = "api-key", **overrides: str) -> str:
        """A ``[[integrations]]`` block for this server. ``auth`` is ``"api-key"`` (the key through
        ``${RALLY_API_KEY}``) or ``"basic"`` (``${RALLY_USER}`` / ``${RALLY_PASSWORD}``); see
        :meth:`login_env`. ``overrides`` are TOML values written as given (``workspace='"X"'``)
        and replace a default of the same key."""
        keys: dict[str, str] = {
            "kind": '"rally"',
            "name": '"Shop defects"',
            "url": f'"{self.url}"',
            "workspace": f'"{WORKSPACE}"',
            "project_key": f'"{PROJECT}"',
            "auth": f'"{auth}"',
        }
        if auth == "api-key":
            keys["api_key"] = '"${RALLY_API_KEY}"'
        else:
            keys["username"] = '"${RALLY_USER}"'
            keys["password"] = '"${RALLY_PASSWORD}"'
        keys.update(overrides)
        return "\n".join(["[[integrations]]", *(f"{k} = {v}" for k, v in keys.items())]) + "\n"

    def login_env(self, monkeypatch: pytest.MonkeyPatch | None = None) -> dict[str, str]:
        """The variables :meth:`integration_toml` names; set through ``monkeypatch`` if given."""
        env = {"RALLY_API_KEY": API_KEY, "RALLY_USER": USER, "RALLY_PASSWORD": PASSWORD}
        if monkeypatch is not None:
            for name, value in env.items():
                monkeypatch.setenv(name, value)
        return env


def start(**switches: Any) -> RunningRally:
    state = RallyState(**switches)
    server = Server(state, _Handler)
    serve(server)
    return RunningRally(state, server)


def stop(running: RunningRally) -> None:
    running.server.shutdown()
    running.server.server_close()


@pytest.fixture(scope="session", name="rally_contract")
def rally_contract_fixture() -> Iterator[dict[str, Any]]:
    """Parses the contract once; at the end of the session, asserts zero violations overall."""
    yield contract_paths()
    assert ALL_VIOLATIONS == [], "Rally contract violations:\n" + "\n".join(ALL_VIOLATIONS)


@pytest.fixture(name="rally")
def rally_fixture(rally_contract: dict[str, Any]) -> Iterator[RunningRally]:
    """A fresh Rally (SaaS, API keys on); the test fails if any request broke the contract."""
    yield from one_server(start, stop, "Rally")


@pytest.fixture(name="make_rally")
def make_rally_fixture(rally_contract: dict[str, Any]) -> Iterator[Callable[..., RunningRally]]:
    """A factory: ``make_rally(on_prem=True)``, ``make_rally(api_keys_disabled=True)``."""
    yield from server_factory(start, stop, "Rally")
