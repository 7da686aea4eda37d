"""A stateful Jira REST server on 127.0.0.1 that checks every request against Atlassian's contract.

Each request is validated with openapi-core against ``tests/contracts/jira-platform-v2.json``
(Atlassian's contract, trimmed to the paths our client calls: see ``tests/contracts/README.md``;
loaded once per test session) before it is served; a violation is recorded, and the fixture
fails the test at teardown. Everything else is a small, honest Jira: projects, issue types,
create metadata, issues with labels and workflow statuses, comments, attachments (multipart,
XSRF header), remote links (upsert on ``globalId``), issue links, transitions, and two flavours:
Cloud (``/search/jql``; the old ``/search`` answers 410) and Data Center (``/search`` only).

Test modules import its fixtures (``jira``, ``make_jira``, ``jira_contract``) by their
function names: ``from jira_server import jira_fixture``.
"""

from __future__ import annotations

import base64
import copy
import itertools
import json
import re
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from server_kit import Faults, Handler, Server, one_server, serve, server_factory, wait_idle

CONTRACT = Path(__file__).resolve().parent / "contracts" / "jira-platform-v2.json"
#: the spec's own server: requests are validated path-only, as if sent there.
SPEC_BASE = "https://your-domain.atlassian.net"

USER = "qa@example.com"
PASSWORD = "api-token-123"
DC_USER = "qa"
PAT = "pat-token-456"
OAUTH_CONSUMER = "rp-bts"

STATUSES: dict[str, dict[str, Any]] = {
    "To Do": {"id": "1", "key": "new", "name": "To Do"},
    "In Progress": {"id": "4", "key": "indeterminate", "name": "In Progress"},
    "Done": {"id": "3", "key": "done", "name": "Done"},
}
TRANSITIONS = {"11": "To Do", "21": "In Progress", "31": "Done"}
ISSUE_TYPES = [
    {"id": "10001", "name": "Bug", "subtask": False, "description": "A problem"},
    {"id": "10002", "name": "Task", "subtask": False, "description": "A task"},
]
LINK_TYPES = [
    {"id": "10003", "name": "Relates", "inward": "relates to", "outward": "relates to"},
    {"id": "10000", "name": "Blocks", "inward": "is blocked by", "outward": "blocks"},
    {"id": "10002", "name": "Duplicate", "inward": "is duplicated by", "outward": "duplicates"},
]
PRIORITIES = ["Highest", "High", "Medium", "Low"]
COMPONENTS = ["Checkout", "Cart"]


def _field(
    fid: str, name: str, required: bool, schema: dict[str, Any], **kw: Any
) -> dict[str, Any]:
    return {"fieldId": fid, "key": fid, "name": name, "required": required, "schema": schema, **kw}


FIELDS = [
    _field("summary", "Summary", True, {"type": "string", "system": "summary"}),
    _field("issuetype", "Issue Type", True, {"type": "issuetype", "system": "issuetype"}),
    _field("project", "Project", True, {"type": "project", "system": "project"}),
    _field("description", "Description", False, {"type": "string", "system": "description"}),
    _field("labels", "Labels", False, {"type": "array", "items": "string", "system": "labels"}),
    _field(
        "priority",
        "Priority",
        False,
        {"type": "priority", "system": "priority"},
        allowedValues=[{"id": str(i + 1), "name": n} for i, n in enumerate(PRIORITIES)],
    ),
    _field(
        "components",
        "Components",
        False,
        {"type": "array", "items": "component", "system": "components"},
        allowedValues=[{"id": str(100 + i), "name": n} for i, n in enumerate(COMPONENTS)],
    ),
    _field("assignee", "Assignee", False, {"type": "user", "system": "assignee"}),
    _field(
        "customfield_10060",
        "Severity",
        False,
        {"type": "option", "custom": "select", "customId": 10060},
        allowedValues=[{"id": str(200 + i), "value": v} for i, v in enumerate(("S1", "S2"))],
    ),
    _field(
        "customfield_10050",
        "Environment name",
        False,
        {"type": "string", "custom": "textfield", "customId": 10050},
    ),
]


_SPEC: Any = None
_SPEC_LOCK = threading.Lock()
#: every violation of the session, for the session-level assertion.
ALL_VIOLATIONS: list[str] = []


