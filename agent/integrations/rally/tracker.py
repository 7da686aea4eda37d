"""Rally WSAPI v2.0: Defects filed, found by their fingerprint Tag, discussed, reopened, linked.

Straight ``requests`` through the shared HTTP layer (:mod:`rp_bts_agent.http`): pyral, Rally's
own client, retries and logs on its own and reads proxies and keys from the environment.

Rally answers a refusal with HTTP 200 and the reasons in ``Errors`` (``Validation error:
Defect.Severity "x" is not an allowed value``): every answer's ``Errors`` become one line naming
the field, and its ``Warnings`` (an attribute Rally ignored) are logged. With Basic
authentication every write carries the session's security token as ``key=``: it is fetched
once, on the first write, and again when Rally says ``Invalid key``; an API key goes in the
``ZSESSIONID`` header. Neither is ever put in a message.
"""

from __future__ import annotations

import base64
import dataclasses
import logging
import os
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Final, final
from urllib.parse import urlsplit

import requests

from rp_bts_agent.connection import CheckOptions, CheckResult
from rp_bts_agent.content import one_line
from rp_bts_agent.http import Session, new_session, status_error, transport_error
from rp_bts_agent.tracker import (
    AttachmentFile,
    CommentDraft,
    IssueDraft,
    RemoteIssue,
    TrackerError,
    create_one,
    filed_by,
    run_marker,
)

from . import RallySettings, markup

if TYPE_CHECKING:
    from rp_bts_agent.config_types import Integration
    from rp_bts_agent.tracker import Tracker

__all__ = ["RallyTracker", "check_connection"]

logger = logging.getLogger("rp_bts_agent")

API: Final = "/slm/webservice/v2.0"
#: results per query page (Rally allows 2,000; small pages keep answers light)
PAGE: Final = 200
#: pages read at most: 2,000 defects, far more than a run's fingerprints ever match
MAX_PAGES: Final = 10
#: drafts per ``create_many`` call, and fingerprints per search: one OR-joined query each
BATCH: Final = 20
#: Rally takes at most 50 MB per attachment; a larger file is cut to this with a note
MAX_ATTACHMENT: Final = 50_000_000
#: the type rp-bts files (the one the vendored contract keeps)
DEFECT: Final = "Defect"
CLOSED: Final = "Closed"
#: the State a reopened defect gets
REOPENED: Final = "Open"
#: the Description carries the run marker of the run that filed the defect
_DEFECT_FETCH: Final = "FormattedID,State,ScheduleState,Tags,Project,ObjectID,Description"
_FORMATTED_ID: Final = re.compile(r"^(DE\d+)$", re.IGNORECASE)
#: ``https://host/#/123d/detail/defect/456``, ``.../v2.0/defect/456`` or ``/defect/456.js``
_DEFECT_OID: Final = re.compile(r"/defect/(\d+)(?:\.js)?/?(?:[?#]|$)", re.IGNORECASE)
_OID: Final = re.compile(r"(\d+)(?:\.js)?/?$")
_INVALID_KEY: Final = "Invalid key"
_KEY_PARAM: Final = re.compile(r"([?&]key=)[^&\s\"]+")
#: roles that may create defects in a project
EDITORS: Final = frozenset(("Editor", "Admin", "Project Admin", "ProjectAdmin"))
#: attributes that hold a user, given by UserName
USERS: Final = frozenset(("Owner", "SubmittedBy"))
#: attributes rp-bts fills itself
OURS: Final = frozenset(("Name", "Description", "Project", "Workspace", "Tags"))


def _settings(integration: Integration) -> RallySettings:
    return integration.settings_as(RallySettings)


def _quoted(value: str) -> str:
    """A string in Rally's query language."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def either(terms: Sequence[str]) -> str:
    """``((A) OR (B))``, nested for more: Rally's AND and OR take exactly two operands."""
    query = terms[0]
    for term in terms[1:]:
        query = f"({query} OR {term})"
    return query


