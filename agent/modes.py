"""What a run does with its failures; a module of its own because the plugin's option parsing
reads it at every pytest start, with the plugin on or off, and must stay light."""

from __future__ import annotations

from typing import Final, Literal

#: file and comment; only link to issues that exist; only print the plan
Mode = Literal["post", "link", "dry-run"]
MODES: Final = ("post", "link", "dry-run")
