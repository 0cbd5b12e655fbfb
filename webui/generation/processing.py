"""txt2img: the one processing function the CLI, the UI, the API and scripts call.

Parameters in (typed, A1111 field names), images out, each saved with its infotext
before it is reported. The model and the sampler know nothing of who is asking.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..memory import fp8_label
from ..models.model import SDModel
from ..networks import LoraLibrary
from .batches import JobKind, Processed, run_batches
from .conditioning import EncodeOptions, PromptEncoder
from .decoding import decode_latents, encode_pixels
from .denoiser import Interrupted, JobControl
from .hooks import NO_HOOKS, Batch, GenerationHooks
from .images import check_output_folder, dated
from .params import SAME_SAMPLER, SAME_SCHEDULER, ParamsError, Txt2ImgParams
from .prompt_conditioning import encode_prompts
from .rng import ImageRNG
from .samplers import initial_noise_scale
from .sampling import (
    SamplerChoice, SamplerExtras, check_size, choose_sampler, img2img_steps, pass_conditioning, plan_sampling, run_pass,
    uncond_skipping,
)
from .upscalers import LATENT_UPSCALE_MODES, find_upscaler, upscale_latents

VERSION = "sd-webui 0.1.0"


def txt2img(model: SDModel, p: Txt2ImgParams, control: JobControl | None = None,
            outputs_root: Path = Path("outputs"), networks: LoraLibrary | None = None,
            embeddings=None, hooks: GenerationHooks | None = None, result: Processed | None = None,
            samples_dir: Path | None = None) -> Processed:
    """`samples_dir`: the folder the settings name for these images (options.output_folder), saved in its <date>
    subfolder unless `p.outdir` is given; None: `outputs_root`/txt2img-images.
    `embeddings`: textual inversion (networks.embeddings.ModelEmbeddings for this model), or None.
    LoRA (webui/networks): the `<lora:...>` tags of a batch's first prompt are active from prompt
    encoding to the batch's last sampling step, as A1111 reads them; `networks` None: no LoRA folder.
    `hooks`: what extension scripts do at each step (generation/hooks.py). `result`: filled batch by batch
    (the job queue's, so that an interrupt keeps the batches already done)."""
    p.validate()
    hooks = hooks or NO_HOOKS
    control = control or JobControl()
    choice = choose_sampler(p.sampler_name, p.scheduler)
    settings = p.settings
    options = EncodeOptions.from_settings(settings)
    schedule_steps = p.steps * choice.schedule_steps_factor
    check_size(model, p.width, p.height)
    plan = plan_sampling(model, choice, p.steps, p.width, p.height)
    hires = _plan_hires(p, choice) if p.enable_hr else None
    outdir = p.outdir or dated(samples_dir or Path(outputs_root) / "txt2img-images")
    if p.save_images:  # before any compute: a folder that cannot take the images would lose them
        check_output_folder(outdir, shown_from=Path(outputs_root).parent)

    def sample(batch: Batch, conds, unconds, encoder) -> torch.Tensor:
        latents = _sample_txt2img(model, p, plan, conds, unconds, batch, control, hooks)
        if hires is not None and not control.interrupted:  # an interrupted first pass is shown as it is
            hooks.before_hires(batch)
            latents = _hires_pass(model, p, hires, latents, batch, control, encoder, options, hooks)
        return latents

    kind = JobKind(sample, lambda seed, subseed, texts: infotext_params(model, p, choice, seed, subseed, texts))
    return run_batches(model, p, kind, control=control, hooks=hooks, networks=networks, embeddings=embeddings,
                       options=options, schedule_steps=schedule_steps, outdir=outdir, result=result)


def _sample_txt2img(model, p: Txt2ImgParams, plan, conds, unconds, batch: Batch, control,
                    hooks: GenerationHooks) -> torch.Tensor:
    settings = p.settings
    factor = model.vae_scale_factor
    shape = (model.latent_channels, p.height // factor, p.width // factor)
    rng = ImageRNG(shape, batch.seeds, batch.subseeds, p.subseed_strength, p.seed_resize_from_h,
                   p.seed_resize_from_w, source=settings.randn_source, device=model.device,
                   eta_noise_seed_delta=settings.eta_noise_seed_delta if plan.sampler.uses_ensd else 0)
    noise = rng.first()
    x = noise * initial_noise_scale(plan.sampler, plan.sigmas)
    hooks.before_sampling(batch, x, noise, conds, unconds)
    image_cond = _inpaint_model_cond(model, x, p.width, p.height) if model.is_inpainting else None
    extras = SamplerExtras(p.eta, p.s_churn, p.s_tmin, p.s_tmax, p.s_noise)
    return run_pass(model, plan, plan.sigmas, x, conds, unconds, cfg_scale=p.cfg_scale, rng=rng, seeds=batch.seeds,
                    settings=settings, extras=extras, control=control, image_cond=image_cond,
                    extra=pass_conditioning(model, p.width, p.height, p.distilled_cfg_scale), hooks=hooks)


@dataclass(frozen=True)
class _HiresPlan:
    choice: SamplerChoice
    steps: int  # the second pass runs exactly this many steps
    first: SamplerChoice  # the first pass's (prompt-editing steps count on from it)


def _plan_hires(p: Txt2ImgParams, first: SamplerChoice) -> _HiresPlan:
    """The second pass's sampler and steps, checked once per call."""
    choice = hires_sampler(p, first)
    if p.hr_upscaler not in LATENT_UPSCALE_MODES:
        try:
            find_upscaler(p.hr_upscaler)
        except ValueError as error:
            raise ParamsError(str(error)) from None
    return _HiresPlan(choice, p.hr_second_pass_steps or p.steps, first)


def _hires_conds(p: Txt2ImgParams, hires: _HiresPlan, batch: Batch, encoder: PromptEncoder,
                 options: EncodeOptions) -> tuple[list, list]:
    # Prompt editing in the hires pass: integers count on from the first pass, fractions
    # 1..2 cover this pass (A1111's rules), in denoiser calls of each pass's sampler.
    first_total = p.steps * hires.first.schedule_steps_factor
    hires_total = hires.steps * hires.choice.schedule_steps_factor
    old = p.settings.use_old_scheduling
    conds = encode_prompts(encoder, batch.hr_prompts, first_total, hires_total, options=options, old_timelines=old)
    unconds = encode_prompts(encoder, batch.hr_negative_prompts, first_total, hires_total, negative=True,
                             options=options, old_timelines=old)
    return conds, unconds


def hires_sampler(p: Txt2ImgParams, first: SamplerChoice) -> SamplerChoice:
    """The second pass's sampler: its own when given, else the first pass's ("Use same ...")."""
    sampler = "" if p.hr_sampler_name == SAME_SAMPLER else p.hr_sampler_name
    scheduler = "" if p.hr_scheduler == SAME_SCHEDULER else p.hr_scheduler
    if not sampler and not scheduler:
        return first
    return choose_sampler(sampler or p.sampler_name, scheduler or p.scheduler)


def _hires_pass(model: SDModel, p: Txt2ImgParams, hires: _HiresPlan, latents: torch.Tensor, batch: Batch,
                control: JobControl, encoder: PromptEncoder, options: EncodeOptions,
                hooks: GenerationHooks) -> torch.Tensor:
    """Upscale the first pass's latents and run img2img on them at the hires size."""
    width, height, target_width, target_height = p.hires_size()
    factor = model.vae_scale_factor
    if p.hr_upscaler in LATENT_UPSCALE_MODES:
        latents = upscale_latents(latents, p.hr_upscaler, height // factor, width // factor)
    else:
        upscaler = find_upscaler(p.hr_upscaler)
        images = [upscaler.upscale(image, width, height) for image in decode_latents(model, latents, nan_check=p.settings.nan_check)]
        latents = encode_pixels(model, torch.stack([_pixels(image) for image in images]).to(model.device))
    # Two resize sides at another aspect ratio: crop the middle, as A1111 does.
    crop_x, crop_y = (width - target_width) // factor, (height - target_height) // factor
    latents = latents[:, :, crop_y // 2 : latents.shape[2] - (crop_y + 1) // 2,
                      crop_x // 2 : latents.shape[3] - (crop_x + 1) // 2]
    if p.denoising_strength == 0:
        return latents
    try:
        conds, unconds = _hires_conds(p, hires, batch, encoder, options)
    except Interrupted:  # stopped while encoding the hires prompts: the image as far as it got
        return latents
    schedule_steps, t_enc = img2img_steps(hires.steps, p.denoising_strength, exact_steps=True)
    plan = plan_sampling(model, hires.choice, schedule_steps, latents.shape[3] * factor, latents.shape[2] * factor)
    sigmas = plan.sigmas[schedule_steps - t_enc - 1 :]
    settings = p.settings
    rng = ImageRNG(tuple(latents.shape[1:]), batch.seeds, batch.subseeds, p.subseed_strength, p.seed_resize_from_h,
                   p.seed_resize_from_w, source=settings.randn_source, device=model.device,
                   eta_noise_seed_delta=settings.eta_noise_seed_delta if plan.sampler.uses_ensd else 0)
    noise = rng.first()
    x = model.family.noised(latents, noise, sigmas[0])
    hooks.before_sampling(batch, x, noise, conds, unconds)
    height, width = latents.shape[2] * factor, latents.shape[3] * factor
    image_cond = _inpaint_model_cond(model, x, width, height) if model.is_inpainting else None
    extras = SamplerExtras(p.eta, p.s_churn, p.s_tmin, p.s_tmax, p.s_noise)
    return run_pass(model, plan, sigmas, x, conds, unconds, cfg_scale=p.cfg_scale, rng=rng,
                    seeds=batch.seeds, settings=settings, extras=extras, control=control, image_cond=image_cond,
                    extra=pass_conditioning(model, width, height, p.distilled_cfg_scale), hooks=hooks)


def _pixels(image: Image.Image) -> torch.Tensor:
    """A PIL image as a [3, H, W] tensor in [-1, 1]."""
    array = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32))
    return array.permute(2, 0, 1) / 127.5 - 1


def _inpaint_model_cond(model: SDModel, x: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """An inpainting model without a mask sees a fully masked grey image, as in A1111."""
    grey = torch.zeros(x.shape[0], 3, height, width, device=model.device)  # 0.5 in [0, 1] is 0 in [-1, 1]
    mask = torch.ones(x.shape[0], 1, height, width, device=model.device)
    return model.family.inpaint_conditioning(model, encode_pixels(model, grey), mask).to(model.dtype)


def infotext_params(model: SDModel, p: Txt2ImgParams, choice: SamplerChoice, seed: int, subseed: int,
                    texts: tuple[str, str, str, str] | None = None) -> dict:
    """The parameter line of one image, with A1111's keys in A1111's order. `texts`: the image's
    (prompt, negative prompt, hires prompt, hires negative prompt) when they are not p's."""
    settings = p.settings
    texts = texts or (p.prompt, p.negative_prompt, p.hr_prompt or p.prompt, p.hr_negative_prompt or p.negative_prompt)
    uses_emphasis = any(c in texts[0] + texts[1] for c in "([")
    params: dict[str, object] = {
        "Steps": p.steps,
        "Sampler": choice.sampler.name,
        "Schedule type": choice.scheduler_label,
        "CFG scale": _plain_number(p.cfg_scale),
        "Seed": seed,
        "Face restoration": p.face_restoration.name if p.face_restoration is not None else None,
        "Size": f"{p.width}x{p.height}",
        "Model hash": model.short_hash,
        "Model": model.name,
        "FP8 weight": fp8_label(model),  # the setting, or a checkpoint stored in fp8
        # A separate VAE file (models/vae.py): its short hash and file name, as A1111 writes them.
        "VAE hash": model.vae_sha256[:10] if model.vae_file is not None and model.vae_sha256 else None,
        "VAE": model.vae_file.name if model.vae_file is not None else None,
        "Variation seed": subseed if p.subseed_strength > 0 else None,
        "Variation seed strength": _plain_number(p.subseed_strength) if p.subseed_strength > 0 else None,
        "Seed resize from": (
            f"{p.seed_resize_from_w}x{p.seed_resize_from_h}"
            if p.seed_resize_from_w > 0 and p.seed_resize_from_h > 0 else None
        ),
        "Denoising strength": _plain_number(p.denoising_strength) if p.enable_hr else None,
        "Clip skip": settings.clip_skip if settings.clip_skip > 1 else None,
        "ENSD": settings.eta_noise_seed_delta if settings.eta_noise_seed_delta and choice.sampler.uses_ensd else None,
        "RNG": settings.randn_source if settings.randn_source != "GPU" else None,
        "Tiling": True if p.tiling else None,
        "Emphasis": settings.emphasis if settings.emphasis != "Original" and uses_emphasis else None,
        "Old prompt editing timelines": True if settings.use_old_scheduling else None,
        **uncond_skipping(settings).infotext(),  # "NGMS", "NGMS all steps", "Skip Early CFG"
        "Pad conds v0": True if settings.pad_cond_uncond_v0 else None,  # v0 wins when both are on, as in A1111
        "Pad conds": True if settings.pad_cond_uncond and not settings.pad_cond_uncond_v0 else None,
        # "Distilled CFG Scale", "Shift": what the model's family adds
        **model.family.infotext_params(model, p.width, p.height, p.distilled_cfg_scale),
    }
    if p.enable_hr:
        params.update(hires_infotext_params(p, choice, texts))
    params["Version"] = VERSION
    return params


def hires_infotext_params(p: Txt2ImgParams, first: SamplerChoice, texts: tuple[str, str, str, str]) -> dict:
    """A1111's hires keys: only what differs from the first pass is written."""
    hires = hires_sampler(p, first)
    prompt, negative_prompt, hr_prompt, hr_negative_prompt = texts
    resized = p.hr_resize_x or p.hr_resize_y
    return {
        "Hires upscale": None if resized else _plain_number(p.hr_scale),
        "Hires resize": f"{p.hr_resize_x}x{p.hr_resize_y}" if resized else None,
        "Hires steps": p.hr_second_pass_steps or None,
        "Hires upscaler": p.hr_upscaler,
        "Hires sampler": hires.sampler.name if hires.sampler != first.sampler else None,
        "Hires schedule type": hires.scheduler_label if hires.scheduler_label != first.scheduler_label else None,
        "Hires prompt": hr_prompt if hr_prompt and hr_prompt != prompt else None,
        "Hires negative prompt": hr_negative_prompt if hr_negative_prompt and hr_negative_prompt != negative_prompt else None,
    }


def _plain_number(value: float) -> float | int:
    """7.0 -> 7, as A1111's UI sliders write whole numbers."""
    return int(value) if float(value).is_integer() else value
