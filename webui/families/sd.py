"""SD 1.x, SD 2.x and SDXL: UNets trained on DDPM's discrete noise table, conditioned through CLIP.

Recognising their single files is `sd_detection.py` (the keys of the LDM layout); loading is
`webui/models/loading.py`. This module holds what differs between the three once they are loaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch

from .base import ModelFamily

TOKENIZER_DIR = Path(__file__).resolve().parents[1] / "models" / "clip_tokenizer"


def scaled_linear_alphas_cumprod(steps: int = 1000, beta_start: float = 0.00085, beta_end: float = 0.012) -> torch.Tensor:
    """The noise schedule every SD 1.x/2.x/XL checkpoint was trained with.

    Built in float64 and stored as float32, as A1111 (LDM/SGM) holds it; diffusers builds
    it in float32, which moves the sigmas by a few ulps.
    """
    betas = torch.linspace(beta_start**0.5, beta_end**0.5, steps, dtype=torch.float64) ** 2
    return torch.cumprod(1.0 - betas, dim=0).to(torch.float32)


def clip_tokenizers(folder: Path | None, subfolders: tuple[str, ...], pads: tuple[str | None, ...]) -> list:
    """One CLIP tokenizer per text encoder: the folder's own where it has one (a fine-tune may have grown the
    vocabulary, e.g. by textual-inversion training), else the bundled BPE files with that encoder's padding."""
    from transformers import CLIPTokenizer

    tokenizers = []
    for subfolder, pad in zip(subfolders, pads):
        own = folder / subfolder if folder is not None else None
        if own is not None and any((own / name).is_file() for name in ("vocab.json", "tokenizer.json")):
            tokenizers.append(CLIPTokenizer.from_pretrained(own, local_files_only=True))
        else:
            extra = {"pad_token": pad} if pad else {}
            tokenizers.append(CLIPTokenizer.from_pretrained(TOKENIZER_DIR, local_files_only=True, **extra))
    return tokenizers


def _sd_1_or_2(pipeline: str) -> bool:
    return pipeline.startswith("StableDiffusion") and not pipeline.startswith(("StableDiffusionXL", "StableDiffusion3"))


class UNetFamily(ModelFamily):
    """The shared behaviour of the UNet families: epsilon or v prediction on DDPM's discrete sigmas."""

    preview_factors = ((0.298, 0.207, 0.208), (0.187, 0.286, 0.173), (-0.158, 0.189, 0.264), (-0.184, -0.271, -0.473))

    def noise_schedule(self, model, width: int, height: int):
        from webui.generation.samplers import DiscreteSchedule

        return DiscreteSchedule(model.alphas_cumprod)

    def predict(self, model, schedule, x, sigma, crossattn, pooled, extra, image_cond):
        sigma = sigma.to(x.dtype).view(-1, 1, 1, 1)
        scale_in = (sigma**2 + 1) ** -0.5
        unet_in = x * scale_in
        if image_cond is not None:  # inpainting models take the mask and masked image too
            unet_in = torch.cat([unet_in, image_cond], dim=1)
        t = schedule.sigma_to_t(sigma.flatten())
        added = None
        if pooled is not None:
            added = {"text_embeds": pooled, "time_ids": extra["time_ids"].to(x.device).expand(x.shape[0], -1)}
        out = model.unet(unet_in.to(model.dtype), t, encoder_hidden_states=crossattn, added_cond_kwargs=added).sample
        out = out.to(x.dtype)
        if model.prediction_type == "v_prediction":
            denoised = x * (sigma**2 + 1) ** -1 - out * sigma * scale_in
        else:
            denoised = x - out * sigma
        boundary = getattr(schedule, "boundary_scalings", None)  # LCM's consistency boundary, as A1111
        if boundary is not None:
            c_skip, c_out = (c.to(x.dtype).view(-1, 1, 1, 1) for c in boundary(sigma.flatten()))
            denoised = c_out * denoised + c_skip * x
        return denoised

    def is_inpainting_model(self, model) -> bool:
        return getattr(model.unet.config, "in_channels", None) == 9

    def inpaint_conditioning(self, model, masked_latents, mask):
        """The 9-channel UNet's 5 extra channels: the mask at latent size, then the masked image's latents."""
        small_mask = torch.nn.functional.interpolate(mask, size=masked_latents.shape[-2:], mode="nearest")
        return torch.cat([small_mask.to(masked_latents.dtype), masked_latents], dim=1)

    def claims_weights(self, keys) -> bool:
        # Only the text encoder tells the three apart by name (sd_detection.py checks the rest when loading).
        prefix = self.ldm_text_layout[-1][3]
        return any(key.startswith(prefix) for key in keys)

    def combine(self, model, clip_outputs, long_hidden):
        hidden, pooled = clip_outputs[0]
        return hidden, None

    def tokenizers(self, folder: Path | None) -> list:
        return clip_tokenizers(folder, ("tokenizer",), (None,))


