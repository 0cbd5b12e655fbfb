"""Load a checkpoint into an `SDModel`, fully offline.

Single files in the original (LDM/CompVis) layout are read by `weights.py` (safetensors, or a pickle only
with `torch.load(weights_only=True)`). The family is detected from the keys; each part is then built
without storage from a bundled diffusers config folder (`configs/<family>`), its keys renamed by diffusers'
LDM converters, and the file's tensors put in place. This is what `from_single_file` does inside, minus its Hub lookups and with our own checks for
missing weights. Diffusers folders load with `from_pretrained` from the local folder. Tokenizers are the
bundled CLIP BPE files (every SD family uses the same vocabulary).
"""

from __future__ import annotations

import contextlib
import functools
import gc
import json
import logging
import os
import re
import threading
from pathlib import Path

import torch

from webui.families.sd_detection import (
    Detection,
    UnsupportedCheckpoint,
    detect,
    detect_diffusers_folder,
    probe_prediction_type,
    settle_prediction_type,
)
from webui.models.discovery import CheckpointInfo, checkpoint_kind, with_hash
from webui.families import ModelFamily, family_for_folder, family_for_weights, scaled_linear_alphas_cumprod
from webui.families.companions import models_root_of
from webui.memory import cast_loaded
from webui.models.model import SDModel
from webui.models.weights import CheckpointError, one_line, read_state_dict

log = logging.getLogger(__name__)

TOKENIZER_DIR = Path(__file__).resolve().parent / "clip_tokenizer"
METADATA_FILE = "webui.json"  # our metadata beside a diffusers folder's model_index.json


# ---- building the parts ------------------------------------------------------------------------------------

def _filled(model: torch.nn.Module, weights: dict, part: str, dtype: torch.dtype,
            keep_fp8: bool = False) -> torch.nn.Module:
    """`model`, built without storage, holding the checkpoint's tensors (no copy) cast to `dtype`; with
    `keep_fp8`, weights the file stores in fp8 stay so (memory.cast_loaded)."""
    expected = model.state_dict()
    missing = [key for key in expected if key not in weights]
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise CheckpointError(f"{part} weights missing: {', '.join(missing[:3])}{more}")
    # Keys the model does not have (EMA copies, position ids, SD2's unused projection) are left behind.
    model.load_state_dict({key: weights[key].contiguous() for key in expected}, strict=True, assign=True)
    return cast_loaded(model, weights, dtype, keep_fp8)


def _unet_and_vae(state_dict: dict, config_dir: Path, dtype: torch.dtype, vae_dtype: torch.dtype) -> list:
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint

    parts = []
    for cls, subfolder, convert, part_dtype in ((UNet2DConditionModel, "unet", convert_ldm_unet_checkpoint, dtype),
                                                (AutoencoderKL, "vae", convert_ldm_vae_checkpoint, vae_dtype)):
        config = cls.load_config(config_dir, subfolder=subfolder, local_files_only=True)
        with init_empty_weights():  # no random init of weights that are about to be replaced
            model = cls.from_config(config)
        parts.append(_filled(model, convert(state_dict, config=config), subfolder.upper(), part_dtype,
                             keep_fp8=subfolder == "unet"))
    return parts


def _text_encoder(cls, config_dir: Path, subfolder: str, convert, dtype: torch.dtype):
    """A CLIP text model from its config, filled with `convert(empty_model)`'s weights."""
    from accelerate import init_empty_weights

    config = cls.config_class.from_pretrained(config_dir / subfolder, local_files_only=True)
    with init_empty_weights():
        model = cls(config)
    weights = convert(model)
    if not hasattr(model, "text_model"):  # transformers >= 5.6 flattened CLIPTextModel (no "text_model." level)
        weights = {key.removeprefix("text_model."): value for key, value in weights.items()}
    return _filled(model, weights, f"text encoder ({subfolder})", dtype)


def _text_encoders(state_dict: dict, family: ModelFamily, config_dir: Path, dtype: torch.dtype) -> list:
    """The CLIP encoders of an LDM-layout single file, in the family's order."""
    from diffusers.loaders.single_file_utils import convert_ldm_clip_checkpoint, convert_open_clip_checkpoint
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    def clip_l(prefix: str):
        return lambda model: convert_ldm_clip_checkpoint({k: v for k, v in state_dict.items() if k.startswith(prefix)})

    def open_clip(prefix: str):
        return lambda model: convert_open_clip_checkpoint(model, state_dict, prefix=prefix)

    readers = {"clip": clip_l, "open_clip": open_clip}  # the layouts a family's `ldm_text_layout` names
    classes = {"CLIPTextModel": CLIPTextModel, "CLIPTextModelWithProjection": CLIPTextModelWithProjection}
    return [_text_encoder(classes[cls], config_dir, subfolder, readers[layout](prefix), dtype)
            for cls, subfolder, layout, prefix in family.ldm_text_layout]


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _alphas_cumprod(config_dir: Path) -> torch.Tensor:
    config = _read_json(config_dir / "scheduler" / "scheduler_config.json")
    steps = config.get("num_train_timesteps", 1000)
    start, end = config.get("beta_start", 0.00085), config.get("beta_end", 0.012)
    schedule = config.get("beta_schedule", "scaled_linear")
    if schedule == "scaled_linear":
        return scaled_linear_alphas_cumprod(steps, start, end)
    if schedule == "linear":
        betas = torch.linspace(start, end, steps, dtype=torch.float64)
        return torch.cumprod(1.0 - betas, dim=0).to(torch.float32)
    raise CheckpointError(f"{config_dir.name}: beta schedule {schedule!r} is not supported")