def _chunks(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _oid(ref: Any) -> int:
    """The ObjectID at the end of a ref (a URL, ``/defect/1``, ``{"_ref": ...}``), else 0."""
    if isinstance(ref, Mapping):
        ref = ref.get("_ref", "")
    match = _OID.search(str(ref or ""))
    return int(match.group(1)) if match else 0


def _tag_names(raw: Mapping[str, Any]) -> set[str]:
    tags = raw.get("Tags") or {}
    return {str(t.get("Name")) for t in tags.get("_tagsNameArray") or [] if isinstance(t, Mapping)}


def _tags_of(draft: IssueDraft) -> list[str]:
    """A new defect's tags: its fingerprint (how ``find`` knows it) and the draft's labels."""
    return [n for n in dict.fromkeys((draft.fingerprint, *draft.labels)) if n]


def _refusal(what: str, errors: Sequence[str], settings: RallySettings) -> TrackerError:
    """Rally's ``Errors`` as one line (they name the field: ``Defect.Severity``), and what to
    change when it is a permission."""
    text = f"Rally {what}: " + "; ".join(e.strip() for e in errors)
    if any(e.startswith("Not authorized") for e in errors):
        text += f" (the user needs the Editor role in project {settings.project_key!r})"
    return TrackerError(text)


def _login_hints(settings: RallySettings, write: bool = False) -> tuple[str, ...]:
    """Why Rally refused the credentials; both causes of a refused API key look alike."""
    if settings.auth == "basic":
        return (
            "check username (the Rally login, usually an e-mail address) and password; a user"
            ' who signs in through SSO has no password here: use auth = "api-key"',
        )
    hints = []
    host = urlsplit(settings.url).hostname or ""
    if not host.endswith(".rallydev.com"):
        hints.append(
            f"{host} is not Rally's cloud: an on-premises Rally takes no API keys; set"
            ' auth = "basic" with username and password'
        )
    if write:
        hints.append("a read-only API key cannot write: create a full-access key")
    hints.append(
        "the API key is wrong or revoked, or the subscription has API keys turned off (a"
        " subscription administrator allows them in Setup > Subscription); or use"
        ' auth = "basic"'
    )
    return tuple(hints)


class ScopeError(TrackerError):
    """The workspace or project is not there: what is wrong, and what to set instead."""

    def __init__(self, problem: str, hint: str) -> None:
        super().__init__(f"Rally: {problem}; {hint}")
        self.problem = problem
        self.hint = hint


@dataclass(frozen=True, slots=True)
class Scope:
    """Where defects go: the workspace and project, by ref, resolved once per run."""

    workspace: str
    workspace_name: str
    project: str
    project_name: str

    @property
    def project_oid(self) -> int:
        return _oid(self.project)


@final
class RallyTracker:
    """Rally Defects in one workspace and project; one HTTP session per integration."""

    kind: ClassVar[str] = "rally"
    batch: ClassVar[int] = BATCH

    def __init__(self, integration: Integration, *, read_only: bool = False) -> None:
        settings = _settings(integration)
        name = integration.name
        if not settings.url:
            raise TrackerError(f"integration '{name}': url is missing")
        if not settings.project_key:
            raise TrackerError(f"integration '{name}': project_key is missing")
        if settings.auth == "basic" and not (settings.username and settings.password):
            raise TrackerError(
                f"integration '{name}': auth = \"basic\" needs username and password"
            )
        if settings.auth == "api-key" and not settings.api_key:
            raise TrackerError(f"integration '{name}': auth = \"api-key\" needs api_key")
        if settings.issue_type not in ("", DEFECT):
            raise TrackerError(
                f"integration '{name}': issue_type {settings.issue_type!r}: rp-bts files Rally"
                ' Defects (issue_type = "Defect")'
            )
        self.integration: Final = integration
        self.settings: Final = settings
        self.url: Final = settings.url.rstrip("/")
        self.api: Final = self.url + API
        self.read_only: Final = read_only
        self._session: Session | None = None
        self._lock = threading.RLock()
        self._token = ""
        self._scope: Scope | None = None
        self._down: TrackerError | None = None
        self._tags: dict[str, str] = {}
        self._users: dict[str, str] = {}
        self._attributes: dict[str, dict[str, Any]] | None = None
        #: FormattedID -> ObjectID of the defects seen this run
        self._oids: dict[str, int] = {}
        #: FormattedIDs of the defects this tracker created (their attachments are all to come)
        self._created: set[str] = set()

    def __repr__(self) -> str:
        return f"RallyTracker({self.url!r}, project={self.settings.project_key!r})"

    # -- calls ---------------------------------------------------------------------------------

    @property
    def session(self) -> Session:
        with self._lock:
            if self._session is None:
                s = self.settings
                if s.auth == "basic":
                    session = new_session(
                        s, timeout=float(s.timeout), auth=(s.username, s.password)
                    )
                else:
                    session = new_session(
                        s, timeout=float(s.timeout), headers={"ZSESSIONID": s.api_key}
                    )
                session.headers["Accept"] = "application/json"
                self._session = session
            return self._session

    def close(self) -> None:
        with self._lock:
            if self._session is not None:
                self._session.close()
                self._session = None

    def call(
        self,
        method: str,
        path: str,
        what: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
    ) -> dict[str, Any]:
        """One WSAPI call; the object Rally wraps its answer in (``QueryResult``,
        ``CreateResult``, ``OperationResult``, ``Defect``...). Errors raise, warnings are logged;
        a Basic write refused for its security token gets a new token and goes once more."""
        write = method != "GET"
        basic = self.settings.auth == "basic"
        for attempt in (1, 2):
            query = dict(params or {})
            if write and basic:
                query["key"] = self.security_token(renew=attempt > 1)
            answer = self._request(method, path, what, query, body, write)
            errors = [str(e) for e in answer.get("Errors") or []]
            if write and basic and attempt == 1 and any(_INVALID_KEY in e for e in errors):
                continue  # the token expired or belongs to another session: nothing was done
            for warning in answer.get("Warnings") or []:
                logger.warning("Rally %s: %s", what, warning)
            if errors:
                raise _refusal(what, errors, self.settings)
            return answer
        raise AssertionError("unreachable")  # pragma: no cover - the loop always returns

    def _request(
        self,
        method: str,
        path: str,
        what: str,
        query: Mapping[str, Any],
        body: Any,
        write: bool,
    ) -> dict[str, Any]:
        url = path if path.startswith(("http://", "https://")) else f"{self.api}/{path}"
        try:
            response = self.session.request(method, url, params=query or None, json=body)
        except requests.RequestException as exc:
            raise transport_error("Rally", what, exc) from None
        if response.status_code == 401:
            hints = _login_hints(self.settings, write)
            raise status_error("Rally", what, 401, hint="; ".join(hints))
        if response.status_code != 200:
            raise status_error("Rally", what, response.status_code)
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict) or len(data) != 1:
            raise TrackerError(
                f"Rally {what}: the answer is not Rally's (check url: the address you open"
                " Rally at, such as https://rally1.rallydev.com)"
            )
        answer = next(iter(data.values()))
        return answer if isinstance(answer, dict) else {}

    def security_token(self, *, renew: bool = False) -> str:
        """The session's security token for Basic writes; fetched once, or again on ``renew``."""
        with self._lock:
            if renew or not self._token:
                answer = self.call("GET", "security/authorize", "security token")
                token = str(answer.get("SecurityToken") or "")
                if not token:
                    raise TrackerError("Rally security token: the answer has none")
                self._token = token
                _mask_keys_in_urllib3_logs()
            return self._token

    def query(
        self,
        path: str,
        what: str,
        *,
        query: str = "",
        fetch: str = "",
        order: str = "",
        scope: str = "",
        extra: Mapping[str, str] | None = None,
    ) -> list[dict[str, Any]]:
        """Every result of a query, page by page (``start``/``pagesize``); ``scope`` is
        ``"workspace"`` or ``"project"`` (the project and the ones below it)."""
        params: dict[str, Any] = {"pagesize": PAGE, **(extra or {})}
        if query:
            params["query"] = query
        if fetch:
            params["fetch"] = fetch
        if order:
            params["order"] = order
        if scope:
            where = self.scope()
            params["workspace"] = where.workspace
            if scope == "project":
                params.update(project=where.project, projectScopeUp="false")
                params["projectScopeDown"] = "true"
        results: list[dict[str, Any]] = []
        for _ in range(MAX_PAGES):
            params["start"] = len(results) + 1
            page = self.call("GET", path, what, params=params)
            found = [r for r in page.get("Results") or [] if isinstance(r, dict)]
            results += found
            if not found or len(results) >= int(page.get("TotalResultCount") or 0):
                break
        return results

    def _writable(self, what: str) -> None:
        if self.read_only:
            raise TrackerError(f"Rally {what}: opened read-only (dry run)")

    # -- where ---------------------------------------------------------------------------------

    def scope(self) -> Scope:
        """The workspace and project, by name, ObjectID or ref; asked once per run. A Rally
        that cannot be reached is not asked again in this run."""
        with self._lock:
            if self._scope is None:
                if self._down is not None:
                    raise self._down
                try:
                    self._scope = self._resolve()
                except TrackerError as exc:
                    if exc.retryable and not exc.transient:
                        self._down = exc
                    raise
            return self._scope

    def _resolve(self) -> Scope:
        s = self.settings
        workspaces = self._named("workspace", s.workspace, {})
        if len(workspaces) != 1:
            raise self._not_found("workspace", s.workspace, workspaces, {})
        workspace = workspaces[0]
        inside = {"workspace": str(workspace["_ref"])}
        projects = self._named("project", s.project_key, inside)
        if len(projects) != 1:
            raise self._not_found("project", s.project_key, projects, inside)
        project = projects[0]
        return Scope(
            str(workspace["_ref"]),
            str(workspace.get("Name") or s.workspace),
            str(project["_ref"]),
            str(project.get("Name") or s.project_key),
        )

    def _named(self, typ: str, given: str, inside: Mapping[str, str]) -> list[dict[str, Any]]:
        """A workspace or project by ObjectID, ref or name (no name: the only one there is)."""
        oid = given if given.isdigit() else str(_oid(given) or "") if "/" in given else ""
        if oid:
            return [self.call("GET", f"{typ}/{oid}", f"read {typ}", params={"fetch": "Name"})]
        query = f"(Name = {_quoted(given)})" if given else ""
        return self.query(typ, f"find {typ}", query=query, fetch="Name", extra=inside)

    def _not_found(
        self, typ: str, given: str, found: Sequence[Mapping[str, Any]], inside: Mapping[str, str]
    ) -> ScopeError:
        key = "workspace" if typ == "workspace" else "project_key"
        if found and given:
            return ScopeError(
                f"more than one {typ} is named {given!r}", f"set {key} to its ObjectID"
            )
        names = [str(r.get("Name")) for r in found] or [
            str(r.get("Name")) for r in self.query(typ, f"list {typ}s", fetch="Name", extra=inside)
        ]
        what = f"no {typ} {given!r} visible to this user" if given else f"more than one {typ}"
        return ScopeError(what, f"set {key} to one of: {', '.join(names[:30]) or 'none'}")

    def browse(self, project_oid: int, oid: int) -> str:
        """The defect's page in Rally's web application."""
        return f"{self.url}/#/{project_oid}/detail/defect/{oid}"

    def _remote(self, raw: Mapping[str, Any], fingerprint: str = "") -> RemoteIssue:
        oid = int(raw.get("ObjectID") or _oid(raw))
        key = str(raw.get("FormattedID") or "")
        with self._lock:
            self._oids[key.upper()] = oid
        project = _oid(raw.get("Project")) or self.scope().project_oid
        state = str(raw.get("State") or "")
        status = " / ".join(v for v in (state, str(raw.get("ScheduleState") or "")) if v)
        return RemoteIssue(
            key=key,
            url=self.browse(project, oid),
            status=status,
            closed=state == CLOSED,
            fingerprint=fingerprint,
            issue_id=str(oid),
            filed_by=filed_by(raw.get("Description")),
        )

    # -- reading -------------------------------------------------------------------------------

    def tagged(self, fingerprints: Sequence[str], *, open_only: bool) -> list[dict[str, Any]]:
        """The project's defects that carry any of these fingerprint tags, newest first; one
        query per :data:`BATCH` fingerprints."""
        found: list[dict[str, Any]] = []
        for chunk in _chunks(fingerprints, BATCH):
            query = either([f"(Tags.Name contains {_quoted(f)})" for f in chunk])
            if open_only:
                query = f"({query} AND (State != {_quoted(CLOSED)}))"
            found += self.query(
                "defect",
                "search",
                query=query,
                fetch=_DEFECT_FETCH,
                order="CreationDate desc",
                scope="project",
            )
        return found

    def find(
        self, fingerprints: Sequence[str], known: Mapping[str, Sequence[str]] | None = None
    ) -> Mapping[str, RemoteIssue]:
        """Per fingerprint the newest open defect, else the newest closed one (Rally's search
        sees a write at once, so ``known`` is not needed)."""
        return self._find([f for f in dict.fromkeys(fingerprints) if f], open_only=False)

    def _find(self, wanted: Sequence[str], *, open_only: bool) -> dict[str, RemoteIssue]:
        found: dict[str, RemoteIssue] = {}
        if not wanted:
            return found
        for raw in self.tagged(wanted, open_only=open_only):
            names = _tag_names(raw)
            for fingerprint in wanted:
                if fingerprint not in names:  # "contains" matched a longer tag
                    continue
                remote = self._remote(raw, fingerprint)
                have = found.get(fingerprint)
                if have is None or (have.closed and not remote.closed):
                    found[fingerprint] = remote
        return found

    def get(self, key: str) -> RemoteIssue:
        """A defect by FormattedID (``DE12``), web URL or WSAPI ref, with State and
        ScheduleState."""
        text = key.strip()
        by_oid = _DEFECT_OID.search(text)
        if by_oid is not None:
            raw = self.call(
                "GET", f"defect/{by_oid.group(1)}", "read defect", params={"fetch": _DEFECT_FETCH}
            )
            return self._remote(raw)
        by_id = _FORMATTED_ID.match(text)
        if by_id is None:
            raise TrackerError(f"not a Rally defect id (DE12) or URL: {key!r}")
        found = self.query(
            "defect",
            "find defect",
            query=f"(FormattedID = {_quoted(by_id.group(1).upper())})",
            fetch=_DEFECT_FETCH,
            scope="workspace",
        )
        if not found:
            raise TrackerError(
                f"Rally: no defect {by_id.group(1).upper()} in workspace"
                f" {self.scope().workspace_name!r}"
            )
        return self._remote(found[0])

    def _defect_oid(self, key: str) -> int:
        with self._lock:
            oid = self._oids.get(key.strip().upper())
        return oid if oid is not None else int(self.get(key).issue_id)

    def _ref(self, oid: int) -> str:
        return f"{self.api}/defect/{oid}"

    # -- metadata ------------------------------------------------------------------------------

    def types(self) -> list[dict[str, Any]]:
        """The workspace's creatable work item types (``Defect``, ``Task``...)."""
        return self.query(
            "typedefinition",
            "list types",
            query="(Creatable = true)",
            fetch="Name,ElementName,TypePath,ObjectID",
            scope="workspace",
        )

    def attributes(self, type_oid: int, *, allowed: bool) -> dict[str, dict[str, Any]]:
        """ElementName -> attribute definition of a type; ``allowed`` adds each constrained
        attribute's allowed values under ``"allowed"``."""
        fetch = "ElementName,Name,AttributeType,Required,Custom,ReadOnly,AllowedValues,ObjectID"
        found = self.query(f"typedefinition/{type_oid}/Attributes", "read attributes", fetch=fetch)
        out: dict[str, dict[str, Any]] = {}
        for attr in found:
            values = (attr.get("AllowedValues") or {}).get("Count") or 0
            if allowed and values:
                listed = self.query(
                    f"attributedefinition/{_oid(attr)}/AllowedValues",
                    "read allowed values",
                    fetch="StringValue",
                )
                attr["allowed"] = [str(v.get("StringValue")) for v in listed]
            out[str(attr.get("ElementName"))] = attr
        return out

    def defect_attributes(self) -> dict[str, dict[str, Any]]:
        """The Defect's attributes, fetched once per run (for predefined fields by name)."""
        with self._lock:
            if self._attributes is None:
                chosen = [t for t in self.types() if t.get("ElementName") == DEFECT]
                if not chosen:
                    raise TrackerError(f"Rally: no Defect type in {self.scope().workspace_name!r}")
                self._attributes = self.attributes(_oid(chosen[0]), allowed=False)
            return self._attributes

    def user_ref(self, user: str, field: str = "Owner") -> str:
        """A user by UserName (a ref is taken as it is), looked up once per run."""
        if "/user/" in user.lower():
            return user
        with self._lock:
            if user not in self._users:
                found = self.query(
                    "user", "find user", query=f"(UserName = {_quoted(user)})", fetch="UserName"
                )
                if not found:
                    raise TrackerError(f"Rally: field {field}: no user {user!r} (give a UserName)")
                self._users[user] = str(found[0]["_ref"])
            return self._users[user]

    def _fields(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Predefined fields by ElementName or display name; users by UserName."""
        if not values:
            return {}
        attributes = self.defect_attributes()
        names = {k.lower(): k for k in attributes}
        names.update({str(a.get("Name", "")).lower(): k for k, a in attributes.items()})
        out: dict[str, Any] = {}
        for name, value in values.items():
            element = names.get(name.lower(), name)  # unknown: sent, and Rally's warning logged
            if element in USERS and isinstance(value, str) and value:
                value = self.user_ref(value, element)
            out[element] = value
        return out

    # -- writing -------------------------------------------------------------------------------

    def tag_refs(self, names: Sequence[str]) -> dict[str, str]:
        """The tags by name: looked up in one query per batch, created when missing, and kept
        for the run."""
        with self._lock:
            missing = [n for n in dict.fromkeys(names) if n and n not in self._tags]
            for chunk in _chunks(missing, BATCH):
                query = either([f"(Name = {_quoted(n)})" for n in chunk])
                for raw in self.query(
                    "tag", "find tags", query=query, fetch="Name", scope="workspace"
                ):
                    if raw.get("Name") in chunk:
                        self._tags[str(raw["Name"])] = str(raw["_ref"])
            for name in missing:
                if name not in self._tags:
                    self._tags[name] = self._new_tag(name)
            return {n: self._tags[n] for n in names if n in self._tags}

    def _new_tag(self, name: str) -> str:
        self._writable("create tag")
        body = {"Tag": {"Name": name, "Workspace": self.scope().workspace}}
        try:
            return str(self.call("POST", "tag/create", "create tag", body=body)["Object"]["_ref"])
        except TrackerError:  # another job made it a moment ago: Rally refuses a second one
            again = self.query(
                "tag",
                "find tags",
                query=f"(Name = {_quoted(name)})",
                fetch="Name",
                scope="workspace",
            )
            if not again:
                raise
            return str(again[0]["_ref"])

    def create(self, draft: IssueDraft) -> RemoteIssue:
        return create_one(self, draft)

    def create_many(
        self, drafts: Sequence[IssueDraft], *, look_first: bool = True
    ) -> list[RemoteIssue | TrackerError]:
        """Look the fingerprints up among defects that are not Closed (one query), then file
        the rest one by one; a refused draft is its error, a lost answer raises (the pipeline
        tries again, and the lookup finds what went through)."""
        self._writable("create")
        fingerprints = [d.fingerprint for d in drafts if d.fingerprint]
        open_now = (
            self._find(list(dict.fromkeys(fingerprints)), open_only=True) if look_first else {}
        )
        answers: list[RemoteIssue | TrackerError] = []
        todo = [d for d in drafts if d.fingerprint not in open_now]
        tags = self.tag_refs([name for d in todo for name in _tags_of(d)])
        for draft in drafts:
            found = open_now.get(draft.fingerprint) if draft.fingerprint else None
            if found is not None:
                answers.append(dataclasses.replace(found, existed=True))
                continue
            try:
                answers.append(self._create(draft, [tags[n] for n in _tags_of(draft) if n in tags]))
            except TrackerError as exc:
                if exc.retryable:
                    raise
                answers.append(exc)
        ours = {a.fingerprint: a for a in answers if isinstance(a, RemoteIssue) and not a.existed}
        standing = self._settle({f: a for f, a in ours.items() if f})
        return [
            standing.get(a.fingerprint, a) if isinstance(a, RemoteIssue) and not a.existed else a
            for a in answers
        ]

    def _settle(self, ours: Mapping[str, RemoteIssue]) -> dict[str, RemoteIssue]:
        """Two CI jobs filed the same fingerprint at the same moment (neither saw the other's
        defect when it looked): the oldest open defect stays, and ours, if newer, is closed
        with Resolution "Duplicate" and a discussion post naming the one that stays. One
        query for all of ``ours``; answers fingerprint -> the defect that stands instead."""
        if not ours:
            return {}
        rivals: dict[str, list[Mapping[str, Any]]] = {}
        for raw in self.tagged(list(ours), open_only=True):
            for fingerprint in ours.keys() & _tag_names(raw):
                rivals.setdefault(fingerprint, []).append(raw)
        standing: dict[str, RemoteIssue] = {}
        for fingerprint, mine in ours.items():
            found = [r for r in rivals.get(fingerprint, ()) if isinstance(r.get("ObjectID"), int)]
            oldest = min(found, key=lambda raw: int(raw["ObjectID"]), default=None)
            if oldest is None or str(oldest["ObjectID"]) == mine.issue_id:
                continue
            kept = self._remote(oldest, fingerprint)
            try:
                close = {"Defect": {"State": CLOSED, "Resolution": "Duplicate"}}
                self.call("POST", f"defect/{mine.issue_id}", "close duplicate", body=close)
                text = (
                    f"Closed as a duplicate of {kept.key}: another job filed the same failure"
                    f" ({fingerprint}) at the same moment."
                )
                artifact = self._ref(int(mine.issue_id))
                post = {"ConversationPost": {"Artifact": artifact, "Text": text}}
                self.call("POST", "conversationpost/create", "discussion post", body=post)
            except TrackerError as exc:
                logger.warning(
                    "Rally: %s duplicates %s but was not closed: %s", mine.key, kept.key, exc
                )
            standing[fingerprint] = dataclasses.replace(kept, existed=True)
        return standing

    def _create(self, draft: IssueDraft, tags: Sequence[str]) -> RemoteIssue:
        if draft.issue_type not in ("", DEFECT):
            raise TrackerError(
                f"Rally: issue type {draft.issue_type!r}: rp-bts files Defects (issue_type ="
                ' "Defect")'
            )
        where = self.scope()
        fields = self._fields(draft.fields)
        extra_tags = fields.pop("Tags", None)
        defect: dict[str, Any] = {
            **fields,
            "Name": one_line(draft.summary, 255),
            "Description": markup.render(
                draft.body,
                links=draft.links,
                trailer=(run_marker(draft.run_id),) if draft.run_id else (),
            ),
            "Project": where.project,
            "Workspace": where.workspace,
        }
        if tags or extra_tags:
            listed = list(extra_tags) if isinstance(extra_tags, list) else []
            defect["Tags"] = [{"_ref": tag} for tag in tags] + listed
        answer = self.call("POST", "defect/create", "create defect", body={"Defect": defect})
        created = self._remote(answer.get("Object") or {}, draft.fingerprint)
        with self._lock:
            self._created.add(created.key.upper())
        return created

    def complete(self, key: str, draft: IssueDraft) -> None:
        """The draft's files; one that fails is logged and the defect stands. (Links are in
        the description, and so is the closed defect a new one follows.) A defect this
        tracker did not just create may have some already (a replay of a run killed while it
        attached them): those are not added twice."""
        oid = self._defect_oid(key)
        files: Sequence[AttachmentFile] = draft.attachments
        if files and key.upper() not in self._created:
            posted = self.query(f"defect/{oid}/Attachments", "read attachments", fetch="Name")
            have = {str(a.get("Name") or "") for a in posted}
            files = [f for f in files if one_line(f.name, 255) not in have]
        self._attach(self._ref(oid), files)

    def _attach(self, artifact: str, files: Sequence[AttachmentFile]) -> None:
        """Each file as AttachmentContent (base64) then Attachment; larger than
        :data:`MAX_ATTACHMENT`, it is cut, with a note at its end and in its description."""
        for item in files:
            try:
                data, note = _read_capped(item.path)
                content = self.call(
                    "POST",
                    "attachmentcontent/create",
                    "attachment content",
                    body={"AttachmentContent": {"Content": base64.b64encode(data).decode()}},
                )
                attachment = {
                    "Artifact": artifact,
                    "Content": str(content["Object"]["_ref"]),
                    "Name": one_line(item.name, 255),
                    "ContentType": item.mime,
                    "Size": len(data),
                    "Description": note,
                }
                self.call(
                    "POST", "attachment/create", "attachment", body={"Attachment": attachment}
                )
                if note:
                    logger.warning("Rally: attachment %r: %s", item.name, note)
            except (OSError, TrackerError, KeyError, TypeError) as exc:
                logger.warning("Rally: attachment %r skipped: %s", item.name, exc)

    def comment(self, key: str, comment: CommentDraft) -> bool:
        """One discussion post per run: none when a post of this run is there already."""
        self._writable("comment")
        oid = self._defect_oid(key)
        self._tag(oid, comment.labels)
        marker = run_marker(comment.run_id)
        seen = re.compile(re.escape(marker) + r"(?![\w.])")
        posts = self.query(f"defect/{oid}/Discussion", "read discussion", fetch="Text")
        if any(seen.search(str(p.get("Text") or "")) for p in posts):
            return False
        text = markup.render(comment.body, trailer=(marker,))
        body = {"ConversationPost": {"Artifact": self._ref(oid), "Text": text}}
        self.call("POST", "conversationpost/create", "discussion post", body=body)
        self._attach(self._ref(oid), comment.attachments)
        return True

    def _tag(self, oid: int, names: Sequence[str]) -> None:
        """Add the tags the defect lacks, before the post (a replay finds them there). An update
        replaces the whole collection, so the ones it has go along; a refusal is logged and
        the post still goes."""
        if not names:
            return
        have = {
            str(t.get("Name")): str(t.get("_ref"))
            for t in self.query(f"defect/{oid}/Tags", "read tags", fetch="Name")
        }
        missing = [n for n in dict.fromkeys(names) if n not in have]
        if not missing:
            return
        try:
            refs = [*have.values(), *self.tag_refs(missing).values()]
            body = {"Defect": {"Tags": [{"_ref": ref} for ref in refs]}}
            self.call("POST", f"defect/{oid}", "tag defect", body=body)
        except TrackerError as exc:
            if exc.retryable:
                raise
            logger.warning("Rally: defect %s not tagged %s: %s", oid, ", ".join(missing), exc)

    def reopen(self, key: str) -> RemoteIssue:
        """A Closed defect back to ``Open``."""
        self._writable("reopen")
        current = self.get(key)
        if not current.closed:
            return current
        body = {"Defect": {"State": REOPENED}}
        self.call("POST", f"defect/{current.issue_id}", "reopen defect", body=body)
        return self.get(current.key)


class _MaskKey(logging.Filter):
    """urllib3 logs every request line at DEBUG, query string and all: the security token
    (``key=``) is masked there, as rp-bts' redactor knows only the configured secrets."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if "key=" in text:
            record.msg, record.args = _KEY_PARAM.sub(r"\1***", text), ()
        return True


