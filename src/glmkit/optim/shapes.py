"""The original names and shapes of parameters, kept through FSDP's flattening.

Lightning's FSDP strategy wraps the model before ``configure_optimizers`` runs. With
``use_orig_params=True`` every parameter is still the same ``nn.Parameter`` object, but its data is
now this rank's slice of a flat buffer: a 1-D tensor (possibly empty), so ``param.ndim`` no longer
says which parameters are matrices. Names change too: nested FSDP units and activation
checkpointing insert ``_fsdp_wrapped_module.`` and ``_checkpoint_wrapped_module.`` into them.

:func:`record_param_shapes` stores each module's own parameter shapes on the module (a plain
attribute, outside the state dict) before wrapping; the module objects survive wrapping, so
:func:`original_shape` can answer for any parameter afterwards, whatever wrappers were added.
Muon routing (:func:`~glmkit.optim.muon_param_groups`) and the Muon update
(:class:`~glmkit.optim.Muon`) read shapes from here. glmkit's ``Stage`` records them in a Lightning
hook that runs before the strategy wraps the model.
"""

from __future__ import annotations

from torch import nn

_SHAPES = "_glmkit_param_shapes"
_WRAPPER_PREFIXES = ("_fsdp_wrapped_module.", "_checkpoint_wrapped_module.", "_orig_mod.")


def clean_param_name(name: str) -> str:
    """``name`` without the segments that wrappers insert (FSDP, activation checkpointing, compile).

    ``encoder.blocks.0._fsdp_wrapped_module.attn.qkv.weight`` -> ``encoder.blocks.0.attn.qkv.weight``.
    """
    for prefix in _WRAPPER_PREFIXES:
        name = name.replace(prefix, "")
    return name


def is_fsdp_flattened(param: nn.Parameter) -> bool:
    """Whether FSDP manages ``param`` (it marks the parameters it flattens, and keeps them as views)."""
    return bool(getattr(param, "_fsdp_flattened", False))


def record_param_shapes(module: nn.Module) -> None:
    """Record the shape of every parameter of ``module``, on the module that owns it.

    Call it once the model is built and before a strategy wraps it (calling it again is harmless:
    the shapes of parameters FSDP has already flattened are kept, the others are refreshed).

    Raises:
        ValueError: a parameter is already flattened by FSDP and its shape was never recorded.
    """
    for owner_name, owner in module.named_modules(remove_duplicate=False):
        known = owner.__dict__.get(_SHAPES, {})
        shapes: dict[str, tuple[int, ...]] = {}
        for name, param in owner.named_parameters(recurse=False):
            if is_fsdp_flattened(param):
                if name not in known:
                    where = clean_param_name(f"{owner_name}.{name}" if owner_name else name)
                    raise ValueError(
                        f"parameter {where!r} is already flattened by FSDP, so its shape can no longer be "
                        "recorded; call glmkit.optim.record_param_shapes(model) before wrapping the model"
                    )
                shapes[name] = known[name]
            else:
                shapes[name] = tuple(param.shape)
        owner.__dict__[_SHAPES] = shapes  # a plain attribute: not a parameter, buffer or submodule


def original_shape(module: nn.Module, name: str) -> tuple[int, ...]:
    """The shape parameter ``name`` of ``module`` had before any strategy flattened it.

    Args:
        module: the module ``name`` is relative to (wrapped or not).
        name: the parameter's qualified name in ``module`` as ``named_parameters`` gives it.

    Raises:
        ValueError: FSDP flattened the parameter and :func:`record_param_shapes` never saw it.
    """
    owner_name, _, leaf = name.rpartition(".")
    owner = module.get_submodule(owner_name) if owner_name else module
    param = owner._parameters[leaf]
    recorded = owner.__dict__.get(_SHAPES, {}).get(leaf)
    if recorded is not None and (tuple(param.shape) == recorded or param.ndim == 1):
        return recorded
    if is_fsdp_flattened(param) and param.ndim == 1:
        raise ValueError(
            f"parameter {clean_param_name(name)!r} was flattened by FSDP before its shape was recorded, so "
            "Muon/AdamW routing cannot tell a matrix from a bias; call glmkit.optim.record_param_shapes(model) "
            "before the model is wrapped (glmkit's Stage does it in configure_model)"
        )
    return tuple(param.shape)  # not flattened: the live shape is the truth (a stale record is ignored)
