"""The denoiser the samplers call: the model as a k-diffusion denoiser, plus A1111's CFG.

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
from .hooks import NO_HOOKS, DenoiserCall, GenerationHooks
from .prompt_conditioning import PromptConditioning


class Interrupted(Exception):
    """The job's owner pressed Interrupt: stop sampling now (the pass returns what it has, see sampling.run_pass)."""


class Skipped(Exception):
    """The job's owner pressed Skip: stop this batch, go on with the next."""


@dataclass
class JobControl:
    """Flags checked before every denoiser call, and hooks called after each step and as each batch starts."""

    interrupted: bool = False
    skipped: bool = False
    on_step: Callable[[dict], None] | None = field(default=None, repr=False)
    on_batch: Callable[[int, int], None] | None = field(default=None, repr=False)  # (batch index, batches)
    note: str | None = None  # what the job is doing besides steps ("compiling ..."), for the progress text

    def say(self, text: str) -> None:
        self.note = text

    def check(self) -> None:
        if self.interrupted:
            raise Interrupted()
        if self.skipped:
            self.skipped = False
            raise Skipped()

    def check_interrupted(self) -> None:
        """Interrupt only: for work outside a batch's Skip handling (prompt encoding)."""
        if self.interrupted:
            raise Interrupted()


class ModelDenoiser:
    """The model seen from k-diffusion: (x, sigma) -> denoised, whatever its family predicts.

    `schedule` is the noise table of this pass (on the model's device); `extra` the family's per-pass
    inputs besides text (SDXL's size ids, Flux's guidance value), from `family.extra_conditioning`.
    """

    def __init__(self, model: SDModel, schedule, extra: dict | None = None):
        self.model = model
        self.schedule = schedule
        self.extra = extra or {}

    def __call__(self, x, sigma, crossattn, pooled=None, image_cond=None, text_lengths=None) -> torch.Tensor:
        """`text_lengths`: each row's own token count before padding (families with variable-length text read it)."""
        extra = self.extra if text_lengths is None else {**self.extra, "text_lengths": text_lengths}
        return self.model.family.predict(self.model, self.schedule, x, sigma, crossattn, pooled, extra, image_cond)


def stack_padded(crossattns: list[torch.Tensor]) -> torch.Tensor:
    """Stack [T_i, C] tensors, padding the shorter ones by repeating their last token
    vector, as A1111 does for AND parts and batches of different lengths."""
    longest = max(c.shape[0] for c in crossattns)
    padded = [
        c if c.shape[0] == longest else torch.cat([c, c[-1:].expand(longest - c.shape[0], -1)]) for c in crossattns
    ]
    return torch.stack(padded)


@dataclass(frozen=True)
class UncondSkipping:
    """A1111's settings that skip the uncond pass where it cannot change much: "Negative Guidance minimum
    sigma" (NGMS: below this sigma, every other step, or every step with "all steps") and "Skip Early CFG"
    (the first fraction of the steps)."""

    min_sigma: float = 0.0
    all_steps: bool = False
    early_fraction: float = 0.0

    def skips(self, call: int, step: int, total_steps: int, sigma: torch.Tensor) -> bool:
        if self.early_fraction and total_steps and step / total_steps <= self.early_fraction:
            return True
        # A1111 counts denoiser calls here; reading sigma syncs with the GPU, so only when the setting is on.
        return bool(self.min_sigma > 0 and (call % 2 or self.all_steps) and float(sigma[0]) < self.min_sigma)

    def infotext(self) -> dict:
        return {"NGMS": self.min_sigma or None, "NGMS all steps": True if self.min_sigma and self.all_steps else None,
                "Skip Early CFG": self.early_fraction or None}