def contract() -> Any:
    """The OpenAPI object, loaded once (a few seconds).

    Two edits, both for validation only: the OAuth2 scheme (which openapi-core cannot check and
    warns about) becomes an HTTP bearer scheme, which is how Data Center accepts personal
    access tokens; Cloud's Basic scheme is kept as it is.
    """
    global _SPEC
    with _SPEC_LOCK:
        if _SPEC is None:
            from openapi_core import OpenAPI

            spec = json.loads(CONTRACT.read_text(encoding="utf-8"))
            spec["components"]["securitySchemes"] = {
                "basicAuth": {"type": "http", "scheme": "basic"},
                "bearerAuth": {"type": "http", "scheme": "bearer"},
            }
            for item in spec["paths"].values():
                for operation in item.values():
                    if isinstance(operation, dict) and "security" in operation:
                        operation["security"] = [
                            {"bearerAuth": []} if "OAuth2" in req else req
                            for req in operation["security"]
                        ]
            _SPEC = OpenAPI.from_dict(spec)
        return _SPEC


def validate(method: str, path_qs: str, headers: dict[str, str], body: bytes) -> str | None:
    """The violation text for a request, or ``None`` when the contract accepts it."""
    from openapi_core.contrib.requests import RequestsOpenAPIRequest

    spec = contract()
    keep = {k: v for k, v in headers.items() if k.lower() not in ("host", "content-length")}
    if keep.get("Authorization", "").startswith("OAuth "):
        # OAuth 1.0a (Data Center application links) is not in the Cloud contract: the server
        # checks its signature itself; the rest of the request is validated as usual
        keep["Authorization"] = "Bearer oauth1-verified-by-the-server"
    prepared = requests.Request(method, SPEC_BASE + path_qs, headers=keep, data=body).prepare()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            spec.validate_request(RequestsOpenAPIRequest(prepared))
    except Exception as exc:
        cause = exc.__cause__ or exc.__context__
        return f"{method} {path_qs}: {type(exc).__name__}: {exc}" + (f" ({cause})" if cause else "")
    return None


@dataclass
class Reply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