def _default_size(config_dir: Path, vae) -> int:
    sample_size = _read_json(config_dir / "unet" / "config.json").get("sample_size", 64)
    return int(sample_size) * 2 ** (len(vae.config.block_out_channels) - 1)


def _empty_prompt_context(tokenizer, text_encoder) -> torch.Tensor:
    device = next(text_encoder.parameters()).device
    ids = tokenizer("", padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                    return_tensors="pt").input_ids
    with torch.no_grad():
        return text_encoder(ids.to(device)).last_hidden_state


def _settle_by_probe(detection: Detection, unet, text_encoder, tokenizer) -> Detection:
    try:
        prediction_type = probe_prediction_type(unet, _empty_prompt_context(tokenizer, text_encoder))
    except Exception as error:  # the probe is a heuristic; never fail a load over it
        log.warning("Could not run the v-prediction check (%s); assuming epsilon", error)
        prediction_type = "epsilon"
    return settle_prediction_type(detection, prediction_type)


# ---- the public entry points -------------------------------------------------------------------------------

def _as_info(source: CheckpointInfo | str | os.PathLike) -> CheckpointInfo:
    if isinstance(source, CheckpointInfo):
        return source
    path = Path(source).absolute()
    if not path.exists():
        raise CheckpointError(f"{path.name}: not found ({path})")
    kind = checkpoint_kind(path)
    if kind is None:
        raise CheckpointError(f"{path.name}: not a checkpoint (a .safetensors/.ckpt/.pt file or a diffusers folder)")
    return CheckpointInfo(path=path, name=path.stem if path.is_file() else path.name, kind=kind)


def _to_device(modules, device: torch.device) -> None:
    for module in modules:
        module.to(device).eval().requires_grad_(False)


def load_checkpoint(
    source: CheckpointInfo | str | os.PathLike,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    *,
    vae_dtype: torch.dtype | None = None,
    config_dir: str | os.PathLike | None = None,
    cache_path: str | os.PathLike | None = None,
    models_root: str | os.PathLike | None = None,
) -> SDModel:
    """Load a checkpoint (single file or diffusers folder) onto `device`.

    UNet and text encoders are in `dtype` (that is `SDModel.dtype`), the VAE in `vae_dtype` (default:
    `dtype`; read it back as `model.vae.dtype`). `config_dir` replaces the bundled config folder that
    detection picks, for single files (the tests use it for their tiny models). `cache_path` is the hash
    cache (see `hashes`); checkpoints are always hashed, once (a folder file by file). `models_root`: the
    `models/` folder whose text_encoder/ and VAE/ hold what a transformer-only file needs (default: the one
    the file is in). Raises `CheckpointError`, naming the file,
    for anything unreadable or unsupported.
    """
    info = _as_info(source)
    device = torch.device(device)
    dtypes = (dtype, vae_dtype or dtype)
    try:
        if info.kind == "diffusers":
            model = _load_diffusers_folder(info, device, *dtypes, cache_path)
        else:
            model = _load_single_file(info, device, *dtypes, Path(config_dir) if config_dir else None, cache_path,
                                      Path(models_root) if models_root else None)
    except CheckpointError:
        raise
    except UnsupportedCheckpoint as error:
        raise CheckpointError(f"{info.path.name}: {error}") from None
    except Exception as error:  # anything deep inside diffusers/transformers: say which file, keep the cause
        raise CheckpointError(f"{info.path.name}: could not be loaded ({one_line(error)})") from error
    return model


