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
from .decoding import decode_latents, encode_pixels
from .denoiser import JobControl, Skipped
from .images import date_subfolder, save_image
from .params import Txt2ImgParams
from .prompt_conditioning import encode_prompts
from .rng import ImageRNG, fix_seed, job_seeds
from .samplers import initial_noise_scale
from .sampling import SamplerChoice, SamplerExtras, choose_sampler, plan_sampling, run_pass, sdxl_time_ids

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


def txt2img(model: SDModel, p: Txt2ImgParams, control: JobControl | None = None,
            outputs_root: Path = Path("outputs")) -> Processed:
    p.validate()
    control = control or JobControl()
    choice = choose_sampler(p.sampler_name, p.scheduler)
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
    plan = plan_sampling(model, choice, p.steps)
    outdir = p.outdir or date_subfolder(outputs_root, "txt2img-images")

    result = Processed()
    for batch in range(p.n_iter):
        batch_seeds = seeds[batch * p.batch_size : (batch + 1) * p.batch_size]
        batch_subseeds = subseeds[batch * p.batch_size : (batch + 1) * p.batch_size]
        try:
            latents = _sample_txt2img(model, p, plan, conds, unconds, batch_seeds, batch_subseeds, control)
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


def _sample_txt2img(model, p: Txt2ImgParams, plan, conds, unconds, seeds, subseeds, control) -> torch.Tensor:
    settings = p.settings
    factor = model.vae_scale_factor
    shape = (model.latent_channels, p.height // factor, p.width // factor)
    rng = ImageRNG(shape, seeds, subseeds, p.subseed_strength, p.seed_resize_from_h, p.seed_resize_from_w,
                   source=settings.randn_source, device=model.device,
                   eta_noise_seed_delta=settings.eta_noise_seed_delta if plan.sampler.uses_ensd else 0)
    x = rng.first() * initial_noise_scale(plan.sampler, plan.sigmas)
    image_cond = _txt2img_image_cond(model, x, p) if model.is_inpainting else None
    extras = SamplerExtras(p.eta, p.s_churn, p.s_tmin, p.s_tmax, p.s_noise)
    return run_pass(model, plan, plan.sigmas, x, conds, unconds, cfg_scale=p.cfg_scale, rng=rng, seeds=seeds,
                    settings=settings, extras=extras, control=control, image_cond=image_cond,
                    time_ids=sdxl_time_ids(model, p.width, p.height))


def _txt2img_image_cond(model: SDModel, x: torch.Tensor, p: Txt2ImgParams) -> torch.Tensor:
    """An inpainting model in txt2img sees a fully masked grey image, as in A1111."""
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
