"""Inpainting masks and img2img geometry, with A1111's semantics.

White (255) in a mask means "repaint". Everything here works on PIL images, at pixel level:
reading a mask (RGBA alpha counts), blurring it, finding the "only masked" crop, filling
the masked area before encoding, and pasting the original back over the result.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageFilter, ImageOps

# What "img2img background color" flattens transparent init images onto (A1111's default).
BACKGROUND = (255, 255, 255)


def flatten(image: Image.Image) -> Image.Image:
    """RGB, with any transparency composited onto the background colour."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        base = Image.new("RGBA", rgba.size, BACKGROUND + (255,))
        base.alpha_composite(rgba)
        return base.convert("RGB")
    return image.convert("RGB")


def resize_image(mode: int, image: Image.Image, width: int, height: int) -> Image.Image:
    """A1111's four resize modes (Lanczos throughout; mode 3 behaves as mode 2 on pixels).

    0 stretches; 1 scales to cover the target and crops the centre; 2 scales to fit inside
    and fills the two empty borders by stretching the image's outermost row or column.
    """
    if mode == 0:
        return image.resize((width, height), resample=Image.LANCZOS)
    target_ratio, source_ratio = width / height, image.width / image.height
    # Mode 1 matches the side that leaves overflow (to crop); 2 the side that leaves room.
    match_width = target_ratio > source_ratio if mode == 1 else target_ratio < source_ratio
    match_height = target_ratio <= source_ratio if mode == 1 else target_ratio >= source_ratio
    new_w = width if match_width else image.width * height // image.height
    new_h = height if match_height else image.height * width // image.width
    resized = image.resize((new_w, new_h), resample=Image.LANCZOS)
    result = Image.new(image.mode if image.mode in ("L", "RGB") else "RGB", (width, height))
    left, top = width // 2 - new_w // 2, height // 2 - new_h // 2
    result.paste(resized, (left, top))
    if mode != 1 and top > 0 and target_ratio < source_ratio:
        # A zero-height box makes PIL repeat the edge row: the borders continue the image.
        result.paste(resized.resize((width, top), box=(0, 0, width, 0)), (0, 0))
        result.paste(resized.resize((width, top), box=(0, new_h, width, new_h)), (0, top + new_h))
    elif mode != 1 and left > 0 and target_ratio > source_ratio:
        result.paste(resized.resize((left, height), box=(0, 0, 0, height)), (0, 0))
        result.paste(resized.resize((left, height), box=(new_w, 0, new_w, height)), (left + new_w, 0))
    return result


def read_mask(image: Image.Image, round_alpha: bool = True) -> Image.Image:
    """A grey mask from a user's image: a transparent RGBA image's alpha is the mask (as
    A1111's canvas sends it), thresholded at 128 when rounding; anything else is its grey."""
    if image.mode == "RGBA" and image.getextrema()[-1] != (255, 255):
        alpha = image.getchannel("A")
        return alpha.point(lambda v: 255 if v > 128 else 0) if round_alpha else alpha
    return image.convert("L")


def _gaussian_kernel(sigma: float) -> np.ndarray:
    # A1111's size rule: 2 * int(2.5 sigma + 0.5) + 1 taps.
    radius = int(2.5 * sigma + 0.5)
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-(offsets**2) / (2 * sigma * sigma))
    return kernel / kernel.sum()


def _blur_axis(array: np.ndarray, sigma: float, axis: int) -> np.ndarray:
    kernel = _gaussian_kernel(sigma)
    radius = len(kernel) // 2
    pad = [(0, 0), (0, 0)]
    pad[axis] = (radius, radius)
    padded = np.pad(array, pad, mode="reflect")  # mirror without repeating the edge, as OpenCV
    out = np.zeros_like(array, dtype=np.float64)
    size = array.shape[axis]
    for tap, weight in enumerate(kernel):
        out += weight * (padded[tap : tap + size] if axis == 0 else padded[:, tap : tap + size])
    return out


def blur_mask(mask: Image.Image, blur_x: float, blur_y: float) -> Image.Image:
    """Gaussian blur, horizontal then vertical, each rounded back to 8 bits as A1111's is."""
    array = np.asarray(mask, dtype=np.float64)
    if blur_x > 0:
        array = np.clip(np.round(_blur_axis(array, blur_x, axis=1)), 0, 255)
    if blur_y > 0:
        array = np.clip(np.round(_blur_axis(array, blur_y, axis=0)), 0, 255)
    return Image.fromarray(array.astype(np.uint8), mode="L")


