"""Tiny random-weight upscaler and face-restoration files, built with spandrel's own architecture classes and
saved where a user's files go (A1111's folders), for the post-processing tests."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file


def tiny_esrgan(path: Path, scale: int = 4, safetensors: bool = False) -> Path:
    """An old-style ESRGAN (RRDB) with 8 filters and one block: a few thousand weights."""
    from spandrel.architectures.ESRGAN import ESRGAN

    torch.manual_seed(0)
    state = ESRGAN(in_nc=3, out_nc=3, num_filters=8, num_blocks=1, scale=scale).state_dict()
    path.parent.mkdir(parents=True, exist_ok=True)
    if safetensors:
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(state, path)
    return path


def tiny_gfpgan(path: Path) -> Path:
    """A GFPGAN v1 "clean" network, 32-pixel faces and 1/32 of the channels, saved as BasicSR saves it."""
    from spandrel.architectures.GFPGAN import GFPGAN

    torch.manual_seed(0)
    network = GFPGAN(out_size=32, num_style_feat=16, channel_multiplier=2, decoder_load_path=None, fix_decoder=False,
                     num_mlp=2, input_is_latent=True, different_w=True, narrow=1 / 32, sft_half=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"params_ema": network.state_dict()}, path)
    return path


def cartoon_face(size: int = 160):
    """A drawn face (skin oval, eyes, brows, nose, mouth on a blue ground) that OpenCV's frontal-face Haar
    cascade finds: the detector's real input, made in code."""
    from PIL import Image, ImageDraw

    scale = size / 160
    image = Image.new("RGB", (size, size), (90, 120, 160))
    draw = ImageDraw.Draw(image)
    s = lambda *box: tuple(int(v * scale) for v in box)  # noqa: E731
    draw.ellipse(s(40, 25, 120, 135), fill=(225, 190, 160))
    for x in (55, 85):
        draw.ellipse(s(x, 60, x + 20, 72), fill=(255, 255, 255))
        draw.ellipse(s(x + 6, 62, x + 14, 70), fill=(30, 20, 10))
        draw.rectangle(s(x - 3, 50, x + 23, 54), fill=(60, 40, 20))
    draw.polygon([s(80, 72), s(74, 95), s(86, 95)], fill=(200, 160, 130))
    draw.ellipse(s(66, 105, 94, 115), fill=(150, 60, 60))
    return image
