"""Jira Cloud and Data Center through the ``jira`` library, plus direct REST where it falls short.

The library files issues, comments, attachments (streamed from disk), issue links and
transitions. Search, create metadata and remote links go straight through its session: its
search picks the endpoint from server info we fetch ourselves, its createmeta helpers raise on
Cloud, and its ``add_remote_link`` first lists application links (an admin-only call).

Retries are urllib3's ``Retry`` mounted on that session (429 and 503, ``Retry-After`` honoured up
to a bound); the library's own retry loop is switched off so nothing is retried twice. Errors
become :class:`TrackerError` texts built from the status and Jira's JSON, never from
``JIRAError``'s own text, which carries the request headers (and so the credentials).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, ClassVar, Final, final
from urllib.parse import urlsplit, urlunsplit

import requests

from rp_bts_agent.connection import CheckOptions, CheckResult
from rp_bts_agent.http import (
    CONNECT_TIMEOUT,
    adopt,
    new_session,
    status_error,
    transport_error,
)
from rp_bts_agent.http import oauth1 as http_oauth1
from rp_bts_agent.tracker import (
    AttachmentFile,
    CommentDraft,
    IssueDraft,
    RemoteIssue,
    Resolves,
    TrackerError,
    create_one,
    filed_by,
    run_marker,
)

from . import JiraSettings, markup

if TYPE_CHECKING:
    from rp_bts_agent.config_types import Integration
    from rp_bts_agent.tracker import Tracker

__all__ = ["JiraTracker", "check_connection", "jira_error"]

logger = logging.getLogger("rp_bts_agent")

READ_TIMEOUT: Final = 60.0
PAGE: Final = 100
#: issues per ``/issue/bulk`` call, Jira's own limit
BATCH: Final = 50
#: ids ``reconcileIssues`` takes at most
_RECONCILE_MAX: Final = 50
#: ``description`` for the run marker: a replay knows the issues its own run filed
_SEARCH_FIELDS: Final = "status,labels,created,summary,description"
_KEY_RE: Final = re.compile(r"(?:^|/)([A-Z][A-Z0-9_]+-[0-9]+)(?:[/?#]|$)")
_HINTS: Final = {
    401: "check username and password: Jira Cloud takes the account's e-mail address and an"
    ' API token, Data Center the login name and password, or auth = "pat" with a token',
    403: "the user lacks a permission (browse, create issues, edit, transition) in the project",
    404: "check url (with or without a context path such as /jira) and project_key",
}


def _settings(integration: Integration) -> JiraSettings:
    return integration.settings_as(JiraSettings)


def _jira_messages(response: requests.Response | None) -> list[str]:
    """Jira's error texts, field errors one by one (``field 'priority': ...``)."""
    if response is None:
        return []
    try:
        data = response.json()
    except ValueError:
        return []
    return _error_texts(data) if isinstance(data, dict) else []


def _error_texts(data: Mapping[str, Any]) -> list[str]:
    """An ErrorCollection as lines: its messages, then its field errors."""
    messages = data.get("errorMessages") or []
    out = [str(m) for m in messages] if isinstance(messages, list) else [str(messages)]
    errors = data.get("errors") or {}
    if isinstance(errors, dict):
        out += [f"field '{name}': {text}" for name, text in errors.items()]
    return out


def jira_error(what: str, status: int, response: requests.Response | None) -> TrackerError:
    """A TrackerError for an HTTP failure: status, Jira's messages, and what to check."""
    headers = response.headers if response is not None else {}
    if _captcha(headers):
        hint = "Jira asks for a CAPTCHA after failed logins: log in once in a browser"
    elif status == 404 and what == "get issue":  # the server answered: its url is right
        hint = "the issue does not exist, or this user may not see it"
    else:
        hint = _HINTS.get(status, "")
    return status_error("Jira", what, status, _jira_messages(response), hint)


def _captcha(headers: Mapping[str, str]) -> bool:
    reason = headers.get("X-Authentication-Denied-Reason", "")
    login = headers.get("X-Seraph-LoginReason", "")
    return "CAPTCHA" in reason.upper() or "AUTHENTICATION_DENIED" in login.upper()


def parse_key(key_or_url: str) -> str:
    """``SHOP-17``, ``https://x/browse/SHOP-17`` or ``.../rest/api/2/issue/SHOP-17``."""
    text = key_or_url.strip()
    match = _KEY_RE.search(text.upper() if "/" not in text else text)
    if match is None:
        raise TrackerError(f"not a Jira issue key or URL: {key_or_url!r}")
    return match.group(1)


def _jql_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _mapping(value: Any) -> Mapping[str, Any]:
    """A JSON object from an answer, or an empty one when a proxy or another version answered
    something else there: a wrong shape reads as absent, never as a crash."""
    return value if isinstance(value, Mapping) else {}


