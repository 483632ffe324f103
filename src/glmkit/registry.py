"""Registries of components and discovery of plugins.

A :class:`Registry` is a thin, typed index: a decorator records a name and the class or function
it refers to, ``get`` finds it (suggesting the closest name on a typo), ``names`` lists with a
shell-style pattern. Registration happens when the module that defines a component is imported;
nothing is built here.

Each kind is declared once, by the package of its layer, with the base class or protocol its
members share (:func:`declare`); registering an object of another kind fails. Built-ins are found by
walking the ``glmkit`` package, and a lookup that misses loads the plugins first, so
``LOSSES.get("a_plugin_loss")`` works from Python without calling :func:`load_plugins`.

Third-party packages extend glmkit through the entry-point group ``glmkit.plugins``: each entry
points at a module whose import registers components. :func:`load_plugins` imports them all and
reports a failing plugin by name without breaking the others.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import inspect
import os
import pkgutil
import sys
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

    def __init__(self, kind: str, description: str = "", *, base: type | None = None) -> None:
        self.kind = kind
        self.description = description
        self.base = base
        self.package: str | None = None  # set by declare(): where this kind's built-ins live
        self._entries: dict[str, T] = {}

    def check(self, obj: object) -> None:
        """Raise :class:`RegistryError` unless ``obj`` is of this registry's kind (its ``base``).

        A class must subclass ``base`` (for a protocol: define its methods); any other object
        (a function, an instance) must be an instance of it.
        """
        base = self.base
        if base is None:
            return
        if isinstance(obj, type):
            try:
                ok = issubclass(obj, base)
            except TypeError:  # a protocol with data members: check its methods by name
                ok = all(hasattr(obj, name) for name in _protocol_methods(base))
        else:
            ok = isinstance(obj, base)
        if not ok:
            raise RegistryError(
                f"{self.kind}: {_qualname(obj)} is not a {_qualname(base)}; members of "
                f"registry {self.kind!r} ({self.description or 'no description'}) must be"
                + (" subclasses of it" if isinstance(obj, type) else " instances of it")
            )

    def register(self, name: str | None = None, *, override: bool = False) -> Callable[[T], T]:
        """Decorator recording ``obj`` under ``name`` (default: the object's ``__name__``).

        A second registration of the same name raises unless ``override=True``, so two plugins
        cannot silently shadow each other.
        """

        def decorator(obj: T) -> T:
            key = name or getattr(obj, "__name__", None)
            self.check(obj)
            if not key:
                raise RegistryError(f"{self.kind}: cannot infer a name for {obj!r}; pass name=...")
            existing = self._entries.get(key)
            if existing is not None and existing is not obj and not override:
                raise RegistryError(
                    f"{self.kind}: {_qualname(obj)} cannot register the name {key!r}: it is already "
                    f"registered by {_qualname(existing)}; rename one of them, or pass override=True "
                    "to replace it deliberately"
                )
            self._entries[key] = obj
            return obj

        return decorator

    def add(self, name: str, obj: T, *, override: bool = False) -> T:
        """Record ``obj`` under ``name`` without the decorator syntax."""
        return self.register(name, override=override)(obj)

    def get(self, name: str) -> T:
        """Return the component registered as ``name``; unknown names suggest the closest ones.

        A name not yet registered makes this kind's built-in modules and the installed plugins
        load first (once), so a plugin's component is found without calling :func:`load_plugins`.
        """
        if name not in self._entries:
            self.discover()
        try:
            return self._entries[name]
        except KeyError:
            close = difflib.get_close_matches(name, list(self._entries), n=3, cutoff=0.5)
            hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
            known = ", ".join(sorted(self._entries)) or "(none)"
            raise RegistryError(
                f"unknown {self.kind} {name!r}.{hint} Registered {self.kind}: {known}"
            ) from None

    def discover(self) -> ImportReport:
        """Import the modules of this kind's declaring package and the plugins (each once)."""
        report = import_builtins(self.package) if self.package else ImportReport()
        return report.merge(load_plugins())

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


def declare(kind: str, description: str, *, base: type | None = None) -> Registry[Any]:
    """Declare the process-wide registry of ``kind``, once, from the package of its layer.

    ``base`` is the class or protocol every member shares. The declaring module's package is
    remembered: a lookup that misses imports that package's modules (where built-ins register).
    """
    caller = sys._getframe(1).f_globals.get("__name__", "")
    existing = _REGISTRIES.get(kind)
    if existing is not None:
        if existing.package == _package_of(caller):  # the same module imported again (reload)
            return existing
        raise RegistryError(
            f"registry kind {kind!r} is already declared by {existing.package}; import it from there"
        )
    reg: Registry[Any] = Registry(kind, description, base=base)
    reg.package = _package_of(caller)
    _REGISTRIES[kind] = reg
    return reg


def _package_of(module: str) -> str:
    """The package a module belongs to (a package's ``__init__`` is its own package)."""
    mod = sys.modules.get(module)
    if mod is not None and hasattr(mod, "__path__"):
        return module
    return module.rpartition(".")[0] or module


def registry(kind: str) -> Registry[Any]:
    """The declared registry of ``kind``; glmkit's modules are imported to find it if needed."""
    if kind not in _REGISTRIES:
        import_builtins()
    try:
        return _REGISTRIES[kind]
    except KeyError:
        close = difflib.get_close_matches(kind, list(_REGISTRIES), n=2, cutoff=0.6)
        hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
        raise RegistryError(
            f"no registry of kind {kind!r}.{hint} Declared kinds: {', '.join(sorted(_REGISTRIES))}"
        ) from None


def all_registries() -> dict[str, Registry[Any]]:
    """Every registry declared so far, by kind."""
    return dict(sorted(_REGISTRIES.items()))


def _protocol_methods(proto: type) -> list[str]:
    return [
        name
        for name, value in vars(proto).items()
        if not name.startswith("_") and (inspect.isfunction(value) or isinstance(value, property))
    ]


def _qualname(obj: object) -> str:
    module = getattr(obj, "__module__", None)
    name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", repr(obj))
    return f"{module}.{name}" if module else str(name)


# Modules never imported by discovery: entry points that act on import, not components.
_SKIP_MODULES: tuple[str, ...] = ("glmkit.cli", "glmkit.__main__")


@dataclass
class ImportReport:
    """What :func:`import_builtins` / :func:`load_plugins` imported and what failed."""

    loaded: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    #: modules left out because an optional dependency is not installed (module -> missing package)
    optional: dict[str, str] = field(default_factory=dict)

    def merge(self, other: ImportReport) -> ImportReport:
        """Return a report holding both reports' entries."""
        return ImportReport(
            self.loaded + other.loaded,
            {**self.failed, **other.failed},
            {**self.optional, **other.optional},
        )


_WALKED: dict[str, ImportReport] = {}


def import_builtins(package: str = "glmkit") -> ImportReport:
    """Import every module under ``package`` (once), so that its components register.

    Built-ins are found by walking the package, not from a hand-kept list. A module whose optional
    dependency is missing (xformers, mcp, selenium, ...) is recorded in the report, not raised.
    """
    if package in _WALKED:
        return _WALKED[package]
    report = ImportReport()
    try:
        root = importlib.import_module(package)
    except Exception as exc:
        report.failed[package] = f"{type(exc).__name__}: {exc}"
        _WALKED[package] = report
        return report
    report.loaded.append(package)
    paths = getattr(root, "__path__", None)
    if paths is not None:
        for info in pkgutil.walk_packages(paths, prefix=package + ".", onerror=lambda name: None):
            name = info.name
            if name in _SKIP_MODULES or name.rpartition(".")[2].startswith("_"):
                continue
            try:
                importlib.import_module(name)
                report.loaded.append(name)
            except ModuleNotFoundError as exc:
                if exc.name and not exc.name.startswith("glmkit"):
                    report.optional[name] = exc.name  # an optional dependency, not a defect
                else:
                    report.failed[name] = f"{type(exc).__name__}: {exc}"
            except Exception as exc:
                report.failed[name] = f"{type(exc).__name__}: {exc}"
    _WALKED[package] = report
    return report


_PLUGIN_REPORT: ImportReport | None = None


def autoload_disabled() -> bool:
    """Whether ``GLMKIT_DISABLE_PLUGIN_AUTOLOAD`` is set (to anything but empty or ``0``)."""
    return os.environ.get(DISABLE_AUTOLOAD_ENV, "") not in ("", "0")


def installed_plugins() -> list[str]:
    """``"<entry name> (<distribution> <version>): <target>"`` of every installed plugin, without
    importing any of them."""
    seen: dict[tuple[str, str], str] = {}
    for ep in entry_points(group=PLUGIN_GROUP):
        dist = getattr(ep, "dist", None)
        label = f"{ep.name} ({dist.name} {dist.version})" if dist is not None else ep.name
        seen.setdefault((ep.name, ep.value), f"{label}: {ep.value}")
    return list(seen.values())


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
    if autoload_disabled():
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
