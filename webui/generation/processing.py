"""txt2img: the one processing function the CLI, the UI, the API and scripts call.

Parameters in (typed, A1111 field names), images out, each saved with its infotext
before it is reported. The model and the sampler know nothing of who is asking.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image

from ..models.model import SDModel
from . import infotext as infotext_format
from .conditioning import EncodeOptions, PromptEncoder
from .decoding import decode_latents, latent_preview
from .denoiser import CFGDenoiser, JobControl, ModelDenoiser, Skipped
from .images import date_subfolder, save_image
from .params import ParamsError, Txt2ImgParams
from .prompt_conditioning import PromptConditioning, encode_prompts
from .rng import ImageRNG, fix_seed, job_seeds
from .samplers import (
    BrownianTreeNoiseSampler, DiscreteSchedule, LCMSchedule, build_sigmas, find_sampler, find_scheduler,
    initial_noise_scale, split_sampler_name,
)

VERSION = "sd-webui 0.1.0"


@dataclass
class Processed:
    """What a job produced: one entry per image, in order."""

    images: list[Image.Image] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    subseeds: list[int] = field(default_factory=list)
    prompts: list[str] = field(default_factory=list)
    negative_prompts: list[str] = field(default_factory=list)
    infotexts: list[str] = field(default_factory=list)
    paths: list[Path] = field(default_factory=list)
    seconds: float = 0.0


@dataclass(frozen=True)
class SamplerChoice:
    sampler: object  # samplers.Sampler
    scheduler_label: str | None  # None: the model's own discrete schedule

    @property
    def schedule_steps_factor(self) -> int:
        # A1111 counts prompt-editing steps in denoiser calls: two per step here.
        return 2 if self.sampler.second_order else 1


def choose_sampler(sampler_name: str, scheduler_name: str) -> SamplerChoice:
    label, scheduler_in_name = split_sampler_name(sampler_name)
    sampler = find_sampler(label)
    scheduler = scheduler_in_name or scheduler_name or "Automatic"
    if find_scheduler(scheduler).label == "Automatic":
        scheduler = sampler.default_scheduler
    else:
        scheduler = find_scheduler(scheduler).label
    return SamplerChoice(sampler, scheduler)


def txt2img(model: SDModel, p: Txt2ImgParams, control: JobControl | None = None,
            outputs_root: Path = Path("outputs")) -> Processed:
    p.validate()
    control = control or JobControl()
    try:
        choice = choose_sampler(p.sampler_name, p.scheduler)
    except ValueError as error:
        raise ParamsError(str(error)) from None
    started = time.perf_counter()
    seed, subseed = fix_seed(p.seed), fix_seed(p.subseed)
    count = p.batch_size * p.n_iter
    seeds, subseeds = job_seeds(seed, subseed, p.subseed_strength, count)
    settings = p.settings
    options = EncodeOptions(settings.emphasis, settings.clip_skip, settings.comma_padding_backtrack, settings.sdxl_clip_l_skip)
    encoder = PromptEncoder(model)
    schedule_steps = p.steps * choice.schedule_steps_factor
    conds = encode_prompts(encoder, [p.prompt] * p.batch_size, schedule_steps, options=options,
                           old_timelines=settings.use_old_scheduling)
    unconds = encode_prompts(encoder, [p.negative_prompt] * p.batch_size, schedule_steps, negative=True,
                             options=options, old_timelines=settings.use_old_scheduling)
    discrete = DiscreteSchedule(model.alphas_cumprod)
    sigmas = build_sigmas(choice.sampler, choice.scheduler_label, p.steps, discrete, device=model.device,
                          is_sdxl=model.family.name == "sdxl")
    if choice.sampler.kind == "lcm":
        discrete = LCMSchedule(model.alphas_cumprod)
    discrete = discrete.to(model.device)  # sigma -> timestep on the device: no syncs in the loop
    outdir = p.outdir or date_subfolder(outputs_root, "txt2img-images")

    result = Processed()
    for batch in range(p.n_iter):
        batch_seeds = seeds[batch * p.batch_size : (batch + 1) * p.batch_size]
        batch_subseeds = subseeds[batch * p.batch_size : (batch + 1) * p.batch_size]
        try:
            latents = _sample(model, p, choice, sigmas, discrete, conds, unconds, batch_seeds, batch_subseeds, control)
        except Skipped:
            continue
        for i, image in enumerate(decode_latents(model, latents, tiled=settings.tiled_vae_decode)):
            index = batch * p.batch_size + i
            text = infotext_format.create_infotext(
                p.prompt, p.negative_prompt, infotext_params(model, p, choice, seeds[index], subseeds[index])
            )
            if p.save_images:
                result.paths.append(save_image(
                    image, outdir, seed=seeds[index], prompt=p.prompt, infotext=text,
                    pattern=settings.samples_filename_pattern, extension=settings.samples_format,
                ))
            result.images.append(image)
            result.seeds.append(seeds[index])
            result.subseeds.append(subseeds[index])
            result.prompts.append(p.prompt)
            result.negative_prompts.append(p.negative_prompt)
            result.infotexts.append(text)
    result.seconds = time.perf_counter() - started
    return result


def _sample(model, p, choice, sigmas, discrete, conds: list[PromptConditioning], unconds, seeds, subseeds,
            control: JobControl) -> torch.Tensor:
    settings = p.settings
    factor = model.vae_scale_factor
    shape = (model.latent_channels, p.height // factor, p.width // factor)
    rng = ImageRNG(shape, seeds, subseeds, p.subseed_strength, p.seed_resize_from_h, p.seed_resize_from_w,
                   source=settings.randn_source, device=model.device,
                   eta_noise_seed_delta=settings.eta_noise_seed_delta if choice.sampler.uses_ensd else 0)
    x = rng.first() * initial_noise_scale(choice.sampler, sigmas)
    time_ids = None
    if model.family.name == "sdxl":
        time_ids = torch.tensor([p.height, p.width, 0, 0, p.height, p.width], dtype=model.dtype, device=model.device)
    image_cond = _txt2img_image_cond(model, x, p) if model.is_inpainting else None
    denoiser = CFGDenoiser(ModelDenoiser(model, discrete), conds, unconds,
                           p.cfg_scale * choice.sampler.cfg_scale_multiplier,
                           time_ids=time_ids, image_cond=image_cond, control=control)
    kwargs = _sampler_kwargs(choice.sampler, p, rng, x, sigmas, seeds, discrete)

    def on_step(info: dict) -> None:
        if control.on_step is not None:
            every = settings.live_preview_every
            step = info["i"] + 1
            preview = (lambda: latent_preview(model, info["denoised"])) if every and step % every == 0 else None
            control.on_step({"step": step, "steps": len(sigmas) - 1, "preview": preview})

    with torch.inference_mode():
        return choice.sampler.function(denoiser, x, sigmas, callback=on_step, **kwargs)


def _sampler_kwargs(sampler, p: Txt2ImgParams, rng: ImageRNG, x, sigmas, seeds, discrete) -> dict:
    """The per-sampler extras A1111 passes: eta, churn, the noise source."""
    settings = p.settings
    eta = p.eta
    if eta is None and sampler.eta_default is not None:
        eta = settings.eta_ddim if sampler.kind == "timesteps" else settings.eta_ancestral
    if sampler.brownian_noise:
        positive = sigmas[sigmas > 0]
        noise = BrownianTreeNoiseSampler(x, positive.min(), sigmas.max(), seeds,
                                         device="cpu" if settings.randn_source == "CPU" else None)
    else:
        noise = rng.noise_sampler
    # DPM fast/adaptive: A1111's txt2img spans the model's own sigma range.
    return sampler.call_kwargs(eta=eta, s_churn=p.s_churn, s_tmin=p.s_tmin, s_tmax=p.s_tmax, s_noise=p.s_noise,
                               noise_sampler=noise, sigma_min=discrete.sigma_min, sigma_max=discrete.sigma_max)


def _txt2img_image_cond(model: SDModel, x: torch.Tensor, p: Txt2ImgParams) -> torch.Tensor:
    """An inpainting model in txt2img sees a fully masked grey image, as in A1111."""
    from .decoding import encode_pixels

    grey = torch.zeros(x.shape[0], 3, p.height, p.width, device=model.device)  # 0.5 in [0, 1] is 0 in [-1, 1]
    latents = encode_pixels(model, grey)
    mask = torch.ones(x.shape[0], 1, *latents.shape[2:], device=model.device, dtype=latents.dtype)
    return torch.cat([mask, latents], dim=1).to(model.dtype)


def infotext_params(model: SDModel, p: Txt2ImgParams, choice: SamplerChoice, seed: int, subseed: int) -> dict:
    """The parameter line of one image, with A1111's keys in A1111's order."""
    settings = p.settings
    uses_emphasis = any(c in p.prompt + p.negative_prompt for c in "([")
    params: dict[str, object] = {
        "Steps": p.steps,
        "Sampler": choice.sampler.name,
        "Schedule type": choice.scheduler_label,
        "CFG scale": _plain_number(p.cfg_scale),
        "Seed": seed,
        "Size": f"{p.width}x{p.height}",
        "Model hash": model.short_hash,
        "Model": model.name,
        "Variation seed": subseed if p.subseed_strength > 0 else None,
        "Variation seed strength": _plain_number(p.subseed_strength) if p.subseed_strength > 0 else None,
        "Seed resize from": (
            f"{p.seed_resize_from_w}x{p.seed_resize_from_h}"
            if p.seed_resize_from_w > 0 and p.seed_resize_from_h > 0 else None
        ),
        "Clip skip": settings.clip_skip if settings.clip_skip > 1 else None,
        "ENSD": settings.eta_noise_seed_delta if settings.eta_noise_seed_delta and choice.sampler.uses_ensd else None,
        "RNG": settings.randn_source if settings.randn_source != "GPU" else None,
        "Emphasis": settings.emphasis if settings.emphasis != "Original" and uses_emphasis else None,
        "Old prompt editing timelines": True if settings.use_old_scheduling else None,
        "Version": VERSION,
    }
    return params


def _plain_number(value: float) -> float | int:
    """7.0 -> 7, as A1111's UI sliders write whole numbers."""
    return int(value) if float(value).is_integer() else value
