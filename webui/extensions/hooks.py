"""The generation hooks that run A1111 scripts and callbacks for one batch of one `p`.

Our engine calls these (generation/hooks.py) at each point; they show the scripts A1111's
view (`p.prompts`, `p.seeds`, `PostprocessImageArgs`, `CFGDenoiserParams`, ...) and copy what
the scripts changed back into the engine's batch.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from PIL import Image

from ..generation.hooks import Batch, DenoiserCall, GenerationHooks, ImageSave
from .callbacks import AfterCFGCallbackParams, CFGDenoisedParams, CFGDenoiserParams, ImageSaveParams
from .scripts import PostprocessBatchListArgs, PostprocessImageArgs, PostSampleArgs, Script

log = logging.getLogger(__name__)

_BATCH_LISTS = ("prompts", "negative_prompts", "seeds", "subseeds", "hr_prompts", "hr_negative_prompts")


def overrides(script: Script, method: str) -> bool:
    """Whether the script defines `method` itself (so the base class's no-op can be skipped)."""
    return getattr(type(script), method, None) is not getattr(Script, method)


class ExtraNetworkParams:
    """A1111's parsed `<kind:a:b>` tag: `items` are its colon-separated parts."""

    def __init__(self, items):
        self.items = list(items)
        self.positional = [item for item in self.items if "=" not in item]
        self.named = dict(item.split("=", 1) for item in self.items if "=" in item)


class ScriptHooks(GenerationHooks):
    def __init__(self, p, runner, callbacks, extra_networks=None):
        self.p, self.runner, self.callbacks = p, runner, callbacks
        self.extra_networks = extra_networks  # the extensions' ExtraNetworkRegistry, when there is one
        self.scripts = runner.alwayson_scripts if runner is not None else []
        self.denoiser_hooks = any(callbacks.callbacks(c) for c in ("cfg_denoiser", "cfg_denoised", "cfg_after_cfg"))

    # -- per batch ---------------------------------------------------------------------------
    def _show(self, batch: Batch) -> None:
        for name in _BATCH_LISTS:
            setattr(self.p, name, getattr(batch, name))

    def _take(self, batch: Batch) -> None:
        for name in _BATCH_LISTS:
            setattr(batch, name, list(getattr(self.p, name)))

    def _batch_kwargs(self) -> dict:
        p = self.p
        return {"batch_number": p.iteration, "prompts": p.prompts, "seeds": p.seeds, "subseeds": p.subseeds}

    def before_batch(self, batch: Batch) -> None:
        self._show(batch)
        if self.runner is not None:
            self.runner.run_before_process_batch(self.p, **self._batch_kwargs())
        self._take(batch)

    def after_networks(self, batch: Batch, networks: list) -> None:
        data: dict[str, list] = {}
        for network in networks:
            data.setdefault(network.kind, []).append(ExtraNetworkParams(network.items))
        self.p.extra_network_data = data
        if self.extra_networks is not None and not self.p.disable_extra_networks:
            self.extra_networks.activate(self.p, data)  # extensions' networks (ours, LoRA, are active already)
        if self.runner is not None:
            self.runner.run_after_extra_networks_activate(self.p, **self._batch_kwargs(), extra_network_data=data)
            self.runner.run_process_batch(self.p, **self._batch_kwargs())
        self._take(batch)

    def before_sampling(self, batch, x, noise, conds, unconds) -> None:
        if self.runner is not None:
            self.runner.run_process_before_every_sampling(self.p, x=x, noise=noise, c=conds, uc=unconds)

    def before_hires(self, batch: Batch) -> None:
        if self.runner is not None:
            self.runner.run_before_hr(self.p)

    def post_sample(self, batch: Batch, latents: torch.Tensor) -> torch.Tensor:
        if not any(overrides(s, "post_sample") for s in self.scripts):
            return latents
        args = PostSampleArgs(latents.clone())  # outside inference mode: scripts may edit it in place
        self.runner.run_post_sample(self.p, args)
        return args.samples

    def postprocess_batch(self, batch: Batch, images: list[Image.Image]) -> list[Image.Image]:
        if not any(overrides(s, m) for s in self.scripts for m in ("postprocess_batch", "postprocess_batch_list")):
            return images
        # A1111 hands these hooks the batch as a [B, 3, H, W] tensor in 0..1.
        pixels = torch.stack([torch.from_numpy(np.asarray(i.convert("RGB"), dtype=np.float32) / 255.0).permute(2, 0, 1)
                              for i in images])
        self.runner.run_postprocess_batch(self.p, pixels, batch_number=self.p.iteration)
        args = PostprocessBatchListArgs(list(pixels))
        self.runner.run_postprocess_batch_list(self.p, args, batch_number=self.p.iteration)
        return [_to_image(item) for item in args.images]

    def postprocess_image(self, batch: Batch, index: int, image: Image.Image) -> Image.Image:
        return self._per_image("postprocess_image", index, image)

    def after_composite(self, batch: Batch, index: int, image: Image.Image) -> Image.Image:
        return self._per_image("postprocess_image_after_composite", index, image)

    def _per_image(self, method: str, index: int, image: Image.Image) -> Image.Image:
        if not any(overrides(s, method) for s in self.scripts):
            return image
        self.p.batch_index = index
        args = PostprocessImageArgs(image)
        getattr(self.runner, f"run_{method}")(self.p, args)
        return args.image

    def extra_infotext(self, batch: Batch, index: int) -> dict:
        """p.extra_generation_params as they are now: a list has one entry per image of all_prompts,
        a function is called as A1111 calls it."""
        p = self.p
        position = p.iteration * p.batch_size + index
        values = {}
        for key, value in dict(p.extra_generation_params or {}).items():
            try:
                if isinstance(value, list):
                    value = value[position]
                elif callable(value):
                    value = value(p=p, index=position, iteration=p.iteration, position_in_batch=index,
                                  all_prompts=p.all_prompts, all_negative_prompts=p.all_negative_prompts,
                                  all_seeds=p.all_seeds, all_subseeds=p.all_subseeds, comments=p.comments)
            except Exception as error:
                log.warning("infotext value %r of a script failed: %s", key, error)
                value = None
            values[key] = value
        return values

    # -- per denoiser call (only when such callbacks exist) -----------------------------------
    def cfg_denoiser(self, call: DenoiserCall) -> None:
        params = CFGDenoiserParams(call.x, call.image_cond, call.sigma, call.sampling_step, call.total_sampling_steps,
                                   call.text_cond, call.text_uncond)
        self.callbacks.run("cfg_denoiser", params)
        call.x, call.image_cond, call.sigma = params.x, params.image_cond, params.sigma

    def cfg_denoised(self, x, step: int, total: int):
        params = CFGDenoisedParams(x, step, total, getattr(self.p, "sd_model", None))
        self.callbacks.run("cfg_denoised", params)
        return params.x

    def cfg_after_cfg(self, x, step: int, total: int):
        params = AfterCFGCallbackParams(x, step, total)
        self.callbacks.run("cfg_after_cfg", params)
        return params.x

    # -- saving ------------------------------------------------------------------------------
    def before_image_saved(self, save: ImageSave) -> None:
        params = ImageSaveParams(save.image, self.p, save.filename, save.pnginfo)
        self.callbacks.run("before_image_saved", params)
        save.image, save.filename, save.pnginfo = params.image, params.filename, params.pnginfo

    def image_saved(self, save: ImageSave) -> None:
        self.callbacks.run("image_saved", ImageSaveParams(save.image, self.p, save.filename, save.pnginfo))


def _to_image(item) -> Image.Image:
    """A script's image back to PIL: a [3, H, W] tensor in 0..1, an array, or already an image."""
    if isinstance(item, Image.Image):
        return item
    if isinstance(item, torch.Tensor):
        item = item.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(np.ascontiguousarray((np.asarray(item) * 255.0).round().astype(np.uint8)))