def _mask_keys_in_urllib3_logs() -> None:
    log = logging.getLogger("urllib3.connectionpool")
    if not any(isinstance(f, _MaskKey) for f in log.filters):
        log.addFilter(_MaskKey())


def _read_capped(path: str) -> tuple[bytes, str]:
    """A file's bytes, cut to :data:`MAX_ATTACHMENT` with a note at the end when larger."""
    size = os.path.getsize(path)
    with open(path, "rb") as handle:
        if size <= MAX_ATTACHMENT:
            return handle.read(), ""
        note = f"cut to {MAX_ATTACHMENT:,} of {size:,} bytes (Rally's limit per file)"
        trailer = f"\n\n[rp-bts: {note}]\n".encode()
        return handle.read(MAX_ATTACHMENT - len(trailer)) + trailer, note


if TYPE_CHECKING:

    def _conforms(tracker: RallyTracker) -> Tracker:
        return tracker


# -- rp-bts integrations test ------------------------------------------------------------------


def check_connection(integration: Integration, options: CheckOptions) -> CheckResult:
    """Reach Rally, log in, find the workspace and project, may the user create defects?"""
    try:
        tracker = RallyTracker(integration)
    except TrackerError as exc:
        return CheckResult(False, str(exc), ("complete the integration in the config file",))
    try:
        return _check(tracker)
    except TrackerError as exc:
        return _failed(tracker.settings, str(exc))
    finally:
        tracker.close()


