"""The denoiser the samplers call: UNet as a k-diffusion denoiser, plus A1111's CFG.

Samplers call `CFGDenoiser(x, sigma)` and get the guided x0 estimate back. Each call
looks the conditioning for the current call number up in the prompt schedules (a swap
costs a list lookup), runs the UNet on conds and unconds, and combines AND parts as A1111
does: uncond + sum(weight * cfg_scale * (cond - uncond)).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from ..models.model import SDModel
from .conditioning import Conditioning
from .prompt_conditioning import PromptConditioning


class Interrupted(Exception):
    """The job's owner pressed Interrupt: stop now, keep nothing of this batch."""


class Skipped(Exception):
    """The job's owner pressed Skip: stop this batch, go on with the next."""


@dataclass
class JobControl:
    """Flags checked before every denoiser call, and a hook called after each step."""

    interrupted: bool = False
    skipped: bool = False
    on_step: Callable[[dict], None] | None = field(default=None, repr=False)

    def check(self) -> None:
        if self.interrupted:
            raise Interrupted()
        if self.skipped:
            self.skipped = False
            raise Skipped()


class ModelDenoiser:
    """The UNet seen from k-diffusion: (x, sigma) -> denoised, for eps or v models."""

    def __init__(self, model: SDModel, sigma_to_t: Callable[[torch.Tensor], torch.Tensor]):
        self.model = model
        self.sigma_to_t = sigma_to_t
        self.v_prediction = model.prediction_type == "v_prediction"

    def __call__(self, x, sigma, crossattn, added_cond=None, image_cond=None) -> torch.Tensor:
        sigma = sigma.to(x.dtype).view(-1, 1, 1, 1)
        scale_in = (sigma**2 + 1) ** -0.5
        unet_in = x * scale_in
        if image_cond is not None:  # inpainting models take the mask and masked image too
            unet_in = torch.cat([unet_in, image_cond], dim=1)
        t = self.sigma_to_t(sigma.flatten())
        out = self.model.unet(
            unet_in.to(self.model.dtype), t, encoder_hidden_states=crossattn, added_cond_kwargs=added_cond
        ).sample.to(x.dtype)
        if self.v_prediction:
            return x * (sigma**2 + 1) ** -1 - out * sigma * scale_in
        return x - out * sigma


def stack_padded(crossattns: list[torch.Tensor]) -> torch.Tensor:
    """Stack [T_i, C] tensors, padding the shorter ones by repeating their last token
    vector, as A1111 does for AND parts and batches of different lengths."""
    longest = max(c.shape[0] for c in crossattns)
    padded = [
        c if c.shape[0] == longest else torch.cat([c, c[-1:].expand(longest - c.shape[0], -1)]) for c in crossattns
    ]
    return torch.stack(padded)


class CFGDenoiser:
    def __init__(
        self,
        denoiser: ModelDenoiser,
        conds: list[PromptConditioning],
        unconds: list[PromptConditioning],
        cfg_scale: float,
        *,
        time_ids: torch.Tensor | None = None,
        image_cond: torch.Tensor | None = None,
        control: JobControl | None = None,
    ):
        self.denoiser = denoiser
        self.conds = conds
        self.unconds = unconds
        self.cfg_scale = cfg_scale
        self.time_ids = time_ids  # SDXL: [6] size and crop conditioning
        self.image_cond = image_cond  # [B, 5, h, w] for inpainting models
        self.control = control or JobControl()
        self.calls = 0  # A1111's step counter: one per denoiser call, from 0

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, **_) -> torch.Tensor:
        self.control.check()
        call, self.calls = self.calls, self.calls + 1
        parts = [cond.at(call) for cond in self.conds]  # per image: [(Conditioning, weight)]
        unconds = [uncond.at(call)[0][0] for uncond in self.unconds]
        skip_uncond = self.cfg_scale == 1 and all(len(p) == 1 and p[0][1] == 1 for p in parts)

        # Row r of the cond batch belongs to image owner[r]; unconds follow, one per image.
        owner = [i for i, image_parts in enumerate(parts) for _ in image_parts]
        conds = [c for image_parts in parts for c, _ in image_parts]
        if skip_uncond:
            return self._run(x[owner], sigma[owner], conds, owner)
        images = list(range(x.shape[0]))
        if max(c.tokens for c in conds) == max(c.tokens for c in unconds):
            rows = owner + images  # one UNet call for everything, as A1111 batches it
            out = self._run(x[rows], sigma[rows], conds + unconds, rows)
            cond_out, uncond_out = out[: len(owner)], out[len(owner) :]
        else:  # different chunk counts: separate calls, as A1111 does by default
            cond_out = self._run(x[owner], sigma[owner], conds, owner)
            uncond_out = self._run(x, sigma, unconds, images)

        result = uncond_out.clone()
        row = 0
        for i, image_parts in enumerate(parts):
            for _, weight in image_parts:
                result[i] += (cond_out[row] - uncond_out[i]) * (weight * self.cfg_scale)
                row += 1
        return result

    def _run(self, x, sigma, conds: list[Conditioning], images: list[int]) -> torch.Tensor:
        crossattn = stack_padded([c.crossattn for c in conds]).to(self.denoiser.model.dtype)
        added = None
        if conds[0].pooled is not None:
            time_ids = self.time_ids.to(x.device).expand(len(conds), -1)
            added = {"text_embeds": torch.stack([c.pooled for c in conds]).to(crossattn.dtype), "time_ids": time_ids}
        image_cond = self.image_cond[images] if self.image_cond is not None else None
        return self.denoiser(x, sigma, crossattn, added, image_cond)