def _load_single_file(info: CheckpointInfo, device, dtype, vae_dtype, config_dir: Path | None, cache_path,
                      models_root: Path | None = None) -> SDModel:
    name = info.path.name
    state_dict = read_state_dict(info.path)
    family = family_for_weights(state_dict.keys())
    if family is not None and family.flow:  # a transformer family: its own layout and companion files
        parts = family.load_single_file(state_dict, models_root or models_root_of(info.path), dtype, vae_dtype)
        del state_dict
        _to_device([parts["unet"], parts["vae"], *parts["text_encoders"]], device)
        return SDModel(**parts, name=info.stem, path=info.path, sha256=with_hash(info, cache_path).sha256,
                       device=device, dtype=dtype)
    detection = detect(state_dict)
    build_dir = config_dir or detection.config_dir
    try:
        unet, vae = _unet_and_vae(state_dict, build_dir, dtype, vae_dtype)
        text_encoders = _text_encoders(state_dict, detection.family, build_dir, dtype)
    except CheckpointError as error:
        raise CheckpointError(f"{name}: {error}") from None
    except Exception as error:
        raise CheckpointError(
            f"{name}: the weights do not fit the {detection.family.label} layout ({one_line(error)})"
        ) from error
    del state_dict  # the parts own their tensors now; let the file's copy go
    _to_device([unet, vae, *text_encoders], device)
    tokenizers = detection.family.tokenizers(None)
    if detection.needs_probe:
        detection = _settle_by_probe(detection, unet, text_encoders[0], tokenizers[0])
    final_dir = config_dir or detection.config_dir
    sha256 = with_hash(info, cache_path).sha256
    return SDModel(
        family=detection.family, unet=unet, vae=vae, text_encoders=text_encoders, tokenizers=tokenizers,
        alphas_cumprod=_alphas_cumprod(final_dir), prediction_type=detection.prediction_type,
        name=info.stem, path=info.path, sha256=sha256, device=device, dtype=dtype,
        default_size=_default_size(final_dir, vae),
    )


def _weights_variant(folder: Path) -> str | None:
    """Use the fp16 weight files of a diffusers part when it has no full-precision ones."""
    names = {path.name for path in folder.iterdir()} if folder.is_dir() else set()
    has_plain = any(re.fullmatch(r"(diffusion_pytorch_model|model)\.(safetensors|bin)", n) for n in names)
    has_fp16 = any(re.fullmatch(r"(diffusion_pytorch_model|model)\.fp16\.(safetensors|bin)", n) for n in names)
    return "fp16" if has_fp16 and not has_plain else None


def _folder_family(folder: Path) -> ModelFamily | None:
    """The registered family that claims a diffusers folder, from its model_index.json (and, to tell SD 1.x
    from 2.x, its first text encoder's config); None when none does or the files are unreadable."""
    try:
        index = _read_json(folder / "model_index.json")
    except (OSError, ValueError):
        return None
    try:
        text_config = _read_json(folder / "text_encoder" / "config.json")
    except (OSError, ValueError):
        text_config = None
    return family_for_folder(index, text_config) if isinstance(index, dict) else None


def _load_diffusers_folder(info: CheckpointInfo, device, dtype, vae_dtype, cache_path) -> SDModel:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    folder = info.path
    family = _folder_family(folder)
    if family is not None and family.flow:  # the transformer families load their own parts
        parts = family.load_folder(folder, device, dtype, vae_dtype)
        _to_device([parts["unet"], parts["vae"], *parts["text_encoders"]], device)
        return SDModel(**parts, name=info.stem, path=folder, sha256=with_hash(info, cache_path).sha256,
                       device=device, dtype=dtype, metadata=read_metadata(folder))
    detection = detect_diffusers_folder(folder)

    def part(cls, subfolder: str, part_dtype: torch.dtype = dtype):
        variant = _weights_variant(folder / subfolder)
        if issubclass(cls, (UNet2DConditionModel, AutoencoderKL)):
            return cls.from_pretrained(folder, subfolder=subfolder, local_files_only=True, torch_dtype=part_dtype, variant=variant)
        return cls.from_pretrained(folder / subfolder, local_files_only=True, dtype=part_dtype, variant=variant)

    unet, vae = part(UNet2DConditionModel, "unet"), part(AutoencoderKL, "vae", vae_dtype)
    classes = {"CLIPTextModel": CLIPTextModel, "CLIPTextModelWithProjection": CLIPTextModelWithProjection}
    text_encoders = [part(classes[cls], subfolder) for cls, subfolder, _, _ in detection.family.ldm_text_layout]
    _to_device([unet, vae, *text_encoders], device)
    return SDModel(
        family=detection.family, unet=unet, vae=vae, text_encoders=text_encoders,
        tokenizers=detection.family.tokenizers(folder), alphas_cumprod=_alphas_cumprod(folder),
        prediction_type=detection.prediction_type, name=info.stem, path=folder, sha256=with_hash(info, cache_path).sha256,
        device=device, dtype=dtype, default_size=_default_size(folder, vae), metadata=read_metadata(folder),
    )


