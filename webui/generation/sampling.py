"""One sampling pass: sampler and sigmas chosen as A1111 does, then the denoising loop.

txt2img, img2img, inpaint and the hires-fix second pass all come through `run_pass`;
they differ only in the starting latent, where on the sigma list they start, and the
optional inpainting mask and image conditioning.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..models.model import SDModel
from .conditioning import EncodeOptions, PromptEncoder
from .decoding import latent_preview
from .denoiser import CFGDenoiser, Interrupted, JobControl, ModelDenoiser, UncondSkipping
from .hooks import NO_HOOKS, GenerationHooks
from .params import GenerationSettings, ParamsError
from .prompt_conditioning import PromptConditioning
from .rng import ImageRNG
from .samplers import (
    BrownianTreeNoiseSampler, DiscreteSchedule, LCMSchedule, Sampler, build_sigmas, find_sampler, find_scheduler,
    split_sampler_name,
)


@dataclass(frozen=True)
class SamplerChoice:
    sampler: Sampler
    scheduler_label: str | None  # None: the model's own discrete schedule

    @property
    def schedule_steps_factor(self) -> int:
        # A1111 counts prompt-editing steps in denoiser calls: two per step here.
        return 2 if self.sampler.second_order else 1


def choose_sampler(sampler_name: str, scheduler_name: str | None) -> SamplerChoice:
    """A1111's rules: "DPM++ 2M Karras" names a scheduler too; Automatic is the sampler's default."""
    try:
        label, scheduler_in_name = split_sampler_name(sampler_name)
        sampler = find_sampler(label)
        scheduler = find_scheduler(scheduler_in_name or scheduler_name or "Automatic")
    except ValueError as error:
        raise ParamsError(str(error)) from None
    if scheduler.label == "Automatic":
        return SamplerChoice(sampler, sampler.default_scheduler)
    return SamplerChoice(sampler, scheduler.label)


@dataclass(frozen=True)
class SamplingPlan:
    """The sampler, the full sigma list for `steps`, and the model's timestep table."""

    choice: SamplerChoice
    steps: int
    sigmas: torch.Tensor  # on the model's device
    schedule: DiscreteSchedule  # the model's noise table for this pass (FlowSchedule on flow models), on its device

    @property
    def sampler(self) -> Sampler:
        return self.choice.sampler


def plan_sampling(model: SDModel, choice: SamplerChoice, steps: int, width: int = 0, height: int = 0) -> SamplingPlan:
    """The pass's sigmas on the model's noise table; `width`/`height` (pixels) matter where the family's
    schedule depends on the image size (Flux's shift)."""
    family = model.family
    if not family.offers(choice.sampler.name):
        raise ParamsError(f"the {choice.sampler.name} sampler does not work with {family.label} models; "
                          f"use one of: {', '.join(family.samplers)}")
    if family.flow and choice.scheduler_label == "Align Your Steps":
        raise ParamsError(f"the Align Your Steps schedule is made for SD 1.x and SDXL, not {family.label}")
    discrete = family.noise_schedule(model, width or model.default_size, height or model.default_size)
    sigmas = build_sigmas(choice.sampler, choice.scheduler_label, steps, discrete, device=model.device,
                          is_sdxl=family.ays_sdxl)
    if choice.sampler.kind == "lcm":
        discrete = LCMSchedule(model.alphas_cumprod)
    # Tables on the device, so that sigma -> timestep never syncs inside the loop.
    return SamplingPlan(choice, steps, sigmas, discrete.to(model.device))


def img2img_steps(steps: int, denoising_strength: float, exact_steps: bool) -> tuple[int, int]:
    """A1111's (schedule steps, steps actually run - 1) for a pass that starts part-way.

    By default only about strength x steps steps run on a `steps`-long schedule; with
    "do exactly the amount of steps" (and in the hires pass) the schedule is stretched so
    that exactly `steps` run.
    """
    strength = min(denoising_strength, 0.999)
    if exact_steps:
        return (int(steps / strength) if denoising_strength > 0 else 0), steps - 1
    return steps, int(strength * steps)




def pass_conditioning(model: SDModel, width: int, height: int, distilled_cfg_scale: float | None) -> dict:
    """The family's per-pass inputs besides text (SDXL's size ids, Flux's guidance value)."""
    return model.family.extra_conditioning(model, width, height, distilled_cfg_scale)


def check_size(model: SDModel, width: int, height: int) -> None:
    multiple = model.family.size_multiple
    if width % multiple or height % multiple:
        raise ParamsError(f"{model.family.label} models need a width and height that are multiples of {multiple}; "
                          f"{width}x{height} is not")


@dataclass
class SamplerExtras:
    """Per-request sampler knobs (A1111's eta, s_churn, s_tmin, s_tmax, s_noise)."""

    eta: float | None = None
    s_churn: float = 0.0
    s_tmin: float = 0.0
    s_tmax: float = float("inf")
    s_noise: float = 1.0

    def __post_init__(self):
        if self.s_tmax == 0:  # A1111's "sigma tmax" 0 means no upper bound (its default, and its API's)
            self.s_tmax = float("inf")


