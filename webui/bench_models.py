"""Random-weight models for the benchmark (webui/bench.py): SD1, SDXL and Flux.1, each with the diffusers
pipeline that runs the same modules, so both sides time the same weights. "small" shapes fit a CPU run;
"full" shapes are the real architectures (for a GPU)."""

from __future__ import annotations

from pathlib import Path

import torch

CONFIGS = Path(__file__).resolve().parent / "models" / "configs"
TOKENIZER = Path(__file__).resolve().parent / "models" / "clip_tokenizer"


def _clip_tokenizer(pad: str | None = None):
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(TOKENIZER, local_files_only=True, **({"pad_token": pad} if pad else {}))


def _word_tokenizer():
    """A word-level stand-in for T5's tokenizer (no T5 vocabulary ships with the project); with random
    weights only the sequence length matters, and Flux pads every prompt to 512 tokens anyway."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = "a photo of cat dog sitting on red sofa detailed soft light".split()
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{w: i + 3 for i, w in enumerate(words)}}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")


def _clip(hidden: int, layers: int, projection: bool = False, act: str = "quick_gelu"):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(hidden_size=hidden, intermediate_size=hidden * 4, num_hidden_layers=layers,
                            num_attention_heads=max(hidden // 64, 1), max_position_embeddings=77, vocab_size=49408,
                            hidden_act=act, projection_dim=hidden)
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(config)


def _finish(modules, device, dtype):
    for module in modules:
        module.to(device, dtype).eval().requires_grad_(False)


def sdxl(full: bool, device, dtype):
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel

    from .families import SDXL, scaled_linear_alphas_cumprod
    from .models.model import SDModel

    torch.manual_seed(0)
    if full:
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(CONFIGS / "sdxl" / "unet"))
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(CONFIGS / "sdxl" / "vae"))
        encoders = [_clip(768, 12), _clip(1280, 32, projection=True, act="gelu")]
    else:
        encoders = [_clip(128, 2), _clip(256, 2, projection=True, act="gelu")]
        unet = UNet2DConditionModel(
            block_out_channels=(64, 128, 128), layers_per_block=1, cross_attention_dim=384, attention_head_dim=8,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"), norm_num_groups=32,
            addition_embed_type="text_time", addition_time_embed_dim=32, projection_class_embeddings_input_dim=6 * 32 + 256,
        )
        vae = AutoencoderKL(block_out_channels=(32, 32, 64, 64), latent_channels=4, layers_per_block=1,
                            down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                            scaling_factor=0.13025)
    _finish([unet, vae, *encoders], device, dtype)
    tokenizers = [_clip_tokenizer(), _clip_tokenizer("!")]
    model = SDModel(SDXL, unet, vae, encoders, tokenizers, scaled_linear_alphas_cumprod(), name="random-sdxl",
                    device=device, dtype=dtype)
    pipe = StableDiffusionXLPipeline(vae=vae, text_encoder=encoders[0], text_encoder_2=encoders[1], tokenizer=tokenizers[0],
                                     tokenizer_2=tokenizers[1], unet=unet,
                                     scheduler=EulerDiscreteScheduler(beta_schedule="scaled_linear", beta_start=0.00085,
                                                                      beta_end=0.012, steps_offset=1,
                                                                      timestep_spacing="leading"))
    return model, pipe


def flux(full: bool, device, dtype):
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import T5Config, T5EncoderModel

    from .families import FLUX
    from .models.model import SDModel

    torch.manual_seed(0)
    if full:  # Flux.1 dev and T5-XXL shapes
        transformer = FluxTransformer2DModel(guidance_embeds=True)
        t5 = T5EncoderModel(T5Config(vocab_size=32128, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
                                     feed_forward_proj="gated-gelu"))
        clip = _clip(768, 12)
        vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), latent_channels=16, layers_per_block=2,
                            down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                            scaling_factor=0.3611, shift_factor=0.1159, use_quant_conv=False, use_post_quant_conv=False)
    else:
        transformer = FluxTransformer2DModel(num_layers=2, num_single_layers=4, attention_head_dim=32,
                                             num_attention_heads=4, joint_attention_dim=256, pooled_projection_dim=128,
                                             guidance_embeds=True, axes_dims_rope=(8, 12, 12))
        t5 = T5EncoderModel(T5Config(vocab_size=64, d_model=256, d_kv=32, d_ff=512, num_layers=2, num_heads=8,
                                     feed_forward_proj="gated-gelu"))
        clip = _clip(128, 2)
        vae = AutoencoderKL(block_out_channels=(32, 32, 64, 64), latent_channels=16, layers_per_block=1,
                            down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                            scaling_factor=0.3611, shift_factor=0.1159, use_quant_conv=False, use_post_quant_conv=False)
    _finish([transformer, t5, clip, vae], device, dtype)
    tokenizers = [_clip_tokenizer(), _word_tokenizer()]
    config = {"use_dynamic_shifting": True, "base_shift": 0.5, "max_shift": 1.15, "base_image_seq_len": 256,
              "max_image_seq_len": 4096}
    model = SDModel(FLUX, transformer, vae, [clip, t5], tokenizers, name="random-flux", device=device, dtype=dtype,
                    prediction_type="flow", schedule_config=config)
    pipe = FluxPipeline(transformer=transformer, vae=vae, text_encoder=clip, tokenizer=tokenizers[0], text_encoder_2=t5,
                        tokenizer_2=tokenizers[1], scheduler=FlowMatchEulerDiscreteScheduler(**config, shift=3.0))
    return model, pipe
