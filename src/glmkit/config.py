"""Reading component specs: one configuration language for recipes and for files read in Python.

Every component configured from a file is a ``{"class_path": ..., "init_args": {...}}`` mapping,
the language of LightningCLI recipes. Before a recipe reaches the parser, :func:`prepare` walks it
and does two things, so that ``--print_config`` prints exactly what runs:

- **names**: a ``class_path`` may be a dotted import path, a name that ``glmkit list`` shows
  (``cogvit``, ``mim_distill``) or a registered class's short name (``CogViT``); the latter two
  become the full import path. A name that resolves nowhere is answered with the closest
  registered names of the kind that key expects (read from the owning class's signature);
- **presets**: ``init_args: {preset: large, depth: 12}`` on a class with a ``PRESETS`` table
  becomes the preset's values with the given ones on top, so every value is printed.

:func:`instantiate` builds such a spec in Python (benchmark metrics, verifiers, loss terms read
from YAML or JSON files outside the CLI), with the same names and presets.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import typing
from collections.abc import Mapping, Sequence
from typing import Any

from glmkit.registry import Registry, all_registries, import_all, registry

#: Where each top-level section of a LightningCLI recipe points, by expected kind.
TOP_LEVEL_KINDS: dict[str, tuple[str, ...]] = {"model": ("stages",), "data": ("datamodules",)}


class ConfigError(ValueError):
    """A recipe or spec names something that does not exist; the message says where and why."""


#: Registered objects by the import path a spec was resolved to: a class defined where no import
#: path reaches it (inside a function, in a plugin's exec'd module) is still built from its registry.
_RESOLVED: dict[str, Any] = {}


def import_object(path: str) -> Any:
    """The object at a dotted import path ``package.module.Name`` (attributes may nest)."""
    if path in _RESOLVED:
        return _RESOLVED[path]
    module_name, _, attr = path.rpartition(".")
    parts = [attr]
    while module_name:
        try:
            obj: Any = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and not module_name.startswith(exc.name) and exc.name != module_name:
                raise  # the module exists but one of its own imports is missing
            module_name, _, head = module_name.rpartition(".")
            parts.insert(0, head)
            continue
        for part in parts:
            obj = getattr(obj, part)
        return obj
    raise ImportError(f"no module in {path!r} can be imported")


def _registered(kinds: Sequence[str] | None) -> list[tuple[str, Registry[Any]]]:
    registries = all_registries()
    if kinds:
        return [(k, registries[k]) for k in kinds if k in registries]
    return list(registries.items())


def _full_path(obj: Any) -> str:
    return f"{obj.__module__}.{obj.__qualname__}"


def find_registered(name: str, kinds: Sequence[str] | None = None) -> list[tuple[str, str, Any]]:
    """``(kind, registered name, object)`` entries named ``name`` or whose class is named ``name``."""
    found = []
    for kind, reg in _registered(kinds):
        for key, obj in reg.items():
            if name in (key, getattr(obj, "__name__", None)):
                found.append((kind, key, obj))
    return found


def closest_names(name: str, kinds: Sequence[str] | None = None, n: int = 3) -> list[str]:
    """The registered names (and class names) closest to ``name``, as ``'name' (kind: path)``."""
    candidates: dict[str, str] = {}
    for kind, reg in _registered(kinds):
        for key, obj in reg.items():
            label = f"{kind}: {_full_path(obj)}" if hasattr(obj, "__qualname__") else kind
            candidates.setdefault(key, label)
            if getattr(obj, "__name__", None):
                candidates.setdefault(obj.__name__, label)
    short = name.rpartition(".")[2]
    close = difflib.get_close_matches(short, list(candidates), n=n, cutoff=0.5)
    lowered = {c.lower(): c for c in candidates}
    if short.lower() in lowered and lowered[short.lower()] not in close:
        close.insert(0, lowered[short.lower()])
    return [f"{c!r} ({candidates[c]})" for c in close[:n]]


def resolve_class_path(name: str, kinds: Sequence[str] | None = None, where: str = "class_path") -> str:
    """The full import path of ``name``: a dotted path, a registered name or a class's short name.

    Raises:
        ConfigError: ``name`` resolves nowhere; the message names ``where`` and the closest
            registered names of the expected ``kinds`` (all kinds when they have none close).
    """
    if "." in name:
        try:
            import_object(name)
            return name
        except (ImportError, AttributeError) as exc:
            problem = f"cannot import {name!r} ({type(exc).__name__}: {exc})"
    else:
        found = find_registered(name, kinds) or find_registered(name)
        objects = {_full_path(obj): obj for _, _, obj in found if hasattr(obj, "__qualname__")}
        paths = sorted(objects)
        if len(paths) == 1:
            _RESOLVED[paths[0]] = objects[paths[0]]
            return paths[0]
        if len(paths) > 1:
            raise ConfigError(
                f"{where}: {name!r} is ambiguous; it names {', '.join(paths)}. Write the full import path."
            )
        problem = f"{name!r} is not a registered name or class"
    close = closest_names(name, kinds) or closest_names(name)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    expected = f" (expected a component of kind {' or '.join(kinds)})" if kinds else ""
    raise ConfigError(f"{where}: {problem}{expected}.{hint} `glmkit list` shows every registered name.")


def _annotation_classes(annotation: Any) -> list[type]:
    """Classes mentioned in a type annotation (``dict[str, Teacher] | None`` -> [str, Teacher])."""
    if isinstance(annotation, type) and not typing.get_args(annotation):
        return [annotation]
    classes: list[type] = []
    origin = typing.get_origin(annotation)
    if isinstance(origin, type) and origin not in (dict, list, tuple, set, frozenset):
        classes.append(origin)
    for arg in typing.get_args(annotation):
        classes.extend(_annotation_classes(arg))
    return classes


def expected_kinds(owner: type | None, key: str) -> tuple[str, ...]:
    """Registry kinds whose base fits parameter ``key`` of ``owner.__init__`` (empty: unknown)."""
    if owner is None:
        return ()
    try:
        hints = typing.get_type_hints(owner.__init__)
    except Exception:  # unresolvable forward references: no hint, all kinds are searched
        return ()
    classes = [c for c in _annotation_classes(hints.get(key)) if c not in (str, int, float, bool, type(None))]
    bases = {kind: reg.base for kind, reg in all_registries().items() if reg.base is not None}
    exact = tuple(kind for kind, base in bases.items() if base in classes)
    if exact:  # the annotation names a kind's base (``VisionEncoder | nn.Module``): that kind alone
        return exact
    kinds = []
    for kind, base in bases.items():
        if getattr(base, "_is_protocol", False):
            continue  # a protocol matches by structure, which says nothing about the kind expected
        if any(isinstance(cls, type) and issubclass(base, cls) for cls in classes):
            kinds.append(kind)
    return tuple(kinds)


def expand_preset(cls: Any, init_args: Mapping[str, Any], where: str) -> dict[str, Any]:
    """``init_args`` with a ``preset`` key replaced by ``cls.PRESETS[preset]`` under the given values."""
    args = dict(init_args)
    presets = getattr(cls, "PRESETS", None)
    if "preset" not in args or not isinstance(presets, Mapping):
        return args
    if "preset" in _parameters(cls):
        return args  # the class takes `preset` itself
    name = args.pop("preset")
    if name not in presets:
        close = difflib.get_close_matches(str(name), list(presets), n=2)
        hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
        raise ConfigError(
            f"{where}: unknown {cls.__name__} preset {name!r}.{hint} Presets: {', '.join(presets)}"
        )
    return {**presets[name], **args}


def _parameters(cls: Any) -> Mapping[str, inspect.Parameter]:
    try:
        return inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return {}


def _is_spec(node: Any) -> bool:
    return isinstance(node, Mapping) and "class_path" in node


def prepare(node: Any, where: str = "", kinds: Sequence[str] = (), owner: type | None = None) -> Any:
    """A copy of a recipe (sub)tree with every ``class_path`` resolved and every preset expanded.

    ``where`` is the dotted key of ``node`` (for messages); ``kinds`` are the registry kinds that
    a spec at this place is expected to be; ``owner`` is the class whose argument ``node`` is.
    """
    if _is_spec(node):
        class_path = node["class_path"]
        if not isinstance(class_path, str):
            raise ConfigError(f"{where}.class_path must be a string, got {class_path!r}")
        path = resolve_class_path(class_path, kinds, f"{where}.class_path" if where else "class_path")
        cls = import_object(path)
        init_args = node.get("init_args") or {}
        if not isinstance(init_args, Mapping):
            raise ConfigError(f"{where}.init_args must be a mapping, got {type(init_args).__name__}")
        init_args = expand_preset(cls, init_args, f"{where}.init_args")
        prepared_args = {
            key: prepare(value, f"{where}.init_args.{key}", expected_kinds(cls, key), cls)
            for key, value in init_args.items()
        }
        out = {k: v for k, v in node.items() if k not in ("class_path", "init_args")}
        out["class_path"] = path
        if prepared_args or "init_args" in node:
            out["init_args"] = prepared_args
        return out
    if isinstance(node, Mapping):
        return {
            key: prepare(
                value, f"{where}.{key}" if where else str(key), _child_kinds(where, key, kinds), owner
            )
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [prepare(value, f"{where}[{i}]", kinds, owner) for i, value in enumerate(node)]
    return node


def _child_kinds(where: str, key: Any, kinds: Sequence[str]) -> tuple[str, ...]:
    if not where and key in TOP_LEVEL_KINDS:
        return TOP_LEVEL_KINDS[key]
    return tuple(kinds)  # a dict of components (teachers: {name: spec}) keeps its kinds


def instantiate(spec: Any, kind: str | Sequence[str] | None = None, where: str = "spec") -> Any:
    """Build a component from ``{"class_path": ..., "init_args": {...}}`` (or a bare class_path).

    ``class_path`` takes what recipes take (import path, registered name, short class name) and
    nested specs inside ``init_args`` are built first. ``kind`` narrows name lookup and typo hints.
    """
    kinds = (kind,) if isinstance(kind, str) else tuple(kind or ())
    if isinstance(spec, str):
        spec = {"class_path": spec}
    if not _is_spec(spec):
        raise ConfigError(
            f"{where}: expected a component spec {{class_path: ..., init_args: {{...}}}}, got {spec!r}"
        )
    if kinds:  # only that kind's built-ins and the plugins: `glmkit eval` stays Lightning-free
        for name in kinds:
            registry(name).discover()
    else:
        import_all()
    return _build(prepare(spec, where, kinds))


def prepare_recipe(recipe: Mapping[str, Any]) -> dict[str, Any]:
    """A whole LightningCLI recipe with every name resolved and every preset expanded (the CLI's
    pass before parsing); every glmkit module and plugin is imported first, so every name is known."""
    import_all()
    return prepare(recipe)


def _build(node: Any) -> Any:
    if _is_spec(node):
        cls = import_object(node["class_path"])
        args = {key: _build(value) for key, value in (node.get("init_args") or {}).items()}
        return cls(**args)
    if isinstance(node, Mapping):
        return {key: _build(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_build(value) for value in node]
    return node
