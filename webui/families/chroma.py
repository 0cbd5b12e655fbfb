"""Chroma: a Flux.1-schnell-derived transformer conditioned on T5-XXL alone, with real CFG.

Chosen as our first of the newest families because its parts are Flux's (packing, positions, VAE) and
its differences are exactly the interface's points: no CLIP, no pooled vector, no guidance embedding,
CFG with a negative prompt, and T5 read with its padding masked.
"""

from __future__ import annotations

import torch

from .base import Defaults, ModelFamily
from .flux import FluxFamily, image_ids, pack, unpack


class ChromaFamily(FluxFamily):
    name, label = "chroma", "Chroma"
    pipelines = ("ChromaPipeline", "ChromaImg2ImgPipeline")
    text_parts = (("text_encoder", "tokenizer", "T5-XXL"),)
    distilled_guidance = False
    defaults = Defaults(steps=26, cfg_scale=4.0, sampler_name="Euler")

    def claims_weights(self, keys) -> bool:
        return any("distilled_guidance_layer." in k for k in keys) and any("double_blocks." in k for k in keys)

    def takes_guidance(self, model) -> bool:
        return False

    def load_single_file(self, state, models_root, dtype, vae_dtype):
        # Flux's reader does not fit Chroma's layout (its guidance approximator, no CLIP): not yet.
        return ModelFamily.load_single_file(self, state, models_root, dtype, vae_dtype)

    def text_encoders(self, model):
        return []

    def long_text_encoder(self, model):
        from webui.generation.conditioning_t5 import T5TextEncoder

        return T5TextEncoder(model.text_encoders[0], model.tokenizers[0], 0, masked_padding=True)

    def combine(self, model, clip_outputs, long_hidden):
        return long_hidden, None

    def predict(self, model, schedule, x, sigma, crossattn, pooled, extra, image_cond):
        b, _, h, w = x.shape
        dtype = model.dtype
        out = model.unet(
            hidden_states=pack(x).to(dtype), timestep=sigma.to(dtype), encoder_hidden_states=crossattn,
            img_ids=image_ids(h, w, x.device, dtype), txt_ids=torch.zeros(crossattn.shape[1], 3, device=x.device, dtype=dtype),
        ).sample
        return self.velocity_to_denoised(x, sigma, unpack(out, h, w))


CHROMA = ChromaFamily()