def _objects(value: Any) -> list[Mapping[str, Any]]:
    """A JSON array of objects from an answer; anything else in it is left out."""
    return [v for v in value if isinstance(v, Mapping)] if isinstance(value, list) else []


def _is_done(fields: Mapping[str, Any]) -> bool:
    status = _mapping(fields.get("status"))
    return str(_mapping(status.get("statusCategory")).get("key", "")) == "done"


def oauth1(integration: Integration) -> Any:
    """OAuth 1.0a with RSA-SHA1, as a Jira application link wants (see
    :func:`rp_bts_agent.http.oauth1`)."""
    return http_oauth1(integration.name, _settings(integration))


@final
class JiraTracker:
    """The ``jira`` tracker; one client per integration, opened on first use."""

    kind: ClassVar[str] = "jira"
    batch: ClassVar[int] = BATCH

    def __init__(self, integration: Integration, *, read_only: bool = False) -> None:
        settings = _settings(integration)
        if not settings.url:
            raise TrackerError(f"integration '{integration.name}': url is missing")
        if not settings.project_key:
            raise TrackerError(f"integration '{integration.name}': project_key is missing")
        self.integration: Final = integration
        self.settings: Final = settings
        self.url: Final = settings.url.rstrip("/")
        self.project: Final = settings.project_key
        self.read_only: Final = read_only
        self._client: Any = None
        self._down: TrackerError | None = None
        self.cloud = False
        self.version: tuple[int, ...] = ()
        self._meta: dict[str, dict[str, dict[str, Any]]] = {}
        self._meta_lock = threading.Lock()
        #: fingerprint -> ids of issues filed for it (ours, or from our record): Cloud search
        #: is eventually consistent, and ``reconcileIssues`` makes it see them at once.
        self._filed: dict[str, list[int]] = {}
        #: keys this tracker created: they have no attachments yet
        self._created: set[str] = set()

    def __repr__(self) -> str:
        return f"JiraTracker({self.url!r}, project={self.project!r})"

    # -- the client ----------------------------------------------------------------------------

    def _auth_kwargs(self) -> dict[str, Any]:
        i, name = self.settings, self.integration.name
        if i.auth in ("", "basic"):
            if not i.username or not i.password:
                raise TrackerError(
                    f"integration '{name}': auth = \"basic\" needs username and password"
                )
            return {"basic_auth": (i.username, i.password)}
        if i.auth == "pat":
            if not i.token:
                raise TrackerError(f"integration '{name}': auth = \"pat\" needs token")
            return {"token_auth": i.token}
        if i.auth == "oauth1":
            return {"oauth1": oauth1(self.integration)}
        raise TrackerError(
            f"integration '{name}': auth = {i.auth!r} is not supported (basic, pat or oauth1)"
        )

    @property
    def client(self) -> Any:
        if self._down is not None:  # one connect timeout per run, not one per call
            raise self._down
        if self._client is None:
            from jira import JIRA

            auth = self._auth_kwargs()
            # OAuth goes on the session directly: the library's own OAuth set-up tries
            # HMAC first and logs its failures with the request headers
            signer = auth.pop("oauth1", None)
            client: Any = JIRA(
                server=self.url,
                options={"verify": self.settings.tls_verify(), "check_update": False},
                get_server_info=False,
                max_retries=0,
                timeout=(CONNECT_TIMEOUT, float(self.settings.timeout)),
                **auth,
            )
            if signer is not None:
                client._session.auth = signer
            adopt(client._session, self.settings, float(self.settings.timeout))
            try:
                info = self._get(client, "/rest/api/2/serverInfo", "server info")
            except TrackerError as exc:
                client.close()
                if exc.retryable and not exc.transient:
                    self._down = exc
                raise
            except BaseException:
                client.close()
                raise
            self.cloud = info.get("deploymentType") == "Cloud"
            numbers = info.get("versionNumbers")
            numbers = numbers if isinstance(numbers, list) else ()
            self.version = tuple(int(n) for n in numbers if str(n).isdigit())
            client.deploymentType = info.get("deploymentType")
            client._version = self.version
            self._client = client
        return self._client

    def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            client.close()

    @contextmanager
    def _calls(self, what: str) -> Iterator[None]:
        """Library and HTTP errors become TrackerErrors, without the library's text."""
        from jira import JIRAError

        try:
            yield
        except JIRAError as exc:
            raise jira_error(what, int(exc.status_code or 0), exc.response) from None
        except (requests.exceptions.JSONDecodeError, ValueError):
            raise TrackerError(
                f"Jira {what}: the answer is not Jira's JSON (check url and its context path)"
            ) from None
        except requests.RequestException as exc:
            raise transport_error("Jira", what, exc) from None

    @staticmethod
    def _object(response: requests.Response, what: str) -> Mapping[str, Any]:
        """An answer's JSON object; JSON of another shape (a list, a string) is as wrong as HTML."""
        data = response.json() if response.content else {}
        if not isinstance(data, Mapping):
            raise TrackerError(f"Jira {what}: the answer is not Jira's JSON (not an object)")
        return data

    def _get(self, client: Any, path: str, what: str, **params: Any) -> Mapping[str, Any]:
        with self._calls(what):
            response = client._session.get(self.url + path, params=params or None)
            return self._object(response, what)

    def _post(self, path: str, what: str, body: Any) -> Mapping[str, Any]:
        with self._calls(what):
            response = self.client._session.post(self.url + path, data=json.dumps(body))
            return self._object(response, what)

    def _put(self, path: str, what: str, body: Any) -> Mapping[str, Any]:
        with self._calls(what):
            response = self.client._session.put(self.url + path, data=json.dumps(body))
            return self._object(response, what)

    def _writable(self, what: str) -> None:
        if self.read_only:
            raise TrackerError(f"Jira {what}: opened read-only (dry run)")

    def browse(self, key: str) -> str:
        return f"{self.url}/browse/{key}"

    def _remote(self, raw: Mapping[str, Any], fingerprint: str = "") -> RemoteIssue:
        key = raw.get("key")
        if not isinstance(key, str) or not key:
            raise TrackerError("Jira: an issue in the answer has no key", retryable=True)
        fields = _mapping(raw.get("fields"))
        return RemoteIssue(
            key=key,
            url=self.browse(key),
            status=str(_mapping(fields.get("status")).get("name", "")),
            closed=_is_done(fields),
            fingerprint=fingerprint,
            issue_id=str(raw.get("id", "")),
            filed_by=filed_by(fields.get("description")),
        )

    # -- reading -------------------------------------------------------------------------------

    def search(self, jql: str, fingerprints: Sequence[str] = ()) -> list[Mapping[str, Any]]:
        """All issues a JQL query finds: ``/search/jql`` on Cloud, ``/search`` on Data Center.

        On Cloud, the issues we know were filed for ``fingerprints`` are reconciled, so a
        search right after filing finds them."""
        client = self.client
        issues: list[Mapping[str, Any]] = []
        params: dict[str, Any] = {"jql": jql, "fields": _SEARCH_FIELDS, "maxResults": PAGE}
        reconcile = [i for f in fingerprints for i in self._filed.get(f, ())]
        for _ in range(20):  # 2,000 issues: far more than a run's fingerprints ever match
            if self.cloud:
                if reconcile:
                    params["reconcileIssues"] = reconcile[-_RECONCILE_MAX:]
                page = self._get(client, "/rest/api/2/search/jql", "search", **params)
                issues += _objects(page.get("issues"))
                token = page.get("nextPageToken")
                if page.get("isLast", True) or not token:
                    break
                params["nextPageToken"] = token
            else:
                params["startAt"] = len(issues)
                page = self._get(client, "/rest/api/2/search", "search", **params)
                found = _objects(page.get("issues"))
                issues += found
                total = page.get("total")
                if not found or not isinstance(total, int) or len(issues) >= total:
                    break
        return issues

    def find(
        self, fingerprints: Sequence[str], known: Mapping[str, Sequence[str]] | None = None
    ) -> Mapping[str, RemoteIssue]:
        """One JQL search for all fingerprints; per fingerprint the newest open issue, else the
        newest closed one. ``known`` (our own record) feeds Cloud's ``reconcileIssues``."""
        wanted = [f for f in dict.fromkeys(fingerprints) if f]
        if not wanted:
            return {}
        for fingerprint, ids in (known or {}).items():
            self._remember(fingerprint, *ids)
        found: dict[str, RemoteIssue] = {}
        for raw in self._labelled(wanted, order=" ORDER BY created DESC"):  # newest first
            labels = _mapping(raw.get("fields")).get("labels") or []
            for fingerprint in wanted:
                if fingerprint not in labels:
                    continue
                remote = self._remote(raw, fingerprint)
                have = found.get(fingerprint)
                if have is None or (have.closed and not remote.closed):
                    found[fingerprint] = remote
        return found

    def _remember(self, fingerprint: str, *ids: str) -> None:
        have = self._filed.setdefault(fingerprint, [])
        have += [int(i) for i in ids if i.isdigit() and int(i) not in have]

    def _labelled(self, fingerprints: Sequence[str], order: str = "") -> list[Mapping[str, Any]]:
        """One search for the project's issues that carry any of these fingerprint labels."""
        labels = ", ".join(_jql_string(f) for f in fingerprints)
        jql = f"project = {_jql_string(self.project)} AND labels in ({labels})"
        if self.settings.issue_type:  # a Task beside a Bug: each integration finds its own
            jql += f" AND issuetype = {_jql_string(self.settings.issue_type)}"
        jql += order
        return self.search(jql, fingerprints)

    def get(self, key: str) -> RemoteIssue:
        issue_key = parse_key(key)
        raw = self._get(self.client, f"/rest/api/2/issue/{issue_key}", "get issue", fields="status")
        return self._remote(raw)

    # -- create metadata -----------------------------------------------------------------------

    def issue_types(self) -> list[dict[str, Any]]:
        """The project's issue types, from ``createmeta/{project}/issuetypes`` (Cloud and DC 9)."""
        page = self._get(
            self.client,
            f"/rest/api/2/issue/createmeta/{self.project}/issuetypes",
            "create metadata",
            maxResults=200,
        )
        return [dict(t) for t in _objects(page.get("issueTypes") or page.get("values"))]

    def fields_of(self, issue_type: str) -> dict[str, dict[str, Any]]:
        """fieldId -> field metadata for an issue type (by name or id); cached, and fetched
        once even when batches on the pool ask at the same time."""
        with self._meta_lock:
            if issue_type not in self._meta:
                self._meta[issue_type] = self._fetch_fields(issue_type)
            return self._meta[issue_type]

    def _fetch_fields(self, issue_type: str) -> dict[str, dict[str, Any]]:
        types = self.issue_types()
        chosen = [t for t in types if issue_type in (t.get("name"), t.get("id"))]
        if not chosen:
            names = ", ".join(str(t.get("name")) for t in types)
            raise TrackerError(
                f"Jira project {self.project} has no issue type {issue_type!r} (it has: {names})"
            )
        page = self._get(
            self.client,
            f"/rest/api/2/issue/createmeta/{self.project}/issuetypes/{chosen[0]['id']}",
            "create metadata",
            maxResults=200,
        )
        items = _objects(page.get("fields") or page.get("values"))
        return {str(f.get("fieldId") or f.get("key")): dict(f) for f in items}

    def _field_value(self, meta: Mapping[str, Any] | None, value: Any) -> Any:
        """A config value (``"High"``, ``["Checkout"]``) in the shape the field's schema wants."""
        if isinstance(value, dict) or meta is None:
            return value
        schema = meta.get("schema") or {}
        kind = schema.get("type", "")
        if kind == "array":
            items = schema.get("items", "string")
            values = value if isinstance(value, list) else [value]
            return [self._one(items, v) for v in values]
        return self._one(kind, value)

    def _one(self, kind: str, value: Any) -> Any:
        if isinstance(value, dict):
            return value
        if kind in ("priority", "component", "version", "issuetype", "resolution"):
            return {"name": str(value)}
        if kind == "option":
            return {"value": str(value)}
        if kind == "user":
            return {"accountId": str(value)} if self.cloud else {"name": str(value)}
        return value

    def _fields(self, draft: IssueDraft) -> dict[str, Any]:
        issue_type = draft.issue_type or self.settings.issue_type or "Bug"
        meta = self.fields_of(issue_type)
        by_name = {str(m.get("name", "")).lower(): fid for fid, m in meta.items()}
        fields: dict[str, Any] = {}
        for name, value in draft.fields.items():
            fid = name if name in meta else by_name.get(name.lower(), name)
            fields[fid] = self._field_value(meta.get(fid), value)
        labels = [str(x) for x in fields.pop("labels", [])]
        fields.update(
            project={"key": self.project},
            issuetype={"name": issue_type},
            summary=markup.one_line(draft.summary),
            description=markup.render(
                draft.body, trailer=(run_marker(draft.run_id),) if draft.run_id else ()
            ),
            labels=list(dict.fromkeys([*draft.labels, *labels])),
        )
        return fields

    # -- writing -------------------------------------------------------------------------------

    def create(self, draft: IssueDraft) -> RemoteIssue:
        return create_one(self, draft)

    def create_many(
        self, drafts: Sequence[IssueDraft], *, look_first: bool = True
    ) -> list[RemoteIssue | TrackerError]:
        """Look the fingerprints up (another job, or an earlier attempt whose answer was lost,
        may have filed them), file the rest with ``/issue/bulk``, then settle duplicates."""
        self._writable("create")
        answers: list[RemoteIssue | TrackerError | None] = [None] * len(drafts)
        fingerprints = [d.fingerprint for d in drafts if d.fingerprint] if look_first else []
        filed_before = self.find(fingerprints) if fingerprints else {}
        open_now = {f: i for f, i in filed_before.items() if not i.closed}
        todo: list[tuple[int, dict[str, Any]]] = []
        for number, draft in enumerate(drafts):
            found = open_now.get(draft.fingerprint) if draft.fingerprint else None
            if found is not None:
                answers[number] = dataclasses.replace(found, existed=True)
                continue
            try:
                todo.append((number, self._fields(draft)))
            except TrackerError as exc:
                answers[number] = exc
        filed: dict[int, dict[str, Any]] = {}
        for start in range(0, len(todo), BATCH):
            chunk = todo[start : start + BATCH]
            for (number, _), created in zip(chunk, self._bulk([f for _, f in chunk]), strict=True):
                if isinstance(created, TrackerError):
                    answers[number] = created
                else:
                    filed[number] = created
                    self._remember(drafts[number].fingerprint, str(created.get("id", "")))
        settled = self._settle({drafts[n].fingerprint: str(c["key"]) for n, c in filed.items()})
        for number, created in filed.items():
            key = str(created["key"])
            self._created.add(key)
            answers[number] = settled.get(key) or RemoteIssue(
                key, self.browse(key), "", False, drafts[number].fingerprint, False, created["id"]
            )
        return [a if a is not None else TrackerError("Jira: no answer") for a in answers]

    def _bulk(self, updates: Sequence[Mapping[str, Any]]) -> list[dict[str, Any] | TrackerError]:
        """One ``/issue/bulk`` call: per element its ``{id, key}`` or the error Jira gave it."""
        from jira import JIRAError

        what = "create issue"
        body = {"issueUpdates": [{"fields": fields} for fields in updates]}
        with self._calls(what):
            try:
                response = self.client._session.post(
                    self.url + "/rest/api/2/issue/bulk", data=json.dumps(body)
                )
                page = response.json()
            except JIRAError as exc:  # 400 when every element was refused, each with its error
                if exc.status_code != 400 or exc.response is None:
                    raise
                page = exc.response.json()
                if not isinstance(page, dict) or not page.get("errors"):
                    raise
        if not isinstance(page, Mapping):
            raise TrackerError(f"Jira {what}: the answer is not Jira's JSON (not an object)")
        failed = {
            e.get("failedElementNumber"): e
            for e in _objects(page.get("errors"))
            if isinstance(e.get("failedElementNumber"), int)
        }
        created = iter(_objects(page.get("issues")))
        out: list[dict[str, Any] | TrackerError] = []
        for number in range(len(updates)):
            error = failed.get(number)
            if error is None:
                out.append(self._bulk_answer(next(created, None), what))
                continue
            status = error.get("status")
            status = status if isinstance(status, int) else 400
            messages = _error_texts(_mapping(error.get("elementErrors")))
            text = f"Jira {what}: HTTP {status}" + (": " + "; ".join(messages) if messages else "")
            out.append(TrackerError(text, retryable=status == 429 or status >= 500))
        return out

    @staticmethod
    def _bulk_answer(answer: Mapping[str, Any] | None, what: str) -> dict[str, Any] | TrackerError:
        """One element of a bulk answer; a missing one (Jira answered fewer issues than it was
        sent: a proxy, a mock, another version) is retryable: the replay looks its fingerprint
        up before filing it again."""
        if answer is None or not isinstance(answer.get("key"), str) or not answer["key"]:
            return TrackerError(
                f"Jira {what}: the answer has no issue for this draft", retryable=True
            )
        return {"key": answer["key"], "id": str(answer.get("id", ""))}

    def complete(self, key: str, draft: IssueDraft) -> None:
        """Attachments, remote links and the link to an earlier closed issue, each on its own:
        one that fails is logged, and the issue stands (a tracker gone away is raised). An
        issue this tracker did not just create may have some already (a replay of a run
        killed half way): those are not added twice."""
        self._attach(key, draft.attachments, again=key not in self._created)
        for link in draft.links:
            self._remote_link(key, link.title, link.url, link.key or link.url)
        if draft.relates_to:
            try:
                # direct: the library's create_issue_link sends "comment": null, which the
                # contract forbids (found by the contract-checking test server)
                body = {
                    "type": {"name": "Relates"},
                    "inwardIssue": {"key": key},
                    "outwardIssue": {"key": parse_key(draft.relates_to)},
                }
                self._post("/rest/api/2/issueLink", "link issues", body)
            except TrackerError as exc:
                logger.warning(
                    "Jira: %s created, but not linked to %s: %s", key, draft.relates_to, exc
                )

    def _remote_link(self, key: str, title: str, url: str, stable: str) -> None:
        """A remote link; Jira updates the one with the same ``globalId`` instead of adding."""
        body = {
            "globalId": f"rp-bts:{stable}",
            "object": {"url": url, "title": markup.one_line(title) or url},
        }
        try:
            self._post(f"/rest/api/2/issue/{key}/remotelink", "remote link", body)
        except TrackerError as exc:
            logger.warning("Jira: remote link %s on %s skipped: %s", url, key, exc)

    def _attach(self, key: str, files: Sequence[AttachmentFile], *, again: bool = False) -> None:
        """Each file streamed from disk; one that fails is logged and skipped. ``again``: the
        issue may have some already (a replay), those are not added twice. A tracker gone
        away (or the time budget spent) stops the rest: raised, so the work is kept."""
        if again and files:
            page = self._get(
                self.client, f"/rest/api/2/issue/{key}", "get issue", fields="attachment"
            )
            there = {
                str(a.get("filename", ""))
                for a in (page.get("fields") or {}).get("attachment") or ()
                if isinstance(a, dict)
            }
            files = [f for f in files if f.name not in there]
        for item in files:
            try:
                with open(item.path, "rb") as handle, self._calls("attachment"):
                    self.client.add_attachment(issue=key, attachment=handle, filename=item.name)
            except TrackerError as exc:
                if exc.retryable:
                    raise
                logger.warning("Jira: attachment %r of %s skipped: %s", item.name, key, exc)
            except OSError as exc:
                logger.warning("Jira: attachment %r of %s skipped: %s", item.name, key, exc)

    run_marker = staticmethod(run_marker)

    def comment(self, key: str, comment: CommentDraft) -> bool:
        self._writable("comment")
        issue_key = parse_key(key)
        self._label(issue_key, comment.labels)
        marker = self.run_marker(comment.run_id)
        page = self._get(
            self.client,
            f"/rest/api/2/issue/{issue_key}/comment",
            "read comments",
            maxResults=5000,
        )
        for existing in _objects(page.get("comments")):
            body = existing.get("body")
            if isinstance(body, str) and marker in body.splitlines():
                return False
        text = markup.render(comment.body, trailer=(marker,))
        with self._calls("comment"):
            self.client.add_comment(issue_key, text)
        self._attach(issue_key, comment.attachments)
        return True

    def _label(self, issue_key: str, labels: Sequence[str]) -> None:
        """Add the labels the issue lacks, before the comment (a replay finds them there). An
        edit Jira refuses (labels not on the project's edit screen) is logged; the comment
        still goes."""
        if not labels:
            return
        page = self._get(
            self.client, f"/rest/api/2/issue/{issue_key}", "get issue", fields="labels"
        )
        have = _mapping(page.get("fields")).get("labels") or []
        missing = [label for label in dict.fromkeys(labels) if label not in have]
        if not missing:
            return
        body = {"update": {"labels": [{"add": label} for label in missing]}}
        try:
            self._put(f"/rest/api/2/issue/{issue_key}", "label issue", body)
        except TrackerError as exc:
            if exc.retryable:
                raise
            logger.warning("Jira: %s not labelled %s: %s", issue_key, ", ".join(missing), exc)

    def _settle(self, ours: Mapping[str, str]) -> dict[str, RemoteIssue]:
        """Two CI jobs filed the same fingerprint at the same moment: the older issue stays; ours
        is linked to it as a duplicate and closed (issue 6, point 3). One search for all of
        ``ours`` (fingerprint -> the key we just filed); answers key -> the issue that stands."""
        wanted = [f for f in ours if f]
        if not wanted:
            return {}
        standing: dict[str, RemoteIssue] = {}
        rivals: dict[str, list[Mapping[str, Any]]] = {}
        for raw in self._labelled(wanted):
            fields = _mapping(raw.get("fields"))
            for fingerprint in wanted:
                if fingerprint in (fields.get("labels") or []) and not _is_done(fields):
                    rivals.setdefault(fingerprint, []).append(raw)
        for fingerprint in wanted:
            key = ours[fingerprint]
            found = [
                r
                for r in rivals.get(fingerprint, ())
                if str(r.get("id", "")).isdigit() and isinstance(r.get("key"), str)
            ]
            if not found:
                continue
            oldest = min(found, key=lambda raw: int(raw["id"]))
            if str(oldest["key"]) == key:
                standing[key] = self._remote(oldest, fingerprint)
                continue
            try:
                body = {
                    "type": {"name": "Duplicate"},
                    "inwardIssue": {"key": key},
                    "outwardIssue": {"key": str(oldest["key"])},
                }
                self._post("/rest/api/2/issueLink", "link duplicate", body)
                self._transition(key, done=True, what="close duplicate")
            except TrackerError as exc:
                logger.warning(
                    "Jira: %s duplicates %s but was not closed: %s", key, oldest["key"], exc
                )
            standing[key] = dataclasses.replace(self._remote(oldest, fingerprint), existed=True)
        return standing

    def _transition(self, issue_key: str, *, done: bool, what: str, name: str = "") -> None:
        """Move an issue into (``done``) or out of the Done status category; ``name`` picks the
        transition of that name (any case) instead."""
        page = self._get(self.client, f"/rest/api/2/issue/{issue_key}/transitions", "transitions")
        choices = [
            t
            for t in _objects(page.get("transitions"))
            if (
                str(t.get("name", "")).casefold() == name.casefold()
                if name
                else (_mapping(_mapping(t.get("to")).get("statusCategory")).get("key") == "done")
                == done
            )
        ]
        if not choices:
            named = f" named {name!r}" if name else ""
            raise TrackerError(f"Jira: no transition{named} for {issue_key} to {what}")
        choices.sort(key=lambda t: ("reopen" not in str(t.get("name", "")).lower(), 0))
        # direct: the library's transition_issue sends the id as a number, and the contract
        # wants a string (found by the contract-checking test server)
        body = {"transition": {"id": str(choices[0]["id"])}}
        self._post(f"/rest/api/2/issue/{issue_key}/transitions", what, body)

    def reopen(self, key: str) -> RemoteIssue:
        """A transition to a status that is not Done ("Reopen" if the workflow has one)."""
        self._writable("reopen")
        issue_key = parse_key(key)
        current = self.get(issue_key)
        if not current.closed:
            return current
        self._transition(issue_key, done=False, what="reopen")
        return self.get(issue_key)

    def resolve(self, key: str) -> RemoteIssue:
        """The ``resolve_transition`` setting's transition, else the first into Done."""
        self._writable("resolve")
        issue_key = parse_key(key)
        current = self.get(issue_key)
        if current.closed:
            return current
        name = self.settings.resolve_transition
        self._transition(issue_key, done=True, what="resolve", name=name)
        return self.get(issue_key)


