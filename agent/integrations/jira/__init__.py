"""Jira Cloud and Data Center: issues filed, linked, commented and reopened through REST v2."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from rp_bts_agent.kinds import ConfigureRequest, Kind, OAuthEndpoints
from rp_bts_agent.settings import (
    SettingsContext,
    TrackerSettings,
    check_web_url,
    choice,
    path,
    secret,
    text,
)

if TYPE_CHECKING:
    from rp_bts_agent.config_types import Integration
    from rp_bts_agent.connection import CheckOptions, CheckResult
    from rp_bts_agent.tracker import Tracker


@dataclass(frozen=True, slots=True)
class JiraSettings(TrackerSettings):
    """``kind = "jira"``: Cloud logs in with e-mail + API token, Data Center with a login name
    and password or a personal access token, either with OAuth 1.0a through an application
    link."""

    auth: str = choice("basic", "pat", "oauth1")
    username: str = text()
    password: str = secret()
    token: str = secret('a personal access token (auth = "pat")')
    consumer_key: str = text()
    private_key_file: str = path()
    access_token: str = secret()
    access_token_secret: str = secret()
    resolve_transition: str = text(
        help='the transition on_pass = "resolve" takes (default: the first into Done)'
    )

    @classmethod
    def complete(cls, values: dict[str, Any], context: SettingsContext) -> dict[str, Any]:
        """The URL's form and the keys an auth method cannot do without, before anything is
        written or sent (a basic login may come later from the environment, the access token
        of OAuth from ``rp-bts integrations oauth``)."""
        check_web_url(values, context)
        auth = values.get("auth", "basic")
        context.require(values, _AUTH_KEYS.get(auth, ()), f'with auth = "{auth}"')
        return values


_AUTH_KEYS: Final = {"pat": ("token",), "oauth1": ("consumer_key",)}


def _tracker(integration: Integration, read_only: bool) -> Tracker:
    from .tracker import JiraTracker

    return JiraTracker(integration, read_only=read_only)


def _check(integration: Integration, options: CheckOptions) -> CheckResult:
    from .tracker import check_connection

    return check_connection(integration, options)


def _configure(request: ConfigureRequest) -> int:
    from .cli import configure

    return configure(request)


_OAUTH_PATH = "/plugins/servlet/oauth"


def _oauth(integration: Integration) -> OAuthEndpoints:
    settings = integration.settings_as(JiraSettings)
    base = settings.url.rstrip("/") + _OAUTH_PATH
    return OAuthEndpoints(
        request_token=base + "/request-token",
        authorize=base + "/authorize",
        access_token=base + "/access-token",
        instructions=(
            "In Jira: Administration > Applications > Application links: create a link",
            "(any URL), then under Incoming Authentication enter",
        ),
        consumer_key=settings.consumer_key,
        private_key_file=settings.private_key_file,
        verify=settings.tls_verify(),
    )


KIND = Kind(
    name="jira",
    settings=JiraSettings,
    summary="Jira Cloud or Data Center issues",
    tracker=_tracker,
    check=_check,
    configure=_configure,
    oauth=_oauth,
)
