"""Tiny SD3, Flux.1 (dev and schnell) and Chroma models with random weights, saved as real diffusers
folders (the real diffusers/transformers classes, shrunk), for the model-family tests.

The T5 tokenizer is built in code (a word-level vocabulary through the `tokenizers` library), since
no T5 vocabulary ships with the project; it behaves like T5's where the families rely on it: no start
token, `</s>` at the end, `<pad>` for padding.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import (
    AutoencoderKL, ChromaPipeline, ChromaTransformer2DModel, FlowMatchEulerDiscreteScheduler, FluxPipeline,
    FluxTransformer2DModel, SD3Transformer2DModel, StableDiffusion3Pipeline, ZImagePipeline, ZImageTransformer2DModel,
)
from transformers import (
    CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer, PreTrainedTokenizerFast, T5Config,
    T5EncoderModel,
)

from tests.tiny_models import TOKENIZER_DIR

WORDS = "a photo of cat dog red blue house tree painting landscape portrait the in on with and , ( ) [ ] :".split()


def t5_tokenizer() -> PreTrainedTokenizerFast:
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{word: i + 3 for i, word in enumerate(dict.fromkeys(WORDS))}}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")


def tiny_t5(width: int = 32) -> T5EncoderModel:
    config = T5Config(vocab_size=64, d_model=width, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
                      relative_attention_num_buckets=8, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    return T5EncoderModel(config)


def tiny_clip(hidden: int, projection: bool, act: str = "quick_gelu"):
    config = CLIPTextConfig(vocab_size=49408, hidden_size=hidden, intermediate_size=hidden * 2, num_hidden_layers=2,
                            num_attention_heads=2, max_position_embeddings=77, hidden_act=act, projection_dim=hidden,
                            bos_token_id=49406, eos_token_id=49407, pad_token_id=49407)
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(config)


def tiny_vae16(scaling_factor: float, shift_factor: float) -> AutoencoderKL:
    return AutoencoderKL(in_channels=3, out_channels=3, latent_channels=16, block_out_channels=(16, 16, 16, 16),
                         down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                         layers_per_block=1, norm_num_groups=8, sample_size=32, scaling_factor=scaling_factor,
                         shift_factor=shift_factor, use_quant_conv=False, use_post_quant_conv=False)


def tiny_ldm_vae(scaling_factor: float, shift_factor: float) -> AutoencoderKL:
    """A 16-channel VAE with 32 groups per norm, as the single-file VAE readers assume (every real SD/Flux VAE)."""
    return AutoencoderKL(in_channels=3, out_channels=3, latent_channels=16, block_out_channels=(32, 32, 32, 32),
                         down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                         layers_per_block=1, norm_num_groups=32, scaling_factor=scaling_factor,
                         shift_factor=shift_factor, use_quant_conv=False, use_post_quant_conv=False)


def _clip_tokenizer(pad: str | None = None) -> CLIPTokenizer:
    return CLIPTokenizer.from_pretrained(TOKENIZER_DIR, local_files_only=True, **({"pad_token": pad} if pad else {}))


def build_sd3():
    torch.manual_seed(0)
    transformer = SD3Transformer2DModel(sample_size=4, patch_size=2, in_channels=16, num_layers=2, attention_head_dim=8,
                                        num_attention_heads=2, joint_attention_dim=32, caption_projection_dim=16,
                                        pooled_projection_dim=32, out_channels=16, pos_embed_max_size=16)
    return StableDiffusion3Pipeline(
        transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=tiny_vae16(1.5305, 0.0609), text_encoder=tiny_clip(16, True), tokenizer=_clip_tokenizer(),
        text_encoder_2=tiny_clip(16, True, "gelu"), tokenizer_2=_clip_tokenizer("!"),
        text_encoder_3=tiny_t5(), tokenizer_3=t5_tokenizer())


def build_flux(dev: bool = True):
    torch.manual_seed(1)
    transformer = FluxTransformer2DModel(patch_size=1, in_channels=64, num_layers=1, num_single_layers=1,
                                         attention_head_dim=8, num_attention_heads=2, joint_attention_dim=32,
                                         pooled_projection_dim=16, guidance_embeds=dev, axes_dims_rope=(2, 2, 4))
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15) \
        if dev else FlowMatchEulerDiscreteScheduler(shift=1.0)
    return FluxPipeline(transformer=transformer, scheduler=scheduler, vae=tiny_vae16(0.3611, 0.1159),
                        text_encoder=tiny_clip(16, False), tokenizer=_clip_tokenizer(),
                        text_encoder_2=tiny_t5(), tokenizer_2=t5_tokenizer())


def build_chroma():
    torch.manual_seed(2)
    transformer = ChromaTransformer2DModel(patch_size=1, in_channels=64, num_layers=1, num_single_layers=1,
                                           attention_head_dim=8, num_attention_heads=2, joint_attention_dim=32,
                                           axes_dims_rope=(2, 2, 4), approximator_num_channels=8,
                                           approximator_hidden_dim=16, approximator_layers=1)
    return ChromaPipeline(transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(shift=1.0),
                          vae=tiny_vae16(0.3611, 0.1159), text_encoder=tiny_t5(), tokenizer=t5_tokenizer())


# A chat template in the shape of Qwen3's (user turn, then the assistant's turn opened), enough for the family.
CHAT_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }} {{ m['content'] }} <|im_end|> {% endfor %}"
                 "{% if add_generation_prompt %}<|im_start|>assistant {% endif %}")


def chat_tokenizer() -> PreTrainedTokenizerFast:
    tokenizer = t5_tokenizer()
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tokenizer.add_tokens(["user", "assistant"])
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_zimage():
    from transformers import Qwen3Config, Qwen3Model

    torch.manual_seed(4)
    transformer = ZImageTransformer2DModel(all_patch_size=(2,), all_f_patch_size=(1,), in_channels=16, dim=32, n_layers=1,
                                           n_refiner_layers=1, n_heads=2, n_kv_heads=2, cap_feat_dim=32,
                                           axes_dims=[4, 6, 6], axes_lens=[64, 32, 32])
    qwen = Qwen3Model(Qwen3Config(vocab_size=80, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                  num_attention_heads=2, num_key_value_heads=2, head_dim=16))
    return ZImagePipeline(transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
                          vae=tiny_vae16(0.3611, 0.1159), text_encoder=qwen, tokenizer=chat_tokenizer())


def build_flux_fill():
    """Flux Fill: its patches take the masked image's latents (64) and an 8x8 pixel mask per latent pixel (256)."""
    from diffusers import FluxFillPipeline

    torch.manual_seed(6)
    transformer = FluxTransformer2DModel(patch_size=1, in_channels=384, out_channels=64, num_layers=1,
                                         num_single_layers=1, attention_head_dim=8, num_attention_heads=2,
                                         joint_attention_dim=32, pooled_projection_dim=16, guidance_embeds=True,
                                         axes_dims_rope=(2, 2, 4))
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15)
    return FluxFillPipeline(transformer=transformer, scheduler=scheduler, vae=tiny_vae16(0.3611, 0.1159),
                            text_encoder=tiny_clip(16, False), tokenizer=_clip_tokenizer(),
                            text_encoder_2=tiny_t5(), tokenizer_2=t5_tokenizer())


