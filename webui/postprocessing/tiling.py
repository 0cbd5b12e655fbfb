"""Run an image network over overlapping tiles, so a large image fits in memory.

Each tile's output is weighted by a ramp that falls to the tile's edges inside the overlap, and the weighted
outputs are summed and divided by the summed weights: seams blend instead of showing.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from PIL import Image

Network = Callable[[torch.Tensor], torch.Tensor]  # [1, 3, h, w] in 0..1 -> [1, 3, h*scale, w*scale]


def to_tensor(image: Image.Image, device, dtype=torch.float32) -> torch.Tensor:
    array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0).to(device=device, dtype=dtype)


def to_image(tensor: torch.Tensor) -> Image.Image:
    array = tensor.squeeze(0).permute(1, 2, 0).float().clamp(0, 1).cpu().numpy()
    return Image.fromarray((array * 255.0).round().astype(np.uint8))


def _starts(length: int, tile: int, overlap: int) -> list[int]:
    if length <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, length - tile, stride))
    return [*starts, length - tile]


def _ramp(length: int, overlap: int, at_start: bool, at_end: bool) -> torch.Tensor:
    """1 inside, rising linearly over `overlap` pixels at an edge another tile shares."""
    weights = torch.ones(length)
    if overlap > 0:
        rise = torch.linspace(1 / (overlap + 1), overlap / (overlap + 1), overlap)
        if not at_start:
            weights[:overlap] = rise
        if not at_end:
            weights[-overlap:] = rise.flip(0)
    return weights


@torch.inference_mode()
def run_tiled(network: Network, image: torch.Tensor, scale: int, tile: int = 192, overlap: int = 8) -> torch.Tensor:
    """`network` over `image` [1, C, H, W] in tiles of `tile` pixels overlapping by `overlap`; tile 0: whole."""
    _, channels, height, width = image.shape
    if tile <= 0 or (height <= tile and width <= tile):
        return network(image)
    overlap = max(0, min(overlap, tile // 2))
    out = torch.zeros((1, channels, height * scale, width * scale), dtype=torch.float32, device=image.device)
    total = torch.zeros((1, 1, height * scale, width * scale), dtype=torch.float32, device=image.device)
    ys, xs = _starts(height, tile, overlap), _starts(width, tile, overlap)
    for y in ys:
        for x in xs:
            piece = network(image[:, :, y:y + tile, x:x + tile]).float()
            h, w = piece.shape[-2:]
            wy = _ramp(h, overlap * scale, y == ys[0], y == ys[-1]).to(image.device)
            wx = _ramp(w, overlap * scale, x == xs[0], x == xs[-1]).to(image.device)
            weight = (wy[:, None] * wx[None, :])[None, None]
            out[:, :, y * scale:y * scale + h, x * scale:x * scale + w] += piece * weight
            total[:, :, y * scale:y * scale + h, x * scale:x * scale + w] += weight
    return (out / total.clamp_min(1e-8)).to(image.dtype)
