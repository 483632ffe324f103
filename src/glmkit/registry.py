"""Registries of components and discovery of plugins.

A :class:`Registry` is a thin, typed index: a decorator records a name and the class or function
it refers to, ``get`` finds it (suggesting the closest name on a typo), ``names`` lists with a
shell-style pattern. Registration happens when the module that defines a component is imported;
nothing is built here.

Third-party packages extend glmkit through the entry-point group ``glmkit.plugins``: each entry
points at a module whose import registers components. :func:`load_plugins` imports them all and
reports a failing plugin by name without breaking the others.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import os
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

T = TypeVar("T")

PLUGIN_GROUP = "glmkit.plugins"
DISABLE_AUTOLOAD_ENV = "GLMKIT_DISABLE_PLUGIN_AUTOLOAD"


class RegistryError(KeyError):
    """Raised for unknown or duplicate names; its message is meant for the user."""

    def __str__(self) -> str:  # KeyError quotes its message; show it as written
        return str(self.args[0]) if self.args else ""


class Registry(Generic[T]):
    """A named index of one kind of component (encoders, losses, tools, ...).

    Example::

        ENCODERS = Registry("encoders", "vision encoders")

        @ENCODERS.register("cogvit")
        class CogViT(nn.Module): ...

        ENCODERS.get("cogvit")  # -> CogViT
    """

    def __init__(self, kind: str, description: str = "") -> None:
        self.kind = kind
        self.description = description
        self._entries: dict[str, T] = {}

    def register(self, name: str | None = None, *, override: bool = False) -> Callable[[T], T]:
        """Decorator recording ``obj`` under ``name`` (default: the object's ``__name__``).

        A second registration of the same name raises unless ``override=True``, so two plugins
        cannot silently shadow each other.
        """

        def decorator(obj: T) -> T:
            key = name or getattr(obj, "__name__", None)
            if not key:
                raise RegistryError(f"{self.kind}: cannot infer a name for {obj!r}; pass name=...")
            existing = self._entries.get(key)
            if existing is not None and existing is not obj and not override:
                raise RegistryError(
                    f"{self.kind}: the name {key!r} is already registered by "
                    f"{_qualname(existing)}; pass override=True to replace it"
                )
            self._entries[key] = obj
            return obj

        return decorator

    def add(self, name: str, obj: T, *, override: bool = False) -> T:
        """Record ``obj`` under ``name`` without the decorator syntax."""
        return self.register(name, override=override)(obj)

    def get(self, name: str) -> T:
        """Return the component registered as ``name``; unknown names suggest the closest ones."""
        try:
            return self._entries[name]
        except KeyError:
            close = difflib.get_close_matches(name, list(self._entries), n=3, cutoff=0.5)
            hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
            known = ", ".join(sorted(self._entries)) or "(none)"
            raise RegistryError(
                f"unknown {self.kind} {name!r}.{hint} Registered {self.kind}: {known}"
            ) from None

    def build(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Look ``name`` up and call it with the given arguments."""
        return self.get(name)(*args, **kwargs)  # type: ignore[operator]

    def names(self, pattern: str = "*") -> list[str]:
        """Sorted names matching a shell-style ``pattern`` (``fnmatch``)."""
        return sorted(n for n in self._entries if fnmatch.fnmatch(n, pattern))

    def items(self) -> Iterator[tuple[str, T]]:
        """(name, component) pairs in name order."""
        for key in sorted(self._entries):
            yield key, self._entries[key]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self)} entries)"


_REGISTRIES: dict[str, Registry[Any]] = {}


def registry(kind: str, description: str = "") -> Registry[Any]:
    """The process-wide registry of ``kind``, created on first use."""
    reg = _REGISTRIES.get(kind)
    if reg is None:
        reg = _REGISTRIES[kind] = Registry(kind, description)
    elif description and not reg.description:
        reg.description = description
    return reg


def all_registries() -> dict[str, Registry[Any]]:
    """Every registry created so far, by kind."""
    return dict(sorted(_REGISTRIES.items()))


def _qualname(obj: object) -> str:
    module = getattr(obj, "__module__", None)
    name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", repr(obj))
    return f"{module}.{name}" if module else str(name)


# Modules of glmkit that register components when imported. ``glmkit list`` and the CLI import
# them so that short names resolve; a module whose optional dependency is missing is reported,
# not fatal.
BUILTIN_MODULES: tuple[str, ...] = (
    "glmkit.nn.attention",
    "glmkit.models.encoders",
    "glmkit.models.teachers",
    "glmkit.models.adaptors",
    "glmkit.losses",
    "glmkit.optim",
    "glmkit.data",
    "glmkit.stages",
    "glmkit.tools",
    "glmkit.agent",
    "glmkit.eval",
)


@dataclass
class ImportReport:
    """What :func:`import_builtins` / :func:`load_plugins` imported and what failed."""

    loaded: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)

    def merge(self, other: ImportReport) -> ImportReport:
        """Return a report holding both reports' entries."""
        return ImportReport(self.loaded + other.loaded, {**self.failed, **other.failed})


def import_builtins(modules: tuple[str, ...] = BUILTIN_MODULES) -> ImportReport:
    """Import glmkit's own component modules; failures are collected, not raised."""
    report = ImportReport()
    for module in modules:
        try:
            importlib.import_module(module)
            report.loaded.append(module)
        except ModuleNotFoundError as exc:
            if exc.name and (exc.name == module or module.startswith(exc.name + ".")):
                continue  # that part of glmkit does not exist in this build
            report.failed[module] = f"{type(exc).__name__}: {exc}"
        except Exception as exc:
            report.failed[module] = f"{type(exc).__name__}: {exc}"
    return report


_PLUGIN_REPORT: ImportReport | None = None


def load_plugins(*, force: bool = False) -> ImportReport:
    """Import every ``glmkit.plugins`` entry point once.

    Each failing plugin is recorded under ``"<entry name> (<distribution> <version>): <target>"``
    with its exception, and the remaining plugins still load. Set ``GLMKIT_DISABLE_PLUGIN_AUTOLOAD=1``
    to skip discovery.
    """
    global _PLUGIN_REPORT
    if _PLUGIN_REPORT is not None and not force:
        return _PLUGIN_REPORT
    report = ImportReport()
    if os.environ.get(DISABLE_AUTOLOAD_ENV, "") not in ("", "0"):
        _PLUGIN_REPORT = report
        return report
    seen: set[tuple[str, str]] = set()
    for ep in entry_points(group=PLUGIN_GROUP):
        if (ep.name, ep.value) in seen:  # editable installs can list an entry point twice
            continue
        seen.add((ep.name, ep.value))
        dist = getattr(ep, "dist", None)
        label = f"{ep.name} ({dist.name} {dist.version})" if dist is not None else ep.name
        try:
            ep.load()
            report.loaded.append(label)
        except Exception as exc:
            last = traceback.format_exception_only(type(exc), exc)[-1].strip()
            report.failed[f"{label}: {ep.value}"] = last
    _PLUGIN_REPORT = report
    return report


def import_all() -> ImportReport:
    """Import glmkit's component modules, then the plugins; returns the combined report."""
    return import_builtins().merge(load_plugins())
