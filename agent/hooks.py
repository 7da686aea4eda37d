"""The agent's plugin manager: where ``rp_bts_*`` hook implementations are registered."""

from __future__ import annotations

import importlib
from itertools import repeat
from typing import Any

import pluggy

from . import hookspecs


class HookManager(pluggy.PluginManager):
    """Takes undecorated ``rp_bts_*`` functions, so a ``conftest.py`` needs no imports."""

    def __init__(self) -> None:
        super().__init__(hookspecs.PROJECT)
        self.add_hookspecs(hookspecs)

    def parse_hookimpl_opts(self, plugin: Any, name: str) -> Any:
        return hookspecs.hook_impl_opts(plugin, name)

    def register_module(self, dotted: str) -> None:
        """Register a module by import path (``rp-bts process --hooks pkg.module``)."""
        self.register(importlib.import_module(dotted), name=dotted)


def has_hooks(plugin: object) -> bool:
    """Whether ``plugin`` has an ``rp_bts_*`` attribute; a loop in C, as a pytest start asks
    this of some 40 plugin modules with hundreds of names each."""
    return any(map(str.startswith, dir(plugin), repeat(f"{hookspecs.PROJECT}_")))
