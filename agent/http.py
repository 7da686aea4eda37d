"""The one HTTP layer of the trackers and Sauce Labs: sessions, retries, timeouts, TLS, errors.

What every kind that speaks HTTP shares, so a new tracker writes none of it again:

- 429 and 503 are retried by urllib3 after ``Retry-After`` (cut to :data:`MAX_RETRY_AFTER`);
  nothing else is retried here: a transient failure (a 500, an answer lost) is the pipeline's
  to repeat, as one idempotent step, so tries never stack up layer on layer.
- A connection that cannot be made is not retried: a tracker that does not answer costs one
  connect timeout, and the pipeline's breaker keeps the rest of the run away from it.
- An integration's ``ca_file`` (or ``verify_tls = false``) wins over ``REQUESTS_CA_BUNDLE`` and
  ``CURL_CA_BUNDLE``, which most CI images set and which requests would otherwise prefer.
- Every call's timeout is the smaller of its own and the time left before the deadline (the
  run end's time budget), so no call outlives the budget.
- Failures become :class:`~rp_bts_agent.tracker.TrackerError` with one line that says what to
  check; a certificate failure names ``ca_file``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError, ReadTimeoutError
from urllib3.util.retry import Retry

from .deadline import Spent, cap, deadline, left, sending, time_limit
from .settings import TlsSettings
from .tracker import TrackerError

__all__ = [
    "CONNECT_TIMEOUT",
    "MAX_RETRY_AFTER",
    "BudgetSpent",
    "Session",
    "adopt",
    "deadline",
    "left",
    "mount_retries",
    "new_session",
    "oauth1",
    "retry_policy",
    "status_error",
    "time_limit",
    "transport_error",
]

CONNECT_TIMEOUT: Final = 10.0
RETRIES: Final = 3
#: a ``Retry-After`` longer than this is cut to it: a run never waits minutes for a tracker.
MAX_RETRY_AFTER: Final = 30.0
#: seconds before the first retry when the server sends no ``Retry-After`` (doubling after).
BACKOFF = 0.5
#: statuses that say "later" rather than "no": retried here after Retry-After.
THROTTLED: Final = (429, 503)
#: statuses worth one more try of the same idempotent step.
TRANSIENT: Final = (408, 500, 502, 504)


class _BoundedRetry(Retry):
    """urllib3's Retry, honouring ``Retry-After`` up to :data:`MAX_RETRY_AFTER` seconds and
    never past the deadline: a throttled call gives up rather than outlive the budget."""

    def get_retry_after(self, response: Any) -> float | None:
        value = super().get_retry_after(response)
        return None if value is None else min(value, MAX_RETRY_AFTER)

    def sleep(self, response: Any = None) -> None:
        remaining = left()
        if remaining is not None:
            wanted = (self.get_retry_after(response) if response is not None else None) or (
                self.get_backoff_time()
            )
            if wanted >= remaining:
                raise BudgetSpent("the time budget is spent")
        super().sleep(response)


def retry_policy(total: int = RETRIES) -> Retry:
    """429 and 503 on any method (the server has not acted on them); no other retry."""
    return _BoundedRetry(
        total=total,
        connect=0,
        read=0,
        status=total,
        status_forcelist=THROTTLED,
        allowed_methods=None,
        respect_retry_after_header=True,
        raise_on_status=False,
        backoff_factor=BACKOFF,
    )


class BudgetSpent(requests.exceptions.ConnectTimeout):
    """No call starts once the run end's time budget is spent."""


class _Policy:
    """What every request of an rp-bts session gets: the integration's TLS setting (never the
    environment's) and a timeout bounded by the deadline."""

    verify: Any
    #: seconds to wait for an answer; connecting has :data:`CONNECT_TIMEOUT`
    read_timeout: float = 60.0
    #: ``time.monotonic()`` after which no call starts and none waits longer
    deadline: float | None = None

    def send(self, request: Any, **kwargs: Any) -> Any:
        # Here, below what requests merges from the environment: REQUESTS_CA_BUNDLE and
        # CURL_CA_BUNDLE replace a session's ``verify`` in ``request()``, not in ``send()``.
        if self.verify is not True:
            kwargs["verify"] = self.verify
        kwargs["timeout"] = self._timeout(kwargs.get("timeout"))
        sending()
        return super().send(request, **kwargs)  # type: ignore[misc]

    def _timeout(self, given: Any) -> tuple[float, float]:
        if isinstance(given, tuple):
            connect, read = float(given[0]), float(given[1])
        elif given is not None:
            connect = read = float(given)
        else:
            connect, read = CONNECT_TIMEOUT, self.read_timeout
        try:
            return cap(connect, self.deadline), cap(read, self.deadline)
        except Spent:
            raise BudgetSpent("the time budget is spent") from None


