"""The points where outside code (extension scripts) may look at or change a generation.

The generation code calls a `GenerationHooks` object at each point; this base class does
nothing, and webui.extensions subclasses it to run A1111 scripts and callbacks. Keeping the
hooks neutral keeps generation free of any extension machinery.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image


@dataclass
class Batch:
    """The per-image inputs of one batch, which a hook may change before they are used."""

    index: int  # the batch's number within the call (0 .. n_iter - 1)
    prompts: list[str]
    negative_prompts: list[str]
    seeds: list[int]
    subseeds: list[int]
    hr_prompts: list[str]
    hr_negative_prompts: list[str]


@dataclass
class DenoiserCall:
    """One denoiser call before the UNet runs; x, image_cond and sigma may be replaced."""

    x: torch.Tensor
    image_cond: torch.Tensor | None
    sigma: torch.Tensor
    sampling_step: int  # the step being computed, from 0
    total_sampling_steps: int  # steps of this pass
    text_cond: Any  # the batch's cond crossattn tensor (SDXL: {"crossattn", "vector"}); read only
    text_uncond: Any


@dataclass
class ImageSave:
    """An image about to be written: a hook may change the image, the file name or the text chunks."""

    image: Image.Image
    filename: str
    pnginfo: dict  # "parameters" holds the infotext


class GenerationHooks:
    """Every hook point, doing nothing. Methods that return a value return it unchanged here."""

    denoiser_hooks = False  # True: the cfg_* hooks are called on every denoiser call

    def before_batch(self, batch: Batch) -> None:
        """Before the batch's extra-network tags are read: prompts may still change."""

    def after_networks(self, batch: Batch, networks: list) -> None:
        """LoRAs of the batch are active (`networks`: the prompt's tags); conditioning is next."""

    def before_sampling(self, batch: Batch, x: torch.Tensor, noise: torch.Tensor, conds: list, unconds: list) -> None:
        """Before each sampling pass (twice with hires fix)."""

    def before_hires(self, batch: Batch) -> None:
        """Before the hires-fix second pass."""

    def post_sample(self, batch: Batch, latents: torch.Tensor) -> torch.Tensor:
        """After sampling, before decoding."""
        return latents

    def postprocess_batch(self, batch: Batch, images: list[Image.Image]) -> list[Image.Image]:
        """The decoded batch; the images to keep (a hook may change, add or drop images)."""
        return images

    def postprocess_image(self, batch: Batch, index: int, image: Image.Image) -> Image.Image:
        """One image before any paste-back and saving; `index` is its place in the batch."""
        return image

    def after_composite(self, batch: Batch, index: int, image: Image.Image) -> Image.Image:
        """One image after the inpainting paste-back, before saving."""
        return image

    def extra_infotext(self, batch: Batch, index: int) -> dict:
        """More infotext keys for one image."""
        return {}

    def cfg_denoiser(self, call: DenoiserCall) -> None:
        """Before the UNet runs (only with `denoiser_hooks`)."""

    def cfg_denoised(self, x: torch.Tensor, step: int, total: int) -> torch.Tensor:
        """The UNet's outputs (cond rows, then uncond rows) before CFG combines them."""
        return x

    def cfg_after_cfg(self, x: torch.Tensor, step: int, total: int) -> torch.Tensor:
        """The denoised estimate after CFG."""
        return x

    def before_image_saved(self, save: ImageSave) -> None:
        """Before the file is written."""

    def image_saved(self, save: ImageSave) -> None:
        """After the file is written (changes have no effect)."""


NO_HOOKS = GenerationHooks()
