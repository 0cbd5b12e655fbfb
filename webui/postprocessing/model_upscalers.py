"""Model upscalers (ESRGAN, Real-ESRGAN, SwinIR, DAT, HAT, ScuNET files) as pixel upscalers.

`refresh_model_upscalers` finds the files in A1111's folders and registers one upscaler per file in the
registry of generation/upscalers.py, which the hires fix, the Extras tab, the API and `shared.sd_upscalers`
all read. A model runs until the image is at least the asked size (a 4x model twice for 8x), in tiles
with overlap, then Lanczos gives the exact size.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import torch
from PIL import Image

from ..generation.upscalers import Upscaler, register_upscaler, unregister_upscaler
from .model_files import ModelFile, missing_defaults, upscaler_files
from .networks import load_network
from .tiling import run_tiled, to_image, to_tensor

log = logging.getLogger(__name__)

TILE_SIZE = 192  # A1111's ESRGAN_tile / ESRGAN_tile_overlap defaults
TILE_OVERLAP = 8
MAX_PASSES = 3

_run_lock = threading.Lock()  # one model upscale at a time: the network and its memory are shared
_lock = threading.Lock()  # the list of registered files
_registered: dict[str, ModelFile] = {}
_missing: list[str] = []


def upscale_with_model(file: ModelFile, image: Image.Image, width: int, height: int,
                       device: torch.device | str = "cpu") -> Image.Image:
    """`image` upscaled with the network in `file` to exactly `width` x `height`."""
    with _run_lock:
        network = load_network(file.path, device)
        dtype = next(network.model.parameters()).dtype
        for _ in range(MAX_PASSES):
            if image.width >= width and image.height >= height:
                break
            tensor = run_tiled(network, to_tensor(image, device, dtype), network.scale, TILE_SIZE, TILE_OVERLAP)
            image = to_image(tensor)
            if network.scale == 1:
                break
    if image.size != (width, height):
        image = image.resize((width, height), resample=Image.Resampling.LANCZOS)
    return image


def refresh_model_upscalers(models_dir: Path, device: torch.device | str = "cpu") -> list[ModelFile]:
    """Register an upscaler for every model file now in the folders (and drop those whose file went)."""
    files = upscaler_files(Path(models_dir))
    with _lock:
        for name in _registered:
            unregister_upscaler(name)
        _registered.clear()
        for file in files:
            register_upscaler(Upscaler(file.name, _bound(file, device)))
            _registered[file.name] = file
        _missing[:] = missing_defaults(Path(models_dir))
    if files:
        log.info("model upscalers: %s", ", ".join(f.name for f in files))
    return files


def _bound(file: ModelFile, device):
    return lambda image, width, height: upscale_with_model(file, image, width, height, device)


def model_upscaler_files() -> list[ModelFile]:
    """The model files registered now, in A1111's folder order."""
    with _lock:
        return list(_registered.values())


def model_upscaler_file(name: str) -> ModelFile | None:
    with _lock:
        return next((f for n, f in _registered.items() if n.lower() == name.lower()), None)


def missing_upscaler_notes() -> list[str]:
    """Where A1111's default upscalers' files would go (they are listed once their file is there)."""
    with _lock:
        return list(_missing)
