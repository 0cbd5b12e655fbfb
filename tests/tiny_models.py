"""Tiny Stable Diffusion models with random weights, built in code for CPU tests.

Real diffusers/transformers classes with the real layouts (SD1: one CLIP text encoder;
SDXL: CLIP-L plus a projected bigG-style encoder, text-time conditioning), shrunk so that
a whole generation runs in well under a second.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

from webui.families import FAMILIES, scaled_linear_alphas_cumprod
from webui.models.model import SDModel

TOKENIZER_DIR = Path(__file__).resolve().parents[1] / "webui" / "models" / "clip_tokenizer"


def tiny_text_config(hidden: int, layers: int = 3, act: str = "quick_gelu", projection: int | None = None) -> CLIPTextConfig:
    return CLIPTextConfig(
        vocab_size=49408, hidden_size=hidden, intermediate_size=hidden * 2, num_hidden_layers=layers,
        num_attention_heads=4, max_position_embeddings=77, hidden_act=act, projection_dim=projection or hidden,
        bos_token_id=49406, eos_token_id=49407, pad_token_id=49407,
    )


def tiny_unet(cross_attention_dim: int, in_channels: int = 4, sdxl: bool = False, pooled_dim: int = 0) -> UNet2DConditionModel:
    extra = {}
    if sdxl:
        extra = dict(
            addition_embed_type="text_time", addition_time_embed_dim=8,
            projection_class_embeddings_input_dim=6 * 8 + pooled_dim,
        )
    return UNet2DConditionModel(
        sample_size=8, in_channels=in_channels, out_channels=4, layers_per_block=1,
        block_out_channels=(32, 64), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=cross_attention_dim,
        attention_head_dim=8, norm_num_groups=8, **extra,
    )


def tiny_vae(scaling_factor: float = 0.18215) -> AutoencoderKL:
    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(16, 16, 16, 16),
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=1, norm_num_groups=8, sample_size=64, scaling_factor=scaling_factor,
    )


def make_tiny_model(family: str = "sd1", *, inpainting: bool = False, v_prediction: bool = False, seed: int = 0) -> SDModel:
    """A tiny SD1, SD2 or SDXL model in evaluation mode on the CPU."""
    torch.manual_seed(seed)
    tokenizer = CLIPTokenizer.from_pretrained(TOKENIZER_DIR, local_files_only=True)
    in_channels = 9 if inpainting else 4
    if family == "sdxl":
        encoders = [CLIPTextModel(tiny_text_config(32)), CLIPTextModelWithProjection(tiny_text_config(32, act="gelu", projection=32))]
        tokenizers = [tokenizer, CLIPTokenizer.from_pretrained(TOKENIZER_DIR, local_files_only=True, pad_token="!")]
        unet = tiny_unet(64, in_channels, sdxl=True, pooled_dim=32)
        vae = tiny_vae(0.13025)
    else:
        act = "gelu" if family == "sd2" else "quick_gelu"
        encoders = [CLIPTextModel(tiny_text_config(32, act=act))]
        tokenizers = [tokenizer if family == "sd1" else CLIPTokenizer.from_pretrained(TOKENIZER_DIR, local_files_only=True, pad_token="!")]
        unet = tiny_unet(32, in_channels)
        vae = tiny_vae()
    for module in (*encoders, unet, vae):
        module.eval().requires_grad_(False)
    return SDModel(
        family=FAMILIES[family], unet=unet, vae=vae, text_encoders=encoders, tokenizers=tokenizers,
        alphas_cumprod=scaled_linear_alphas_cumprod(),
        prediction_type="v_prediction" if v_prediction else "epsilon",
        name=f"tiny-{family}", default_size=64,
    )