if TYPE_CHECKING:

    def _conforms(tracker: JiraTracker) -> Tracker:
        return tracker

    def _resolves(tracker: JiraTracker) -> Resolves:
        return tracker


def _alternatives(url: str) -> list[str]:
    """The same site with and without a context path: the usual mix-up in ``url``."""
    parts = urlsplit(url)
    if parts.path.strip("/"):
        return [urlunsplit((parts.scheme, parts.netloc, "", "", ""))]
    return [url + "/jira"]


def _probe(session: requests.Session, url: str) -> dict[str, Any] | None:
    """Server info at ``url``, or ``None`` when no Jira answers there."""
    try:
        response = session.get(url + "/rest/api/2/serverInfo", timeout=CONNECT_TIMEOUT)
        data = response.json() if response.ok else None
    except (requests.RequestException, ValueError):
        return None
    return data if isinstance(data, dict) and "version" in data else None


def _login_failed(
    response: requests.Response, integration: Integration, cloud: bool
) -> CheckResult:
    flavour = "Jira Cloud" if cloud else "Jira"
    if _captcha(response.headers):
        return CheckResult(
            False,
            f"{flavour}: login refused, Jira asks for a CAPTCHA after failed logins",
            (
                "log in once in a browser (solving the CAPTCHA) with this user, then retry;"
                " fix the credentials first or it will lock again",
            ),
        )
    return CheckResult(
        False,
        f"{flavour}: login failed (HTTP {response.status_code})",
        (_login_hint(integration, cloud),),
    )


