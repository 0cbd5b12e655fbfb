"""A1111's `modules.processing`: the `p` classes, process_images, Processed, fix_seed."""

from __future__ import annotations

from webui import compat
from webui.extensions.processing import (  # noqa: F401
    Processed, StableDiffusionProcessing, StableDiffusionProcessingImg2Img, StableDiffusionProcessingTxt2Img,
    fix_seed, process_images,
)
from webui.generation.rng import fix_seed as get_fixed_seed  # noqa: F401

opt_C = 4  # latent channels
opt_f = 8  # pixels per latent cell


def create_binary_mask(image, round: bool = True):
    """A1111's mask from an image: its alpha channel when it has transparency, else its grey levels; with
    `round`, every pixel 0 or 255 (over 128 counts as masked)."""
    if image.mode == "RGBA" and image.getextrema()[-1] != (255, 255):
        image = image.split()[-1].convert("L")
    else:
        image = image.convert("L")
    return image.point(lambda value: 255 if value > 128 else 0) if round else image


def create_infotext(p, all_prompts=None, all_seeds=None, all_subseeds=None, comments=None, iteration=0,
                    position_in_batch=0, use_main_prompt=False, index=None, all_negative_prompts=None) -> str:
    """The infotext our engine would write for image `index` of p (after p's seeds and prompts are set)."""
    from webui.generation import infotext
    from webui.generation.batches import with_extra_params
    from webui.generation.processing import infotext_params
    from webui.generation.sampling import choose_sampler

    if index is None:
        index = position_in_batch + iteration * p.batch_size
    prompts = all_prompts or p.all_prompts or [p.prompt]
    negatives = all_negative_prompts or p.all_negative_prompts or [p.negative_prompt]
    seeds, subseeds = all_seeds or p.all_seeds or [p.seed], all_subseeds or p.all_subseeds or [p.subseed]
    pick = lambda values: values[min(index, len(values) - 1)]  # noqa: E731
    prompt = p.main_prompt if use_main_prompt and p.main_prompt else pick(prompts)
    texts = (prompt, pick(negatives), p.hr_prompt or prompt, p.hr_negative_prompt or pick(negatives))
    params = infotext_params(_Model(p.sd_model), p.to_params(), choose_sampler(p.sampler_name, p.scheduler),
                             pick(seeds), pick(subseeds), texts)
    extra = {k: (v[index] if isinstance(v, list) and index < len(v) else v)
             for k, v in (p.extra_generation_params or {}).items() if not callable(v)}
    return infotext.create_infotext(texts[0], texts[1], with_extra_params(params, extra))


class _Model:
    """The fields infotext reads from a model, when p has none loaded."""

    def __init__(self, model):
        self.short_hash = getattr(model, "short_hash", None)
        self.name = getattr(model, "name", None)
        self.vae_file = getattr(model, "vae_file", None)
        self.vae_sha256 = getattr(model, "vae_sha256", None)


__getattr__ = compat.report_missing_names(__name__)
