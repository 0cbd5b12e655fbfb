"""A1111's `modules.torch_utils`."""

from __future__ import annotations

import torch

from webui import compat


def get_param(model) -> torch.nn.Parameter:
    """The first parameter of a module (or of a wrapper holding one as `.model`): its device and dtype."""
    if hasattr(model, "model") and hasattr(model.model, "parameters"):
        model = model.model
    for param in model.parameters():
        return param
    raise ValueError("the model has no parameters")


def float64(tensor: torch.Tensor) -> torch.dtype:
    """float64 where the device has it (Apple's MPS and some XPUs do not)."""
    return torch.float32 if tensor.device.type in ("mps", "xpu") else torch.float64


__getattr__ = compat.report_missing_names(__name__)
