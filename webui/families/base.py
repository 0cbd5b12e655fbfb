"""The model-family interface: everything that differs between SD1, SD2, SDXL, SD3, Flux, ...

The generation code is written once against `ModelFamily`; a family module subclasses it and is
registered in `webui/families/__init__.py`. What a family decides:
- recognising its weights (a diffusers folder's `model_index.json`, or a single file's keys) and loading them;
- turning texts into conditioning (`text_encoders`: which encoders, read how, combined how);
- the denoiser call (`predict`: the network's output turned into a denoised estimate);
- the noise schedule (discrete alphas, or flow sigmas with a shift) and how noise is mixed into a latent;
- the latent format (channels, VAE scale and shift, preview factors);
- guidance (CFG, or a distilled guidance value fed to the network) and extra conditioning (SDXL's sizes);
- which samplers make sense, and the generation defaults.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import torch

if TYPE_CHECKING:
    from webui.models.model import SDModel


class UnsupportedCheckpoint(ValueError):
    """The weights are readable but are not a model of a family we can load."""


@dataclass(frozen=True)
class Defaults:
    """What a user who leaves a field out gets on this family (A1111's own defaults where they fit)."""

    steps: int = 20
    cfg_scale: float = 7.0
    sampler_name: str = "DPM++ 2M"
    distilled_cfg_scale: float | None = None  # families with distilled guidance only


def aliases_by_original_name(network: torch.nn.Module, names: list[tuple[str, object]]) -> dict:
    """LoRA lookup entries from (original module name, diffusers module name or names): dots as underscores,
    as Kohya writes them -> the module, or the tuple of modules one fused original layer became."""
    def module(name):
        return network.get_submodule(name)

    return {old.replace(".", "_"): tuple(module(n) for n in new) if isinstance(new, tuple) else module(new)
            for old, new in names}


class ModelFamily:
    name = "base"  # short id: "sd1", "sdxl", "flux", ...; stored in infotext-free places (API, logs)
    label = "base"  # shown to users
    default_size = 512  # native resolution, pixels per side
    size_multiple = 8  # width and height must be multiples of this (VAE factor x patch size)
    flow = False  # flow matching (velocity on sigmas in [0, 1]) rather than DDPM noise prediction
    distilled_guidance = False  # the network takes a guidance value ("Distilled CFG Scale")
    zero_empty_negative = False  # an empty negative prompt conditions on zeros (SDXL, as A1111)
    ays_sdxl = False  # "Align Your Steps" uses NVIDIA's SDXL table rather than the SD 1.x one
    variable_text = False  # texts of several lengths are not padded for it: predict gets extra["text_lengths"]
    defaults = Defaults()
    # Sampler names offered (UI order is the registry's); None offers every sampler.
    samplers: tuple[str, ...] | None = None
    # Linear latent -> RGB factors for cheap live previews (rows: latent channels); None: decode with the VAE.
    preview_factors: tuple[tuple[float, float, float], ...] | None = None

    def __repr__(self) -> str:
        return f"<family {self.name}>"

    # ---- recognising and loading ------------------------------------------------------------------------
    def claims_folder(self, index: Mapping[str, Any], text_config: dict | None = None) -> bool:
        """Whether a diffusers folder with this `model_index.json` is of this family."""
        return False

    def claims_weights(self, keys: set[str]) -> bool:
        """Whether a single file with these tensor keys is of this family."""
        return False

    def load_folder(self, folder: Path, device: torch.device, dtype: torch.dtype, vae_dtype: torch.dtype) -> dict:
        """The parts of a diffusers folder, as SDModel keyword arguments (family, unet, vae, ...)."""
        raise UnsupportedCheckpoint(f"{self.label} diffusers folders cannot be loaded yet")

    def load_single_file(self, state: dict, models_root: Path, dtype: torch.dtype, vae_dtype: torch.dtype) -> dict:
        """The parts of a single-file checkpoint (and of the separate files it needs, found under `models_root`),
        as SDModel keyword arguments."""
        raise UnsupportedCheckpoint(f"{self.label} single files cannot be loaded yet; use its diffusers folder "
                                    "(a folder with model_index.json) in models/Stable-diffusion/")

    # ---- text -> conditioning ---------------------------------------------------------------------------
    def text_encoders(self, model: "SDModel") -> list:
        """The CLIP encoders the prompt encoder runs with A1111's chunking (conditioning.ClipTextEncoder)."""
        return []

    def long_text_encoder(self, model: "SDModel"):
        """A T5/LLM encoder for the token sequence (conditioning_t5.T5TextEncoder), or None."""
        return None

    def combine(self, model: "SDModel", clip_outputs: list, long_hidden: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One group's [N, tokens, C] cross-attention input and [N, P] pooled vector (or None), from each CLIP
        encoder's (hidden, pooled) and the long encoder's hidden states."""
        raise NotImplementedError

    # ---- sampling ---------------------------------------------------------------------------------------
    def noise_schedule(self, model: "SDModel", width: int, height: int):
        """The noise table the samplers and schedulers read (samplers.DiscreteSchedule or FlowSchedule)."""
        raise NotImplementedError

    def extra_conditioning(self, model: "SDModel", width: int, height: int, distilled_cfg_scale: float | None) -> dict:
        """Per-pass inputs the network takes besides text (SDXL's size ids, Flux's guidance value)."""
        return {}

    def predict(self, model: "SDModel", schedule, x: torch.Tensor, sigma: torch.Tensor, crossattn: torch.Tensor,
                pooled: torch.Tensor | None, extra: dict, image_cond: torch.Tensor | None) -> torch.Tensor:
        """The denoised estimate of `x` at noise level `sigma` ([B]) under this conditioning."""
        raise NotImplementedError

    def is_inpainting_model(self, model: "SDModel") -> bool:
        """Whether the network takes the masked image and the mask besides the noisy latents."""
        return False

    def inpaint_conditioning(self, model: "SDModel", masked_latents: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """An inpainting model's extra input at latent size: from the latents of the image with the repainted area
        blanked, and the binary pixel mask [B, 1, H, W] (1: repaint)."""
        raise NotImplementedError

    def noised(self, latent: torch.Tensor, noise: torch.Tensor, sigma) -> torch.Tensor:
        """`latent` with noise mixed in to level `sigma` (img2img's start, the hires pass)."""
        return latent + noise * sigma

    # ---- latents <-> VAE ----------------------------------------------------------------------------------
    def vae_latent_to_model(self, latent: torch.Tensor, vae) -> torch.Tensor:
        shift = getattr(vae.config, "shift_factor", None) or 0.0
        return (latent - shift) * vae.config.scaling_factor

    def model_latent_to_vae(self, latent: torch.Tensor, vae) -> torch.Tensor:
        shift = getattr(vae.config, "shift_factor", None) or 0.0
        return latent / vae.config.scaling_factor + shift

    def lora_aliases(self, network: torch.nn.Module) -> dict:
        """LoRA module names (dots as underscores, as Kohya writes them) of this family's original layout ->
        the module, or a tuple of modules that one original layer was split into; {} when diffusers' names
        are the only ones."""
        return {}

    # ---- what the infotext says ---------------------------------------------------------------------------
    def infotext_params(self, model: "SDModel", width: int, height: int, distilled_cfg_scale: float | None) -> dict:
        """Fields this family adds to the infotext ("Distilled CFG Scale", "Shift")."""
        return {}

    def offers(self, sampler_name: str) -> bool:
        return self.samplers is None or sampler_name in self.samplers
