"""A1111's `modules.devices`: where the model runs, and in which precision."""

from __future__ import annotations

import contextlib

import torch

from webui import compat

cpu = torch.device("cpu")


def _slot():
    models = compat.state().models if compat.bound() else None
    return getattr(models, "slot", None)


def get_optimal_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else cpu


def get_optimal_device_name() -> str:
    return get_optimal_device().type


def __getattr__(name):
    """device, dtype, dtype_vae, dtype_unet: the bound state's choices."""
    if name.startswith("__"):
        raise AttributeError(name)
    slot = _slot()
    if name in ("device", "device_interrogate", "device_gfpgan", "device_esrgan", "device_codeformer"):
        return slot.device if slot is not None else get_optimal_device()
    if name in ("dtype", "dtype_unet", "dtype_inference"):
        return slot.dtype if slot is not None else torch.float32
    if name == "dtype_vae":
        return slot.vae_dtype if slot is not None else torch.float32
    raise compat.missing(__name__, name)


def torch_gc() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.ipc_collect()


def autocast(disable=False):
    return contextlib.nullcontext()


def without_autocast(disable=False):
    return contextlib.nullcontext()


def cond_cast_unet(tensor):
    return tensor


def cond_cast_float(tensor):
    return tensor.float() if hasattr(tensor, "float") else tensor


def randn(seed, shape):
    from webui.generation.rng import randn as ours

    return ours(seed, shape, device=get_optimal_device())


class NansException(Exception):
    pass
