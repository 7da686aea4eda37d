"""What one config key holds, and which key names are secrets: light enough for the plugin's
start (the redactor and the loader read it before any kind's settings are needed)."""

from __future__ import annotations

from typing import Final, Literal, NamedTuple

__all__ = ["SECRET_KEYS", "Key", "ValueType"]

ValueType = Literal["str", "path", "int", "bool", "strs", "table"]

#: key names that hold credentials whatever their kind: masked in listings and by the redactor
#: (in JSON keys and query strings), warned about when written literally.
SECRET_KEYS: Final = frozenset(
    (
        "password",
        "token",
        "api_key",
        "access_key",
        "access_token",
        "access_token_secret",
        "consumer_secret",
        "client_secret",
    )
)


class Key(NamedTuple):
    """What one config key holds. A NamedTuple: the plugin builds these at every start."""

    type: ValueType = "str"
    choices: tuple[str, ...] = ()
    secret: bool = False
    help: str = ""
