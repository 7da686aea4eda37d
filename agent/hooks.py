"""The agent's plugin manager: where ``rp_bts_*`` hook implementations are registered."""

from __future__ import annotations

import importlib
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
    return any(name.startswith("rp_bts_") for name in dir(plugin))
