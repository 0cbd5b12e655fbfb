"""img2img and inpaint: start from the user's image(s) instead of pure noise.

The init image is resized to the working size, encoded, noised to the level where the
shortened schedule starts, and denoised; with a mask only the masked area is repainted and
the original is pasted back over the rest. Parameters and infotext keys are A1111's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from ..models.model import SDModel
from ..networks import LoraLibrary
from . import infotext as infotext_format
from . import masks
from .batches import JobKind, Processed, run_batches
from .conditioning import EncodeOptions
from .decoding import encode_pixels
from .denoiser import JobControl
from .hooks import NO_HOOKS, Batch, GenerationHooks
from .images import check_output_folder, dated
from .params import ParamsError, Txt2ImgParams, number_problem
from .processing import infotext_params
from .rng import ImageRNG
from .sampling import (
    SamplerExtras, check_size, choose_sampler, img2img_steps, pass_conditioning, plan_sampling, run_pass,
)

RESIZE_MODES = ("Just resize", "Crop and resize", "Resize and fill", "Just resize (latent upscale)")
MASKED_CONTENT = ("fill", "original", "latent noise", "latent nothing")  # A1111's infotext spellings
INPAINTING_MASK_WEIGHT = 1.0  # A1111's "Conditional mask weight" default, for 9-channel models


@dataclass
class Img2ImgParams(Txt2ImgParams):
    """`/sdapi/v1/img2img`'s fields. Defaults for inpainting follow A1111's UI."""

    init_images: list = field(default_factory=list)  # PIL images or paths
    mask: object = None  # PIL image or path; white = repaint
    resize_mode: int = 0  # denoising_strength (0.75) comes from Txt2ImgParams
    image_cfg_scale: float | None = None  # instruct-pix2pix models only; none of ours use it
    mask_blur: int | None = None  # sets both directions when given
    mask_blur_x: int = 4
    mask_blur_y: int = 4
    mask_round: bool = True
    inpainting_fill: int = 1
    inpaint_full_res: bool = False  # True: "Only masked"
    inpaint_full_res_padding: int = 32
    inpainting_mask_invert: int = 0
    initial_noise_multiplier: float = 1.0
    img2img_fix_steps: bool = False  # A1111's "do exactly the amount of steps the slider specifies"

    @property
    def blur_xy(self) -> tuple[int, int]:
        return (self.mask_blur, self.mask_blur) if self.mask_blur is not None else (self.mask_blur_x, self.mask_blur_y)

    def validate(self) -> None:
        super().validate()
        problems = []
        if self.enable_hr:
            problems.append("hires fix is a txt2img option; img2img has no second pass")
        if not self.init_images:
            problems.append("img2img needs at least one init image")
        if self.resize_mode not in range(4):
            problems.append(f"resize_mode must be 0, 1, 2 or 3 ({', '.join(RESIZE_MODES)}), not {self.resize_mode}")
        if not 0 <= self.denoising_strength <= 1:
            problems.append(f"denoising_strength must be between 0 and 1, not {self.denoising_strength}")
        if any(not 0 <= b <= 256 for b in self.blur_xy):
            problems.append(f"mask blur must be between 0 and 256, not {self.blur_xy}")
        if self.inpainting_fill not in range(4):
            problems.append(f"inpainting_fill must be 0 (fill), 1 (original), 2 (latent noise) or 3 (latent nothing), "
                            f"not {self.inpainting_fill}")
        if self.inpainting_mask_invert not in (0, 1):
            problems.append(f"inpainting_mask_invert must be 0 or 1, not {self.inpainting_mask_invert}")
        if self.inpaint_full_res_padding < 0:
            problems.append(f"inpaint_full_res_padding must be 0 or more, not {self.inpaint_full_res_padding}")
        noise = self.initial_noise_multiplier
        if number_problem("initial_noise_multiplier", noise, 0, 10) or noise == 0:
            problems.append(f"initial_noise_multiplier must be a finite number above 0 and at most 10, not {noise}")
        if self.image_cfg_scale is not None:
            problems += filter(None, [number_problem("image_cfg_scale", self.image_cfg_scale, 0, 100)])
        if problems:
            raise ParamsError("; ".join(problems))


def load_image(source, what: str) -> Image.Image:
    """A PIL image from an image or a path; an unreadable one is a ParamsError naming it."""
    if isinstance(source, Image.Image):
        return source
    try:
        with Image.open(source) as image:
            image.load()
            return image.copy()
    except (OSError, UnidentifiedImageError, ValueError) as error:
        raise ParamsError(f"cannot read the {what} {source}: {error}") from None


@dataclass
class InitImage:
    """One init image made ready: what is encoded, and how the result goes back."""

    pixels: Image.Image  # at the working size (native size in latent-resize mode)
    mask: Image.Image | None = None  # blurred, at the working size (L)
    overlay: Image.Image | None = None  # the original, transparent where repainted
    paste_to: tuple[int, int, int, int] | None = None  # "Only masked": where the result goes


def prepare_init_image(image: Image.Image, mask: Image.Image | None, p: Img2ImgParams) -> InitImage:
    image = masks.flatten(image)
    if mask is None:
        pixels = image if p.resize_mode == 3 else masks.resize_image(p.resize_mode, image, p.width, p.height)
        return InitImage(pixels)

    mask = masks.read_mask(mask, p.mask_round)
    if p.inpainting_mask_invert:
        mask = Image.eval(mask, lambda v: 255 - v)
    if mask.getbbox() is None:
        raise ParamsError("the mask is empty: nothing to repaint (white marks the area to repaint"
                          + (", and the mask is inverted)" if p.inpainting_mask_invert else ")"))
    if p.inpaint_full_res:
        # Crop and paste-back coordinates are the init image's, so the mask must match it.
        if mask.size != image.size:
            mask = mask.resize(image.size, resample=Image.LANCZOS)
        mask = masks.blur_mask(mask, *p.blur_xy)
        box = masks.crop_region(mask, p.inpaint_full_res_padding)
        if box is None:  # blur cannot empty a mask, but a degenerate one is still refused
            raise ParamsError("the mask is empty after blurring: nothing to repaint")
        box = masks.expand_crop_region(box, p.width, p.height, image.width, image.height)
        x1, y1, x2, y2 = box
        work_mask = masks.resize_image(2, mask.crop(box), p.width, p.height).convert("L")
        pixels = masks.resize_image(2, image.crop(box), p.width, p.height)
        overlay = masks.make_overlay(image, mask)
        prepared = InitImage(pixels, work_mask, overlay, (x1, y1, x2 - x1, y2 - y1))
    else:
        # Latent-resize mode stretches the latents; the mask and overlay follow by stretching.
        mode = 0 if p.resize_mode == 3 else p.resize_mode
        work_mask = masks.resize_image(mode, masks.blur_mask(mask, *p.blur_xy), p.width, p.height).convert("L")
        resized = masks.resize_image(mode, image, p.width, p.height)
        pixels = image if p.resize_mode == 3 else resized
        prepared = InitImage(pixels, work_mask, masks.make_overlay(resized, masks.overlay_mask(work_mask)))
    if p.inpainting_fill != 1:  # A1111 pre-fills for the latent modes too (it shapes the 9-channel input)
        fill_mask = work_mask.resize(prepared.pixels.size, resample=Image.LANCZOS)  # latent-resize: native size
        prepared.pixels = masks.fill_masked_area(prepared.pixels, fill_mask if fill_mask.size != work_mask.size
                                                 else work_mask)
    return prepared


def _to_tensor(images: list[Image.Image], device) -> torch.Tensor:
    """PIL images -> [B, 3, H, W] in [-1, 1]."""
    array = np.stack([np.asarray(image.convert("RGB"), dtype=np.float32) / 127.5 - 1 for image in images])
    return torch.from_numpy(array).permute(0, 3, 1, 2).to(device)


def img2img(model: SDModel, p: Img2ImgParams, control: JobControl | None = None,
            outputs_root: Path = Path("outputs"), networks: LoraLibrary | None = None,
            embeddings=None, hooks: GenerationHooks | None = None, result: Processed | None = None,
            samples_dir: Path | None = None) -> Processed:
    """`samples_dir`: the folder the settings name for these images (options.output_folder), saved in its <date>
    subfolder unless `p.outdir` is given; None: `outputs_root`/img2img-images.
    `embeddings`: textual inversion (networks.embeddings.ModelEmbeddings for this model), or None.
    LoRA (webui/networks) and `hooks` (extension scripts): as in txt2img."""
    p.validate()
    hooks = hooks or NO_HOOKS
    control = control or JobControl()
    choice = choose_sampler(p.sampler_name, p.scheduler)
    sources = [load_image(image, "init image") for image in p.init_images]
    mask = load_image(p.mask, "mask") if p.mask is not None else None
    prepared = [prepare_init_image(image, mask, p) for image in sources]

    settings = p.settings
    options = EncodeOptions.from_settings(settings)
    # The prompt schedule is read on the full `steps` timeline, from its start, as A1111 does.
    schedule_steps = p.steps * choice.schedule_steps_factor
    total_steps, t_enc = img2img_steps(p.steps, p.denoising_strength, p.img2img_fix_steps)
    check_size(model, p.width, p.height)
    plan = plan_sampling(model, choice, max(total_steps, 1), p.width, p.height)
    # The last t_enc + 2 sigmas: t_enc + 1 steps from part-way down the schedule.
    sigmas = plan.sigmas[max(len(plan.sigmas) - (t_enc + 2), 0):]
    outdir = p.outdir or dated(samples_dir or Path(outputs_root) / "img2img-images")
    if p.save_images:  # before any compute: a folder that cannot take the images would lose them
        check_output_folder(outdir, shown_from=Path(outputs_root).parent)

    inits = [prepared[i % len(prepared)] for i in range(p.batch_size)]

    def composite(index: int, image: Image.Image) -> Image.Image:
        init = inits[min(index, len(inits) - 1)]
        return masks.apply_overlay(image, init.overlay, init.paste_to) if init.overlay is not None else image

    kind = JobKind(
        lambda batch, conds, unconds, encoder: _sample_img2img(model, p, plan, sigmas, inits, conds, unconds, batch,
                                                               control, hooks),
        lambda seed, subseed, texts: img2img_infotext_params(model, p, choice, seed, subseed, texts),
        composite,
    )
    return run_batches(model, p, kind, control=control, hooks=hooks, networks=networks, embeddings=embeddings,
                       options=options, schedule_steps=schedule_steps, outdir=outdir, result=result)


def _sample_img2img(model, p: Img2ImgParams, plan, sigmas, inits: list[InitImage], conds, unconds, batch: Batch,
                    control, hooks: GenerationHooks) -> torch.Tensor:
    settings = p.settings
    seeds, subseeds = batch.seeds, batch.subseeds
    factor = model.vae_scale_factor
    latent_h, latent_w = p.height // factor, p.width // factor
    init_latent = _per_image(inits, lambda init: _encode(model, _to_tensor([init.pixels], model.device),
                                                         latent_h, latent_w))

    latent_mask = None
    if inits[0].mask is not None:
        latent_mask = torch.stack([masks.latent_mask(init.mask, latent_w, latent_h, p.mask_round) for init in inits])
        latent_mask = latent_mask.to(model.device, init_latent.dtype)
        keep = 1 - latent_mask
        if p.inpainting_fill == 2:  # latent noise: fresh seed noise where repainted
            fresh = ImageRNG(init_latent.shape[1:], seeds, source=settings.randn_source, device=model.device).first()
            init_latent = init_latent * keep + fresh.to(init_latent.dtype) * latent_mask
        elif p.inpainting_fill == 3:  # latent nothing: zeros where repainted
            init_latent = init_latent * keep

    if p.denoising_strength == 0:  # nothing to change: the input back through the VAE
        return init_latent

    rng = ImageRNG(init_latent.shape[1:], seeds, subseeds, p.subseed_strength, p.seed_resize_from_h,
                   p.seed_resize_from_w, source=settings.randn_source, device=model.device,
                   eta_noise_seed_delta=settings.eta_noise_seed_delta if plan.sampler.uses_ensd else 0)
    noise = rng.first() * p.initial_noise_multiplier
    # In sigma space the start is init + noise * sigma for every sampler kind (for DDIM & co
    # this is A1111's sqrt(a) * init + sqrt(1 - a) * noise, divided by sqrt(a)); flow models mix instead.
    x = model.family.noised(init_latent, noise.to(init_latent.dtype), sigmas[0])
    hooks.before_sampling(batch, x, noise, conds, unconds)
    image_cond = None
    if model.is_inpainting:
        image_cond = _per_image(inits, lambda init: inpainting_image_cond(model, init, latent_h, latent_w))
    extras = SamplerExtras(p.eta, p.s_churn, p.s_tmin, p.s_tmax, p.s_noise)
    return run_pass(model, plan, sigmas, x, conds, unconds, cfg_scale=p.cfg_scale, rng=rng, seeds=seeds,
                    settings=settings, extras=extras, control=control, image_cond=image_cond,
                    extra=pass_conditioning(model, p.width, p.height, p.distilled_cfg_scale),
                    init_latent=init_latent if latent_mask is not None else None, latent_mask=latent_mask,
                    hooks=hooks)


def _per_image(inits: list[InitImage], make) -> torch.Tensor:
    """Stack make(init) over the batch, computing it once per distinct init image."""
    done: dict[int, torch.Tensor] = {}
    for init in inits:
        if id(init) not in done:
            done[id(init)] = make(init)
    return torch.cat([done[id(init)] for init in inits])


def _encode(model: SDModel, pixels: torch.Tensor, latent_h: int, latent_w: int) -> torch.Tensor:
    latents = encode_pixels(model, pixels)
    if latents.shape[-2:] != (latent_h, latent_w):  # "Just resize (latent upscale)"
        latents = F.interpolate(latents, size=(latent_h, latent_w), mode="bilinear")
    return latents


def inpainting_image_cond(model: SDModel, init: InitImage, latent_h: int, latent_w: int) -> torch.Tensor:
    """An inpainting model's extra input (the family says which): from the latents of the image with the
    masked area greyed out and the binary mask (no mask: everything masked, as A1111)."""
    pixels = _to_tensor([init.pixels], model.device)
    if init.mask is not None:
        mask = torch.from_numpy(np.asarray(init.mask, dtype=np.float32) / 255.0).round()[None, None].to(pixels.device)
        if mask.shape[-2:] != pixels.shape[-2:]:  # latent-resize mode: pixels stay at the native size
            mask = F.interpolate(mask, size=pixels.shape[-2:], mode="nearest")
    else:
        mask = torch.ones(1, 1, *pixels.shape[-2:], device=pixels.device)
    masked = pixels * (1 - INPAINTING_MASK_WEIGHT * mask)  # 0 is mid-grey in [-1, 1]
    latents = _encode(model, masked, latent_h, latent_w)
    if mask.shape[-2:] != (latent_h * model.vae_scale_factor, latent_w * model.vae_scale_factor):
        mask = F.interpolate(mask, size=(latent_h * model.vae_scale_factor, latent_w * model.vae_scale_factor),
                             mode="nearest")
    return model.family.inpaint_conditioning(model, latents, mask).to(model.dtype)


def img2img_infotext_params(model: SDModel, p: Img2ImgParams, choice, seed: int, subseed: int,
                            texts: tuple[str, str, str, str] | None = None) -> dict:
    """txt2img's parameter line plus A1111's img2img and inpaint keys, written when they apply."""
    params = dict(infotext_params(model, p, choice, seed, subseed, texts))
    params["Denoising strength"] = _number(p.denoising_strength)
    if model.is_inpainting:
        params["Conditional mask weight"] = INPAINTING_MASK_WEIGHT
    if p.mask is not None:
        blur_x, blur_y = p.blur_xy
        if (blur_x > 0 or blur_y > 0) and blur_x == blur_y:  # A1111 writes one value or none
            params["Mask blur"] = blur_x
        if p.inpainting_mask_invert:
            params["Mask mode"] = "Inpaint not masked"
        if p.inpainting_fill != 1:
            params["Masked content"] = MASKED_CONTENT[p.inpainting_fill]
        if p.inpaint_full_res:
            params["Inpaint area"] = "Only masked"
            params["Masked area padding"] = p.inpaint_full_res_padding
    if p.initial_noise_multiplier != 1.0:
        params["Noise multiplier"] = _number(p.initial_noise_multiplier)
    return infotext_format.order_params(params)


def _number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value
