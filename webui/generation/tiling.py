"""Seamless textures (A1111's "Tiling"): every 2D convolution of the denoiser and the VAE pads
circularly for one job, so the image's right edge continues into its left and its bottom into its top.

The change is made on the loaded model's own modules and undone when the job's block ends, however it
ends (an error, an interrupt), so the next job gets the model as it was.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:  # only the annotation: the model's parts are found by name
    from ..models.model import SDModel


def tiled_parts(model: SDModel) -> list[torch.nn.Module]:
    """The parts whose convolutions wrap: the denoiser (UNet, or a transformer family's) and the VAE."""
    parts = [getattr(model, name, None) for name in ("unet", "transformer", "vae")]
    return [part for part in parts if isinstance(part, torch.nn.Module)]


def convolutions(model: SDModel) -> list[torch.nn.Conv2d]:
    """Every Conv2d of the tiled parts, each once (LoRA-wrapped convolutions are Conv2d subclasses too)."""
    seen: dict[int, torch.nn.Conv2d] = {}
    for part in tiled_parts(model):
        for module in part.modules():
            if isinstance(module, torch.nn.Conv2d):
                seen.setdefault(id(module), module)
    return list(seen.values())


@contextmanager
def tiling(model: SDModel, enabled: bool = True) -> Iterator[None]:
    """Circular padding in the model's convolutions inside the block; each one's own mode back after it.
    With `enabled` False nothing is touched (one `with` serves both cases)."""
    if not enabled:
        yield
        return
    previous = [(conv, conv.padding_mode) for conv in convolutions(model)]
    for conv, _ in previous:
        conv.padding_mode = "circular"
    try:
        yield
    finally:
        for conv, mode in previous:
            conv.padding_mode = mode
