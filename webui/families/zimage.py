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
