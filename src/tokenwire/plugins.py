"""Plugin discovery through entry points, plus uvicorn-style `"module:attr"` strings.

Listing names imports nothing; loading imports only the plugin chosen. A plugin that fails to
import fails loudly with its cause chained — it is never logged and skipped.
"""

from __future__ import annotations

import importlib
from importlib.metadata import EntryPoint, entry_points
from typing import Literal

PluginKind = Literal["backends", "middlewares", "dialects", "transports"]
KINDS: tuple[PluginKind, ...] = ("backends", "middlewares", "dialects", "transports")


class PluginError(Exception):
    """A plugin name is unknown or its code failed to import."""


def _group(kind: PluginKind) -> str:
    if kind not in KINDS:
        raise PluginError(f"unknown plugin kind {kind!r}; known kinds: {', '.join(KINDS)}")
    return f"tokenwire.{kind}"


def _entry_points(kind: PluginKind) -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=_group(kind))}


def list_plugins(kind: PluginKind) -> dict[str, str]:
    """Installed plugins of one kind: name → `module:attr`. Imports nothing."""
    return {name: ep.value for name, ep in sorted(_entry_points(kind).items())}


def import_from_string(target: str) -> object:
    """Import `"package.module:attr.path"`."""
    module_name, sep, attrs = target.partition(":")
    if not sep or not module_name or not attrs:
        raise PluginError(f"import string {target!r} must be in the form 'module:attribute'")
    try:
        obj: object = importlib.import_module(module_name)
    except ImportError as exc:
        if exc.name == module_name:
            raise PluginError(f"could not import module {module_name!r}") from exc
        raise PluginError(f"importing {module_name!r} failed: {exc}") from exc
    for attr in attrs.split("."):
        try:
            obj = getattr(obj, attr)
        except AttributeError as exc:
            raise PluginError(f"module {module_name!r} has no attribute {attrs!r}") from exc
    return obj


def load_plugin(kind: PluginKind, name: str) -> object:
    """Load one plugin by entry-point name or `"module:attr"` string.

    Raises:
        PluginError: the name is unknown (the message lists the known ones) or the plugin
            failed to import (the cause is chained).
    """
    if ":" in name:
        return import_from_string(name)
    known = _entry_points(kind)
    entry = known.get(name)
    if entry is None:
        names = ", ".join(sorted(known)) or "none installed"
        raise PluginError(f"unknown {kind[:-1]} {name!r}; known {kind}: {names}")
    try:
        return entry.load()
    except Exception as exc:
        raise PluginError(
            f"{kind[:-1]} plugin {name!r} ({entry.value}) failed to load: {exc}"
        ) from exc