def crop_region(mask: Image.Image, padding: int) -> tuple[int, int, int, int] | None:
    """The box around the mask's non-zero pixels plus padding, inside the image; None if empty."""
    box = mask.getbbox()
    if box is None:
        return None
    x1, y1, x2, y2 = box
    return max(x1 - padding, 0), max(y1 - padding, 0), min(x2 + padding, mask.width), min(y2 + padding, mask.height)


def expand_crop_region(box: tuple[int, int, int, int], width: int, height: int, image_width: int,
                       image_height: int) -> tuple[int, int, int, int]:
    """Grow the short side of `box` (about its centre) to the width:height ratio, shifting it
    back inside the image where it would stick out (A1111's rule, rounding included)."""
    x1, y1, x2, y2 = box
    if (x2 - x1) / (y2 - y1) > width / height:
        y1, y2 = _grow(y1, y2, int((x2 - x1) / (width / height) - (y2 - y1)), image_height)
    else:
        x1, x2 = _grow(x1, x2, int((y2 - y1) * (width / height) - (x2 - x1)), image_width)
    return x1, y1, x2, y2


def _grow(start: int, end: int, extra: int, limit: int) -> tuple[int, int]:
    start, end = start - extra // 2, end + extra - extra // 2
    if end >= limit:  # slide back inside at the far edge...
        start, end = start - (end - limit), limit
    if start < 0:  # ...then the near edge, and clip what is still too long
        start, end = 0, end - start
    return start, min(end, limit)


def fill_masked_area(image: Image.Image, mask: Image.Image) -> Image.Image:
    """Masked content "fill": the masked area painted with blurred colours from around it.

    The unmasked pixels are blurred at falling radii (premultiplied by their coverage, so
    the masked hole adds no colour) and layered; the wide blurs reach deep into the hole,
    the narrow ones keep detail near its edge.
    """
    known = image.convert("RGBA")
    known.putalpha(ImageOps.invert(mask.convert("L")))
    premultiplied = known.convert("RGBa")
    result = Image.new("RGBA", image.size)
    for radius, repeats in ((256, 1), (64, 1), (16, 2), (4, 4), (2, 2), (0, 1)):
        layer = premultiplied.filter(ImageFilter.GaussianBlur(radius)).convert("RGBA")
        for _ in range(repeats):
            result.alpha_composite(layer)
    return result.convert("RGB")


def latent_mask(mask: Image.Image, latent_width: int, latent_height: int, round_mask: bool = True) -> torch.Tensor:
    """[1, h, w] float mask at latent size (1 = repaint), bicubic-downscaled then rounded."""
    small = mask.convert("L").resize((latent_width, latent_height), resample=Image.BICUBIC)
    values = torch.from_numpy(np.asarray(small, dtype=np.float32) / 255.0)
    return (values.round() if round_mask else values).unsqueeze(0)


def overlay_mask(mask: Image.Image) -> Image.Image:
    """Whole-picture mode: doubling the blurred mask keeps the generated image fully inside
    the mask and puts the soft edge in the blurred band's outer half."""
    doubled = np.clip(np.asarray(mask.convert("L"), dtype=np.float32) * 2, 0, 255).astype(np.uint8)
    return Image.fromarray(doubled, mode="L")


def make_overlay(original: Image.Image, mask: Image.Image) -> Image.Image:
    """The original as an RGBA layer, opaque where the mask is 0, transparent where it is 255."""
    overlay = original.convert("RGBA")
    overlay.putalpha(ImageOps.invert(mask.convert("L")))
    return overlay


def apply_overlay(generated: Image.Image, overlay: Image.Image,
                  paste_to: tuple[int, int, int, int] | None = None) -> Image.Image:
    """Put the original back over the generated image; with `paste_to` (x, y, w, h), the
    generated crop is first scaled into that box of an image the original's size."""
    if paste_to is not None:
        x, y, w, h = paste_to
        canvas = Image.new("RGBA", overlay.size)
        canvas.paste(resize_image(1, generated, w, h), (x, y))
        generated = canvas
    result = generated.convert("RGBA")
    result.alpha_composite(overlay)
    return result.convert("RGB")
