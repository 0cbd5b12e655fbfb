"""The batch loop txt2img and img2img share: per batch, the extra networks and tiling for its span,
prompt encoding, the kind's sampling, decoding, then per image face restoration, the scripts' hooks,
infotext and saving. What differs between the two kinds comes in as a `JobKind`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image

from ..memory import refresh as refresh_placement
from ..models.model import SDModel
from ..networks import activated_loras, prompt_networks
from .conditioning import EncodeOptions, PromptEncoder
from .decoding import decode_latents
from .denoiser import JobControl, Skipped
from . import infotext as infotext_format
from .hooks import NO_HOOKS, Batch, GenerationHooks
from .images import save_image
from .params import Txt2ImgParams
from .prompt_conditioning import encode_batch
from .rng import fix_seed, job_seeds
from .tiling import tiling


@dataclass(frozen=True)
class ModelUsed:
    """The checkpoint (and VAE) a job ran on, as A1111's `info` reports it; kept with the result because the
    loaded model may change before the caller reads it."""

    name: str
    short_hash: str | None
    vae_name: str | None = None
    vae_short_hash: str | None = None
    is_inpainting: bool = False

    @classmethod
    def of(cls, model: SDModel) -> "ModelUsed":
        vae = model.vae_file
        return cls(Path(model.name).stem, model.short_hash, vae.name if vae is not None else None,
                   model.vae_sha256[:10] if vae is not None and model.vae_sha256 else None, model.is_inpainting)


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
    warnings: list[str] = field(default_factory=list)  # e.g. a LoRA that could not be used
    model: ModelUsed | None = None  # set by the job queue when the job starts
    size: tuple[int, int] | None = None  # (width, height) as a script left it, when one changed it

    def add(self, image: Image.Image, p: Txt2ImgParams, params: dict, seed: int, subseed: int, outdir: Path, *,
            prompt: str | None = None, negative_prompt: str | None = None,
            hooks: GenerationHooks = NO_HOOKS) -> None:
        """Record one finished image; with saving on, it is on disk with its infotext first."""
        prompt = p.prompt if prompt is None else prompt
        negative_prompt = p.negative_prompt if negative_prompt is None else negative_prompt
        text = infotext_format.create_infotext(prompt, negative_prompt, params)
        if p.save_images:
            self.paths.append(save_image(
                image, outdir, seed=seed, prompt=prompt, infotext=text,
                pattern=p.settings.samples_filename_pattern, extension=p.settings.samples_format, hooks=hooks,
            ))
        self.images.append(image)
        self.seeds.append(seed)
        self.subseeds.append(subseed)
        self.prompts.append(prompt)
        self.negative_prompts.append(negative_prompt)
        self.infotexts.append(text)

    def warn(self, messages: list[str]) -> None:
        self.warnings.extend(m for m in messages if m not in self.warnings)


def image_batches(p: Txt2ImgParams) -> list[Batch]:
    """The call's images batch by batch, with their prompts and seeds (the per-image lists when given)."""
    count = p.batch_size * p.n_iter
    if p.all_seeds is None or p.all_subseeds is None:
        seeds, subseeds = job_seeds(fix_seed(p.seed), fix_seed(p.subseed), p.subseed_strength, count)
    seeds = list(p.all_seeds) if p.all_seeds is not None else seeds
    subseeds = list(p.all_subseeds) if p.all_subseeds is not None else subseeds
    prompts = list(p.all_prompts) if p.all_prompts is not None else [p.prompt] * count
    negatives = list(p.all_negative_prompts) if p.all_negative_prompts is not None else [p.negative_prompt] * count
    hr_prompts = list(p.all_hr_prompts) if p.all_hr_prompts is not None else [p.hr_prompt or t for t in prompts]
    hr_negatives = (list(p.all_hr_negative_prompts) if p.all_hr_negative_prompts is not None
                    else [p.hr_negative_prompt or t for t in negatives])
    size = p.batch_size
    return [Batch(n, prompts[n * size:(n + 1) * size], negatives[n * size:(n + 1) * size],
                  seeds[n * size:(n + 1) * size], subseeds[n * size:(n + 1) * size],
                  hr_prompts[n * size:(n + 1) * size], hr_negatives[n * size:(n + 1) * size]) for n in range(p.n_iter)]


