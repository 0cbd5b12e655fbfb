"""SD3/SD3.5's original (MMDiT) weight layout <-> diffusers' SD3Transformer2DModel layout, as a table like
flux_layout.py: one original tensor becomes one diffusers tensor, or splits into q/k/v; adaLN modulations
whose halves diffusers reads the other way round are swapped. Sizes come from the weights."""

from __future__ import annotations

import math

import torch

PREFIX = "model.diffusion_model."

_GLOBAL = (
    ("x_embedder.proj", "pos_embed.proj"),
    ("t_embedder.mlp.0", "time_text_embed.timestep_embedder.linear_1"),
    ("t_embedder.mlp.2", "time_text_embed.timestep_embedder.linear_2"),
    ("y_embedder.mlp.0", "time_text_embed.text_embedder.linear_1"),
    ("y_embedder.mlp.2", "time_text_embed.text_embedder.linear_2"),
    ("context_embedder", "context_embedder"),
    ("final_layer.linear", "proj_out"),
)
_X = (
    ("x_block.attn.qkv", ("attn.to_q", "attn.to_k", "attn.to_v"), "linear"),
    ("x_block.attn.proj", "attn.to_out.0", "linear"),
    ("x_block.attn.ln_q", "attn.norm_q", "weight"),
    ("x_block.attn.ln_k", "attn.norm_k", "weight"),
    ("x_block.adaLN_modulation.1", "norm1.linear", "linear"),
    ("x_block.mlp.fc1", "ff.net.0.proj", "linear"),
    ("x_block.mlp.fc2", "ff.net.2", "linear"),
)
_X_DUAL = (  # SD3.5 medium's second attention in some blocks
    ("x_block.attn2.qkv", ("attn2.to_q", "attn2.to_k", "attn2.to_v"), "linear"),
    ("x_block.attn2.proj", "attn2.to_out.0", "linear"),
    ("x_block.attn2.ln_q", "attn2.norm_q", "weight"),
    ("x_block.attn2.ln_k", "attn2.norm_k", "weight"),
)
_CONTEXT = (
    ("context_block.attn.qkv", ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"), "linear"),
    ("context_block.attn.ln_q", "attn.norm_added_q", "weight"),
    ("context_block.attn.ln_k", "attn.norm_added_k", "weight"),
)
_CONTEXT_NOT_LAST = (  # the last block's context stream only modulates (diffusers: context_pre_only)
    ("context_block.attn.proj", "attn.to_add_out", "linear"),
    ("context_block.adaLN_modulation.1", "norm1_context.linear", "linear"),
    ("context_block.mlp.fc1", "ff_context.net.0.proj", "linear"),
    ("context_block.mlp.fc2", "ff_context.net.2", "linear"),
)
_CONTEXT_LAST = (("context_block.adaLN_modulation.1", "norm1_context.linear", "swapped"),)


def strip_prefix(state: dict) -> dict:
    return {key.removeprefix(PREFIX): value for key, value in state.items()}


def _count(names, pattern: str) -> int:
    return 1 + max((int(n.split(".")[1]) for n in names if n.startswith(pattern)), default=-1)


def _pairs(has, layers: int, dual: set[int]):
    """(original name, diffusers name(s), kind); `has(original, diffusers)` says whether optional parts exist."""
    yield "pos_embed", "pos_embed.pos_embed", "tensor"
    for old, new in _GLOBAL:
        yield old, new, "linear"
    for i in range(layers):
        last = i == layers - 1
        rows = _X + (_X_DUAL if i in dual else ()) + _CONTEXT + (_CONTEXT_LAST if last else _CONTEXT_NOT_LAST)
        for old, new, kind in rows:
            old_name = f"joint_blocks.{i}.{old}"
            new_name = tuple(f"transformer_blocks.{i}.{n}" for n in new) if isinstance(new, tuple) else f"transformer_blocks.{i}.{new}"
            if kind == "weight" and not has(old_name, new_name):
                continue  # no qk norm (SD3 medium)
            yield old_name, new_name, kind
    yield "final_layer.adaLN_modulation.1", "norm_out.linear", "swapped"


def _swap(tensor: torch.Tensor) -> torch.Tensor:
    first, second = tensor.chunk(2, dim=0)
    return torch.cat([second, first], dim=0)


def _suffixes(kind: str) -> tuple[str, ...]:
    return {"tensor": ("",), "weight": (".weight",)}.get(kind, (".weight", ".bias"))


def to_diffusers(state: dict, shapes: dict) -> dict:
    layers = _count(state, "joint_blocks.")
    dual = {int(k.split(".")[1]) for k in state if ".x_block.attn2." in k}
    out = {}
    for old, new, kind in _pairs(lambda o, n: f"{o}.weight" in state, layers, dual):
        for suffix in _suffixes(kind):
            tensor = state[old + suffix]
            if isinstance(new, tuple):
                sizes = [shapes[n + suffix][0] for n in new]
                out.update(zip((n + suffix for n in new), torch.split(tensor, sizes, dim=0)))
            else:
                out[new + suffix] = _swap(tensor) if kind == "swapped" else tensor
    return out


def from_diffusers(state: dict) -> dict:
    """The inverse (tests build single files with it)."""
    layers = _count(state, "transformer_blocks.")
    dual = {int(k.split(".")[1]) for k in state if ".attn2." in k}
    out = {}
    for old, new, kind in _pairs(lambda o, n: f"{n}.weight" in state, layers, dual):
        for suffix in _suffixes(kind):
            if isinstance(new, tuple):
                out[old + suffix] = torch.cat([state[n + suffix] for n in new], dim=0)
            else:
                out[old + suffix] = _swap(state[new + suffix]) if kind == "swapped" else state[new + suffix]
    return out


def config_from_weights(state: dict) -> dict:
    inner, in_channels, patch, _ = state["x_embedder.proj.weight"].shape
    norm = state.get("joint_blocks.0.x_block.attn.ln_q.weight")
    head_dim = int(norm.shape[0]) if norm is not None else 64  # SD3 medium has no qk norm; its heads are 64 wide
    max_size = int(math.isqrt(state["pos_embed"].shape[1]))
    return {
        "sample_size": min(128, max_size * int(patch)), "patch_size": int(patch), "in_channels": int(in_channels),
        "num_layers": _count(state, "joint_blocks."), "attention_head_dim": head_dim,
        "num_attention_heads": int(inner) // head_dim, "joint_attention_dim": int(state["context_embedder.weight"].shape[1]),
        "caption_projection_dim": int(state["context_embedder.weight"].shape[0]),
        "pooled_projection_dim": int(state["y_embedder.mlp.0.weight"].shape[1]),
        "out_channels": int(state["final_layer.linear.weight"].shape[0]) // int(patch) ** 2,
        "pos_embed_max_size": max_size, "qk_norm": "rms_norm" if norm is not None else None,
        "dual_attention_layers": tuple(sorted({int(k.split(".")[1]) for k in state if ".x_block.attn2." in k})),
    }


def original_names(network) -> list[tuple[str, object]]:
    """(MMDiT module name, diffusers module name or names) for the linear layers of a loaded transformer, as a
    LoRA in the original layout names them (norms and the swapped modulations carry none here)."""
    names = {name for name, _ in network.named_modules()}
    layers = sum(1 for n in names if n.startswith("transformer_blocks.") and n.count(".") == 1)
    dual = {int(n.split(".")[1]) for n in names if n.startswith("transformer_blocks.") and n.endswith(".attn2")}
    present = lambda old, new: (new[0] if isinstance(new, tuple) else new) in names  # noqa: E731
    return [(old, new) for old, new, kind in _pairs(present, layers, dual) if kind == "linear"]
