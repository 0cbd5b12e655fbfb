"""Z-Image's original single-file layout <-> diffusers' ZImageTransformer2DModel: a few renames and the fused
q/k/v of each attention split in three (the equal thirds of its rows)."""

from __future__ import annotations

import re

import torch

PREFIX = "model.diffusion_model."
# original -> diffusers (the single patch size files ship with: 2x2, one frame)
_RENAMES = (("final_layer.", "all_final_layer.2-1."), ("x_embedder.", "all_x_embedder.2-1."),
            (".attention.out.", ".attention.to_out.0."), (".attention.k_norm.", ".attention.norm_k."),
            (".attention.q_norm.", ".attention.norm_q."))
_QKV = (".attention.qkv.weight", (".attention.to_q.weight", ".attention.to_k.weight", ".attention.to_v.weight"))


def _rename(key: str, pairs) -> str:
    for old, new in pairs:
        if key.startswith(old) or (old.startswith(".") and old in key):
            key = key.replace(old, new, 1)
    return key


def to_diffusers(state: dict) -> dict:
    out = {}
    for key, value in state.items():
        key = key.removeprefix(PREFIX)
        if key == "norm_final.weight":  # not a parameter of diffusers' model
            continue
        if key.endswith(_QKV[0]):
            for name, part in zip(_QKV[1], value.chunk(3, dim=0)):
                out[_rename(key.replace(_QKV[0], name), _RENAMES)] = part
            continue
        out[_rename(key, _RENAMES)] = value
    return out


def from_diffusers(state: dict) -> dict:
    """The inverse (tests build single files with it)."""
    back = tuple((new, old) for old, new in _RENAMES)
    out = {}
    for key, value in state.items():
        if key.endswith(_QKV[1][0]):
            parts = [state[key.replace(_QKV[1][0], name)] for name in _QKV[1]]
            out[_rename(key.replace(_QKV[1][0], _QKV[0]), back)] = torch.cat(parts, dim=0)
        elif not key.endswith(_QKV[1][1:]):
            out[_rename(key, back)] = value
    return out


def _count(state: dict, prefix: str) -> int:
    return 1 + max((int(m[1]) for k in state if (m := re.match(re.escape(prefix) + r"(\d+)\.", k))), default=-1)


def config_from_weights(state: dict) -> dict:
    """ZImageTransformer2DModel's arguments from a diffusers-named state dict."""
    dim, patch_features = state["all_x_embedder.2-1.weight"].shape
    head_dim = int(state["layers.0.attention.norm_q.weight"].shape[0])
    return {
        "all_patch_size": (2,), "all_f_patch_size": (1,), "in_channels": int(patch_features) // 4, "dim": int(dim),
        "n_layers": _count(state, "layers."), "n_refiner_layers": _count(state, "noise_refiner."),
        "n_heads": int(dim) // head_dim, "n_kv_heads": int(state["layers.0.attention.to_k.weight"].shape[0]) // head_dim,
        "cap_feat_dim": int(state["cap_embedder.1.weight"].shape[1]),
        # Rotary axes (frame, row, column) as the model splits its heads: 32/48/48 of 128.
        "axes_dims": [head_dim // 4, head_dim * 3 // 8, head_dim * 3 // 8],
    }