class Session(_Policy, requests.Session):
    """A ``requests`` session under rp-bts' policy, with 429/503 retried after Retry-After."""

    def __init__(self, timeout: float = 60.0) -> None:
        super().__init__()
        self.read_timeout = timeout
        mount_retries(self)


def mount_retries(session: requests.Session) -> None:
    adapter = HTTPAdapter(max_retries=retry_policy())
    session.mount("https://", adapter)
    session.mount("http://", adapter)


def adopt(session: requests.Session, settings: TlsSettings, timeout: float) -> None:
    """Put a session a library made (the ``jira`` client's) under the same policy."""
    session.__class__ = type(f"RpBts{type(session).__name__}", (_Policy, type(session)), {})
    session.verify = settings.tls_verify()
    session.read_timeout = timeout  # type: ignore[attr-defined]
    mount_retries(session)


def new_session(
    settings: TlsSettings,
    *,
    timeout: float = 60.0,
    auth: Any = None,
    headers: Mapping[str, str] | None = None,
) -> Session:
    """A session for one integration: its TLS settings, credentials and headers."""
    session = Session(timeout)
    session.verify = settings.tls_verify()
    session.auth = auth
    session.headers["User-Agent"] = "rp-bts"
    session.headers.update(headers or {})
    return session


def status_error(
    service: str,
    what: str,
    status: int,
    messages: list[str] | tuple[str, ...] = (),
    hint: str = "",
) -> TrackerError:
    """A TrackerError for an HTTP status: the service's messages and what to check.

    429 and 503 were retried already (the service is overloaded: leave it for a replay); other
    5xx and 408 may go through on the next try of the same step; 4xx will not.
    """
    text = f"{service} {what}: HTTP {status}"
    if messages:
        text += ": " + "; ".join(messages)
    if hint:
        text += f" ({hint})"
    return TrackerError(
        text, retryable=status in THROTTLED or status >= 500, transient=status in TRANSIENT
    )


def transport_error(service: str, what: str, exc: requests.RequestException) -> TrackerError:
    """A TrackerError for a call that got no answer: certificate, connect, timeout, dropped."""
    if isinstance(exc, BudgetSpent):
        return TrackerError(f"{service} {what}: the time budget is spent", retryable=True)
    if isinstance(exc, requests.exceptions.SSLError):
        return TrackerError(
            f"{service} {what}: the server's certificate was not accepted; set ca_file to the"
            " CA bundle that signs it (or verify_tls = false, not recommended)"
        )
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return TrackerError(f"{service} {what}: no answer to connect (check url)", retryable=True)
    # under urllib3's Retry, a read timeout arrives as a ConnectionError with it as the reason
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    if isinstance(exc, requests.exceptions.Timeout) or isinstance(reason, ReadTimeoutError):
        return TrackerError(f"{service} {what}: timed out waiting for the answer", transient=True)
    if isinstance(exc, requests.exceptions.ConnectionError):
        if isinstance(reason, (NewConnectionError, ConnectTimeoutError)):
            return TrackerError(f"{service} {what}: cannot connect (check url)", retryable=True)
        return TrackerError(
            f"{service} {what}: the connection broke before the answer", transient=True
        )
    return TrackerError(f"{service} {what}: {type(exc).__name__}", transient=True)


def oauth1(name: str, settings: Any) -> Any:
    """OAuth 1.0a with RSA-SHA1 (a Jira application link, a Clarity OAuth application):
    ``requests_oauthlib.OAuth1`` from ``settings``' ``consumer_key``, ``private_key_file``
    (the PEM whose public half the service holds), ``access_token`` and
    ``access_token_secret`` (from ``rp-bts integrations oauth``)."""
    from oauthlib.oauth1 import SIGNATURE_RSA  # type: ignore[import-untyped]
    from requests_oauthlib import OAuth1  # type: ignore[import-untyped]

    keys = ("consumer_key", "private_key_file", "access_token")
    missing = [k for k in keys if not getattr(settings, k)]
    if missing:
        raise TrackerError(f"integration '{name}': auth = \"oauth1\" needs {', '.join(missing)}")
    try:
        with open(settings.private_key_file, encoding="utf-8") as handle:
            key = handle.read()
    except OSError as exc:
        raise TrackerError(
            f"integration '{name}': cannot read private_key_file"
            f" {settings.private_key_file}: {exc.strerror}"
        ) from None
    return OAuth1(
        settings.consumer_key,
        rsa_key=key,
        signature_method=SIGNATURE_RSA,
        signature_type="auth_header",
        resource_owner_key=settings.access_token,
        resource_owner_secret=settings.access_token_secret,
    )