BUILDERS = {"sd3": build_sd3, "flux": build_flux, "flux-schnell": lambda: build_flux(dev=False), "chroma": build_chroma,
            "zimage": build_zimage, "flux-fill": build_flux_fill}


def write_flow_folder(kind: str, folder: Path) -> Path:
    """A diffusers folder of a tiny model of `kind` (a key of BUILDERS), as a user would have it."""
    BUILDERS[kind]().save_pretrained(folder, safe_serialization=True)
    return folder


def write_flux_single_files(models_root: Path, dev: bool = True, *, all_in_one: bool = False) -> Path:
    """A tiny Flux as users download it: the transformer in BFL's layout in models/Stable-diffusion/ (ComfyUI's
    `model.diffusion_model.` prefix), CLIP-L and T5 files in models/text_encoder/, T5's tokenizer folder beside
    them, the VAE in BFL/LDM layout in models/VAE/; `all_in_one` puts encoders and VAE in the one file instead."""
    from safetensors.torch import save_file

    from tests.checkpoint_files import vae_to_ldm
    from webui.families.flux_layout import PREFIX, from_diffusers

    torch.manual_seed(3)
    transformer = FluxTransformer2DModel(patch_size=1, in_channels=64, num_layers=1, num_single_layers=1,
                                         attention_head_dim=32, num_attention_heads=1, joint_attention_dim=32,
                                         pooled_projection_dim=16, guidance_embeds=dev, axes_dims_rope=(4, 14, 14))
    vae = tiny_ldm_vae(0.3611, 0.1159)
    clip, t5 = tiny_clip(16, False), tiny_t5()
    flux = {PREFIX + k: v for k, v in from_diffusers(transformer.state_dict()).items()}
    vae_state = {k.removeprefix("first_stage_model."): v for k, v in vae_to_ldm(vae.state_dict(), vae.config).items()}
    clip_state = {k if k.startswith("text_model.") else f"text_model.{k}": v for k, v in clip.state_dict().items()}
    t5_state = {k: v for k, v in t5.state_dict().items() if k != "encoder.embed_tokens.weight"}  # tied to shared
    checkpoints = models_root / "Stable-diffusion"
    checkpoints.mkdir(parents=True, exist_ok=True)
    path = checkpoints / ("flux-tiny-aio.safetensors" if all_in_one else "flux-tiny.safetensors")
    if all_in_one:
        flux |= {f"text_encoders.clip_l.transformer.{k}": v for k, v in clip_state.items()}
        flux |= {f"text_encoders.t5xxl.transformer.{k}": v for k, v in t5_state.items()}
        flux |= {f"vae.{k}": v for k, v in vae_state.items()}
    else:
        (models_root / "text_encoder").mkdir(parents=True, exist_ok=True)
        (models_root / "VAE").mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in clip_state.items()}, models_root / "text_encoder" / "clip_l.safetensors")
        save_file({k: v.contiguous() for k, v in t5_state.items()}, models_root / "text_encoder" / "t5xxl_fp16.safetensors")
        save_file({k: v.contiguous() for k, v in vae_state.items()}, models_root / "VAE" / "ae.safetensors")
    t5_tokenizer().save_pretrained(models_root / "text_encoder" / "t5xxl_tokenizer")
    save_file({k: v.contiguous() for k, v in flux.items()}, path)
    return path


