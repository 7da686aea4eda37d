"""Typed settings of one integration, declared by its kind.

Each kind declares a frozen dataclass of its keys (``JiraSettings``, ``SauceSettings``, ...);
the loader reads its schema from the fields (:func:`keys_of`), so a key, its type, its allowed
values, its default and whether it is a secret are written once, beside the code that reads it.
The core reads only the shared bases: :class:`TlsSettings` (every HTTPS or SMTP integration)
and :class:`TrackerSettings` (every kind that files issues).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, NamedTuple
from urllib.parse import unquote, urlsplit

from .keys import SECRET_KEYS, Key

__all__ = [
    "SECRET_KEYS",
    "Key",
    "Settings",
    "SettingsContext",
    "TlsSettings",
    "TrackerSettings",
    "choice",
    "flag",
    "keys_of",
    "number",
    "path",
    "secret",
    "table",
    "text",
    "texts",
]


_META: Final = "rp_bts"


def _setting(default: Any, key: Key) -> Any:
    if isinstance(default, (list, dict)):
        frozen = tuple(default) if isinstance(default, list) else dict(default)
        return dataclasses.field(default_factory=lambda: frozen, metadata={_META: key})
    return dataclasses.field(default=default, metadata={_META: key})


def text(default: str = "", help: str = "") -> Any:
    return _setting(default, Key("str", help=help))


def secret(help: str = "") -> Any:
    """A credential: given as ``${VAR}``, never shown, masked wherever it could appear."""
    return _setting("", Key("str", secret=True, help=help))


def path(default: str = "", help: str = "") -> Any:
    """A file path, relative to the config file that names it."""
    return _setting(default, Key("path", help=help))


def number(default: int, help: str = "") -> Any:
    return _setting(default, Key("int", help=help))


def flag(default: bool, help: str = "") -> Any:
    return _setting(default, Key("bool", help=help))


def texts(default: tuple[str, ...] = (), choices: tuple[str, ...] = (), help: str = "") -> Any:
    return _setting(list(default), Key("strs", choices, help=help))


def table(help: str = "") -> Any:
    return _setting({}, Key("table", help=help))


def choice(*values: str, default: str = "", help: str = "") -> Any:
    """One of ``values``; ``default``, else the first, when not given."""
    return _setting(default or values[0], Key("str", values, help=help))


class SettingsContext(NamedTuple):
    """What :meth:`Settings.complete` may need beyond the table: where the project lives."""

    root: Path
    file: Path
    loc: str
    #: the keys the table sets, filled or still ``${VAR}`` (an edit checks before the variables
    #: are set); None for an integration built in code, whose required keys are not checked
    present: frozenset[str] | None = None

    def require(self, values: Mapping[str, Any], keys: Sequence[str], why: str) -> None:
        """The first of ``keys`` the table lacks is a config error, said as a run says it."""
        if self.present is None:
            return
        missing = [key for key in keys if key not in self.present and not values.get(key)]
        if missing:
            from .config_types import ConfigError

            raise ConfigError(
                self.file, f"{self.loc}.{missing[0]}", f"required {why}; set {', '.join(missing)}"
            )


def check_web_url(values: Mapping[str, Any], context: SettingsContext, key: str = "url") -> None:
    """A tracker's address must be an http(s) URL with a host (``${VAR}`` is checked once set)."""
    from urllib.parse import urlsplit

    url = values.get(key)
    if not isinstance(url, str) or not url:
        return
    try:
        parts = urlsplit(url)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:
        ok = False
    if not ok:
        from .config_types import ConfigError

        raise ConfigError(
            context.file,
            f"{context.loc}.{key}",
            f"{url!r} is not a web address; write it as https://host[/path]",
        )


@dataclass(frozen=True, slots=True)
class Settings:
    """The base of every kind's settings: no keys of its own."""

    @classmethod
    def complete(cls, values: dict[str, Any], context: SettingsContext) -> dict[str, Any]:
        """Values that follow from others (an SMTP port from its security, a path under the
        project root); also where a kind refuses a combination, with
        :class:`~rp_bts_agent.config_types.ConfigError`."""
        return values

    def secrets(self) -> tuple[str, ...]:
        """Every credential value set, for the redactor: the secret keys, and a password
        written inside any URL (``https://bob:${PASS}@host``, issue 11, point 10)."""
        values = [getattr(self, name) for name, key in keys_of(type(self)).items() if key.secret]
        values += [url_password(getattr(self, name)) for name in keys_of(type(self))]
        return tuple(dict.fromkeys(v for v in values if isinstance(v, str) and v))


def url_password(value: object) -> str:
    """The password in a URL's user part (``scheme://user:password@host``), else ``""``."""
    if not isinstance(value, str) or "@" not in value or "://" not in value:
        return ""
    try:
        return unquote(urlsplit(value.strip()).password or "")
    except ValueError:
        return ""


@dataclass(frozen=True, slots=True)
class TlsSettings(Settings):
    """Every HTTPS or SMTP integration: TLS is verified unless turned off."""

    verify_tls: bool = flag(True, "verify the server's certificate")
    ca_file: str = path(help="a CA bundle to trust instead of the system's")

    def tls_verify(self) -> bool | str:
        """``requests``' ``verify``: the CA file when set (it wins over REQUESTS_CA_BUNDLE)."""
        if not self.verify_tls:
            return False
        return self.ca_file or True


@dataclass(frozen=True, slots=True)
class TrackerSettings(TlsSettings):
    """Every kind that files issues: where, what type, with which fields and content."""

    url: str = text()
    project_key: str = text(help="the tracker's project")
    issue_type: str = text()
    fields: Mapping[str, Any] = table("predefined field values of every issue")
    include: tuple[str, ...] = texts(
        ("logs", "attachments", "comments"), ("logs", "attachments", "comments")
    )
    #: how many lines of the log tail go into an issue (ReportPortal's log quantity)
    log_lines: int = number(50)
    #: seconds to wait for each answer; a tracker slower than this is retried, then queued
    timeout: int = number(60)
    on_closed: str = choice("new", "reopen")

    def identity(self, kind: str) -> str:
        """Which tracker project and issue type this files into: integrations may share a
        project ("Shop bugs" and "Shop tasks"), and each finds only its own type's issues."""
        return f"{kind}:{self.url.rstrip('/')}:{self.project_key}:{self.issue_type}"


_KEYS: dict[type[Settings], Mapping[str, Key]] = {}


def keys_of(cls: type[Settings]) -> Mapping[str, Key]:
    """The config keys a settings class declares, in declaration order (bases first)."""
    found = _KEYS.get(cls)
    if found is None:
        found = _KEYS[cls] = {
            f.name: f.metadata[_META] for f in dataclasses.fields(cls) if _META in f.metadata
        }
    return found
