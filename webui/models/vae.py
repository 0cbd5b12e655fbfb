"""Separate VAE files: listing, A1111's "Automatic" rule, loading and swapping into a loaded model.

VAE files live in `<models_dir>/VAE` (`--vae-dir`), recursively, and beside checkpoints as
`<checkpoint stem>.vae.safetensors/.vae.pt/.vae.ckpt`. The setting `sd_vae` picks one:
- "Automatic": a VAE named like the checkpoint (beside it first, then in the VAE folder),
  else the checkpoint's own VAE;
- "None": the checkpoint's own VAE;
- a file name from the list (as `GET /sdapi/v1/sd-vae` gives it).
A VAE file in the original (LDM) key layout is converted with diffusers' converter, offline,
into a VAE built from the loaded model's own VAE config; the checkpoint's VAE is kept so that
switching back costs nothing. The infotext records `VAE` (file name) and `VAE hash` (10 hex).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from .hashes import sha256 as file_sha256
from .loading import _filled
from .weights import CheckpointError, read_state_dict
from .model import SDModel

log = logging.getLogger(__name__)

AUTOMATIC, NONE = "Automatic", "None"
VAE_EXTENSIONS = (".safetensors", ".pt", ".ckpt")
NEAR_CHECKPOINT_SUFFIXES = (".vae.safetensors", ".vae.pt", ".vae.ckpt")
HASH_LENGTH = 10


class VaeNotFound(LookupError):
    """A VAE name that is not in the list."""


@dataclass(frozen=True)
class VaeFile:
    path: Path

    @property
    def name(self) -> str:
        """A1111's `model_name`: the file name."""
        return self.path.name


def list_vaes(vae_dir: str | os.PathLike | None, checkpoint_dirs=()) -> list[VaeFile]:
    """VAE files in the VAE folder (recursively) and `*.vae.*` files beside checkpoints, by name."""
    found: dict[Path, VaeFile] = {}
    if vae_dir and Path(vae_dir).is_dir():
        for root, dirs, names in os.walk(vae_dir, followlinks=True):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in names:
                if name.lower().endswith(VAE_EXTENSIONS):
                    path = (Path(root) / name).absolute()
                    found[path] = VaeFile(path)
    for folder in checkpoint_dirs:
        if folder and Path(folder).is_dir():
            for path in Path(folder).rglob("*"):
                if path.is_file() and path.name.lower().endswith(NEAR_CHECKPOINT_SUFFIXES):
                    found[path.absolute()] = VaeFile(path.absolute())
    return sorted(found.values(), key=lambda v: (v.name.lower(), str(v.path)))


def _stem(name: str) -> str:
    lower = name.lower()
    for suffix in NEAR_CHECKPOINT_SUFFIXES + VAE_EXTENSIONS:
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return name


def automatic_vae(checkpoint: Path | None, vaes: list[VaeFile]) -> Path | None:
    """A1111's "Automatic": `<stem>.vae.*` beside the checkpoint, else a VAE-folder file named like it."""
    if checkpoint is None:
        return None
    checkpoint = Path(checkpoint)
    stem = checkpoint.stem if checkpoint.suffix.lower() in VAE_EXTENSIONS else checkpoint.name
    for suffix in NEAR_CHECKPOINT_SUFFIXES:
        near = checkpoint.with_name(stem + suffix)
        if near.is_file():
            return near.absolute()
    for vae in vaes:
        if _stem(vae.name) == stem:
            return vae.path
    return None


def resolve_vae(choice: str | None, checkpoint: Path | None, vaes: list[VaeFile]) -> Path | None:
    """The VAE file `choice` means for this checkpoint, or None for the checkpoint's own VAE."""
    choice = (choice or AUTOMATIC).strip()
    if choice == NONE:
        return None
    if choice == AUTOMATIC:
        return automatic_vae(checkpoint, vaes)
    for vae in vaes:
        if choice in (vae.name, str(vae.path), _stem(vae.name)):
            return vae.path
    names = ", ".join(v.name for v in vaes) or "none found"
    raise VaeNotFound(f"VAE {choice!r} not found (known: Automatic, None, {names})")


def load_vae(path: str | os.PathLike, like, dtype: torch.dtype | None = None):
    """A diffusers AutoencoderKL with the weights of a VAE file, built from the config of `like`."""
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    path = Path(path)
    state_dict = read_state_dict(path)
    config = dict(like.config)
    with init_empty_weights():
        vae = AutoencoderKL.from_config(config)
    if any(key.startswith(("decoder.up_blocks.", "encoder.down_blocks.")) for key in state_dict):
        weights = state_dict  # already in diffusers' layout
    else:
        weights = convert_ldm_vae_checkpoint(state_dict, config)
    try:
        vae = _filled(vae, weights, "VAE", dtype or like.dtype)
    except CheckpointError as error:
        raise CheckpointError(f"{path.name}: {error}") from None
    except Exception as error:
        raise CheckpointError(f"{path.name}: the weights do not fit this model's VAE ({error})") from error
    return vae.to(like.device).eval().requires_grad_(False)


def apply_vae(model: SDModel, path: str | os.PathLike | None, cache_path=None) -> SDModel:
    """Use the VAE file `path` in `model` (None: the checkpoint's own VAE). Cheap when nothing changes."""
    path = Path(path).absolute() if path is not None else None
    if path == model.vae_file:
        return model
    if model.own_vae is None:
        model.own_vae = model.vae
    if path is None:
        old, model.vae = model.vae, model.own_vae
        model.vae_file, model.vae_sha256 = None, None
    else:
        new = load_vae(path, model.own_vae)
        old, model.vae = model.vae, new
        model.vae_file, model.vae_sha256 = path, file_sha256(path, cache_path)
        log.info("VAE %s loaded", path.name)
    if old is not model.own_vae and old is not model.vae:
        old.to("meta")  # a separate VAE no longer used: free it now
    return model


def vae_infotext(model: SDModel) -> dict:
    """`VAE hash` and `VAE` for the infotext when a separate VAE is in use."""
    if model.vae_file is None:
        return {}
    return {"VAE hash": model.vae_sha256[:HASH_LENGTH] if model.vae_sha256 else None, "VAE": model.vae_file.name}


def _models_dir(flags) -> Path:
    return Path(getattr(flags, "models_dir", None) or Path(flags.data_dir) / "models")


def vae_dir_of(flags) -> Path:
    return Path(getattr(flags, "vae_dir", None) or _models_dir(flags) / "VAE")


def state_vaes(state) -> list[VaeFile]:
    """The VAE files a running WebUI knows: its VAE folder and its checkpoint folders."""
    flags = state.flags
    return list_vaes(vae_dir_of(flags), [_models_dir(flags) / "Stable-diffusion", getattr(flags, "ckpt_dir", None)])


def apply_vae_setting(state, model: SDModel, choice: str | None) -> SDModel:
    """Apply the `sd_vae` setting (or a per-request override) to the loaded model."""
    path = resolve_vae(choice, model.path, state_vaes(state))
    return apply_vae(model, path, Path(state.flags.data_dir) / "cache.json")