def write_sd3_single_files(models_root: Path, *, all_in_one: bool = False) -> Path:
    """A tiny SD3.5 as SAI/ComfyUI ship it: the MMDiT in its original layout (`model.diffusion_model.`), with
    CLIP-L, CLIP-G and T5 as separate files in models/text_encoder/ (or inside, `text_encoders.*`), and the
    VAE inside (`first_stage_model.`); T5's tokenizer folder beside the text encoders."""
    from safetensors.torch import save_file

    from tests.checkpoint_files import vae_to_ldm
    from webui.families.sd3_layout import PREFIX, from_diffusers

    torch.manual_seed(5)
    transformer = SD3Transformer2DModel(sample_size=8, patch_size=2, in_channels=16, num_layers=2, attention_head_dim=8,
                                        num_attention_heads=2, joint_attention_dim=32, caption_projection_dim=16,
                                        pooled_projection_dim=32, out_channels=16, pos_embed_max_size=16,
                                        qk_norm="rms_norm", dual_attention_layers=(0,))
    vae = tiny_ldm_vae(1.5305, 0.0609)

    def clip_state(model):
        return {k if k.startswith(("text_model.", "text_projection")) else f"text_model.{k}": v
                for k, v in model.state_dict().items()}

    clips = {"l": clip_state(tiny_clip(16, True)), "g": clip_state(tiny_clip(16, True, "gelu"))}
    t5 = {k: v for k, v in tiny_t5().state_dict().items() if k != "encoder.embed_tokens.weight"}
    state = {PREFIX + k: v for k, v in from_diffusers(transformer.state_dict()).items()}
    state |= vae_to_ldm(vae.state_dict(), vae.config)  # first_stage_model.*
    encoders = models_root / "text_encoder"
    encoders.mkdir(parents=True, exist_ok=True)
    if all_in_one:
        for which, weights in clips.items():
            state |= {f"text_encoders.clip_{which}.transformer.{k}": v for k, v in weights.items()}
        state |= {f"text_encoders.t5xxl.transformer.{k}": v for k, v in t5.items()}
    else:
        for which, weights in clips.items():
            save_file({k: v.contiguous() for k, v in weights.items()}, encoders / f"clip_{which}.safetensors")
        save_file({k: v.contiguous() for k, v in t5.items()}, encoders / "t5xxl_fp16.safetensors")
    t5_tokenizer().save_pretrained(encoders / "t5xxl_tokenizer")
    checkpoints = models_root / "Stable-diffusion"
    checkpoints.mkdir(parents=True, exist_ok=True)
    path = checkpoints / ("sd35-tiny-aio.safetensors" if all_in_one else "sd35-tiny.safetensors")
    save_file({k: v.contiguous() for k, v in state.items()}, path)
    return path


