"""``rp-bts integrations configure|oauth NAME``: the commands a kind may offer, dispatched to it.

The kind does the talking to its service (issue types and fields; token endpoints); what is the
same for every kind lives here: finding the integration, the OAuth 1.0a dance with an RSA key
pair, the env file that keeps the tokens, and writing the choices into the config file.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import kinds
from ._cli_common import load, project_root
from .config_edit import edit_integration
from .config_types import ConfigError, Integration

__all__ = ["add_parsers"]


def add_parsers(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    guarded: Any,
    parse_setting: Any,
) -> None:
    cmd = commands.add_parser(
        "configure",
        help="show the tracker's issue types and fields; check and store predefined fields",
    )
    cmd.add_argument("name", help="the integration's name")
    cmd.add_argument("--issue-type", default=None, metavar="TYPE", help="the type to file")
    cmd.add_argument(
        "--field",
        dest="fields",
        action="append",
        default=[],
        type=parse_setting,
        metavar="KEY=VALUE",
        help="a predefined field, by id or name; VALUE is read as TOML when it parses",
    )
    cmd.set_defaults(func=guarded(configure))

    cmd = commands.add_parser(
        "oauth", help="set up OAuth 1.0a (Jira application link, Clarity), step by step"
    )
    cmd.add_argument("name", help="the integration's name")
    cmd.add_argument(
        "--consumer-key", default="rp-bts", metavar="KEY", help="when the config names none"
    )
    cmd.set_defaults(func=guarded(oauth))


def _offering(args: argparse.Namespace, what: str) -> tuple[Integration, kinds.Kind]:
    config = load(args)
    integration = config.integration(args.name)
    if integration is None:
        raise ConfigError(config.project_file or "", "", f"no integration named {args.name!r}")
    try:
        kind = kinds.get(integration.kind)
    except kinds.KindError as exc:
        raise ConfigError(integration.file, "", str(exc)) from None
    if getattr(kind, what) is None:
        raise ConfigError(
            integration.file, "", f"kind {integration.kind!r} has no `integrations {what}`"
        )
    return integration, kind


def configure(args: argparse.Namespace) -> int:
    integration, kind = _offering(args, "configure")
    assert kind.configure is not None
    request = kinds.ConfigureRequest(
        integration,
        args.issue_type,
        args.fields,
        lambda changes: _store(args, integration, changes),
    )
    return kind.configure(request)


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name).strip("_").upper()


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
    """Generate the key pair, show what to paste into the service, get a request token, show
    the authorization URL, read the verification code, get the access token, and store it in
    the env file, referenced from the config as ``${VAR}`` (never a literal)."""
    from dotenv import set_key
    from oauthlib.oauth1 import SIGNATURE_RSA  # type: ignore[import-untyped]
    from requests_oauthlib import OAuth1Session  # type: ignore[import-untyped]

    integration, kind = _offering(args, "oauth")
    assert kind.oauth is not None
    endpoints = kind.oauth(integration)
    root = project_root(args)
    slug = _slug(integration.name) or integration.kind.upper()
    key_file = Path(
        endpoints.private_key_file or root / ".rp-bts" / "oauth" / f"{slug.lower()}.pem"
    )
    private, public, created = _private_key(key_file)
    consumer = endpoints.consumer_key or args.consumer_key
    print(f"1. {'Created' if created else 'Using'} the RSA key {key_file}")
    for line in endpoints.instructions:
        print(f"2. {line}" if line is endpoints.instructions[0] else f"   {line}")
    print(f"   Consumer key: {consumer}\n   Consumer name: rp-bts\n   Public key:")
    print(public.rstrip())
    print("   Press Enter when it is saved.")
    sys.stdin.readline()
    session = OAuth1Session(
        consumer, rsa_key=private, signature_method=SIGNATURE_RSA, callback_uri="oob"
    )
    session.verify = endpoints.verify
    try:
        session.fetch_request_token(endpoints.request_token)
        print("3. Open this page, allow access, and type the verification code it shows:")
        print("   " + session.authorization_url(endpoints.authorize))
        code = sys.stdin.readline().strip()
        tokens = session.fetch_access_token(endpoints.access_token, verifier=code)
    except Exception as exc:  # requests, oauthlib and token errors alike: one line
        print(
            f"FAILED: OAuth with {endpoints.request_token}: {type(exc).__name__}; check that"
            f" the service has consumer key {consumer!r} and the public key above"
        )
        return 1
    finally:
        session.close()
    env_file = Path(getattr(args, "env_file", None) or root / ".env")
    prefix = f"{integration.kind.upper()}_{slug}"
    token_var, secret_var = f"{prefix}_ACCESS_TOKEN", f"{prefix}_ACCESS_TOKEN_SECRET"
    fd = os.open(env_file, os.O_WRONLY | os.O_CREAT, 0o600)
    os.close(fd)
    os.chmod(env_file, 0o600)  # tokens: whatever its mode was, only its owner reads it now
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
    args: argparse.Namespace, integration: Integration, changes: Mapping[str, Any]
) -> list[str]:
    file = Path(integration.file)
    if integration.source == "global":
        return edit_integration(file, integration.name, dict(changes), scope="global")
    given = getattr(args, "global_config", None)
    return edit_integration(
        file, integration.name, dict(changes), global_file=Path(given) if given else None
    )
