"""Flux's original (Black Forest Labs) weight layout <-> diffusers' FluxTransformer2DModel layout.

Single files people download keep BFL's names (`double_blocks.N.img_attn.qkv`, `single_blocks.N.linear1`,
...), sometimes under ComfyUI's `model.diffusion_model.` prefix. The mapping is a table: one BFL tensor
becomes one diffusers tensor, or is split along its first axis into several (fused q/k/v, and q/k/v/mlp in
the single blocks), in the sizes the diffusers model's own parameters have. The architecture's sizes are
read from the weights, so any Flux-shaped file loads, whatever its width and depth.
"""

from __future__ import annotations

import torch

PREFIX = "model.diffusion_model."

# (BFL module, diffusers module or modules it splits into); each carries .weight and .bias.
_GLOBAL = (
    ("time_in.in_layer", "time_text_embed.timestep_embedder.linear_1"),
    ("time_in.out_layer", "time_text_embed.timestep_embedder.linear_2"),
    ("vector_in.in_layer", "time_text_embed.text_embedder.linear_1"),
    ("vector_in.out_layer", "time_text_embed.text_embedder.linear_2"),
    ("guidance_in.in_layer", "time_text_embed.guidance_embedder.linear_1"),
    ("guidance_in.out_layer", "time_text_embed.guidance_embedder.linear_2"),
    ("txt_in", "context_embedder"),
    ("img_in", "x_embedder"),
    ("final_layer.linear", "proj_out"),
)
_DOUBLE = (
    ("img_mod.lin", "norm1.linear"),
    ("txt_mod.lin", "norm1_context.linear"),
    ("img_attn.qkv", ("attn.to_q", "attn.to_k", "attn.to_v")),
    ("txt_attn.qkv", ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj")),
    ("img_attn.proj", "attn.to_out.0"),
    ("txt_attn.proj", "attn.to_add_out"),
    ("img_mlp.0", "ff.net.0.proj"),
    ("img_mlp.2", "ff.net.2"),
    ("txt_mlp.0", "ff_context.net.0.proj"),
    ("txt_mlp.2", "ff_context.net.2"),
)
_DOUBLE_NORMS = (
    ("img_attn.norm.query_norm", "attn.norm_q"),
    ("img_attn.norm.key_norm", "attn.norm_k"),
    ("txt_attn.norm.query_norm", "attn.norm_added_q"),
    ("txt_attn.norm.key_norm", "attn.norm_added_k"),
)
_SINGLE = (
    ("modulation.lin", "norm.linear"),
    ("linear1", ("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp")),
    ("linear2", "proj_out"),
)
_SINGLE_NORMS = (("norm.query_norm", "attn.norm_q"), ("norm.key_norm", "attn.norm_k"))
# BFL's final modulation is (shift, scale); diffusers' AdaLayerNormContinuous reads (scale, shift).
_FINAL_MODULATION = ("final_layer.adaLN_modulation.1", "norm_out.linear")


def strip_prefix(state: dict) -> dict:
    return {key.removeprefix(PREFIX): value for key, value in state.items()}


def _blocks(state: dict, kind: str, offset: int = 1) -> int:
    """How many numbered blocks `kind.N.` the state has (N is the dotted name's part at `offset`)."""
    indices = {int(key.split(".")[offset]) for key in state if key.startswith(kind + ".")}
    return max(indices) + 1 if indices else 0


_APPROXIMATOR = "distilled_guidance_layer."  # Chroma's: timestep and guidance to every block's modulation


def _pairs(present, double: int, single: int, approximator: int = 0):
    """Every (BFL tensor name, diffusers name(s), kind) for a model of this depth that `present(bfl, diffusers)`
    says the weights have (Chroma has no modulation layers; Flux has no approximator)."""
    for old, new, kind in _all_pairs(double, single, approximator):
        if present(old, new[0] if isinstance(new, tuple) else new):
            yield old, new, kind


def _all_pairs(double: int, single: int, approximator: int):
    for old, new in _GLOBAL:
        yield old, new, "linear"
    for part in ("in_proj", "out_proj"):
        yield _APPROXIMATOR + part, _APPROXIMATOR + part, "linear"
    for i in range(approximator):
        yield f"{_APPROXIMATOR}layers.{i}.in_layer", f"{_APPROXIMATOR}layers.{i}.linear_1", "linear"
        yield f"{_APPROXIMATOR}layers.{i}.out_layer", f"{_APPROXIMATOR}layers.{i}.linear_2", "linear"
        yield f"{_APPROXIMATOR}norms.{i}", f"{_APPROXIMATOR}norms.{i}", "norm"
    for i in range(double):
        for old, new in _DOUBLE:
            yield f"double_blocks.{i}.{old}", _prefixed(f"transformer_blocks.{i}.", new), "linear"
        for old, new in _DOUBLE_NORMS:
            yield f"double_blocks.{i}.{old}", f"transformer_blocks.{i}.{new}", "norm"
    for i in range(single):
        for old, new in _SINGLE:
            yield f"single_blocks.{i}.{old}", _prefixed(f"single_transformer_blocks.{i}.", new), "linear"
        for old, new in _SINGLE_NORMS:
            yield f"single_blocks.{i}.{old}", f"single_transformer_blocks.{i}.{new}", "norm"
    yield _FINAL_MODULATION[0], _FINAL_MODULATION[1], "swapped"


def _prefixed(prefix: str, names):
    return tuple(prefix + n for n in names) if isinstance(names, tuple) else prefix + names


def _swap_halves(tensor: torch.Tensor) -> torch.Tensor:
    first, second = tensor.chunk(2, dim=0)
    return torch.cat([second, first], dim=0)


def to_diffusers(state: dict, shapes: dict[str, torch.Size]) -> dict:
    """A BFL-layout state dict (no prefix) in diffusers' names; `shapes`: the target model's parameter shapes,
    which say how fused tensors split."""
    out = {}
    pairs = _pairs(lambda old, new: f"{old}.weight" in state or f"{old}.scale" in state,
                   _blocks(state, "double_blocks"), _blocks(state, "single_blocks"),
                   _blocks(state, _APPROXIMATOR + "layers", offset=2))
    for old, new, kind in pairs:
        if kind == "norm":
            out[f"{new}.weight"] = state[f"{old}.scale"]
            continue
        for suffix in ("weight", "bias"):
            tensor = state[f"{old}.{suffix}"]
            if kind == "swapped":
                out[f"{new}.{suffix}"] = _swap_halves(tensor)
            elif isinstance(new, tuple):
                sizes = [shapes[f"{name}.{suffix}"][0] for name in new]
                for name, part in zip(new, torch.split(tensor, sizes, dim=0)):
                    out[f"{name}.{suffix}"] = part
            else:
                out[f"{new}.{suffix}"] = tensor
    return out


def from_diffusers(state: dict) -> dict:
    """The inverse: diffusers' names back to BFL's (tests build single files with it)."""
    pairs = _pairs(lambda old, new: f"{new}.weight" in state, _blocks(state, "transformer_blocks"),
                   _blocks(state, "single_transformer_blocks"), _blocks(state, _APPROXIMATOR + "layers", offset=2))
    out = {}
    for old, new, kind in pairs:
        if kind == "norm":
            out[f"{old}.scale"] = state[f"{new}.weight"]
            continue
        for suffix in ("weight", "bias"):
            if kind == "swapped":
                out[f"{old}.{suffix}"] = _swap_halves(state[f"{new}.{suffix}"])
            elif isinstance(new, tuple):
                out[f"{old}.{suffix}"] = torch.cat([state[f"{name}.{suffix}"] for name in new], dim=0)
            else:
                out[f"{old}.{suffix}"] = state[f"{new}.{suffix}"]
    return out


def config_from_weights(state: dict) -> dict:
    """FluxTransformer2DModel's constructor arguments, read from a BFL-layout state dict."""
    inner, in_channels = state["img_in.weight"].shape
    head_dim = state["double_blocks.0.img_attn.norm.query_norm.scale"].shape[0]
    if head_dim % 16:
        raise ValueError(f"attention head width {head_dim} is not a multiple of 16")
    return {
        "in_channels": int(in_channels), "out_channels": int(state["final_layer.linear.weight"].shape[0]),
        "num_layers": _blocks(state, "double_blocks"), "num_single_layers": _blocks(state, "single_blocks"),
        "attention_head_dim": int(head_dim), "num_attention_heads": int(inner // head_dim),
        "joint_attention_dim": int(state["txt_in.weight"].shape[1]),
        "pooled_projection_dim": int(state["vector_in.in_layer.weight"].shape[1]) if "vector_in.in_layer.weight" in state else 0,
        "guidance_embeds": "guidance_in.in_layer.weight" in state,
        # Rotary axes (image index, row, column) as BFL splits the head: 16/56/56 of 128.
        "axes_dims_rope": (head_dim // 8, head_dim * 7 // 16, head_dim * 7 // 16),
    }


def original_names(network) -> list[tuple[str, object]]:
    """(BFL module name, diffusers module name or names) for the linear layers of a loaded transformer, as a
    LoRA in the original layout names them (norms carry no LoRA; the final modulation's halves are swapped)."""
    names = {name for name, _ in network.named_modules()}

    def count(prefix: str) -> int:
        return sum(1 for n in names if n.startswith(prefix) and n.count(".") == prefix.count("."))

    pairs = _pairs(lambda old, new: new in names, count("transformer_blocks."), count("single_transformer_blocks."),
                   count(_APPROXIMATOR + "layers."))
    return [(old, new) for old, new, kind in pairs if kind == "linear"]


def chroma_config_from_weights(state: dict) -> dict:
    """ChromaTransformer2DModel's arguments, read from a BFL-layout Chroma state dict."""
    flux = config_from_weights(state)
    hidden, channels = state[_APPROXIMATOR + "in_proj.weight"].shape
    return {**{k: v for k, v in flux.items() if k not in ("pooled_projection_dim", "guidance_embeds")},
            "approximator_num_channels": int(channels), "approximator_hidden_dim": int(hidden),
            "approximator_layers": _blocks(state, _APPROXIMATOR + "layers", offset=2)}