def _login_hint(integration: Integration, cloud: bool) -> str:
    settings = _settings(integration)
    user = settings.username
    if settings.auth == "oauth1":
        return (
            "the OAuth access token was refused: check consumer_key and that the application"
            " link holds the public key of private_key_file; run `rp-bts integrations oauth`"
            " again for a new token"
        )
    if settings.auth == "pat":
        return (
            "the personal access token is wrong, expired or revoked: create a new one under"
            " Profile > Personal Access Tokens and update token"
        )
    if cloud and "@" not in user:
        return (
            f"Jira Cloud logs in with the account's e-mail address, not {user!r}: set username"
            " to the e-mail and password to an API token (id.atlassian.com > Security > API"
            " tokens)"
        )
    if not cloud and "@" in user:
        return (
            f"Jira Data Center logs in with the login name, not the e-mail {user!r} (try"
            f' {user.split("@")[0]!r}), or use auth = "pat" with a personal access token'
        )
    if cloud:
        return (
            "the API token is wrong, expired or revoked (Cloud takes an API token, not the"
            " account password): create one at id.atlassian.com > Security > API tokens"
        )
    return "the password is wrong or expired: check it by logging in to Jira in a browser"


def check_connection(integration: Integration, options: CheckOptions) -> CheckResult:
    """``rp-bts integrations test``: reach Jira, log in, find the project, may we create?"""
    try:
        tracker = JiraTracker(integration)
        auth = tracker._auth_kwargs()
    except TrackerError as exc:
        return CheckResult(False, str(exc), ("complete the integration in the config file",))
    url = tracker.url
    with new_session(_settings(integration), timeout=READ_TIMEOUT) as session:
        if "basic_auth" in auth:
            session.auth = auth["basic_auth"]
        elif "oauth1" in auth:
            session.auth = auth["oauth1"]
        else:
            session.headers["Authorization"] = f"Bearer {auth['token_auth']}"
        session.headers["Accept"] = "application/json"
        return _check(session, integration, url, options)


