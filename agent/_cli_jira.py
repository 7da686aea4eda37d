"""``rp-bts integrations configure NAME``: a Jira project's issue types and fields, and the
integration's predefined fields checked against them before they are stored.

ReportPortal's "choose predefined fields" step: list the types, show the chosen type's fields
(required ones marked, allowed values shown), validate ``--field KEY=VALUE`` (options,
components, versions, priority, labels, users by account id on Cloud and by login name on Data
Center, custom fields) and write them into the file the integration lives in, keeping its layout.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ._cli_common import load
from .config_edit import edit_integration
from .config_types import ConfigError, Integration

__all__ = ["add_configure", "check_field", "oauth"]

#: fields rp-bts fills itself on every issue.
_OURS = frozenset(("summary", "description", "issuetype", "project", "labels"))


def add_configure(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from ._cli_integrations import _guarded, parse_setting

    cmd = commands.add_parser(
        "configure", help="Jira: show issue types and fields; check and store predefined fields"
    )
    cmd.add_argument("name")
    cmd.add_argument("--issue-type", default=None, metavar="TYPE")
    cmd.add_argument(
        "--field",
        dest="fields",
        action="append",
        default=[],
        type=parse_setting,
        metavar="KEY=VALUE",
        help="a predefined field, by id or name; VALUE is read as TOML when it parses",
    )
    cmd.set_defaults(func=_guarded(configure))

    cmd = commands.add_parser(
        "oauth", help="Jira: set up OAuth 1.0a through an application link, step by step"
    )
    cmd.add_argument("name")
    cmd.add_argument("--consumer-key", default="rp-bts", metavar="KEY")
    cmd.set_defaults(func=_guarded(oauth))


def _allowed_names(meta: Mapping[str, Any]) -> list[str]:
    names = []
    for item in meta.get("allowedValues") or []:
        if isinstance(item, Mapping):
            names.append(str(item.get("name") or item.get("value") or item.get("id")))
    return names


def check_field(meta: Mapping[str, Any], value: Any) -> str:
    """Why ``value`` does not fit the field, or ``""`` when it does (users are checked apart)."""
    schema = meta.get("schema") or {}
    values = value if isinstance(value, list) else [value]
    if schema.get("type") != "array" and isinstance(value, list):
        return "takes one value, not a list"
    allowed = _allowed_names(meta)
    for item in values:
        text = (
            str(item.get("name") or item.get("value") or item.get("id"))
            if isinstance(item, Mapping)
            else str(item)
        )
        if allowed and text not in allowed:
            return f"{text!r} is not allowed (allowed: {', '.join(allowed)})"
        if meta.get("fieldId") == "labels" and (" " in text or not text):
            return f"label {text!r} must be one word"
    return ""


def _users(meta: Mapping[str, Any]) -> bool:
    schema = meta.get("schema") or {}
    return "user" in (schema.get("type"), schema.get("items"))


def configure(args: argparse.Namespace) -> int:
    from .trackers.base import TrackerError
    from .trackers.jira import JiraTracker

    config = load(args)
    integration = config.integration(args.name)
    if integration is None or integration.kind != "jira":
        raise ConfigError(config.project_file or "", "", f"no jira integration named {args.name!r}")
    tracker = JiraTracker(integration)
    try:
        return _configure(args, integration, tracker)
    except TrackerError as exc:
        print(f"FAILED: {exc}")
        return 1
    finally:
        tracker.close()


def _configure(args: argparse.Namespace, integration: Integration, tracker: Any) -> int:
    types = [str(t.get("name")) for t in tracker.issue_types()]
    print(f"issue types of {integration.project_key}: {', '.join(types)}")
    issue_type = args.issue_type or integration.issue_type or "Bug"
    if issue_type not in types:
        print(f"FAILED: no issue type {issue_type!r}; use --issue-type with one of the above")
        return 1
    meta: dict[str, dict[str, Any]] = tracker.fields_of(issue_type)
    print(f"fields of {issue_type} (* required):")
    for fid, field in meta.items():
        mark = "*" if field.get("required") else " "
        allowed = _allowed_names(field)
        shown = f": {' | '.join(allowed)}" if allowed else ""
        print(f"  {mark} {fid} ({field.get('name', '')}){shown}")

    by_name = {str(f.get("name", "")).lower(): fid for fid, f in meta.items()}
    chosen: dict[str, Any] = {}
    problems: list[str] = []
    for key, value in args.fields:
        fid = key if key in meta else by_name.get(key.lower(), "")
        if not fid:
            problems.append(f"{key}: no such field on {issue_type}")
            continue
        why = check_field(meta[fid], value)
        if not why and _users(meta[fid]):
            why = _check_users(tracker, value)
        if why:
            problems.append(f"{key}: {why}")
        chosen[fid] = value
    fields = {**integration.fields, **chosen}
    for fid, field in meta.items():
        if field.get("required") and fid not in _OURS and fid not in fields:
            problems.append(f"{fid} ({field.get('name', '')}) is required: add --field {fid}=...")
    for problem in problems:
        print(f"FAILED: {problem}")
    if problems:
        return 1
    changes: dict[str, Any] = {"issue_type": issue_type}
    changes.update({f"fields.{fid}": value for fid, value in chosen.items()})
    for note in _store(args, integration, changes):
        print(note)
    return 0


def _check_users(tracker: Any, value: Any) -> str:
    """Users are account ids on Cloud and login names on Data Center; each is looked up."""
    for user in value if isinstance(value, list) else [value]:
        key = "accountId" if tracker.cloud else "username"
        try:
            tracker._get(tracker.client, "/rest/api/2/user", "user", **{key: str(user)})
        except Exception:
            kind = "an account id" if tracker.cloud else "a login name"
            return f"no user {user!r} ({'Cloud' if tracker.cloud else 'Data Center'} wants {kind})"
    return ""


# -- rp-bts integrations oauth ----------------------------------------------------------------

_OAUTH_PATH = "/plugins/servlet/oauth"


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name).strip("_").upper() or "JIRA"


def _private_key(path: Path) -> tuple[str, str, bool]:
    """(private PEM, public PEM, created): an RSA key pair, made once and kept 0600."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    created = not path.is_file()
    if created:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        path.parent.mkdir(parents=True, exist_ok=True)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(pem)
    private = path.read_text(encoding="utf-8")
    loaded = serialization.load_pem_private_key(private.encode(), password=None)
    public = (
        loaded.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public, created


def oauth(args: argparse.Namespace) -> int:
    """Generate the key pair, show what to paste into the application link, get a request
    token, show the authorization URL, read the verification code, get the access token, and
    store it in the env file, referenced from the config as ``${VAR}`` (never a literal)."""
    import sys

    from dotenv import set_key
    from oauthlib.oauth1 import SIGNATURE_RSA  # type: ignore[import-untyped]
    from requests_oauthlib import OAuth1Session  # type: ignore[import-untyped]

    from ._cli_common import project_root

    config = load(args)
    integration = config.integration(args.name)
    if integration is None or integration.kind != "jira":
        raise ConfigError(config.project_file or "", "", f"no jira integration named {args.name!r}")
    root = project_root(args)
    slug = _slug(integration.name)
    key_file = Path(
        str(integration.extra.get("private_key_file") or "")
        or root / ".rp-bts" / "oauth" / f"{slug.lower()}.pem"
    )
    private, public, created = _private_key(key_file)
    consumer = str(integration.extra.get("consumer_key") or args.consumer_key)
    url = integration.url.rstrip("/")
    print(f"1. {'Created' if created else 'Using'} the RSA key {key_file}")
    print("2. In Jira: Administration > Applications > Application links: create a link")
    print("   (any URL), then under Incoming Authentication enter")
    print(f"   Consumer key: {consumer}\n   Consumer name: rp-bts\n   Public key:")
    print(public.rstrip())
    print("   Press Enter when the application link is saved.")
    sys.stdin.readline()
    session = OAuth1Session(
        consumer, rsa_key=private, signature_method=SIGNATURE_RSA, callback_uri="oob"
    )
    session.verify = integration.ca_file or integration.verify_tls
    try:
        session.fetch_request_token(url + _OAUTH_PATH + "/request-token")
        print("3. Open this page, allow access, and type the verification code it shows:")
        print("   " + session.authorization_url(url + _OAUTH_PATH + "/authorize"))
        code = sys.stdin.readline().strip()
        tokens = session.fetch_access_token(url + _OAUTH_PATH + "/access-token", verifier=code)
    except Exception as exc:  # requests, oauthlib and token errors alike: one line
        print(
            f"FAILED: OAuth with {url}: {type(exc).__name__}; check that the application link"
            f" has consumer key {consumer!r} and the public key above"
        )
        return 1
    finally:
        session.close()
    env_file = Path(getattr(args, "env_file", None) or root / ".env")
    token_var, secret_var = f"JIRA_{slug}_ACCESS_TOKEN", f"JIRA_{slug}_ACCESS_TOKEN_SECRET"
    if not env_file.exists():
        fd = os.open(env_file, os.O_WRONLY | os.O_CREAT, 0o600)
        os.close(fd)
    set_key(env_file, token_var, str(tokens["oauth_token"]))
    set_key(env_file, secret_var, str(tokens.get("oauth_token_secret", "")))
    os.environ[token_var] = str(tokens["oauth_token"])  # so the edit below validates
    os.environ[secret_var] = str(tokens.get("oauth_token_secret", ""))
    changes = {
        "auth": "oauth1",
        "consumer_key": consumer,
        "private_key_file": str(key_file),
        "access_token": f"${{{token_var}}}",
        "access_token_secret": f"${{{secret_var}}}",
    }
    notes = _store(args, integration, changes)
    print(f"4. Access token stored in {env_file} as {token_var}; the config references it.")
    for note in notes:
        print(note)
    return 0


def _store(
    args: argparse.Namespace, integration: Integration, changes: dict[str, Any]
) -> list[str]:
    file = Path(integration.file)
    if integration.source == "global":
        return edit_integration(file, integration.name, changes, scope="global")
    given = getattr(args, "global_config", None)
    return edit_integration(
        file, integration.name, changes, global_file=Path(given) if given else None
    )
