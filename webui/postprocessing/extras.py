"""The Extras pipeline (A1111's postprocessing): upscale by a factor or to a size (optionally cropped), blend a
second upscaler in, restore faces with GFPGAN and/or CodeFormer. One function for the Extras tab and the API.

Each result keeps the source's text chunks (its generation parameters) and adds A1111's "postprocessing" chunk
listing what was done, which the tab shows as the result's PNG info.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

from PIL import Image

from ..generation.upscalers import find_upscaler
from .face_restoration import restore_faces

MAX_SIDE = 16384  # a result larger than this on a side is refused: it would not fit in memory anyway


class ExtrasError(ValueError):
    """Bad Extras parameters; the message names the field."""


@dataclass
class ExtrasParams:
    """A1111's Extras fields (API names)."""

    resize_mode: int = 0  # 0: by upscaling_resize; 1: to upscaling_resize_w x upscaling_resize_h
    upscaling_resize: float = 2.0
    upscaling_resize_w: int = 512
    upscaling_resize_h: int = 512
    upscaling_crop: bool = True
    upscaler_1: str = "None"
    upscaler_2: str = "None"
    extras_upscaler_2_visibility: float = 0.0
    gfpgan_visibility: float = 0.0
    codeformer_visibility: float = 0.0
    codeformer_weight: float = 0.0
    upscale_first: bool = False

    @classmethod
    def from_mapping(cls, values: dict) -> "ExtrasParams":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})

    def validate(self) -> None:
        if self.resize_mode not in (0, 1):
            raise ExtrasError("resize_mode: must be 0 (by factor) or 1 (to a size)")
        if not 0 < self.upscaling_resize <= 16:
            raise ExtrasError("upscaling_resize: must be more than 0 and at most 16")
        if self.upscaling_resize_w < 1 or self.upscaling_resize_h < 1:
            raise ExtrasError("upscaling_resize_w/h: must be at least 1")
        for name in ("extras_upscaler_2_visibility", "gfpgan_visibility", "codeformer_visibility", "codeformer_weight"):
            if not 0 <= getattr(self, name) <= 1:
                raise ExtrasError(f"{name}: must be between 0 and 1")
        for name in ("upscaler_1", "upscaler_2"):
            try:
                find_upscaler(getattr(self, name))
            except ValueError as error:
                raise ExtrasError(f"{name}: {error}") from None


@dataclass
class ExtrasResult:
    image: Image.Image
    info: dict = field(default_factory=dict)  # A1111's "Postprocess ..." entries, in order

    @property
    def infotext(self) -> str:
        return ", ".join(f"{key}: {value}" for key, value in self.info.items())

    def pnginfo(self, source: Image.Image) -> dict:
        texts = {k: v for k, v in source.info.items() if isinstance(v, str)}
        return {**texts, "postprocessing": self.infotext, "extras": self.infotext} if self.info else texts


def target_size(p: ExtrasParams, width: int, height: int) -> tuple[float, tuple[int, int] | None]:
    """(the factor to upscale by, the size to crop to afterwards or None)."""
    if p.resize_mode == 1:
        factor = max(p.upscaling_resize_w / width, p.upscaling_resize_h / height)
        return factor, (p.upscaling_resize_w, p.upscaling_resize_h) if p.upscaling_crop else None
    return p.upscaling_resize, None


def upscale(p: ExtrasParams, image: Image.Image, info: dict) -> Image.Image:
    if p.upscaler_1 == "None":
        return image
    factor, crop = target_size(p, image.width, image.height)
    width, height = int(image.width * factor), int(image.height * factor)
    if max(width, height) > MAX_SIDE:
        raise ExtrasError(f"upscaling_resize: the result would be {width}x{height}; at most {MAX_SIDE} on a side")
    result = find_upscaler(p.upscaler_1).upscale(image.convert("RGB"), width, height)
    info["Postprocess upscale by" if p.resize_mode == 0 else "Postprocess upscale to"] = (
        _number(factor) if p.resize_mode == 0 else f"{p.upscaling_resize_w}x{p.upscaling_resize_h}")
    info["Postprocess upscaler"] = p.upscaler_1
    if p.upscaler_2 != "None" and p.extras_upscaler_2_visibility > 0:
        second = find_upscaler(p.upscaler_2).upscale(image.convert("RGB"), width, height)
        result = Image.blend(result, second, p.extras_upscaler_2_visibility)
        info["Postprocess upscaler 2"] = p.upscaler_2
        info["Postprocess upscaler 2 visibility"] = _number(p.extras_upscaler_2_visibility)
    if crop is not None and result.size != crop:
        left, top = (result.width - crop[0]) // 2, (result.height - crop[1]) // 2
        result = result.crop((left, top, left + crop[0], top + crop[1]))
        info["Postprocess crop to"] = f"{crop[0]}x{crop[1]}"
    return result


def restore(p: ExtrasParams, image: Image.Image, info: dict, models_dir: Path, device: str, detector=None) -> Image.Image:
    if p.gfpgan_visibility > 0:
        image = restore_faces(image, "GFPGAN", models_dir, p.gfpgan_visibility, device=device, detector=detector)
        info["GFPGAN visibility"] = _number(p.gfpgan_visibility)
    if p.codeformer_visibility > 0:
        image = restore_faces(image, "CodeFormer", models_dir, p.codeformer_visibility, p.codeformer_weight,
                              device=device, detector=detector)
        info["CodeFormer visibility"] = _number(p.codeformer_visibility)
        info["CodeFormer weight"] = _number(p.codeformer_weight)
    return image


def run_extras(p: ExtrasParams, image: Image.Image, models_dir: Path, device: str = "cpu",
               detector=None) -> ExtrasResult:
    """One image through the pipeline; ExtrasError or FaceRestorationUnavailable say what is wrong."""
    p.validate()
    info: dict = {}
    result = image if image.mode in ("RGB", "RGBA") else image.convert("RGB")
    if p.upscale_first:
        result = restore(p, upscale(p, result, info), info, models_dir, device, detector)
    else:
        result = upscale(p, restore(p, result, info, models_dir, device, detector), info)
    return ExtrasResult(result, info)


def _number(value: float):
    return int(value) if float(value).is_integer() else round(float(value), 3)
