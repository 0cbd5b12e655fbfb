"""The parts a transformer-only checkpoint leaves out, from their own files, as Forge and ComfyUI users keep them:
text encoders in `models/text_encoder/` (CLIP-L, T5-XXL `.safetensors`), the VAE in `models/VAE/`, and T5's
tokenizer files in a folder beside the text encoders. Each file is recognised by its keys and built to the
size its weights have, so the right one is picked by fit: the CLIP whose width is the pooled width the
transformer takes, the T5 whose width is its text width, the VAE with its latent channels.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from ..memory import cast_loaded
from .base import UnsupportedCheckpoint

TEXT_ENCODER_DIRS = ("text_encoder", "clip", "text_encoders")  # A1111/Forge's name, then ComfyUI's
VAE_DIRS = ("VAE", "vae")
TOKENIZER_FILES = ("tokenizer.json", "spiece.model")


def models_root_of(checkpoint: Path) -> Path:
    """The `models/` folder of a checkpoint in `models/Stable-diffusion/` (or `unet/`, `diffusion_models/`)."""
    for parent in checkpoint.parents:
        if parent.name in ("Stable-diffusion", "unet", "diffusion_models"):
            return parent.parent
    return checkpoint.parent


def weight_files(root: Path, folders: tuple[str, ...]) -> list[Path]:
    found = []
    for folder in folders:
        if (root / folder).is_dir():
            found += sorted(p for p in (root / folder).rglob("*.safetensors") if p.is_file())
    return found


def keys_in(path: Path) -> set[str]:
    from safetensors import safe_open

    try:
        with safe_open(path, "pt") as handle:
            return set(handle.keys())
    except Exception:  # not readable: not a candidate (loading a chosen file says what is wrong)
        return set()


def read(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(path, device="cpu")


def empty(factory):
    """A module built without storage (its weights are about to be put in)."""
    from accelerate import init_empty_weights

    with init_empty_weights():
        return factory()


def filled(module: torch.nn.Module, weights: dict, dtype: torch.dtype, what: str,
           keep_fp8: bool = False) -> torch.nn.Module:
    """`module` (from `empty`) holding `weights`, cast to `dtype`: fp8-stored files are upcast here, but for
    a transformer (`keep_fp8`), whose fp8 weights stay so (memory.cast_loaded)."""
    expected = module.state_dict()
    missing = [key for key in expected if key not in weights]
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise UnsupportedCheckpoint(f"{what}: weights missing ({', '.join(missing[:3])}{more})")
    try:
        module.load_state_dict({k: weights[k].contiguous() for k in expected}, strict=True, assign=True)
    except RuntimeError as error:
        raise UnsupportedCheckpoint(f"{what}: the weights do not fit ({str(error).splitlines()[0]})") from None
    return cast_loaded(module, weights, dtype, keep_fp8)


def shape_in(path: Path, key: str) -> tuple[int, ...] | None:
    """One tensor's shape from a .safetensors header, without reading the weights."""
    from safetensors import safe_open

    try:
        with safe_open(path, "pt") as handle:
            return tuple(handle.get_slice(key).get_shape()) if key in handle.keys() else None
    except Exception:
        return None


# ---- CLIP -----------------------------------------------------------------------------------------------

def is_clip(keys: set[str]) -> bool:
    return any(k.endswith("embeddings.token_embedding.weight") for k in keys)


def embedding_width(path: Path, suffix: str) -> int | None:
    """The width of a text encoder's token embedding: the first key ending in `suffix`, whatever its prefix."""
    key = next((k for k in keys_in(path) if k.endswith(suffix)), None)
    shape = shape_in(path, key) if key else None
    return shape[1] if shape else None


def clip_width(path: Path) -> int | None:
    return embedding_width(path, "embeddings.token_embedding.weight")


def t5_width(path: Path) -> int | None:
    shape = shape_in(path, "shared.weight") or shape_in(path, "encoder.embed_tokens.weight")
    return shape[1] if shape else None


def vae_latent_channels(path: Path) -> int | None:
    shape = shape_in(path, "encoder.conv_out.weight")
    return shape[0] // 2 if shape else None


