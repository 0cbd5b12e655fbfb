"""Z-Image (Tongyi-MAI, late 2025; "Turbo" draws in 8 steps): a single-stream DiT over 2x2 latent patches,
conditioned on Qwen3's hidden states through its chat template, flow matching on the Flux VAE's latents.

Chosen as the second of the newest families because it is the one artists ask for most since its release
and because it differs from Flux where the interface must hold: an LLM text encoder with variable-length
text (no padding), a network that takes per-image lists and counts time the other way (1 - sigma), and
a velocity of the opposite sign.
"""

from __future__ import annotations

import torch

from .base import Defaults
from .flow import FlowFamily


class ZImageFamily(FlowFamily):
    name, label = "zimage", "Z-Image"
    pipelines = ("ZImagePipeline", "ZImageImg2ImgPipeline", "ZImageInpaintPipeline")
    text_parts = (("text_encoder", "tokenizer", "Qwen3"),)
    variable_text = True
    # Turbo: 8 steps without CFG (diffusers' guidance 0 is CFG scale 1 here: pos + g(pos - neg) = CFG g + 1).
    defaults = Defaults(steps=8, cfg_scale=1.0, sampler_name="Euler")

    vae_factors = (0.3611, 0.1159)  # the Flux VAE

    def claims_weights(self, keys) -> bool:
        return any("cap_embedder." in k for k in keys) and any("noise_refiner." in k for k in keys)

    def load_single_file(self, state, models_root, dtype, vae_dtype) -> dict:
        """The original layout (ComfyUI's `model.diffusion_model.` prefix or none); Qwen3 and its tokenizer
        folder from models/text_encoder, the Flux VAE from models/VAE (see companions.py)."""
        from diffusers import ZImageTransformer2DModel

        from . import companions, zimage_layout

        parts_prefixes = ("text_encoders.", "vae.", "first_stage_model.")
        weights = zimage_layout.to_diffusers({k: v for k, v in state.items() if not k.startswith(parts_prefixes)})
        config = zimage_layout.config_from_weights(weights)
        transformer = companions.filled(companions.empty(lambda: ZImageTransformer2DModel(**config)), weights, dtype,
                                        "transformer", keep_fp8=True)
        width = config["cap_feat_dim"]
        qwen = companions.part(state, "text_encoders.qwen3_4b.transformer.", models_root, companions.TEXT_ENCODER_DIRS,
                               lambda path, keys: companions.is_qwen3(keys) and companions.qwen3_width(path) == width,
                               f"Qwen3 text encoder (width {width})", "qwen_3_4b.safetensors",
                               lambda weights: companions.qwen3_from_weights(weights, dtype))
        channels = config["in_channels"]
        vae = companions.part(state, "vae.", models_root, companions.VAE_DIRS,
                              lambda path, keys: companions.is_vae(keys) and companions.vae_latent_channels(path) == channels,
                              f"VAE ({channels} latent channels)", "ae.safetensors",
                              lambda weights: companions.vae_from_weights(weights, *self.vae_factors, vae_dtype),
                              prefer=("ae", "flux"))
        tokenizer = companions.chat_tokenizer(models_root, "Qwen3", "qwen3_tokenizer")
        return dict(family=self, unet=transformer, vae=vae, text_encoders=[qwen], tokenizers=[tokenizer],
                    schedule_config={"shift": 3.0}, prediction_type="flow", default_size=self.default_size)

    def long_text_encoder(self, model):
        from webui.generation.conditioning_llm import ChatTextEncoder

        return ChatTextEncoder(model.text_encoders[0], model.tokenizers[0])

    def combine(self, model, clip_outputs, long_hidden):
        return long_hidden, None  # a list: one tensor per text, each its own length

    def predict(self, model, schedule, x, sigma, crossattn, pooled, extra, image_cond):
        lengths = extra.get("text_lengths") or (crossattn.shape[1],) * x.shape[0]
        images = list(x.to(model.dtype).unsqueeze(2).unbind(0))  # [C, 1, h, w] each: one frame
        texts = [crossattn[i, :length] for i, length in enumerate(lengths)]
        out = model.unet(images, (1 - sigma).to(model.dtype), texts, return_dict=False)[0]
        velocity = -torch.stack([o.float() for o in out]).squeeze(2)  # the network predicts x0 - noise
        return self.velocity_to_denoised(x, sigma, velocity)


ZIMAGE = ZImageFamily()