class CFGDenoiser:
    def __init__(
        self,
        denoiser: ModelDenoiser,
        conds: list[PromptConditioning],
        unconds: list[PromptConditioning],
        cfg_scale: float,
        *,
        image_cond: torch.Tensor | None = None,
        control: JobControl | None = None,
        init_latent: torch.Tensor | None = None,
        latent_mask: torch.Tensor | None = None,
        hooks: GenerationHooks = NO_HOOKS,
        total_steps: int = 0,
        skip_uncond: "UncondSkipping | None" = None,
        pad_conds: bool = False,
        empty_chunk: Callable[[], torch.Tensor] | None = None,
    ):
        self.denoiser = denoiser
        self.conds = conds
        self.unconds = unconds
        self.cfg_scale = cfg_scale
        self.image_cond = image_cond  # [B, 5, h, w] for inpainting models
        self.control = control or JobControl()
        # Inpainting: the estimate keeps init_latent where latent_mask is 0 (A1111 blends
        # the denoised estimate, not x, by default).
        self.init_latent = init_latent
        self.latent_mask = latent_mask
        self.calls = 0  # A1111's step counter: one per denoiser call, from 0
        self.hooks = hooks  # extension scripts' cfg_* hooks (only when hooks.denoiser_hooks)
        self.sampling_step = 0  # the sampler step being computed (the sampling loop sets it)
        self.total_steps = total_steps
        self.last_denoised_uncond: torch.Tensor | None = None  # read by DDIM CFG++
        self.skipping = skip_uncond or UncondSkipping()
        # A1111's "pad_cond_uncond_v0": texts of different chunk counts still go in one call, the shorter
        # padded by repeating its last token vector (it changes the image a little, so it is a setting)
        self.pad_conds = pad_conds
        # A1111's "pad_cond_uncond": the shorter side padded with the empty prompt's encoding, one chunk
        # ([77, C]) per chunk missing; called when first needed
        self.empty_chunk = empty_chunk
        self._padded: dict[tuple[int, int, int], Conditioning] = {}  # (id, side length, target) -> padded
        # Stacked conditioning per combination of texts: after the first call that uses
        # a combination, a prompt-schedule swap is a dictionary lookup.
        self._stacked: dict[tuple[int, ...], tuple[torch.Tensor, torch.Tensor | None]] = {}
        self._constants: dict[tuple, torch.Tensor] = {}
        model = getattr(denoiser, "model", None)  # test doubles may have none
        self._variable_text = bool(model is not None and model.family.variable_text)

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, **_) -> torch.Tensor:
        self.control.check()
        call, self.calls = self.calls, self.calls + 1
        parts = [cond.at(call) for cond in self.conds]  # per image: [(Conditioning, weight)]
        unconds = [uncond.at(call)[0][0] for uncond in self.unconds]
        skip_uncond = self.cfg_scale == 1 and all(len(p) == 1 and p[0][1] == 1 for p in parts)

        # Row r of the cond batch belongs to image owner[r]; unconds follow, one per image.
        owner = [i for i, image_parts in enumerate(parts) for _ in image_parts]
        conds = [c for image_parts in parts for c, _ in image_parts]
        image_cond, hooked = self.image_cond, self.hooks.denoiser_hooks
        if hooked:
            x, sigma, image_cond = self._before_model(x, sigma, conds, unconds)
        if skip_uncond:
            out = self._run(x, sigma, conds, owner, image_cond)
            if not hooked:
                return self._blend(out)
            out = self._blend(self.hooks.cfg_denoised(out, self.sampling_step, self.total_steps))
            return self.hooks.cfg_after_cfg(out, self.sampling_step, self.total_steps)
        images = list(range(x.shape[0]))
        if self.skipping.skips(call, self.sampling_step, self.total_steps, sigma):
            # A1111's NGMS / Skip Early CFG: no uncond pass; each image's first cond stands in for its uncond
            cond_out = self._run(x, sigma, conds, owner, image_cond)
            uncond_out = cond_out.index_select(0, self._device_tensor(tuple(owner.index(i) for i in images), x))
        # One call, as A1111 batches it, when the lengths match (or the family reads each row at its own length).
        elif max(c.tokens for c in conds) == max(c.tokens for c in unconds) or self._variable_text or self.pad_conds:
            out = self._run(x, sigma, conds + unconds, owner + images, image_cond)
            cond_out, uncond_out = out[: len(owner)], out[len(owner) :]
        elif self.empty_chunk is not None and (padded := self._pad_with_empty(conds, unconds)) is not None:
            out = self._run(x, sigma, padded[0] + padded[1], owner + images, image_cond)
            cond_out, uncond_out = out[: len(owner)], out[len(owner) :]
        else:  # different chunk counts: separate calls, as A1111 does by default
            cond_out = self._run(x, sigma, conds, owner, image_cond)
            uncond_out = self._run(x, sigma, unconds, images, image_cond)
        if hooked:  # A1111's cfg_denoised sees all outputs in one tensor: conds, then unconds
            out = self.hooks.cfg_denoised(torch.cat([cond_out, uncond_out]), self.sampling_step, self.total_steps)
            cond_out, uncond_out = out[: len(owner)], out[len(owner) :]

        self.last_denoised_uncond = uncond_out
        weights = self._device_tensor(tuple(w * self.cfg_scale for image_parts in parts for _, w in image_parts), x)
        owner_rows = self._device_tensor(tuple(owner), x)
        guidance = (cond_out - uncond_out.index_select(0, owner_rows)) * weights.view(-1, 1, 1, 1)
        denoised = self._blend(uncond_out.index_add(0, owner_rows, guidance))
        if hooked:
            denoised = self.hooks.cfg_after_cfg(denoised, self.sampling_step, self.total_steps)
        return denoised

    def _pad_with_empty(self, conds: list[Conditioning], unconds: list[Conditioning]):
        """(conds, unconds) of one length: the shorter side's texts (each first brought to that side's length
        by repeating its last vector, as stacking does) followed by empty-prompt chunks; None when the
        lengths differ by no whole number of chunks."""
        empty = self.empty_chunk()
        cond_length, uncond_length = max(c.tokens for c in conds), max(c.tokens for c in unconds)
        target = max(cond_length, uncond_length)
        if (target - min(cond_length, uncond_length)) % empty.shape[0]:
            return None

        def pad(side: list[Conditioning], length: int) -> list[Conditioning]:
            if length == target:
                return side
            for c in side:
                key = (id(c), length, target)
                if key not in self._padded:
                    own = c.crossattn
                    chunks = empty.to(own).repeat((target - length) // empty.shape[0], 1)
                    self._padded[key] = Conditioning(torch.cat([own, own[-1:].expand(length - c.tokens, -1), chunks]),
                                                     c.pooled)
            return [self._padded[(id(c), length, target)] for c in side]

        return pad(conds, cond_length), pad(unconds, uncond_length)

    def _before_model(self, x, sigma, conds: list[Conditioning], unconds: list[Conditioning]):
        """The cfg_denoiser hook: it sees this call's inputs and may replace x, sigma and image_cond."""
        crossattn, pooled = self._stack(conds)
        uncrossattn, unpooled = self._stack(unconds)
        text_cond = crossattn if pooled is None else {"crossattn": crossattn, "vector": pooled}
        text_uncond = uncrossattn if unpooled is None else {"crossattn": uncrossattn, "vector": unpooled}
        call = DenoiserCall(x, self.image_cond, sigma, self.sampling_step, self.total_steps, text_cond, text_uncond)
        self.hooks.cfg_denoiser(call)
        return call.x, call.sigma, call.image_cond

    def _blend(self, denoised: torch.Tensor) -> torch.Tensor:
        if self.latent_mask is None:
            return denoised
        return self.init_latent * (1 - self.latent_mask) + denoised * self.latent_mask

    def _device_tensor(self, values: tuple, like: torch.Tensor) -> torch.Tensor:
        """Small per-call index/weight tensors, made once and kept on the device."""
        dtype = torch.long if isinstance(values[0], int) else like.dtype
        key = (dtype, values)  # (1,) == (1.0,) in Python: the dtype keeps them apart
        if key not in self._constants:
            self._constants[key] = torch.tensor(values, dtype=dtype, device=like.device)
        return self._constants[key]

    def _stack(self, conds: list[Conditioning]) -> tuple[torch.Tensor, torch.Tensor | None]:
        key = tuple(id(c) for c in conds)
        if key not in self._stacked:
            crossattn = stack_padded([c.crossattn for c in conds]).to(self.denoiser.model.dtype)
            pooled = torch.stack([c.pooled for c in conds]).to(crossattn.dtype) if conds[0].pooled is not None else None
            self._stacked[key] = (crossattn, pooled)
        return self._stacked[key]

    def _run(self, x, sigma, conds: list[Conditioning], images: list[int], image_cond=None) -> torch.Tensor:
        """One UNet call: row r conditions image images[r] on conds[r]."""
        rows = self._device_tensor(tuple(images), x)
        x, sigma = x.index_select(0, rows), sigma.index_select(0, rows)
        crossattn, pooled = self._stack(conds)
        image_cond = image_cond.index_select(0, rows) if image_cond is not None else None
        if self._variable_text:
            return self.denoiser(x, sigma, crossattn, pooled, image_cond, text_lengths=tuple(c.tokens for c in conds))
        return self.denoiser(x, sigma, crossattn, pooled, image_cond)
