"""Flux.1 (dev, schnell): a transformer over packed 2x2 latent patches, CLIP-L (pooled only) + T5-XXL,
flow matching with a resolution-dependent shift; dev takes a distilled guidance value instead of CFG."""

from __future__ import annotations

import torch

from .base import Defaults
from .flow import FlowFamily


def pack(latents: torch.Tensor) -> torch.Tensor:
    """[B, C, h, w] -> [B, (h/2)(w/2), 4C]: each 2x2 patch becomes one token."""
    b, c, h, w = latents.shape
    patches = latents.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5)
    return patches.reshape(b, (h // 2) * (w // 2), c * 4)


def unpack(tokens: torch.Tensor, h: int, w: int) -> torch.Tensor:
    b, _, features = tokens.shape
    c = features // 4
    patches = tokens.view(b, h // 2, w // 2, c, 2, 2).permute(0, 3, 1, 4, 2, 5)
    return patches.reshape(b, c, h, w)


def image_ids(h: int, w: int, device, dtype) -> torch.Tensor:
    """Each patch token's position (0, row, column) for the transformer's rotary embedding."""
    ids = torch.zeros(h // 2, w // 2, 3)
    ids[..., 1] = torch.arange(h // 2)[:, None]
    ids[..., 2] = torch.arange(w // 2)[None, :]
    return ids.reshape(-1, 3).to(device, dtype)


class FluxFamily(FlowFamily):
    name, label = "flux", "Flux.1"
    pipelines = ("FluxPipeline", "FluxImg2ImgPipeline", "FluxInpaintPipeline", "FluxFillPipeline")
    text_parts = (("text_encoder", "tokenizer", "CLIP-L"), ("text_encoder_2", "tokenizer_2", "T5-XXL"))
    distilled_guidance = True
    defaults = Defaults(steps=20, cfg_scale=1.0, sampler_name="Euler", distilled_cfg_scale=3.5)
    t5_tokens = 512  # dev; schnell was trained with 256

    vae_factors = (0.3611, 0.1159)  # the Flux VAE's scaling and shift, for VAE files that carry no config

    def load_single_file(self, state, models_root, dtype, vae_dtype) -> dict:
        """A BFL-layout file (transformer only, or all-in-one with `text_encoders.*` and `vae.*`), its missing
        parts from models/text_encoder and models/VAE (see companions.py)."""
        from diffusers import FluxTransformer2DModel

        from . import companions, flux_layout
        from .sd import clip_tokenizers

        parts_prefixes = ("text_encoders.", "vae.", "first_stage_model.", "conditioner.")
        transformer_state = flux_layout.strip_prefix({k: v for k, v in state.items() if not k.startswith(parts_prefixes)})
        config = flux_layout.config_from_weights(transformer_state)
        transformer = companions.empty(lambda: FluxTransformer2DModel(**config))
        shapes = {key: value.shape for key, value in transformer.state_dict().items()}
        transformer = companions.filled(transformer, flux_layout.to_diffusers(transformer_state, shapes), dtype,
                                        "transformer", keep_fp8=True)
        clip = companions.part(state, "text_encoders.clip_l.transformer.", models_root, companions.TEXT_ENCODER_DIRS,
                               lambda path, keys: companions.is_clip(keys)
                               and companions.clip_width(path) == config["pooled_projection_dim"],
                               f"CLIP-L text encoder (width {config['pooled_projection_dim']})", "clip_l.safetensors",
                               lambda weights: companions.clip_from_weights(weights, dtype, "CLIP-L text encoder"))
        t5 = companions.part(state, "text_encoders.t5xxl.transformer.", models_root, companions.TEXT_ENCODER_DIRS,
                             lambda path, keys: companions.is_t5(keys)
                             and companions.t5_width(path) == config["joint_attention_dim"],
                             f"T5-XXL text encoder (width {config['joint_attention_dim']})", "t5xxl_fp16.safetensors",
                             lambda weights: companions.t5_from_weights(weights, dtype, "T5-XXL text encoder"))
        latent_channels = config["out_channels"] // 4  # Flux Fill takes more channels in than it gives out
        vae_prefix = next((p for p in ("vae.", "first_stage_model.") if any(k.startswith(p) for k in state)), "vae.")
        vae = companions.part(state, vae_prefix, models_root, companions.VAE_DIRS,
                              lambda path, keys: companions.is_vae(keys)
                              and companions.vae_latent_channels(path) == latent_channels,
                              f"VAE ({latent_channels} latent channels)", "ae.safetensors",
                              lambda weights: companions.vae_from_weights(weights, *self.vae_factors, vae_dtype),
                              prefer=("flux", "ae"))
        tokenizers = [*clip_tokenizers(None, ("tokenizer",), (None,)), companions.t5_tokenizer(models_root)]
        schedule = {"use_dynamic_shifting": True, "base_shift": 0.5, "max_shift": 1.15, "base_image_seq_len": 256,
                    "max_image_seq_len": 4096} if config["guidance_embeds"] else {"shift": 1.0}
        return dict(family=self, unet=transformer, vae=vae, text_encoders=[clip, t5], tokenizers=tokenizers,
                    schedule_config=schedule, prediction_type="flow", default_size=self.default_size)

    def lora_aliases(self, network):
        """Kohya-style Flux LoRAs name BFL's layers (`double_blocks_0_img_attn_qkv`)."""
        from .base import aliases_by_original_name
        from .flux_layout import original_names

        return aliases_by_original_name(network, original_names(network))

    def is_inpainting_model(self, model) -> bool:
        # Flux Fill: its patches carry the masked image's latents and an 8x8 pixel mask besides the noisy latents.
        config = model.unet.config
        return config.in_channels > (config.out_channels or config.in_channels)

    def inpaint_conditioning(self, model, masked_latents, mask):
        """Flux Fill's extra input: the masked image's latents, then each latent pixel's 8x8 block of the pixel
        mask as 64 channels (packed with the latents into each patch token)."""
        b, _, h, w = masked_latents.shape
        factor = mask.shape[-1] // w
        blocks = mask[:, 0].reshape(b, h, factor, w, factor).permute(0, 2, 4, 1, 3).reshape(b, factor * factor, h, w)
        return torch.cat([masked_latents, blocks.to(masked_latents.dtype)], dim=1)

    def claims_weights(self, keys) -> bool:
        return any("double_blocks." in k for k in keys) and any("single_blocks." in k for k in keys) \
            and any(k.endswith("img_in.weight") for k in keys)

    def takes_guidance(self, model) -> bool:
        return bool(getattr(model.unet.config, "guidance_embeds", False))

    def text_encoders(self, model):
        from webui.generation.conditioning import ClipTextEncoder

        # Only CLIP's pooled output (the end token's final state) conditions Flux.
        return [ClipTextEncoder(model.text_encoders[0], model.tokenizers[0], lambda o: (1, True), "clip_l",
                                pooled_output="pooler_output")]

    def long_text_encoder(self, model):
        from webui.generation.conditioning_t5 import T5TextEncoder

        return T5TextEncoder(model.text_encoders[1], model.tokenizers[1], self.t5_tokens if self.takes_guidance(model) else 256)

    def combine(self, model, clip_outputs, long_hidden):
        return long_hidden, clip_outputs[0][1]

    def extra_conditioning(self, model, width, height, distilled_cfg_scale):
        if not self.takes_guidance(model):
            return {}
        scale = self.defaults.distilled_cfg_scale if distilled_cfg_scale is None else distilled_cfg_scale
        return {"guidance": torch.tensor([scale], dtype=torch.float32, device=model.device)}

    def predict(self, model, schedule, x, sigma, crossattn, pooled, extra, image_cond):
        b, _, h, w = x.shape
        dtype = model.dtype
        guidance = extra.get("guidance")
        tokens = pack(x) if image_cond is None else torch.cat([pack(x), pack(image_cond.to(x.dtype))], dim=-1)
        out = model.unet(
            hidden_states=tokens.to(dtype), timestep=sigma.to(dtype), pooled_projections=pooled,
            encoder_hidden_states=crossattn, img_ids=image_ids(h, w, x.device, dtype),
            txt_ids=torch.zeros(crossattn.shape[1], 3, device=x.device, dtype=dtype),
            guidance=guidance.expand(b).to(dtype) if guidance is not None else None,
        ).sample
        return self.velocity_to_denoised(x, sigma, unpack(out, h, w))

    def infotext_params(self, model, width, height, distilled_cfg_scale):
        params = super().infotext_params(model, width, height, distilled_cfg_scale)
        if self.takes_guidance(model):
            params["Distilled CFG Scale"] = self.defaults.distilled_cfg_scale if distilled_cfg_scale is None \
                else distilled_cfg_scale
        return params


FLUX = FluxFamily()