class JiraState:
    """What the server knows; tests read and change it directly."""

    def __init__(self, flavour: str = "cloud", context: str = "") -> None:
        self.flavour = flavour
        self.context = context.rstrip("/")
        self.base_url = ""
        self.lock = threading.RLock()
        #: requests being answered now (a killed client's included)
        self.busy = 0
        self.projects = {"SHOP": {"id": "10000", "key": "SHOP", "name": "Online Shop"}}
        self.users = {USER: PASSWORD} if flavour == "cloud" else {DC_USER: PASSWORD}
        self.tokens = {PAT} if flavour == "dc" else set()
        self.captcha = False
        #: OAuth 1.0a through an application link (Data Center): the consumer's public key
        self.oauth_public_key: str | None = None
        self.oauth_tokens: set[str] = set()
        #: request token -> the verifier the user was shown ("" until approved)
        self.oauth_requests: dict[str, str] = {}
        #: Cloud's eventually consistent search: new issues stay unfound unless reconciled
        self.lagging_search = False
        #: Jira is down: every call answers 503 (fault injection for the outbox)
        self.outage = False
        #: with lagging_search: a create makes every issue so far searchable (two CI jobs racing)
        self.index_on_create = False
        #: seconds each write takes (latency), and the most writes seen in flight at once
        self.write_delay = 0.0
        self.in_flight = 0
        self.max_in_flight = 0
        #: seconds added to every call (a remote Jira's round trip), and random faults
        self.latency = 0.0
        self.faults: Faults | None = None
        #: seconds each attachment upload takes besides ``latency``
        self.attachment_delay = 0.0
        #: called with (method, path) as each call arrives (a test kills its client mid-run)
        self.on_request: Callable[[str, str], None] | None = None
        #: paths whose next call is served and then dropped unanswered (one entry per call)
        self.drop_after: list[str] = []
        self.indexed: set[str] = set()
        self.can_create = True
        #: a bulk create answers this many issues fewer than it created (a proxy, a mock)
        self.bulk_answers_fewer = 0
        self.issues: dict[str, dict[str, Any]] = {}
        self.comments: dict[str, list[dict[str, Any]]] = {}
        self.attachments: dict[str, list[dict[str, Any]]] = {}
        self.remote_links: dict[str, list[dict[str, Any]]] = {}
        self.links: list[dict[str, str]] = []
        self.requests: list[tuple[str, str]] = []
        self.violations: list[str] = []
        #: replies served before anything else, one per request (429, 503, ...)
        self.inject: list[Reply] = []
        self._ids = itertools.count(10100)

    @property
    def cloud(self) -> bool:
        return self.flavour == "cloud"

    def url(self) -> str:
        return self.base_url + self.context

    # -- helpers for tests -------------------------------------------------------------------

    def by_label(self, label: str) -> list[dict[str, Any]]:
        return [i for i in self.issues.values() if label in i["fields"]["labels"]]

    def set_status(self, key: str, name: str) -> None:
        self.issues[key]["fields"]["status"] = self._status(name)

    def _status(self, name: str) -> dict[str, Any]:
        s = STATUSES[name]
        return {
            "id": s["id"],
            "name": name,
            "statusCategory": {"key": s["key"], "name": s["name"]},
        }

    # -- the API -----------------------------------------------------------------------------

    def oauth_dance(self, method: str, path: str, url: str, headers: dict[str, str]) -> Reply:
        """The three OAuth 1.0a endpoints of a Jira application link (outside the REST API)."""
        step = path.rsplit("/", 1)[-1]
        if method != "POST" or "authorization" not in headers:
            return Reply(405 if method != "POST" else 401, "<html>no</html>")
        if step == "request-token" and self.oauth_verify(method, url, headers, tokens=None):
            token = f"request-{next(self._ids)}"
            self.oauth_requests[token] = ""
            body = f"oauth_token={token}&oauth_token_secret=s&oauth_callback_confirmed=true"
            return Reply(200, body)
        if step == "access-token" and self.oauth_verify(
            method, url, headers, tokens=set(self.oauth_requests)
        ):
            params = self._oauth_params(headers)
            wanted = self.oauth_requests.pop(params["oauth_token"])
            if not wanted or params.get("oauth_verifier") != wanted:
                return Reply(401, "oauth_problem=permission_denied")
            token = f"access-{next(self._ids)}"
            self.oauth_tokens.add(token)
            return Reply(200, f"oauth_token={token}&oauth_token_secret=t")
        return Reply(401, "oauth_problem=signature_invalid")

    def approve(self, verifier: str) -> None:
        """What the user does in the browser: allow every pending request token."""
        for token in self.oauth_requests:
            self.oauth_requests[token] = verifier

    @staticmethod
    def _oauth_params(headers: dict[str, str]) -> dict[str, str]:
        from oauthlib.oauth1.rfc5849 import utils

        pairs = utils.parse_authorization_header(headers["authorization"])
        return {k: utils.unescape(v) for k, v in pairs}

    def oauth_verify(
        self, method: str, url: str, headers: dict[str, str], tokens: set[str] | None = None
    ) -> bool:
        """An OAuth 1.0a RSA-SHA1 signature checked as Jira does, with oauthlib.

        ``tokens`` are the tokens accepted; ``None`` means the request must carry none (the
        request-token step)."""
        from oauthlib.common import Request
        from oauthlib.oauth1.rfc5849 import signature

        if self.oauth_public_key is None:
            return False
        params = self._oauth_params(headers)
        consumer, token = params.get("oauth_consumer_key"), params.get("oauth_token")
        if consumer != OAUTH_CONSUMER:
            return False
        if (tokens is None and token) or (tokens is not None and token not in tokens):
            return False
        if params.get("oauth_signature_method") != "RSA-SHA1":
            return False
        request = Request(url, method, None, {"Authorization": headers["authorization"]})
        request.signature = params["oauth_signature"]
        request.params = signature.collect_parameters(
            uri_query=urlsplit(url).query,
            headers={"Authorization": headers["authorization"]},
            exclude_oauth_signature=True,
        )
        return bool(signature.verify_rsa_sha1(request, self.oauth_public_key))

    def _auth(
        self, headers: dict[str, str], path: str, method: str = "GET", url: str = ""
    ) -> Reply | None:
        if self.captcha:
            return Reply(
                403,
                {"errorMessages": ["CAPTCHA_CHALLENGE"]},
                {
                    "X-Seraph-LoginReason": "AUTHENTICATION_DENIED",
                    "X-Authentication-Denied-Reason": "CAPTCHA_CHALLENGE; login-url="
                    + self.url()
                    + "/login.jsp",
                },
            )
        auth = headers.get("authorization", "")
        if not auth and path == "/rest/api/2/serverInfo":
            return None  # anonymous access, as in Jira; wrong credentials still get 401
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "basic":
            try:
                user, _, password = base64.b64decode(value).decode().partition(":")
            except ValueError:
                user = password = ""
            if self.users.get(user) == password:
                return None
        elif (scheme.lower() == "bearer" and value in self.tokens) or (
            scheme == "OAuth" and self.oauth_verify(method, url, headers, self.oauth_tokens)
        ):
            return None
        return Reply(
            401,
            {"errorMessages": ["You are not authenticated."]},
            {"X-Seraph-LoginReason": "AUTHENTICATED_FAILED", "WWW-Authenticate": "Basic"},
        )

    def handle(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> Reply:
        q = {k: v[-1] for k, v in query.items()}
        parts = path.split("/")[4:]  # "", "rest", "api", "2", ...
        route = "/".join(parts)
        if self.outage:
            return Reply(503, {"errorMessages": ["Service Unavailable"]}, {"Retry-After": "0"})
        with self.lock:
            if route == "serverInfo":
                return Reply(200, self._server_info())
            if route == "user":
                wanted = q.get("accountId") if self.cloud else q.get("username")
                me = self._myself()
                if wanted and wanted == me.get("accountId" if self.cloud else "name"):
                    return Reply(200, me)
                return self._not_found("The user does not exist.")
            if route == "myself":
                return Reply(200, self._myself())
            if route == "project" and method == "GET":
                return Reply(200, list(self.projects.values()))
            if parts[0] == "project" and len(parts) == 2:
                project = self._project(parts[1])
                if project is None:
                    return self._not_found(f"No project could be found with key '{parts[1]}'.")
                return Reply(200, {**project, "issueTypes": ISSUE_TYPES})
            if route == "mypermissions":
                have = self.can_create
                return Reply(
                    200,
                    {
                        "permissions": {
                            "CREATE_ISSUES": {"key": "CREATE_ISSUES", "havePermission": have}
                        }
                    },
                )
            if route == "issueLinkType":
                return Reply(200, {"issueLinkTypes": LINK_TYPES})
            if route == "issueLink" and method == "POST":
                return self._link(body)
            if parts[:2] == ["issue", "createmeta"]:
                return self._createmeta(parts[2:])
            if route == "issue" and method == "POST":
                return self._create(body)
            if route == "issue/bulk" and method == "POST":
                return self._bulk_create(body)
            if route == "search/jql":
                if not self.cloud:
                    return self._not_found("null for uri")
                return self._search(query, jql_page=True)
            if route == "search":
                if self.cloud:
                    return Reply(
                        410,
                        {"errorMessages": ["The requested API has been removed. Use /search/jql."]},
                    )
                return self._search(query, jql_page=False)
            if parts[0] == "issue" and len(parts) >= 2:
                issue = self.issues.get(parts[1].upper())
                if issue is None:
                    return self._not_found(
                        "Issue does not exist or you do not have permission to see it."
                    )
                return self._issue_call(method, issue, parts[2:], q, body)
        return self._not_found(f"no route for {method} {path}")

    def _not_found(self, message: str) -> Reply:
        return Reply(404, {"errorMessages": [message], "errors": {}})

    def _server_info(self) -> dict[str, Any]:
        if self.cloud:
            return {
                "baseUrl": self.url(),
                "deploymentType": "Cloud",
                "version": "1001.0.0-SNAPSHOT",
                "versionNumbers": [1001, 0, 0],
                "buildNumber": 100290,
                "serverTitle": "Jira",
            }
        return {
            "baseUrl": self.url(),
            "deploymentType": "Server",
            "version": "9.12.4",
            "versionNumbers": [9, 12, 4],
            "buildNumber": 9120004,
            "serverTitle": "Jira DC",
        }

    def _myself(self) -> dict[str, Any]:
        if self.cloud:
            return {
                "accountId": "5b10a2844c20165700ede21g",
                "emailAddress": USER,
                "displayName": "QA",
            }
        return {"name": DC_USER, "key": DC_USER, "emailAddress": USER, "displayName": "QA"}

    def _project(self, key_or_id: str) -> dict[str, Any] | None:
        for project in self.projects.values():
            if key_or_id in (project["key"], project["id"]):
                return project
        return None

    def _createmeta(self, rest: list[str]) -> Reply:
        if not rest or self._project(rest[0]) is None:
            return self._not_found("project not found")
        if len(rest) == 2:  # .../issuetypes
            items = ISSUE_TYPES
            key = "issueTypes" if self.cloud else "values"
        else:
            if rest[2] not in {t["id"] for t in ISSUE_TYPES}:
                return self._not_found("issue type not found")
            items, key = FIELDS, ("fields" if self.cloud else "values")
        return Reply(200, {key: items, "maxResults": 50, "startAt": 0, "total": len(items)})

    def _create(self, body: Any) -> Reply:
        fields = dict(body.get("fields", {}))
        errors: dict[str, str] = {}
        project = self._project(
            str(fields.get("project", {}).get("key") or fields.get("project", {}).get("id", ""))
        )
        if project is None:
            errors["project"] = "valid project is required"
        elif not self.can_create:
            errors["project"] = "You do not have permission to create issues in this project."
        itype = fields.get("issuetype", {})
        types = [
            t for t in ISSUE_TYPES if itype.get("name") == t["name"] or itype.get("id") == t["id"]
        ]
        if not types:
            errors["issuetype"] = "valid issue type is required"
        if not str(fields.get("summary", "")).strip():
            errors["summary"] = "You must specify a summary of the issue."
        elif len(fields["summary"]) > 255 or "\n" in fields["summary"]:
            errors["summary"] = "Summary must be less than 255 characters and one line."
        known = {f["fieldId"] for f in FIELDS}
        for name in fields:
            if name not in known:
                errors[name] = (
                    f"Field '{name}' cannot be set. It is not on the appropriate screen,"
                    " or unknown."
                )
        if "priority" in fields and fields["priority"].get("name") not in PRIORITIES:
            errors["priority"] = "Specify the Priority (name) in the string format"
        for comp in fields.get("components", []):
            if comp.get("name") not in COMPONENTS:
                errors["components"] = f"Component name '{comp.get('name')}' is not valid"
        for label in fields.get("labels", []):
            if " " in label or len(label) > 255:
                errors["labels"] = "The label must not contain spaces."
        if errors:
            return Reply(400, {"errorMessages": [], "errors": errors})
        assert project is not None
        number = sum(1 for k in self.issues if k.startswith(project["key"] + "-")) + 1
        key = f"{project['key']}-{number}"
        issue_id = str(next(self._ids))
        fields["project"] = project
        fields["issuetype"] = types[0]
        fields.setdefault("labels", [])
        fields.setdefault("description", "")
        fields["status"] = self._status("To Do")
        fields["created"] = f"2026-01-01T00:00:{len(self.issues):02d}.000+0000"
        self.issues[key] = {"id": issue_id, "key": key, "fields": fields}
        if self.index_on_create:  # the search index catches up with everything filed so far
            self.indexed |= {issue["id"] for issue in self.issues.values()}
        return Reply(
            201, {"id": issue_id, "key": key, "self": f"{self.url()}/rest/api/2/issue/{issue_id}"}
        )

    def _bulk_create(self, body: Any) -> Reply:
        """Up to 50 issues; each one is created or refused on its own, as Jira does."""
        updates = body.get("issueUpdates") or []
        if len(updates) > 50:
            return Reply(400, {"errorMessages": ["Bulk create is limited to 50 issues."]})
        created: list[Any] = []
        errors: list[dict[str, Any]] = []
        for number, update in enumerate(updates):
            reply = self._create(update)
            if reply.status == 201:
                created.append(reply.body)
            else:
                errors.append(
                    {
                        "failedElementNumber": number,
                        "status": reply.status,
                        "elementErrors": reply.body,
                    }
                )
        status = 201 if created or not errors else 400
        answered = created[: len(created) - self.bulk_answers_fewer]
        return Reply(status, {"issues": answered, "errors": errors})

    def _issue_json(self, issue: dict[str, Any]) -> dict[str, Any]:
        out = copy.deepcopy(issue)
        out["self"] = f"{self.url()}/rest/api/2/issue/{issue['id']}"
        out["fields"]["comment"] = {"comments": self.comments.get(issue["key"], [])}
        out["fields"]["attachment"] = self.attachments.get(issue["key"], [])
        return out

    def _search(self, q: dict[str, list[str]], *, jql_page: bool) -> Reply:
        jql = q.get("jql", [""])[-1]
        found = list(self.issues.values())
        if self.lagging_search:
            seen = self.indexed | set(q.get("reconcileIssues", []))
            found = [i for i in found if i["id"] in seen]
        m = re.search(r"labels\s+in\s*\(([^)]*)\)", jql, re.I)
        if m:
            wanted = set(re.findall(r'"((?:[^"\\]|\\.)*)"', m.group(1)))
            found = [i for i in found if wanted & set(i["fields"]["labels"])]
        m = re.search(r'project\s*=\s*"?([A-Za-z0-9_]+)"?', jql, re.I)
        if m:
            found = [i for i in found if i["fields"]["project"]["key"] == m.group(1)]
        m = re.search(r'issuetype\s*=\s*"((?:[^"\\]|\\.)*)"', jql, re.I)
        if m:
            found = [i for i in found if i["fields"]["issuetype"]["name"] == m.group(1)]
        if re.search(r"order\s+by\s+created\s+desc", jql, re.I):
            found.sort(key=lambda i: i["fields"]["created"], reverse=True)
        size = int(q.get("maxResults", ["50"])[-1])
        # pages as Jira has them: a token for the next page (Cloud), or startAt (Data Center)
        start = int(q.get("nextPageToken" if jql_page else "startAt", ["0"])[-1] or 0)
        issues = [self._issue_json(i) for i in found[start : start + size]]
        if jql_page:
            page: dict[str, Any] = {"issues": issues, "isLast": start + size >= len(found)}
            if not page["isLast"]:
                page["nextPageToken"] = str(start + size)
            return Reply(200, page)
        return Reply(
            200, {"issues": issues, "startAt": start, "maxResults": size, "total": len(found)}
        )

    def _issue_call(
        self, method: str, issue: dict[str, Any], rest: list[str], q: dict[str, str], body: Any
    ) -> Reply:
        key = issue["key"]
        what = rest[0] if rest else ""
        if what == "" and method == "GET":
            return Reply(200, self._issue_json(issue))
        if what == "" and method == "PUT":
            return self._edit(issue, body)
        if what == "comment":
            comments = self.comments.setdefault(key, [])
            if method == "GET":
                return Reply(
                    200,
                    {
                        "comments": comments,
                        "startAt": 0,
                        "maxResults": 5000,
                        "total": len(comments),
                    },
                )
            comment = {"id": str(next(self._ids)), "body": body["body"]}
            comments.append(comment)
            return Reply(201, comment)
        if what == "attachments":
            return Reply(200, body)  # filled in by the handler from the multipart body
        if what == "remotelink":
            links = self.remote_links.setdefault(key, [])
            if method == "GET":
                return Reply(
                    200,
                    [x for x in links if "globalId" not in q or x.get("globalId") == q["globalId"]],
                )
            for link in links:
                if body.get("globalId") and link.get("globalId") == body["globalId"]:
                    link.update(body)
                    return Reply(200, {"id": link["id"], "self": ""})
            link = {"id": int(next(self._ids)), **body}
            links.append(link)
            return Reply(201, {"id": link["id"], "self": ""})
        if what == "transitions":
            if method == "GET":
                current = issue["fields"]["status"]["name"]
                return Reply(
                    200,
                    {
                        "transitions": [
                            {"id": tid, "name": name, "to": self._status(name)}
                            for tid, name in TRANSITIONS.items()
                            if name != current
                        ]
                    },
                )
            tid = str(body.get("transition", {}).get("id", ""))
            if tid not in TRANSITIONS:
                return Reply(
                    400,
                    {
                        "errorMessages": [f"Transition id '{tid}' is not valid for this issue."],
                        "errors": {},
                    },
                )
            self.set_status(key, TRANSITIONS[tid])
            return Reply(204)
        return self._not_found(f"no route for {method} issue/{key}/{'/'.join(rest)}")

    @staticmethod
    def _edit(issue: dict[str, Any], body: Any) -> Reply:
        """An issue edit; only labels are served (``fields`` sets them, ``update`` adds and
        removes), as Jira: a label is a string without spaces, added once."""
        edits = body.get("update") or {}
        if "labels" in (body.get("fields") or {}):
            edits = {**edits, "labels": [{"set": body["fields"]["labels"]}]}
        if set(edits) - {"labels"} or set(body.get("fields") or {}) - {"labels"}:
            return Reply(400, {"errorMessages": [], "errors": {"fields": "not served here"}})
        labels = list(issue["fields"]["labels"])
        for operation in edits.get("labels", []):
            if not isinstance(operation, dict) or len(operation) != 1:
                return Reply(400, {"errorMessages": [], "errors": {"labels": "one operation"}})
            ((verb, value),) = operation.items()
            values = value if verb == "set" else [value]
            if verb not in ("add", "remove", "set") or not isinstance(values, list):
                return Reply(400, {"errorMessages": [], "errors": {"labels": "bad operation"}})
            if any(not isinstance(v, str) or not v or " " in v for v in values):
                return Reply(
                    400, {"errorMessages": [], "errors": {"labels": "a label has no spaces"}}
                )
            if verb == "set":
                labels = list(dict.fromkeys(values))
            elif verb == "add" and value not in labels:
                labels.append(value)
            elif verb == "remove" and value in labels:
                labels.remove(value)
        issue["fields"]["labels"] = labels
        return Reply(204)

    def _link(self, body: Any) -> Reply:
        name = body.get("type", {}).get("name")
        if name not in {t["name"] for t in LINK_TYPES}:
            return Reply(404, {"errorMessages": [f"No issue link type with name '{name}' found."]})
        inward, outward = body["inwardIssue"]["key"], body["outwardIssue"]["key"]
        if inward not in self.issues or outward not in self.issues:
            return self._not_found("Issue does not exist")
        self.links.append({"type": name, "inward": inward, "outward": outward})
        return Reply(201)


class _Handler(Handler):
    def _serve(self) -> None:
        state = self.server.state
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if len(raw) < length:  # the client went away mid-request (a killed run): as Jira, drop it
            self.close_connection = True
            return
        split = urlsplit(self.path)
        headers = {k.lower(): v for k, v in self.headers.items()}
        path = split.path
        with state.lock:
            state.requests.append((self.command, self.path))
            injected = state.inject.pop(0) if state.inject else None
        if state.on_request is not None:
            state.on_request(self.command, path)
        if state.context:
            if not path.startswith(state.context + "/"):
                self._reply(Reply(404, "<html>Not Found</html>"))
                return
            path = path[len(state.context) :]
        if path.startswith("/plugins/servlet/oauth/"):  # not REST: no contract to check
            self._reply(state.oauth_dance(self.command, path, state.base_url + self.path, headers))
            return
        if not path.startswith("/rest/api/2/"):
            self._reply(Reply(404, "<html>Not Found</html>"))
            return
        violation = validate(
            self.command, path + (f"?{split.query}" if split.query else ""), dict(self.headers), raw
        )
        if violation:
            with state.lock:
                state.violations.append(violation)
                ALL_VIOLATIONS.append(violation)
        if injected is not None:
            self._reply(injected)
            return
        if state.latency:
            time.sleep(state.latency)
        fault = state.faults.draw() if state.faults is not None else ""
        with state.lock:
            if path in state.drop_after:
                state.drop_after.remove(path)
                fault = "drop"
        if fault == "error":
            self._reply(Reply(500, {"errorMessages": ["Internal server error"]}))
            return
        if fault == "throttle":
            assert state.faults is not None
            retry = {"Retry-After": state.faults.retry_after}
            self._reply(Reply(429, {"errorMessages": ["Rate limit exceeded."]}, retry))
            return
        denied = state._auth(headers, path, self.command, state.base_url + self.path)
        if denied is not None:
            self._reply(denied)
            return
        body: Any = None
        if path.endswith("/attachments") and self.command == "POST":
            time.sleep(state.attachment_delay)
            body = self._attachments(path, headers, raw)
            if isinstance(body, Reply):
                self._reply(body)
                return
        elif raw:
            try:
                body = json.loads(raw)
            except ValueError:
                self._reply(Reply(400, {"errorMessages": ["Unexpected character"]}))
                return
        if self.command == "POST" and state.write_delay:
            with state.lock:
                state.in_flight += 1
                state.max_in_flight = max(state.max_in_flight, state.in_flight)
            time.sleep(state.write_delay)
            with state.lock:
                state.in_flight -= 1
        reply = state.handle(self.command, path, parse_qs(split.query), body)
        if fault == "drop":  # the work is done; the client sees a closed connection
            self.close_connection = True
            return
        if fault == "slow":
            assert state.faults is not None
            time.sleep(state.faults.slow_seconds)
        self._reply(reply)

    def _attachments(self, path: str, headers: dict[str, str], raw: bytes) -> Any:
        from requests_toolbelt.multipart.decoder import MultipartDecoder

        state = self.server.state
        if headers.get("x-atlassian-token") != "no-check":
            return Reply(403, {"errorMessages": ["XSRF check failed"]})
        key = path.split("/")[5].upper()
        if key not in state.issues:
            return Reply(404, {"errorMessages": ["Issue does not exist"]})
        added = []
        for part in MultipartDecoder(raw, headers.get("content-type", "")).parts:
            disposition = part.headers.get(b"Content-Disposition", b"").decode()
            name = re.search(r'filename="([^"]*)"', disposition)
            if 'name="file"' not in disposition or name is None:
                return Reply(400, {"errorMessages": ["expected a part named file"]})
            item = {
                "id": str(next(state._ids)),
                "filename": name.group(1),
                "size": len(part.content),
                "mimeType": part.headers.get(b"Content-Type", b"").decode(),
                "content": part.content,
            }
            with state.lock:
                state.attachments.setdefault(key, []).append(item)
            added.append({k: v for k, v in item.items() if k != "content"})
        return added

    def _reply(self, reply: Reply) -> None:
        if reply.body is None:
            data = b""
        elif isinstance(reply.body, str):
            data = reply.body.encode()
        else:
            data = json.dumps(reply.body, default=lambda b: None).encode()
        self.send_response(reply.status)
        if data:
            html = isinstance(reply.body, str)
            self.send_header("Content-Type", "text/html" if html else "application/json")
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@dataclass
class RunningJira:
    state: JiraState
    server: Server

    def wait_idle(self) -> None:
        wait_idle(self.state)

    @property
    def url(self) -> str:
        return self.state.url()

    def integration_toml(self, **extra: str) -> str:
        """A ``[[integrations]]`` block for this server, its login through ``${JIRA_USER}`` and
        ``${JIRA_TOKEN}`` (see :meth:`login_env`); ``extra`` keys are written as given."""
        lines = [
            "[[integrations]]",
            'kind = "jira"',
            'name = "Shop bugs"',
            f'url = "{self.url}"',
            'project_key = "SHOP"',
            'username = "${JIRA_USER}"',
            'password = "${JIRA_TOKEN}"',
            *(f"{key} = {value}" for key, value in extra.items()),
        ]
        return "\n".join(lines) + "\n"

    def login_env(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """The variables :meth:`integration_toml` refers to, with this flavour's login."""
        monkeypatch.setenv("JIRA_USER", USER if self.state.cloud else DC_USER)
        monkeypatch.setenv("JIRA_TOKEN", PASSWORD)


def start(flavour: str = "cloud", context: str = "") -> RunningJira:
    state = JiraState(flavour, context)
    server = Server(state, _Handler)
    serve(server)
    return RunningJira(state, server)


def stop(running: RunningJira) -> None:
    running.server.shutdown()
    running.server.server_close()


@pytest.fixture(scope="session", name="jira_contract")
def jira_contract_fixture() -> Iterator[Any]:
    """Loads the contract once; at the end of the session, asserts zero violations overall."""
    yield contract()
    assert ALL_VIOLATIONS == [], "Jira contract violations:\n" + "\n".join(ALL_VIOLATIONS)


@pytest.fixture(params=["cloud", "dc"], name="jira")
def jira_fixture(request: pytest.FixtureRequest, jira_contract: Any) -> Iterator[RunningJira]:
    """A fresh Jira of each flavour; the test fails if any request broke the contract."""
    yield from one_server(start, stop, "Jira", request.param)


@pytest.fixture(name="make_jira")
def make_jira_fixture(jira_contract: Any) -> Iterator[Any]:
    """A factory for servers with a given flavour and context path, checked the same way."""
    yield from server_factory(start, stop, "Jira")
