"""Chroma: a Flux.1-schnell-derived transformer conditioned on T5-XXL alone, with real CFG.

Chosen as our first of the newest families because its parts are Flux's (packing, positions, VAE) and
its differences are exactly the interface's points: no CLIP, no pooled vector, no guidance embedding,
CFG with a negative prompt, and T5 read with its padding masked.
"""

from __future__ import annotations

import torch

from .base import Defaults
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

    def load_single_file(self, state, models_root, dtype, vae_dtype) -> dict:
        """A BFL-layout Chroma file (Flux's tables, plus its approximator, without modulation layers); T5 and
        the Flux VAE from models/text_encoder and models/VAE when the file does not carry them."""
        from diffusers import ChromaTransformer2DModel

        from . import companions, flux_layout

        core = flux_layout.strip_prefix({k: v for k, v in state.items() if not k.startswith(("text_encoders.", "vae."))})
        config = flux_layout.chroma_config_from_weights(core)
        transformer = companions.empty(lambda: ChromaTransformer2DModel(**config))
        shapes = {key: value.shape for key, value in transformer.state_dict().items()}
        transformer = companions.filled(transformer, flux_layout.to_diffusers(core, shapes), dtype, "transformer",
                                        keep_fp8=True)
        width = config["joint_attention_dim"]
        t5 = companions.part(state, "text_encoders.t5xxl.transformer.", models_root, companions.TEXT_ENCODER_DIRS,
                             lambda path, keys: companions.is_t5(keys) and companions.t5_width(path) == width,
                             f"T5-XXL text encoder (width {width})", "t5xxl_fp16.safetensors",
                             lambda weights: companions.t5_from_weights(weights, dtype, "T5-XXL text encoder"))
        channels = config["out_channels"] // 4
        vae = companions.part(state, "vae.", models_root, companions.VAE_DIRS,
                              lambda path, keys: companions.is_vae(keys) and companions.vae_latent_channels(path) == channels,
                              f"VAE ({channels} latent channels)", "ae.safetensors",
                              lambda weights: companions.vae_from_weights(weights, *self.vae_factors, vae_dtype),
                              prefer=("ae", "flux"))
        # Chroma's released scheduler config is Flux dev's: shift by resolution.
        schedule = {"use_dynamic_shifting": True, "base_shift": 0.5, "max_shift": 1.15, "base_image_seq_len": 256,
                    "max_image_seq_len": 4096}
        return dict(family=self, unet=transformer, vae=vae, text_encoders=[t5],
                    tokenizers=[companions.t5_tokenizer(models_root)], schedule_config=schedule,
                    prediction_type="flow", default_size=self.default_size)

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