def clip_from_weights(state: dict, dtype: torch.dtype, what: str = "CLIP text encoder"):
    """A transformers CLIP text model (with projection when the file has one) sized from its weights."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    state = {k.removeprefix("text_model."): v for k, v in state.items()}
    vocab, hidden = state["embeddings.token_embedding.weight"].shape
    layers = 1 + max(int(m[1]) for k in state if (m := re.match(r"encoder\.layers\.(\d+)\.", k)))
    config = CLIPTextConfig(
        vocab_size=int(vocab), hidden_size=int(hidden), num_hidden_layers=layers,
        intermediate_size=int(state["encoder.layers.0.mlp.fc1.weight"].shape[0]),
        num_attention_heads=max(int(hidden) // 64, 1),
        max_position_embeddings=int(state["embeddings.position_embedding.weight"].shape[0]),
        # OpenAI's CLIP-L uses quick GELU; OpenCLIP's bigG (with a projection) uses GELU.
        hidden_act="gelu" if hidden >= 1280 else "quick_gelu",
        projection_dim=int(state["text_projection.weight"].shape[0]) if "text_projection.weight" in state else int(hidden),
        bos_token_id=49406, eos_token_id=49407, pad_token_id=49407,
    )
    cls = CLIPTextModelWithProjection if "text_projection.weight" in state else CLIPTextModel
    return filled(empty(lambda: cls(config)), _with_text_model_prefix(cls, config, state), dtype, what)


def _with_text_model_prefix(cls, config, weights: dict) -> dict:
    """Keys as this transformers version names them (5.6+ flattened CLIPTextModel; the projection model nests)."""
    sample = empty(lambda: cls(config))
    if any(key.startswith("text_model.") for key in sample.state_dict()):
        return {(k if k == "text_projection.weight" else f"text_model.{k}"): v for k, v in weights.items()}
    return weights


# ---- T5 -------------------------------------------------------------------------------------------------

def is_t5(keys: set[str]) -> bool:
    return any(".SelfAttention.q.weight" in k for k in keys)


def t5_from_weights(state: dict, dtype: torch.dtype, what: str = "T5 text encoder"):
    from transformers import T5Config, T5EncoderModel

    if "shared.weight" not in state and "encoder.embed_tokens.weight" in state:
        state = {**state, "shared.weight": state["encoder.embed_tokens.weight"]}
    vocab, width = state["shared.weight"].shape
    layers = 1 + max(int(m[1]) for k in state if (m := re.match(r"encoder\.block\.(\d+)\.", k)))
    buckets, heads = state["encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"].shape
    gated = "encoder.block.0.layer.1.DenseReluDense.wi_0.weight" in state
    d_ff = state["encoder.block.0.layer.1.DenseReluDense." + ("wi_0" if gated else "wi") + ".weight"].shape[0]
    config = T5Config(vocab_size=int(vocab), d_model=int(width), d_ff=int(d_ff), num_layers=layers,
                      num_heads=int(heads), d_kv=int(state["encoder.block.0.layer.0.SelfAttention.q.weight"].shape[0]) // int(heads),
                      relative_attention_num_buckets=int(buckets),
                      feed_forward_proj="gated-gelu" if gated else "relu", pad_token_id=0, eos_token_id=1,
                      decoder_start_token_id=0)
    weights = {**state, "encoder.embed_tokens.weight": state["shared.weight"]}
    return filled(empty(lambda: T5EncoderModel(config)), weights, dtype, what)


def tokenizer_folder(root: Path, accept=lambda tokenizer: True):
    """The first tokenizer in a folder under the text encoder folders that `accept` takes, or None."""
    from transformers import AutoTokenizer

    for folder in TEXT_ENCODER_DIRS:
        base = root / folder
        if not base.is_dir():
            continue
        for candidate in sorted(p for p in base.iterdir() if p.is_dir()):
            if any((candidate / name).is_file() for name in TOKENIZER_FILES):
                tokenizer = AutoTokenizer.from_pretrained(candidate, local_files_only=True)
                if accept(tokenizer):
                    return tokenizer
    return None


def t5_tokenizer(root: Path):
    """T5's tokenizer from a folder under the text encoder folders that holds its files."""
    found = tokenizer_folder(root, lambda tokenizer: not getattr(tokenizer, "chat_template", None))
    if found is not None:
        return found
    raise UnsupportedCheckpoint(
        "T5's tokenizer files are missing: put tokenizer.json (or spiece.model) with tokenizer_config.json and "
        "special_tokens_map.json in a folder such as models/text_encoder/t5xxl_tokenizer/ (the tokenizer_2 "
        "folder of a Flux diffusers model is one); nothing is downloaded")


# ---- Qwen3 (Z-Image) -----------------------------------------------------------------------------------

def is_qwen3(keys: set[str]) -> bool:
    return any(k.endswith("layers.0.self_attn.q_norm.weight") for k in keys)


def qwen3_width(path: Path) -> int | None:
    return embedding_width(path, "embed_tokens.weight")


