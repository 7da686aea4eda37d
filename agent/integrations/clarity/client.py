"""One Clarity PPM REST v1 connection: the four ways in, calls, pages and errors.

Built on :mod:`rp_bts_agent.http` (429/503 waited out there, nothing else retried below the
pipeline). The one repeat here is not a retry: a session token that expired (401 with the
session's token) is replaced by a new login, and the call made once more with it.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, Final

import requests

from rp_bts_agent.http import Session, new_session, oauth1, status_error, transport_error
from rp_bts_agent.tracker import TrackerError

from . import ClaritySettings

if TYPE_CHECKING:
    from rp_bts_agent.config_types import Integration

__all__ = ["API_PATH", "Clarity", "clarity_messages", "quote"]

API_PATH: Final = "/ppm/rest/v1"
SERVICE: Final = "Clarity"
#: items read from one list at most: a guard against a server whose ``_next`` never ends
MOST: Final = 100_000
#: errorCode -> what to check (the codes the test server and Broadcom's manuals name)
HINTS: Final = {
    "API-1001": "check username and password",
    "API-1002": "the session expired; a new login is made on the next call",
    "API-1029": "the user lacks the 'API - Access' right: ask a Clarity administrator to"
    " grant it (Administration > Security > Users > Access Rights)",
    "API-1030": "API keys are not enabled on this server: an administrator turns them on"
    ' (General Settings > API Keys), or use auth = "basic" or "session"',
    "API-1031": "the API key has expired: create a new one (Account Settings > API Keys)"
    " and update api_key",
    "API-1032": "the API key was revoked: create a new one and update api_key",
    "API-1033": "check api_key and client_id (the API client the key was created for)",
    "API-1034": "the OAuth access token was refused: check consumer_key and the public key in"
    " Clarity, or run `rp-bts integrations oauth` again",
}


def quote(value: str) -> str:
    """A string literal of Clarity's filter language: single quotes, ``\\`` escapes."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def clarity_messages(response: requests.Response | None) -> tuple[str, list[str]]:
    """(errorCode, messages) of an error body; ("", []) when it is not Clarity's JSON."""
    if response is None:
        return "", []
    try:
        data = response.json()
    except ValueError:
        return "", []
    if not isinstance(data, dict):
        return "", []
    code = str(data.get("errorCode") or "")
    message = str(data.get("errorMessage") or "")
    return code, [f"{code} {message}".strip()] if code or message else []


def api_base(url: str) -> str:
    """The REST API's root from what the user typed (with or without ``/ppm/rest/v1``)."""
    base = url.rstrip("/")
    return base if base.endswith(API_PATH) else base + API_PATH


class Clarity:
    """Calls to one integration's Clarity; a session mode logs in once and out at close."""

    def __init__(self, integration: Integration) -> None:
        settings = integration.settings_as(ClaritySettings)
        self.name: Final = integration.name
        self.settings: Final = settings
        if not settings.url:
            raise TrackerError(f"integration '{self.name}': url is missing")
        self.api: Final = api_base(settings.url)
        self.mode: Final = settings.auth
        self._session: Session | None = None
        self._token = ""
        self._lock = threading.Lock()
        #: the last login (or call) refused for good: later calls say so without asking
        self._refused: TrackerError | None = None

    def _need(self, *keys: str) -> None:
        missing = [k for k in keys if not getattr(self.settings, k)]
        if missing:
            raise TrackerError(
                f"integration '{self.name}': auth = \"{self.mode}\" needs {', '.join(missing)}"
            )

    @property
    def session(self) -> Session:
        if self._session is None:
            s = self.settings
            headers = {"Accept": "application/json"}
            auth: Any = None
            if self.mode in ("basic", "session"):
                self._need("username", "password")
                auth = (s.username, s.password) if self.mode == "basic" else None
            elif self.mode == "api-key":
                self._need("api_key", "client_id")
                headers |= {"Authorization": f"Bearer {s.api_key}", "x-api-ppm-client": s.client_id}
            else:
                auth = oauth1(self.name, s)
            self._session = new_session(s, timeout=float(s.timeout), auth=auth, headers=headers)
        return self._session

    def _login(self, session: Session) -> None:
        """``POST /auth/login`` with Basic; the token goes in the ``authToken`` header."""
        answer = self._send(
            session,
            "POST",
            "/auth/login",
            "login",
            auth=(self.settings.username, self.settings.password),
        )
        token = answer.json().get("authToken") if answer.content else None
        if not isinstance(token, str) or not token:
            raise TrackerError("Clarity login: no authToken in the answer (check url)")
        self._token = token
        session.headers["authToken"] = token

    def _send(
        self, session: Session, method: str, path: str, what: str, **kwargs: Any
    ) -> requests.Response:
        try:
            response = session.request(method, self.api + path, **kwargs)
        except requests.RequestException as exc:
            raise transport_error(SERVICE, what, exc) from None
        if (
            response.status_code == 401
            and self.mode == "session"
            and "authToken" in session.headers
        ):
            return response  # the caller logs in again
        if not response.ok:
            code, messages = clarity_messages(response)
            error = status_error(SERVICE, what, response.status_code, messages, HINTS.get(code, ""))
            if response.status_code == 404 and not code:
                error = status_error(
                    SERVICE, what, 404, (), f"no Clarity REST API at {self.api}: check url"
                )
            raise error
        return response

    def call(
        self,
        method: str,
        path: str,
        what: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        full: bool = False,
    ) -> Any:
        """One call; the answer's JSON (``{}`` when empty). ``full``: the whole object back."""
        if self._refused is not None:
            raise self._refused
        session = self.session
        headers = {"x-api-full-response": "true"} if full else None
        kwargs: dict[str, Any] = {"params": params, "headers": headers}
        if body is not None:
            kwargs["json"] = body
        try:
            if self.mode == "session" and not self._token:
                with self._lock:
                    if not self._token:
                        self._login(session)
            used = self._token
            response = self._send(session, method, path, what, **kwargs)
            if response.status_code == 401:  # the session token expired: log in once more
                with self._lock:
                    if self._token == used:  # not already replaced by another thread
                        session.headers.pop("authToken", None)
                        self._token = ""
                        self._login(session)
                response = self._send(session, method, path, what, **kwargs)
                if response.status_code == 401:
                    code, messages = clarity_messages(response)
                    raise status_error(SERVICE, what, 401, messages, HINTS.get(code, ""))
        except TrackerError as exc:
            if "HTTP 401" in str(exc):
                self._refused = exc  # one refused login per run, not one per failure
            raise
        try:
            return response.json() if response.content else {}
        except ValueError:
            raise TrackerError(
                f"Clarity {what}: the answer is not Clarity's JSON (check url)"
            ) from None

    def pages(self, path: str, what: str, params: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
        """Every item of a list, page by page (``offset``/``limit`` while ``_next`` says so)."""
        query = {**params, "limit": self.settings.page_size}
        offset = 0
        while offset < MOST:
            page = self.call(
                "GET", path, what, params={**query, "offset": offset} if offset else query
            )
            items = page.get("_results") or []
            yield from items
            if not page.get("_next") or not items:
                return
            offset += len(items)

    def close(self) -> None:
        """Log a session out (best effort: it expires anyway) and release the connections."""
        session, self._session = self._session, None
        if session is None:
            return
        if self._token:
            with contextlib.suppress(requests.RequestException):
                session.delete(self.api + "/auth/logout", timeout=10)
            self._token = ""
        session.close()
