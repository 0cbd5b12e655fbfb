"""Stable Diffusion 3 / 3.5 (medium, large): an MMDiT over CLIP-L + CLIP-G + T5-XXL, flow matching, CFG."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import Defaults
from .flow import FlowFamily

T5_TOKENS = 256  # diffusers' default max_sequence_length for SD3: shorter prompts are padded to it


class SD3Family(FlowFamily):
    name, label = "sd3", "SD 3.x"
    pipelines = ("StableDiffusion3Pipeline", "StableDiffusion3Img2ImgPipeline", "StableDiffusion3InpaintPipeline")
    text_parts = (("text_encoder", "tokenizer", "CLIP-L"), ("text_encoder_2", "tokenizer_2", "CLIP-G"),
                  ("text_encoder_3", "tokenizer_3", "T5-XXL"))
    defaults = Defaults(steps=28, cfg_scale=5.0, sampler_name="Euler")

    def claims_weights(self, keys) -> bool:
        return any("joint_blocks." in key for key in keys) and any(k.endswith("x_embedder.proj.weight") for k in keys)

    def text_encoders(self, model):
        from webui.generation.conditioning import ClipTextEncoder

        # Both CLIPs are read at their penultimate layer without the final norm; pooled from the projection.
        return [ClipTextEncoder(model.text_encoders[0], model.tokenizers[0], lambda o: (2, False), "clip_l"),
                ClipTextEncoder(model.text_encoders[1], model.tokenizers[1], lambda o: (2, False), "clip_g")]

    def long_text_encoder(self, model):
        from webui.generation.conditioning_t5 import T5TextEncoder

        return T5TextEncoder(model.text_encoders[2], model.tokenizers[2], T5_TOKENS)

    def combine(self, model, clip_outputs, long_hidden):
        clip = torch.cat([hidden for hidden, _ in clip_outputs], dim=-1)  # 768 + 1280 channels
        clip = F.pad(clip, (0, long_hidden.shape[-1] - clip.shape[-1]))  # zero-padded to T5's width
        pooled = torch.cat([pooled for _, pooled in clip_outputs], dim=-1)
        return torch.cat([clip, long_hidden.to(clip.dtype)], dim=1), pooled  # CLIP tokens, then T5's

    def predict(self, model, schedule, x, sigma, crossattn, pooled, extra, image_cond):
        out = model.unet(hidden_states=x.to(model.dtype), timestep=(sigma * 1000).to(model.dtype),
                         encoder_hidden_states=crossattn, pooled_projections=pooled).sample
        return self.velocity_to_denoised(x, sigma, out)


SD3 = SD3Family()