def _check(
    session: requests.Session, integration: Integration, url: str, options: CheckOptions
) -> CheckResult:
    try:
        response = session.get(url + "/rest/api/2/serverInfo", timeout=CONNECT_TIMEOUT)
    except requests.exceptions.SSLError:
        return CheckResult(
            False,
            f"TLS verification failed for {url}",
            (
                "set ca_file to the CA bundle (PEM) that signed the server's certificate,"
                " e.g. your company's root CA; verify_tls = false works but is not recommended",
            ),
        )
    except requests.RequestException as exc:
        return CheckResult(
            False, f"cannot connect to {url} ({type(exc).__name__})", ("check the host in url",)
        )
    if response.status_code in (401, 403):
        # Jira refuses even anonymous resources to wrong credentials: ask again without them
        # to learn the flavour, then explain the login failure
        with new_session(_settings(integration), timeout=READ_TIMEOUT) as bare:
            anonymous = _probe(bare, url)
        cloud = bool(anonymous and anonymous.get("deploymentType") == "Cloud")
        return _login_failed(response, integration, cloud)
    info: Any = None
    if response.ok:
        try:
            info = response.json()
        except ValueError:
            info = None
    if not isinstance(info, dict) or "version" not in info:
        for alt in _alternatives(url):
            if _probe(session, alt) is not None:
                return CheckResult(
                    False,
                    f"no Jira REST API at {url} (HTTP {response.status_code})",
                    (f'Jira answers at {alt}: set url = "{alt}"',),
                )
        return CheckResult(
            False,
            f"no Jira REST API at {url} (HTTP {response.status_code})",
            (
                "check url: the address you open Jira at in a browser, with its context path"
                " if it has one (such as /jira), without /browse or /rest",
            ),
        )
    cloud = info.get("deploymentType") == "Cloud"
    flavour = f"Jira {'Cloud' if cloud else 'Data Center'} {info.get('version', '')}".strip()

    me = session.get(url + "/rest/api/2/myself", timeout=READ_TIMEOUT)
    if me.status_code in (401, 403):
        return _login_failed(me, integration, cloud)
    if not me.ok:
        return CheckResult(False, f"{flavour}: /myself answered HTTP {me.status_code}")
    who = me.json().get("displayName") or _settings(integration).username or "token user"

    key = _settings(integration).project_key
    project = session.get(url + f"/rest/api/2/project/{key}", timeout=READ_TIMEOUT)
    if project.status_code == 404:
        hints = ["project_key is the project's key (as in SHOP-17), not its name"]
        listing = session.get(url + "/rest/api/2/project", timeout=READ_TIMEOUT)
        projects = listing.json() if listing.ok else []
        named = [p for p in projects if str(p.get("name", "")).lower() == key.lower()]
        if named:
            hints = [
                f"{key!r} is the name of project {named[0]['key']}: set project_key = "
                f'"{named[0]["key"]}"'
            ]
        elif projects:
            keys = ", ".join(str(p.get("key")) for p in projects[:20])
            hints.append(f"projects this user can see: {keys}")
        return CheckResult(False, f"{flavour}: no project {key!r} visible to {who}", tuple(hints))
    if not project.ok:
        return CheckResult(False, f"{flavour}: project {key} answered HTTP {project.status_code}")

    perms = session.get(
        url + "/rest/api/2/mypermissions",
        params={"projectKey": key, "permissions": "CREATE_ISSUES"},
        timeout=READ_TIMEOUT,
    )
    granted = perms.ok and (
        ((perms.json().get("permissions") or {}).get("CREATE_ISSUES") or {}).get("havePermission")
    )
    if not granted:
        return CheckResult(
            False,
            f"{flavour}: {who} may not create issues in {key}",
            ("ask a Jira administrator for the Create Issues permission in the project",),
        )
    meta = session.get(url + f"/rest/api/2/issue/createmeta/{key}/issuetypes", timeout=READ_TIMEOUT)
    types = []
    if meta.ok:
        page = meta.json()
        types = [str(t.get("name")) for t in page.get("issueTypes") or page.get("values") or []]
    wanted = _settings(integration).issue_type or "Bug"
    if types and wanted not in types:
        return CheckResult(
            False,
            f"{flavour}: project {key} has no issue type {wanted!r}",
            (f"set issue_type to one of: {', '.join(types)}",),
        )
    return CheckResult(
        True,
        f"{flavour} at {url}: logged in as {who}; project {key}; issue types: {', '.join(types)}",
    )