def _failed(settings: RallySettings, text: str) -> CheckResult:
    if "HTTP 401" in text:
        return CheckResult(
            False, f"Rally: login refused (HTTP 401, {settings.auth})", _login_hints(settings)
        )
    if "certificate" in text:
        return CheckResult(False, text)  # it names ca_file already
    if "connect" in text or "not Rally's" in text:
        return CheckResult(
            False,
            text.split(" (check url")[0],
            ("check url: the address you open Rally at, such as https://rally1.rallydev.com",),
        )
    return CheckResult(False, text)


def _check(tracker: RallyTracker) -> CheckResult:
    s = tracker.settings
    me = tracker.call("GET", "user", "log in")
    who = str(me.get("DisplayName") or me.get("UserName") or s.username)
    if s.auth == "basic":
        tracker.security_token()
    try:
        where = tracker.scope()
    except ScopeError as exc:
        return CheckResult(False, f"Rally: logged in as {who}, but {exc.problem}", (exc.hint,))
    if not me.get("SubscriptionAdmin"):
        user = f"(User = {_quoted(str(me.get('_ref')))})"
        perms = tracker.query(
            "projectpermission",
            "read permissions",
            query=f"({user} AND (Project = {_quoted(where.project)}))",
            fetch="Role",
        )
        roles = {str(p.get("Role")) for p in perms}
        if not roles & EDITORS:
            role = ", ".join(sorted(roles)) or "no role"
            return CheckResult(
                False,
                f"Rally: {who} may not create defects in project {where.project_name!r} ({role})",
                (
                    f"ask a workspace or project administrator for the Editor role in"
                    f" {where.project_name!r}, or set project_key to a project where you are an"
                    " Editor",
                ),
            )
    return CheckResult(
        True,
        f"Rally at {tracker.url}: logged in as {who} ({s.auth}); workspace"
        f" {where.workspace_name!r}; project {where.project_name!r}; files {DEFECT}s",
    )
