"""Upscalers for the hires fix: latent interpolation modes and a registry of pixel upscalers.

Model-based upscalers (ESRGAN and the like) and extensions add themselves with
`register_upscaler`; the hires fix and the API list whatever is registered.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from PIL import Image

# A1111's latent upscale modes: label -> (torch interpolation mode, antialias)
LATENT_UPSCALE_MODES: dict[str, tuple[str, bool]] = {
    "Latent": ("bilinear", False),
    "Latent (antialiased)": ("bilinear", True),
    "Latent (bicubic)": ("bicubic", False),
    "Latent (bicubic antialiased)": ("bicubic", True),
    "Latent (nearest)": ("nearest", False),
    "Latent (nearest-exact)": ("nearest-exact", False),
}


def upscale_latents(latents: torch.Tensor, mode_label: str, height: int, width: int) -> torch.Tensor:
    """Interpolate latents [B, C, h, w] to [B, C, height, width] with one of A1111's modes."""
    mode, antialias = LATENT_UPSCALE_MODES[mode_label]
    return F.interpolate(latents, size=(height, width), mode=mode, antialias=antialias)


@dataclass(frozen=True)
class Upscaler:
    """A pixel upscaler: `upscale(image, width, height)` returns the image at that size."""

    name: str
    upscale: Callable[[Image.Image, int, int], Image.Image]


_UPSCALERS: dict[str, Upscaler] = {}


def register_upscaler(upscaler: Upscaler) -> None:
    _UPSCALERS[upscaler.name.lower()] = upscaler


def unregister_upscaler(name: str) -> None:
    """Drop a registered upscaler (a model file that is gone); the built-in ones are never dropped."""
    if name.lower() not in ("none", "lanczos", "nearest"):
        _UPSCALERS.pop(name.lower(), None)


def find_upscaler(name: str) -> Upscaler:
    found = _UPSCALERS.get(name.lower())
    if found is None:
        raise ValueError(f"unknown upscaler {name!r}; available: {', '.join(upscaler_names())}")
    return found


def upscaler_names() -> list[str]:
    """Every upscaler the hires fix accepts: latent modes first, then pixel upscalers."""
    return [*LATENT_UPSCALE_MODES, *(u.name for u in _UPSCALERS.values())]


def _resampling(method: Image.Resampling) -> Callable[[Image.Image, int, int], Image.Image]:
    return lambda image, width, height: image.resize((width, height), resample=method)


# A1111's built-in non-model upscalers.
register_upscaler(Upscaler("None", _resampling(Image.Resampling.LANCZOS)))
register_upscaler(Upscaler("Lanczos", _resampling(Image.Resampling.LANCZOS)))
register_upscaler(Upscaler("Nearest", _resampling(Image.Resampling.NEAREST)))
