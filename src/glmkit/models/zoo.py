"""Save and load a module on its own: a directory with ``config.json`` and ``model.safetensors``.

An export carries what rebuilds the module without any training code: the importable
``class_path``, the ``init_args`` it was built with, and the glmkit version that wrote it. Stage 2
starts from stage 1's encoder export and the VLM from stage 2's, by path or by hub id.

``config.json``::

    {"class_path": "glmkit.models.encoders.cogvit.CogViT",
     "init_args": {"embed_dim": 768, ...},
     "glmkit_version": "0.1.0"}

Weights are written with ``safetensors.torch.save_model`` (handles tied tensors) and loaded
strictly: a missing or unexpected key is an error.
"""

from __future__ import annotations

import importlib
import json
import re
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_model, save_model
from torch import nn

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
HUB_PREFIX = "hf-hub:"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def glmkit_version() -> str:
    """The installed glmkit version, or ``"unknown"`` when running from an uninstalled tree."""
    try:
        return version("glmkit")
    except PackageNotFoundError:
        return "unknown"


def class_path_of(obj: type | object) -> str:
    """``module.QualName`` of a class (or of an instance's class)."""
    cls = obj if isinstance(obj, type) else type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def save_pretrained(module: nn.Module, directory: str | Path, init_args: dict[str, Any]) -> Path:
    """Write ``module`` to ``directory`` as ``config.json`` + ``model.safetensors``; returns the directory.

    Args:
        module: the module; its class must be importable by ``class_path`` (no local classes).
        directory: created if missing; existing export files are overwritten.
        init_args: JSON-serialisable keyword arguments that rebuild ``module``'s architecture.
    """
    directory = Path(directory)
    class_path = class_path_of(module)
    if "<locals>" in class_path:
        raise ValueError(f"cannot export {class_path}: a class defined inside a function is not importable")
    for key, value in init_args.items():
        try:
            json.dumps(value)
        except TypeError as exc:
            raise TypeError(
                f"init_args[{key!r}] = {value!r} is not JSON-serialisable, so {directory / CONFIG_NAME} "
                "could not record it"
            ) from exc
    config = {"class_path": class_path, "init_args": dict(init_args), "glmkit_version": glmkit_version()}
    directory.mkdir(parents=True, exist_ok=True)
    (directory / CONFIG_NAME).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    save_model(module, str(directory / WEIGHTS_NAME))
    return directory


def resolve_pretrained_dir(path_or_hub_id: str | Path, revision: str | None = None) -> Path:
    """A local directory holding an export: the path itself, or a Hugging Face hub snapshot.

    ``hf-hub:org/name`` always means the hub; ``org/name`` means the hub only when no such local
    path exists.
    """
    text = str(path_or_hub_id)
    if text.startswith(HUB_PREFIX):
        return _download(text[len(HUB_PREFIX) :], revision)
    local = Path(text).expanduser()
    if local.exists():
        if not local.is_dir():
            raise NotADirectoryError(
                f"{local} is a file; a pretrained export is a directory with {CONFIG_NAME} and {WEIGHTS_NAME}"
            )
        return local
    if isinstance(path_or_hub_id, str) and _HUB_ID.match(text):
        return _download(text, revision, missing_local=local.absolute())
    raise FileNotFoundError(
        f"pretrained directory {local} does not exist (and {text!r} is not a hub id of the form 'org/name')"
    )


def _download(repo_id: str, revision: str | None, missing_local: Path | None = None) -> Path:
    from huggingface_hub import snapshot_download  # network access only on this path

    try:
        path = snapshot_download(repo_id, revision=revision, allow_patterns=[CONFIG_NAME, WEIGHTS_NAME])
    except Exception as exc:  # offline, unknown repo, gated, ...: one message naming the id
        # 'runs/encodr' looks like a hub id too: say that no such local directory exists either
        local_note = f" (no local directory {missing_local} exists either)" if missing_local else ""
        raise OSError(
            f"could not download pretrained export {repo_id!r} from the Hugging Face hub{local_note}: {exc}"
        ) from exc
    return Path(path)


def read_config(directory: str | Path) -> dict[str, Any]:
    """Read and validate ``directory/config.json``."""
    path = Path(directory) / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found; a pretrained export needs {CONFIG_NAME} and {WEIGHTS_NAME}"
        )
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(config, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(config).__name__}")
    if not isinstance(config.get("class_path"), str):
        raise ValueError(f"{path}: key 'class_path' must be a string like 'glmkit.models.encoders.CogViT'")
    if not isinstance(config.get("init_args", {}), dict):
        raise ValueError(f"{path}: key 'init_args' must be a JSON object of keyword arguments")
    return config


def import_class(class_path: str, source: str | Path = "<config>") -> type:
    """Import ``module.QualName``; ``source`` names the file that asked for it in errors."""
    module_name, _, name = class_path.rpartition(".")
    if not module_name:
        raise ValueError(f"{source}: class_path {class_path!r} is not of the form 'package.module.Class'")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in name.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise ImportError(f"{source}: cannot import class_path {class_path!r}: {exc}") from exc
    if not (isinstance(obj, type) and issubclass(obj, nn.Module)):
        raise TypeError(f"{source}: class_path {class_path!r} is not a torch.nn.Module subclass")
    return obj


def load_pretrained(
    path_or_hub_id: str | Path,
    *,
    expected_class: type | None = None,
    revision: str | None = None,
    device: str | torch.device = "cpu",
    **overrides: Any,
) -> nn.Module:
    """Rebuild a module from an export made by :func:`save_pretrained` and load its weights strictly.

    Args:
        path_or_hub_id: a local directory, ``org/name`` or ``hf-hub:org/name``.
        expected_class: when given, the export's class must be this class or a subclass.
        revision: hub revision (branch, tag or commit); ignored for local paths.
        device: where the weights are loaded.
        overrides: init args replacing the recorded ones (only those that do not change parameter
            shapes, e.g. an attention backend; others make the strict load fail).
    """
    directory = resolve_pretrained_dir(path_or_hub_id, revision)
    config = read_config(directory)
    config_path = directory / CONFIG_NAME
    cls = import_class(config["class_path"], config_path)
    if expected_class is not None and not issubclass(cls, expected_class):
        raise TypeError(
            f"{config_path} holds a {config['class_path']}, not a {class_path_of(expected_class)}; "
            f"load it with glmkit.models.zoo.load_pretrained or {cls.__name__}.from_pretrained"
        )
    weights = directory / WEIGHTS_NAME
    if not weights.is_file():
        raise FileNotFoundError(f"{weights} not found; the export in {directory} has no weights")
    init_args = {**config.get("init_args", {}), **overrides}
    try:
        module = cls(**init_args)
    except TypeError as exc:
        raise TypeError(f"{config_path}: init_args do not fit {config['class_path']}: {exc}") from exc
    try:
        load_model(module, str(weights), strict=True, device=str(device))
    except RuntimeError as exc:
        raise RuntimeError(f"{weights} does not match {config['class_path']}({init_args}): {exc}") from exc
    return module.to(device)


__all__ = [
    "CONFIG_NAME",
    "WEIGHTS_NAME",
    "class_path_of",
    "import_class",
    "load_pretrained",
    "read_config",
    "resolve_pretrained_dir",
    "save_pretrained",
]
