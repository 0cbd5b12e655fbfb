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

    vae_factors = (1.5305, 0.0609)

    def load_single_file(self, state, models_root, dtype, vae_dtype) -> dict:
        """An MMDiT-layout file (SAI's, or ComfyUI's with `text_encoders.*`), its missing parts (CLIP-L, CLIP-G,
        T5, the VAE) from models/text_encoder and models/VAE (see companions.py)."""
        from diffusers import SD3Transformer2DModel

        from . import companions, sd3_layout
        from .sd import clip_tokenizers

        parts_prefixes = ("text_encoders.", "first_stage_model.", "vae.")
        core = sd3_layout.strip_prefix({k: v for k, v in state.items() if not k.startswith(parts_prefixes)})
        config = sd3_layout.config_from_weights(core)
        transformer = companions.empty(lambda: SD3Transformer2DModel(**config))
        shapes = {key: value.shape for key, value in transformer.state_dict().items()}
        transformer = companions.filled(transformer, sd3_layout.to_diffusers(core, shapes), dtype, "transformer",
                                        keep_fp8=True)
        pooled = config["pooled_projection_dim"]  # CLIP-L's and CLIP-G's projections side by side

        def clip(which: str, wanted):
            def build(weights):
                width = weights[next(k for k in weights if k.endswith("token_embedding.weight"))].shape[1]
                if "text_projection.weight" not in weights:  # files that left out CLIP's projection: it is the identity
                    weights = {**weights, "text_projection.weight": torch.eye(width)}
                return companions.clip_from_weights(weights, dtype, f"CLIP-{which.upper()} text encoder")

            fits = lambda path, keys: companions.is_clip(keys) and wanted(companions.clip_width(path))  # noqa: E731
            return companions.part(state, f"text_encoders.clip_{which}.transformer.", models_root,
                                   companions.TEXT_ENCODER_DIRS, fits, f"CLIP-{which.upper()} text encoder",
                                   f"clip_{which}.safetensors", build, prefer=(f"clip_{which}",))

        clip_l = clip("l", lambda width: width is not None and width < pooled)
        width_l = clip_l.config.hidden_size
        clip_g = clip("g", lambda width: width == pooled - width_l)
        t5 = companions.part(state, "text_encoders.t5xxl.transformer.", models_root, companions.TEXT_ENCODER_DIRS,
                             lambda path, keys: companions.is_t5(keys) and companions.t5_width(path) == config["joint_attention_dim"],
                             f"T5-XXL text encoder (width {config['joint_attention_dim']})", "t5xxl_fp16.safetensors",
                             lambda weights: companions.t5_from_weights(weights, dtype, "T5-XXL text encoder"))
        vae_prefix = next((p for p in ("first_stage_model.", "vae.") if any(k.startswith(p) for k in state)), "vae.")
        vae = companions.part(state, vae_prefix, models_root, companions.VAE_DIRS,
                              lambda path, keys: companions.is_vae(keys) and companions.vae_latent_channels(path) == config["in_channels"],
                              f"VAE ({config['in_channels']} latent channels)", "sd3_vae.safetensors",
                              lambda weights: companions.vae_from_weights(weights, *self.vae_factors, vae_dtype),
                              prefer=("sd3",))
        tokenizers = [*clip_tokenizers(None, ("tokenizer", "tokenizer_2"), (None, "!")), companions.t5_tokenizer(models_root)]
        return dict(family=self, unet=transformer, vae=vae, text_encoders=[clip_l, clip_g, t5], tokenizers=tokenizers,
                    schedule_config={"shift": 3.0}, prediction_type="flow",
                    default_size=config["sample_size"] * 8)

    def lora_aliases(self, network):
        """Kohya-style SD3 LoRAs name MMDiT's layers (`joint_blocks_0_x_block_attn_qkv`)."""
        from .base import aliases_by_original_name
        from .sd3_layout import original_names

        return aliases_by_original_name(network, original_names(network))

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
