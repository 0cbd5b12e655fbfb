"""Latents <-> pixels: the VAE, and a cheap approximation for live previews."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from ..models.model import SDModel

# Linear latent -> RGB factors (rows: latent channels; columns: R, G, B): cheap previews
# without running the VAE, one set per latent space.
_PREVIEW_FACTORS = {
    "sd": [[0.298, 0.207, 0.208], [0.187, 0.286, 0.173], [-0.158, 0.189, 0.264], [-0.184, -0.271, -0.473]],
    "sdxl": [[0.3448, 0.4168, 0.4395], [-0.1953, -0.0290, 0.0250], [0.1074, 0.0886, -0.0163], [-0.3730, -0.2499, -0.2088]],
}


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
    scaled = (latents / vae.config.scaling_factor).to(vae.dtype)
    if tiled:
        vae.enable_tiling()
    try:
        pixels = torch.cat([vae.decode(scaled[i : i + 1]).sample for i in range(scaled.shape[0])])
    finally:
        if tiled:
            vae.disable_tiling()
    if nan_check:
        check_for_nans(pixels, "VAE")
    return to_pil(pixels)


@torch.inference_mode()
def encode_pixels(model: SDModel, pixels: torch.Tensor) -> torch.Tensor:
    """[B, 3, H, W] in [-1, 1] -> latents (the distribution's mean, scaled), in float32."""
    vae = model.vae
    latents = vae.encode(pixels.to(vae.device, vae.dtype)).latent_dist.mean
    return latents.float() * vae.config.scaling_factor


def latent_preview(model: SDModel, latents: torch.Tensor) -> Image.Image:
    """A small preview of the first image of a batch, from the latents alone."""
    factors = torch.tensor(_PREVIEW_FACTORS["sdxl" if model.family.name == "sdxl" else "sd"], device=latents.device)
    rgb = torch.einsum("chw,cr->rhw", latents[0].float(), factors)
    return to_pil(rgb.unsqueeze(0))[0]
