"""Numeric precision of training and decoding: float32, or bfloat16 matrix products.

``bf16`` keeps weights and optimizer state in float32 and runs matrix products in
bfloat16 (``torch.autocast``) during training; decoding uses a bfloat16 copy of the
model, so weights are cast once rather than at every call. Log-probabilities and
beam scores are always float32. ``auto`` picks bf16 on CUDA devices that support
it and on CPUs with native bfloat16 instructions (several times faster there),
float32 elsewhere.
"""
from __future__ import annotations

import contextlib
import copy

import torch
from torch import nn


def autocast(device: torch.device | str, precision: str = "auto") -> contextlib.AbstractContextManager:
    """Context for a training step: bfloat16 matrix products with float32 weights, or nothing."""
    device = torch.device(device)
    if resolve_precision(device, precision) == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def resolve_precision(device: torch.device | str, precision: str = "auto") -> str:
    """``fp32`` or ``bf16``: what ``precision`` (``auto``, ``fp32``, ``bf16``) means on ``device``."""
    if precision == "auto":
        return "bf16" if bf16_is_fast(torch.device(device)) else "fp32"
    return precision


def inference_copy(model: nn.Module, precision: str = "auto") -> nn.Module:
    """The model in eval mode for decoding: itself in float32, or a bfloat16 copy (weights cast once)."""
    device = next(model.parameters()).device
    if resolve_precision(device, precision) == "fp32":
        return model.eval()
    return copy.deepcopy(model).to(torch.bfloat16).eval()


def bf16_is_fast(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 matrix products natively."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
        return bool(check()) if check is not None else False
    return False