def qwen3_from_weights(state: dict, dtype: torch.dtype, what: str = "Qwen3 text encoder"):
    """A transformers Qwen3Model sized from its weights (a causal-LM file's `model.` prefix and head dropped)."""
    from transformers import Qwen3Config, Qwen3Model

    state = {k.removeprefix("model."): v for k, v in state.items() if not k.startswith("lm_head.")}
    vocab, hidden = state["embed_tokens.weight"].shape
    head_dim = int(state["layers.0.self_attn.q_norm.weight"].shape[0])
    layers = 1 + max(int(m[1]) for k in state if (m := re.match(r"layers\.(\d+)\.", k)))
    config = Qwen3Config(vocab_size=int(vocab), hidden_size=int(hidden), num_hidden_layers=layers,
                         intermediate_size=int(state["layers.0.mlp.gate_proj.weight"].shape[0]), head_dim=head_dim,
                         num_attention_heads=int(state["layers.0.self_attn.q_proj.weight"].shape[0]) // head_dim,
                         num_key_value_heads=int(state["layers.0.self_attn.k_proj.weight"].shape[0]) // head_dim)
    return filled(empty(lambda: Qwen3Model(config)), state, dtype, what)


def chat_tokenizer(root: Path, what: str, example: str):
    found = tokenizer_folder(root, lambda tokenizer: bool(getattr(tokenizer, "chat_template", None)))
    if found is not None:
        return found
    raise UnsupportedCheckpoint(
        f"{what}'s tokenizer files are missing: put tokenizer.json with tokenizer_config.json (holding its chat "
        f"template) in a folder such as models/text_encoder/{example}/ (the tokenizer folder of the model's "
        "diffusers version is one); nothing is downloaded")


# ---- the VAE --------------------------------------------------------------------------------------------

def is_vae(keys: set[str]) -> bool:
    return "encoder.conv_out.weight" in keys and "decoder.conv_out.weight" in keys


def vae_from_weights(state: dict, scaling_factor: float, shift_factor: float | None, dtype: torch.dtype,
                     what: str = "VAE"):
    """An AutoencoderKL sized from an LDM/BFL-layout (or diffusers-layout) VAE state dict."""
    from diffusers import AutoencoderKL
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    diffusers_layout = any(k.startswith("encoder.down_blocks.") for k in state)
    pattern = r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\." if diffusers_layout else r"encoder\.down\.(\d+)\.block\.(\d+)\."
    levels: dict[int, set[int]] = {}
    for key in state:
        if m := re.match(pattern, key):
            levels.setdefault(int(m[1]), set()).add(int(m[2]))
    first = "encoder.down_blocks.{}.resnets.0.conv1.weight" if diffusers_layout else "encoder.down.{}.block.0.conv1.weight"
    channels = tuple(int(state[first.format(i)].shape[0]) for i in sorted(levels))
    config = dict(in_channels=3, out_channels=3, latent_channels=int(state["encoder.conv_out.weight"].shape[0]) // 2,
                  block_out_channels=channels, layers_per_block=len(levels[0]),
                  down_block_types=("DownEncoderBlock2D",) * len(channels),
                  up_block_types=("UpDecoderBlock2D",) * len(channels), norm_num_groups=32,
                  scaling_factor=scaling_factor, shift_factor=shift_factor,
                  use_quant_conv="quant_conv.weight" in state, use_post_quant_conv="post_quant_conv.weight" in state)
    weights = state if diffusers_layout else convert_ldm_vae_checkpoint(state, config)
    return filled(empty(lambda: AutoencoderKL(**config)), weights, dtype, what)


def embedded(state: dict, prefix: str) -> dict:
    """The tensors under `prefix` in an all-in-one file, without it."""
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def pick(root: Path, folders: tuple[str, ...], fits, what: str, example: str, prefer: tuple[str, ...] = ()) -> Path:
    """The first weights file in `folders` for which `fits(path, keys)` holds, files whose names contain one of
    `prefer` first (two VAEs can fit the same latent shape); a clear error naming the folder when none fits."""
    files = weight_files(root, folders)
    files.sort(key=lambda path: not any(hint in path.name.lower() for hint in prefer))
    for path in files:
        if fits(path, keys_in(path)):
            return path
    raise UnsupportedCheckpoint(f"its {what} is missing: put {example} in models/{folders[0]}/ "
                                "(a transformer-only file needs it beside it; nothing is downloaded)")


def part(state: dict, prefix: str, root: Path, folders: tuple[str, ...], fits, what: str, example: str, build,
         prefer: tuple[str, ...] = ()):
    """A part embedded in an all-in-one file under `prefix`, else `build` from its own file in `folders`."""
    inside = embedded(state, prefix)
    if inside:
        return build(inside)
    return build(read(pick(root, folders, fits, what, example, prefer)))