def run_pass(
    model: SDModel,
    plan: SamplingPlan,
    sigmas: torch.Tensor,
    x: torch.Tensor,
    conds: list[PromptConditioning],
    unconds: list[PromptConditioning],
    *,
    cfg_scale: float,
    rng: ImageRNG,
    seeds: list[int],
    settings: GenerationSettings,
    extras: SamplerExtras,
    control: JobControl,
    extra: dict | None = None,
    image_cond: torch.Tensor | None = None,
    init_latent: torch.Tensor | None = None,
    latent_mask: torch.Tensor | None = None,
    hooks: GenerationHooks = NO_HOOKS,
) -> torch.Tensor:
    """Denoise `x` (already noised to sigmas[0]) along `sigmas`; returns the latents. Interrupted after a
    step, it returns that step's denoised estimate (`control.interrupted` stays set); before one, it raises.

    With `latent_mask` (1 where the image is repainted) the kept area is blended back to
    `init_latent` after every step and at the end, as A1111's inpainting does. `extra`: the family's
    per-pass conditioning (`family.extra_conditioning`).
    """
    sampler = plan.sampler
    denoiser = CFGDenoiser(ModelDenoiser(model, plan.schedule, extra), conds, unconds,
                           cfg_scale * sampler.cfg_scale_multiplier, image_cond=image_cond, control=control,
                           init_latent=init_latent, latent_mask=latent_mask, hooks=hooks,
                           total_steps=len(sigmas) - 1, skip_uncond=uncond_skipping(settings),
                           pad_conds=settings.pad_cond_uncond_v0,
                           empty_chunk=empty_prompt_chunk(model, settings) if settings.pad_cond_uncond else None)
    kwargs = _sampler_kwargs(sampler, settings, extras, rng, x, sigmas, seeds, plan.schedule)

    finished: list[torch.Tensor] = []  # the latest step's denoised estimate

    if model.fast_path is not None:  # "compiling ..." in the job's progress text while a new size compiles
        model.fast_path.notify = control.say

    def on_step(info: dict) -> None:
        control.note = None
        finished[:] = [info["denoised"]]
        denoiser.sampling_step = info["i"] + 1  # the step the next denoiser call belongs to
        if control.on_step is not None:
            every = settings.live_preview_every
            step = info["i"] + 1
            preview = (lambda: latent_preview(model, info["denoised"])) if every and step % every == 0 else None
            control.on_step({"step": step, "steps": len(sigmas) - 1, "preview": preview})

    with torch.inference_mode():
        try:
            latents = sampler.function_for(plan.schedule)(denoiser, x, sigmas, callback=on_step, **kwargs)
        except Interrupted:
            if not finished:
                raise
            latents = finished[0]  # as A1111: the interrupted image as far as it got (control stays interrupted)
    if latent_mask is not None:
        latents = init_latent * (1 - latent_mask) + latents * latent_mask
    return latents


def empty_prompt_chunk(model: SDModel, settings: GenerationSettings) -> Callable[[], torch.Tensor]:
    """A1111's pad_cond_uncond padding: the empty prompt's conditioning, one chunk, encoded (once) when the
    denoiser first needs it; with the job's encode options (A1111 encodes it once when the model loads)."""
    options = EncodeOptions.from_settings(settings)
    return functools.cache(lambda: PromptEncoder(model).encode_group([""], options)[0].crossattn)


def uncond_skipping(settings: GenerationSettings) -> UncondSkipping:
    return UncondSkipping(settings.s_min_uncond, settings.s_min_uncond_all, settings.skip_early_cond)


def _sampler_kwargs(sampler: Sampler, settings: GenerationSettings, extras: SamplerExtras, rng: ImageRNG, x, sigmas,
                    seeds, schedule: DiscreteSchedule) -> dict:
    """The per-sampler extras A1111 passes: eta, churn, the noise source."""
    eta = extras.eta
    if eta is None and sampler.eta_default is not None:
        eta = settings.eta_ddim if sampler.kind == "timesteps" else settings.eta_ancestral
    if sampler.brownian_noise:
        positive = sigmas[sigmas > 0]
        noise = BrownianTreeNoiseSampler(x, positive.min(), sigmas.max(), seeds,
                                         device="cpu" if settings.randn_source == "CPU" else None)
    else:
        noise = rng.noise_sampler
    # DPM fast/adaptive: A1111 spans the model's own sigma range.
    return sampler.call_kwargs(eta=eta, s_churn=extras.s_churn, s_tmin=extras.s_tmin, s_tmax=extras.s_tmax,
                               s_noise=extras.s_noise, noise_sampler=noise, sigma_min=schedule.sigma_min,
                               sigma_max=schedule.sigma_max)