def image_extra_params(p: Txt2ImgParams, batch: Batch, index: int, hooks: GenerationHooks) -> dict:
    """The caller's extra infotext keys for one image (a list value holds one entry per image)."""
    position = batch.index * p.batch_size + index
    extra = {}
    for key, value in p.extra_generation_params.items():
        extra[key] = value[min(position, len(value) - 1)] if isinstance(value, list) and value else value
    return {**extra, **hooks.extra_infotext(batch, index)}


def entry(values: list, index: int):
    """values[index], or the last one when a hook left fewer entries than images."""
    return values[min(index, len(values) - 1)]


def image_texts(batch: Batch, index: int) -> tuple[str, str, str, str]:
    """(prompt, negative prompt, hires prompt, hires negative prompt) of one image of a batch."""
    return (entry(batch.prompts, index), entry(batch.negative_prompts, index), entry(batch.hr_prompts, index),
            entry(batch.hr_negative_prompts, index))


def with_extra_params(params: dict, extra: dict) -> dict:
    """`params` with `extra` (such as "Lora hashes") placed before "Version", as A1111 orders them."""
    if not extra:
        return params
    version = params.pop("Version", None)
    params.update(extra)
    if version is not None:
        params["Version"] = version
    return params


@dataclass(frozen=True)
class JobKind:
    """What one kind of job adds to the shared loop."""

    # (batch, conds, unconds, encoder) -> the batch's final latents (every pass of it)
    sample: Callable[[Batch, list, list, PromptEncoder], torch.Tensor]
    # (seed, subseed, (prompt, negative, hires prompt, hires negative)) -> the image's infotext parameters
    infotext: Callable[[int, int, tuple], dict]
    # (index in batch, image) -> the image as shown and saved (img2img pastes the untouched area back)
    composite: Callable[[int, Image.Image], Image.Image] = lambda index, image: image


def run_batches(model: SDModel, p, kind: JobKind, *, control: JobControl, hooks: GenerationHooks, networks,
                embeddings, options: EncodeOptions, schedule_steps: int, outdir: Path, result=None):
    """Every batch of `p` (a Txt2ImgParams or Img2ImgParams, already validated) into `result` (a fresh
    Processed when None), which holds each batch's images as soon as they are saved."""
    started = time.perf_counter()
    refresh_placement(model)  # a VAE chosen since loading joins the memory mode's placement
    result = result if result is not None else Processed()
    settings = p.settings
    for batch in image_batches(p):
        if control.interrupted:  # the interrupted batch was the last
            break
        if control.on_batch is not None:
            control.on_batch(batch.index, p.n_iter)
        hooks.before_batch(batch)
        tags = prompt_networks(batch.prompts[0])  # A1111 reads a batch's extra networks from its first prompt
        with activated_loras(model, tags, networks) as active, tiling(model, p.tiling):  # tiling: sampling to decoding
            hooks.after_networks(batch, tags)
            # Textual inversion: records the embeddings used. An interrupt stops a long prompt's encoding.
            encoder = PromptEncoder(model, embeddings, before_chunk=control.check_interrupted)
            conds, unconds = encode_batch(encoder, batch.prompts, batch.negative_prompts, schedule_steps, options,
                                          settings.use_old_scheduling)
            try:
                latents = kind.sample(batch, conds, unconds, encoder)
            except Skipped:
                result.warn(active.warnings)
                continue
            images = hooks.postprocess_batch(batch, decode_latents(model, hooks.post_sample(batch, latents),
                                                                   tiled=settings.tiled_vae_decode,
                                                                   nan_check=settings.nan_check))
        result.warn(active.warnings)
        extra_params = {**active.infotext, **encoder.infotext_params()}  # "Lora hashes", "TI hashes"
        for i, image in enumerate(images):
            if p.face_restoration is not None:  # restore_faces, as A1111: after decoding, before the scripts
                image = p.face_restoration(image)
            image = hooks.after_composite(batch, i, kind.composite(i, hooks.postprocess_image(batch, i, image)))
            seed, subseed = entry(batch.seeds, i), entry(batch.subseeds, i)
            texts = image_texts(batch, i)
            params = with_extra_params(kind.infotext(seed, subseed, texts),
                                       {**extra_params, **image_extra_params(p, batch, i, hooks)})
            result.add(image, p, params, seed, subseed, outdir, prompt=texts[0], negative_prompt=texts[1],
                       hooks=hooks)
    result.seconds = time.perf_counter() - started
    return result
