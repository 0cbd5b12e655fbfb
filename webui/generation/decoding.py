"""Latents <-> pixels: the VAE, and a cheap approximation for live previews."""

from __future__ import annotations

import logging

import numpy as np
import torch
from PIL import Image

from ..models.model import SDModel

log = logging.getLogger(__name__)

def to_pil(pixels: torch.Tensor) -> list[Image.Image]:
    """[B, 3, H, W] in [-1, 1] -> PIL images."""
    array = ((pixels.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return [Image.fromarray(np.ascontiguousarray(a)) for a in array]


class NansError(RuntimeError):
    """The UNet or the VAE produced NaNs: the image would be black, so the job fails and says why."""


def check_for_nans(x: torch.Tensor, where: str) -> None:
    if torch.isnan(x).any():
        advice = "--no-half" if where == "UNet" else "--no-half-vae"
        raise NansError(f"The {where} produced NaNs, so the image would be black: half precision is not enough "
                        f"for this model on this device, or its weights are broken. Try {advice}; "
                        "--disable-nan-check turns this check off.")


@torch.inference_mode()
def decode_latents(model: SDModel, latents: torch.Tensor, tiled: bool = False,
                   nan_check: bool = True) -> list[Image.Image]:
    if nan_check:
        check_for_nans(latents, "UNet")
    vae = model.vae
    scaled = model.family.model_latent_to_vae(latents, vae).to(vae.dtype)
    try:
        pixels = _decode(vae, scaled, tiled)
    except torch.OutOfMemoryError:
        if tiled:
            raise
        # A1111's "VAE tiled" fallback: a large image that does not fit decodes tile by tile instead
        log.warning("VAE decode of %dx%d latents ran out of memory; decoding in tiles instead",
                    scaled.shape[-1], scaled.shape[-2])
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        pixels = _decode(vae, scaled, tiled=True)
    if nan_check:
        check_for_nans(pixels, "VAE")
    return to_pil(pixels)


def _decode(vae, scaled: torch.Tensor, tiled: bool) -> torch.Tensor:
    if tiled:
        vae.enable_tiling()
    try:
        return torch.cat([vae.decode(scaled[i : i + 1]).sample for i in range(scaled.shape[0])])
    finally:
        if tiled:
            vae.disable_tiling()


@torch.inference_mode()
def encode_pixels(model: SDModel, pixels: torch.Tensor) -> torch.Tensor:
    """[B, 3, H, W] in [-1, 1] -> latents (the distribution's mean, scaled), in float32."""
    vae = model.vae
    latents = vae.encode(pixels.to(vae.device, vae.dtype)).latent_dist.mean
    return model.family.vae_latent_to_model(latents.float(), vae)


def latent_preview(model: SDModel, latents: torch.Tensor) -> Image.Image:
    """A small preview of the first image of a batch: a linear map of the latent where the family has one,
    else the VAE's decode of it."""
    if model.family.preview_factors is None:
        return decode_latents(model, latents[:1], nan_check=False)[0]
    factors = torch.tensor(model.family.preview_factors, device=latents.device)
    rgb = torch.einsum("chw,cr->rhw", latents[0].float(), factors)
    return to_pil(rgb.unsqueeze(0))[0]