class SD1Family(UNetFamily):
    name, label = "sd1", "SD 1.x"
    # Where a single file (LDM layout) keeps each text encoder: (transformers class, config subfolder,
    # key layout, key prefix).
    ldm_text_layout = (("CLIPTextModel", "text_encoder", "clip", "cond_stage_model.transformer."),)

    def claims_folder(self, index: Mapping[str, Any], text_config: dict | None = None) -> bool:
        pipeline = str(index.get("_class_name", ""))
        # OpenAI's CLIP ViT-L (SD 1.x) uses quick GELU; OpenCLIP ViT-H (SD 2.x) uses GELU.
        return _sd_1_or_2(pipeline) and (text_config or {}).get("hidden_act") != "gelu"

    def text_encoders(self, model):
        from webui.generation.conditioning import ClipTextEncoder

        return [ClipTextEncoder(model.text_encoders[0], model.tokenizers[0], lambda o: (max(1, o.clip_skip), True))]


class SD2Family(SD1Family):
    name, label = "sd2", "SD 2.x"  # 512 px; 768 for the v-prediction models
    ldm_text_layout = (("CLIPTextModel", "text_encoder", "open_clip", "cond_stage_model.model."),)

    def claims_folder(self, index, text_config=None) -> bool:
        pipeline = str(index.get("_class_name", ""))
        return _sd_1_or_2(pipeline) and (text_config or {}).get("hidden_act") == "gelu"

    def text_encoders(self, model):
        from webui.generation.conditioning import ClipTextEncoder

        # SD2's diffusers encoder already ends at OpenCLIP's penultimate layer.
        return [ClipTextEncoder(model.text_encoders[0], model.tokenizers[0], lambda o: (1, True))]

    def tokenizers(self, folder):
        # OpenCLIP pads with "!" (id 0) instead of the end token.
        return clip_tokenizers(folder, ("tokenizer",), ("!",))


class SDXLFamily(UNetFamily):
    name, label, default_size = "sdxl", "SDXL", 1024
    ldm_text_layout = (("CLIPTextModel", "text_encoder", "clip", "conditioner.embedders.0.transformer."),
                       ("CLIPTextModelWithProjection", "text_encoder_2", "open_clip", "conditioner.embedders.1.model."))
    zero_empty_negative = True  # A1111 (like diffusers) conditions SDXL on zeros for an empty negative prompt
    ays_sdxl = True
    preview_factors = ((0.3448, 0.4168, 0.4395), (-0.1953, -0.0290, 0.0250), (0.1074, 0.0886, -0.0163),
                       (-0.3730, -0.2499, -0.2088))

    def claims_folder(self, index, text_config=None) -> bool:
        return str(index.get("_class_name", "")).startswith("StableDiffusionXL")

    def text_encoders(self, model):
        from webui.generation.conditioning import ClipTextEncoder

        encoders, tokenizers = model.text_encoders, model.tokenizers
        # SDXL reads both encoders' penultimate layer raw; clip skip reaches CLIP-L only with the setting.
        return [
            ClipTextEncoder(encoders[0], tokenizers[0], lambda o: (o.clip_skip if o.sdxl_clip_l_skip else 2, False),
                            "clip_l"),
            ClipTextEncoder(encoders[1], tokenizers[1], lambda o: (2, False), "clip_g"),
        ]

    def combine(self, model, clip_outputs, long_hidden):
        hidden = torch.cat([h for h, _ in clip_outputs], dim=-1)  # channels: 768 + 1280
        return hidden, clip_outputs[-1][1]

    def extra_conditioning(self, model, width, height, distilled_cfg_scale):
        # SDXL's size conditioning: original size, crop corner (0, 0), target size.
        return {"time_ids": torch.tensor([height, width, 0, 0, height, width], dtype=model.dtype, device=model.device)}

    def tokenizers(self, folder):
        return clip_tokenizers(folder, ("tokenizer", "tokenizer_2"), (None, "!"))


SD1, SD2, SDXL = SD1Family(), SD2Family(), SDXLFamily()
