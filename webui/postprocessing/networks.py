"""Image-to-image networks from model files through spandrel: upscalers and face restorers.

spandrel recognises the architecture from the weights (ESRGAN, Real-ESRGAN, SwinIR, DAT, HAT, SCUNet, ...);
GFPGAN's hyper-parameters are read from the weights' shapes, so any GFPGAN-shaped file loads as the network
it was saved from. The last network used stays loaded (one per file), as A1111 keeps its upscaler.
"""

from __future__ import annotations

import threading
from pathlib import Path

import torch

from .model_files import read_state_dict


class ModelFileError(ValueError):
    """A model file that cannot be used; the message names the file and why."""


_cache: dict[tuple[Path, str], object] = {}
_cache_lock = threading.Lock()


def load_network(path: Path, device: torch.device | str = "cpu"):
    """The spandrel ImageModelDescriptor for an upscaler file (cached: one file at a time stays loaded)."""
    from spandrel import ImageModelDescriptor, ModelLoader, UnsupportedModelError

    key = (Path(path), str(device))
    with _cache_lock:
        if key in _cache:
            return _cache[key]
        try:
            descriptor = ModelLoader(device=torch.device(device)).load_from_state_dict(read_state_dict(Path(path)))
        except (UnsupportedModelError, ValueError, RuntimeError, KeyError, OSError) as error:
            raise ModelFileError(f"{Path(path).name}: not a model spandrel can load ({error})") from error
        if not isinstance(descriptor, ImageModelDescriptor):
            raise ModelFileError(f"{Path(path).name}: not an image-to-image model")
        descriptor.model.eval()
        _cache.clear()
        _cache[key] = descriptor
        return descriptor


def gfpgan_network(path: Path, device: torch.device | str = "cpu") -> torch.nn.Module:
    """A GFPGAN (v1 "clean") network for the weights in `path`, its size and widths read from the weights."""
    from spandrel.architectures.GFPGAN import GFPGAN

    key = (Path(path), f"gfpgan:{device}")
    with _cache_lock:
        if key in _cache:
            return _cache[key]
    state = read_state_dict(Path(path))
    try:
        options = gfpgan_options(state)
        network = GFPGAN(**options)
        network.load_state_dict(state, strict=True)
    except (KeyError, RuntimeError, ValueError) as error:
        raise ModelFileError(f"{Path(path).name}: not a GFPGAN model ({error})") from error
    network.to(device).eval()
    with _cache_lock:
        _cache[key] = network
    return network


def gfpgan_options(state: dict[str, torch.Tensor]) -> dict:
    """GFPGANv1Clean's constructor arguments from a state dict (v1.3 and v1.4 give out_size 512, narrow 1)."""
    downs = {int(k.split(".")[1]) for k in state if k.startswith("conv_body_down.")}
    log_size = len(downs) + 2
    narrow = state["final_conv.weight"].shape[0] / 256  # channels["4"] = 512 * narrow / 2
    style = state["stylegan_decoder.style_mlp.1.weight"].shape[0]
    mlp_layers = sum(1 for k in state if k.startswith("stylegan_decoder.style_mlp.") and k.endswith(".weight"))
    multiplier = 2
    if "toRGB.3.weight" in state:  # the 64-pixel level: 256 * multiplier * narrow / 2 channels
        multiplier = round(state["toRGB.3.weight"].shape[1] / (128 * narrow))
    first_up = state["condition_scale.0.0.weight"].shape[0]
    return {
        "out_size": 2**log_size, "num_style_feat": style, "channel_multiplier": multiplier,
        "decoder_load_path": None, "fix_decoder": False, "num_mlp": mlp_layers,
        "input_is_latent": True, "different_w": state["final_linear.weight"].shape[0] != style,
        "narrow": narrow, "sft_half": state["condition_scale.0.2.weight"].shape[0] == first_up,
    }