def write_zimage_single_files(models_root: Path) -> Path:
    """A tiny Z-Image as ComfyUI users keep it: the transformer in its original layout in models/Stable-diffusion/,
    Qwen3 (as a causal-LM file: `model.` prefix) and its tokenizer folder in models/text_encoder/, the Flux VAE in
    models/VAE/."""
    from safetensors.torch import save_file

    from tests.checkpoint_files import vae_to_ldm
    from webui.families.zimage_layout import PREFIX, from_diffusers

    pipe = build_zimage()
    vae = tiny_ldm_vae(0.3611, 0.1159)
    for folder in ("Stable-diffusion", "text_encoder", "VAE"):
        (models_root / folder).mkdir(parents=True, exist_ok=True)
    save_file({f"model.{k}": v.contiguous() for k, v in pipe.text_encoder.state_dict().items()},
              models_root / "text_encoder" / "qwen_3_4b.safetensors")
    pipe.tokenizer.save_pretrained(models_root / "text_encoder" / "qwen3_tokenizer")
    save_file({k.removeprefix("first_stage_model."): v.contiguous() for k, v in vae_to_ldm(vae.state_dict(), vae.config).items()},
              models_root / "VAE" / "ae.safetensors")
    path = models_root / "Stable-diffusion" / "z-image-tiny.safetensors"
    save_file({PREFIX + k: v.contiguous() for k, v in from_diffusers(pipe.transformer.state_dict()).items()}, path)
    return path


def write_chroma_single_files(models_root: Path) -> Path:
    """A tiny Chroma in BFL layout in models/Stable-diffusion/, T5 and its tokenizer folder in models/text_encoder/,
    the Flux VAE in models/VAE/."""
    from safetensors.torch import save_file

    from tests.checkpoint_files import vae_to_ldm
    from webui.families.flux_layout import PREFIX, from_diffusers

    torch.manual_seed(7)
    transformer = ChromaTransformer2DModel(patch_size=1, in_channels=64, num_layers=1, num_single_layers=1,
                                           attention_head_dim=32, num_attention_heads=1, joint_attention_dim=32,
                                           axes_dims_rope=(4, 14, 14), approximator_num_channels=8,
                                           approximator_hidden_dim=16, approximator_layers=1)
    vae = tiny_ldm_vae(0.3611, 0.1159)
    for folder in ("Stable-diffusion", "text_encoder", "VAE"):
        (models_root / folder).mkdir(parents=True, exist_ok=True)
    t5 = {k: v.contiguous() for k, v in tiny_t5().state_dict().items() if k != "encoder.embed_tokens.weight"}
    save_file(t5, models_root / "text_encoder" / "t5xxl_fp16.safetensors")
    t5_tokenizer().save_pretrained(models_root / "text_encoder" / "t5xxl_tokenizer")
    save_file({k.removeprefix("first_stage_model."): v.contiguous() for k, v in vae_to_ldm(vae.state_dict(), vae.config).items()},
              models_root / "VAE" / "ae.safetensors")
    path = models_root / "Stable-diffusion" / "chroma-tiny.safetensors"
    save_file({PREFIX + k: v.contiguous() for k, v in from_diffusers(transformer.state_dict()).items()}, path)
    return path
