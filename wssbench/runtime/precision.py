"""Mixed precision for the network stages (``--precision``): torch autocast around the forward
passes of training, classification and map computation.

``fp32`` is the reference. ``bf16`` runs on CPUs and recent GPUs; ``fp16`` needs CUDA, and
training scales its loss (``torch.amp.GradScaler``) so that small gradients survive. Maps
and scores leave the network as float32 whatever the precision.
"""

from __future__ import annotations

import torch

from wssbench.errors import UsageError

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def check_precision(precision: str, device: str) -> None:
    if precision not in PRECISIONS:
        raise UsageError(f"--precision: expected one of {', '.join(PRECISIONS)}, got '{precision}'")
    if precision == "fp16" and torch.device(device).type != "cuda":
        raise UsageError(f"--precision fp16: needs a CUDA device, not '{device}' (use bf16 on the CPU)")
    if precision == "bf16" and torch.device(device).type == "cuda" and not torch.cuda.is_bf16_supported(including_emulation=False):
        raise UsageError("--precision bf16: this GPU has no native bfloat16 (use fp16)")


def autocast(device: str | torch.device, precision: str) -> torch.autocast:
    """The autocast context of ``precision`` on ``device`` (disabled for fp32)."""
    dtype = PRECISIONS[precision]
    return torch.autocast(torch.device(device).type, dtype=dtype or torch.bfloat16, enabled=dtype is not None)


def grad_scaler(device: str | torch.device, precision: str) -> torch.amp.GradScaler:
    """Loss scaling for fp16 training; a pass-through otherwise."""
    return torch.amp.GradScaler(torch.device(device).type, enabled=precision == "fp16")