def checkpoint_family(info: CheckpointInfo) -> ModelFamily | None:
    """The family of a listed checkpoint, from its folder's model_index.json or its .safetensors header
    (milliseconds, nothing loaded; remembered while the file is unchanged); None when that cannot tell (a .ckpt
    pickle, an unreadable file)."""
    if info.kind not in ("diffusers", "safetensors"):
        return None
    marker = info.path / "model_index.json" if info.kind == "diffusers" else info.path
    try:
        stat = marker.stat()
    except OSError:
        return None
    return _family_of(str(info.path), info.kind, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=512)
def _family_of(path: str, kind: str, mtime_ns: int, size: int) -> ModelFamily | None:
    if kind == "diffusers":
        return _folder_family(Path(path))
    try:
        from safetensors import safe_open

        with safe_open(path, "pt") as handle:
            keys = set(handle.keys())
    except Exception:  # a broken header: listed anyway, loading says what is wrong
        return None
    return family_for_weights(keys)


def family_defaults(family: ModelFamily) -> dict:
    """A family's defaults as generation fields: its native size, steps, CFG, sampler (and distilled CFG)."""
    d = family.defaults
    defaults = {"width": family.default_size, "height": family.default_size, "steps": d.steps,
                "cfg_scale": d.cfg_scale, "sampler_name": d.sampler_name}
    if d.distilled_cfg_scale is not None:
        defaults["distilled_cfg_scale"] = d.distilled_cfg_scale
    return defaults


def checkpoint_defaults(info: CheckpointInfo) -> dict:
    """What a user who leaves fields out gets on this checkpoint: its family's defaults where they differ from
    A1111's (the newer families' size, steps, CFG, sampler), then the model's own metadata (see own_defaults)."""
    family = checkpoint_family(info)
    defaults = family_defaults(family) if family is not None and family.flow else {}
    metadata = read_metadata(info.path) if info.kind == "diffusers" else {}
    return defaults | own_defaults(metadata)


# What a model's own metadata may choose for the fields a user leaves out (the demo model's 128x128, CFG 5).
DEFAULT_FIELDS = ("width", "height", "steps", "cfg_scale", "sampler_name")


def own_defaults(metadata: dict) -> dict:
    """The generation defaults in a model's metadata (`read_metadata`), limited to DEFAULT_FIELDS; {} for most."""
    defaults = metadata.get("defaults")
    return {k: v for k, v in defaults.items() if k in DEFAULT_FIELDS} if isinstance(defaults, dict) else {}


def read_metadata(folder: Path) -> dict:
    """`webui.json` of a diffusers folder (our own models write one), or {} when it has none or it is unreadable."""
    try:
        metadata = _read_json(folder / METADATA_FILE)
    except (OSError, ValueError):
        return {}
    return metadata if isinstance(metadata, dict) else {}


def unload(model: SDModel | None) -> None:
    """Free a model's weights now, even if something else still holds a reference to its modules.

    Every part is moved to the meta device (no storage), so a stale reference cannot keep gigabytes alive;
    using an unloaded model fails loudly instead of silently working on the old weights.
    """
    if model is None:
        return
    for module in (model.unet, model.vae, model.own_vae, *model.text_encoders):  # own_vae: see models/vae.py
        if isinstance(module, torch.nn.Module):
            module.to("meta")
    model.text_encoders = []
    gc.collect()
    if model.device.type == "cuda" and torch.cuda.is_available():
        torch.cuda.empty_cache()
    elif model.device.type == "mps" and hasattr(torch, "mps"):
        with contextlib.suppress(Exception):
            torch.mps.empty_cache()


class ModelSlot:
    """Holds the one loaded checkpoint; switching frees the old model before loading the new one.

    Freeing first keeps the peak at one model's worth of memory (A1111 does the same with one model in
    memory). If the new checkpoint fails to load, the slot is left empty and the error is raised.
    """

    def __init__(self, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                 vae_dtype: torch.dtype | None = None, cache_path: str | os.PathLike | None = None,
                 models_root: str | os.PathLike | None = None):
        self.device, self.dtype, self.vae_dtype, self.cache_path = torch.device(device), dtype, vae_dtype, cache_path
        self.models_root = models_root  # where a transformer-only file's text encoders and VAE are
        self.model: SDModel | None = None
        self._lock = threading.Lock()

    def switch(self, source: CheckpointInfo | str | os.PathLike, **load_options) -> SDModel:
        path = (source.path if isinstance(source, CheckpointInfo) else Path(source)).absolute()
        with self._lock:
            if self.model is not None and self.model.path == path:
                return self.model
            self._release()
            self.model = load_checkpoint(source, self.device, self.dtype, vae_dtype=self.vae_dtype,
                                         cache_path=self.cache_path, models_root=self.models_root, **load_options)
            return self.model

    def unload(self) -> None:
        with self._lock:
            self._release()

    def _release(self) -> None:
        old, self.model = self.model, None
        unload(old)
