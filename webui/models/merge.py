"""A1111's Checkpoint Merger: two or three single-file checkpoints made into a new one.

Methods (A1111's names and formulas, per tensor, M the multiplier):
  "No interpolation"  A as it is (to convert it to fp16 or another format, or to bake a VAE in)
  "Weighted sum"      A * (1 - M) + B * M
  "Add difference"    A + (B - C) * M
Tensors only A has are kept as they are; a tensor whose shape differs between the files is an error, except the
UNet's first convolution of an inpainting model (9 input channels) merged with an ordinary one (4): there the
channels both have are merged and A's others kept, as A1111 does. The result is written next to the other
checkpoints (safetensors with A1111's merge metadata, or .ckpt), and the checkpoint list is read again so that
it can be chosen at once.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from .discovery import CheckpointInfo, with_hash
from .weights import CheckpointError, read_state_dict

METHODS = ("No interpolation", "Weighted sum", "Add difference")
FORMATS = ("safetensors", "ckpt")
VAE_PREFIX = "first_stage_model."
# Not weights: A1111 leaves these as the primary model has them.
_SKIP_ON_MERGE = ("cond_stage_model.transformer.text_model.embeddings.position_ids",)
_FIRST_CONV = "model.diffusion_model.input_blocks.0.0.weight"


class MergeError(ValueError):
    """A merge that cannot be done as asked; the message says why."""


@dataclass
class MergeRequest:
    primary: str
    secondary: str = ""
    tertiary: str = ""
    method: str = "Weighted sum"
    multiplier: float = 0.3
    save_as_half: bool = False
    custom_name: str = ""
    checkpoint_format: str = "safetensors"
    bake_in_vae: str = "None"  # a VAE file name from /sdapi/v1/sd-vae, or "None"
    discard_weights: str = ""  # a regular expression: matching tensors are left out of the result
    save_metadata: bool = True

    def problems(self) -> list[str]:
        problems = []
        if self.method not in METHODS:
            problems.append(f"method must be one of {', '.join(METHODS)}, not {self.method!r}")
        if not self.primary:
            problems.append("choose a primary model (A)")
        if self.method in ("Weighted sum", "Add difference") and not self.secondary:
            problems.append(f"{self.method} needs a secondary model (B)")
        if self.method == "Add difference" and not self.tertiary:
            problems.append("Add difference needs a tertiary model (C)")
        if not (isinstance(self.multiplier, (int, float)) and 0 <= self.multiplier <= 1):
            problems.append(f"multiplier must be between 0 and 1, not {self.multiplier!r}")
        if self.checkpoint_format not in FORMATS:
            problems.append(f"checkpoint format must be one of {', '.join(FORMATS)}")
        if any(c in self.custom_name for c in "/\\\0:") or ".." in self.custom_name:
            problems.append("custom name must be a file name (no /, \\, :, ..)")
        if self.discard_weights:
            try:
                re.compile(self.discard_weights)
            except re.error as error:
                problems.append(f"discard weights: not a regular expression ({error})")
        return problems


def _merge_tensor(key: str, a: torch.Tensor, b: torch.Tensor | None, c: torch.Tensor | None, method: str,
                  m: float) -> torch.Tensor:
    if b is None or (method == "Add difference" and c is None):
        return a
    if b.shape != a.shape or (c is not None and c.shape != a.shape):
        if key == _FIRST_CONV and a.dim() == 4 and b.shape[1] <= a.shape[1] and a.shape[0] == b.shape[0]:
            merged = a.clone()  # an inpainting A: the channels B (and C) also have are merged
            channels = b.shape[1]
            part_c = c[:, :channels] if c is not None else None
            merged[:, :channels] = _merge_tensor(key, a[:, :channels], b, part_c, method, m)
            return merged
        raise MergeError(f"cannot merge {key}: its shapes differ ({tuple(a.shape)} and {tuple(b.shape)}); "
                         "are the models of the same family?")
    a32, b32 = a.float(), b.float()
    if method == "Weighted sum":
        out = a32 * (1 - m) + b32 * m
    else:
        out = a32 + (b32 - c.float()) * m
    return out.to(a.dtype)


def merge_state_dicts(a: dict[str, torch.Tensor], b: dict | None, c: dict | None, method: str,
                      multiplier: float) -> dict[str, torch.Tensor]:
    """The merged tensors (A's keys); see the module's formulas."""
    if method == "No interpolation":
        return dict(a)
    merged = {}
    for key, value in a.items():
        if key in _SKIP_ON_MERGE or not value.is_floating_point():
            merged[key] = value
            continue
        merged[key] = _merge_tensor(key, value, (b or {}).get(key), (c or {}).get(key), method, multiplier)
    return merged


def output_name(request: MergeRequest, infos: list[CheckpointInfo]) -> str:
    """The new file's name: the custom one, else A1111's `A_0.7-B_0.3-Weighted_sum-merged` pattern."""
    if request.custom_name:
        name = request.custom_name
    elif request.method == "No interpolation":
        name = f"{infos[0].stem}-No_interpolation"
    else:
        m = request.multiplier
        name = (f"{infos[0].stem}_{round(1 - m, 2)}-{infos[1].stem}_{round(m, 2)}-"
                f"{request.method.replace(' ', '_')}-merged")
    return f"{name}.{request.checkpoint_format}"


def _single_file(info: CheckpointInfo, role: str) -> CheckpointInfo:
    if info.kind == "diffusers":
        raise MergeError(f"{role} {info.name} is a diffusers folder; the merger works on single-file "
                         "checkpoints (.safetensors, .ckpt)")
    return info


def _vae_weights(path: Path) -> dict[str, torch.Tensor]:
    tensors = read_state_dict(path)
    if any(key.startswith(("decoder.up_blocks.", "encoder.down_blocks.")) for key in tensors):
        raise MergeError(f"VAE {path.name} is in diffusers' layout; only A1111-style VAE files can be baked in")
    return {key: value for key, value in tensors.items() if not key.startswith("loss.")}


def merge_checkpoints(request: MergeRequest, find: Callable[[str], CheckpointInfo], output_dir: Path,
                      vae_path: Path | None = None, cache_path: Path | None = None) -> Path:
    """Merge as `request` says and write the result into `output_dir`; returns its path.
    `find` turns a checkpoint name into its CheckpointInfo (ModelManager.find); `vae_path` is the VAE to bake in."""
    if problems := request.problems():
        raise MergeError("; ".join(problems))
    roles = [("primary model", request.primary), ("secondary model", request.secondary),
             ("tertiary model", request.tertiary)]
    needed = {"No interpolation": 1, "Weighted sum": 2, "Add difference": 3}[request.method]
    try:
        infos = [_single_file(find(name), role) for role, name in roles[:needed]]
    except LookupError as error:
        raise MergeError(str(error)) from None
    target = Path(output_dir) / output_name(request, infos)
    if any(target.resolve() == info.path.resolve() for info in infos):
        raise MergeError(f"{target.name} would overwrite one of the models being merged; choose another name")
    try:
        dicts = [read_state_dict(info.path) for info in infos]
    except CheckpointError as error:
        raise MergeError(str(error)) from None
    merged = merge_state_dicts(dicts[0], dicts[1] if needed > 1 else None, dicts[2] if needed > 2 else None,
                               request.method, float(request.multiplier))
    del dicts
    if vae_path is not None:
        for key, value in _vae_weights(vae_path).items():
            merged[VAE_PREFIX + key] = value
    if request.discard_weights:
        pattern = re.compile(request.discard_weights)
        merged = {key: value for key, value in merged.items() if not pattern.search(key)}
    if request.save_as_half:
        merged = {key: value.half() if value.is_floating_point() else value for key, value in merged.items()}
    merged = {key: value.contiguous() for key, value in merged.items()}
    target.parent.mkdir(parents=True, exist_ok=True)
    if request.checkpoint_format == "safetensors":
        from safetensors.torch import save_file

        save_file(merged, str(target), metadata=_metadata(request, infos, vae_path, cache_path)
                  if request.save_metadata else {"format": "pt"})
    else:
        torch.save({"state_dict": merged}, target)
    return target


def _metadata(request: MergeRequest, infos: list[CheckpointInfo], vae_path: Path | None, cache_path) -> dict:
    """A1111's merge metadata: the recipe, and the models merged (by hash) with their own recipes."""
    hashed = [with_hash(info, cache_path) for info in infos]
    hashes = [info.sha256 for info in hashed] + [None] * (3 - len(hashed))
    recipe = {
        "type": "webui", "primary_model_hash": hashes[0], "secondary_model_hash": hashes[1],
        "tertiary_model_hash": hashes[2], "interp_method": request.method, "multiplier": request.multiplier,
        "save_as_half": request.save_as_half, "custom_name": request.custom_name, "config_source": 0,
        "bake_in_vae": vae_path.name if vae_path is not None else "None", "discard_weights": request.discard_weights,
        "is_inpainting": False, "is_instruct_pix2pix": False,
    }
    models = {}
    for info in hashed:
        own = _own_recipe(info.path)
        models[info.sha256] = {"name": info.filename, "legacy_hash": None, "sd_merge_recipe": own}
    return {"format": "pt", "sd_merge_recipe": json.dumps(recipe), "sd_merge_models": json.dumps(models)}


def _own_recipe(path: Path):
    if path.suffix.lower() != ".safetensors":
        return None
    try:
        from safetensors import safe_open

        with safe_open(str(path), "pt") as handle:
            text = (handle.metadata() or {}).get("sd_merge_recipe")
        return json.loads(text) if text else None
    except Exception:  # a recipe we cannot read is left out, never a failed merge
        return None
