"""Model families, registered in one place: adding a family is one module and one line here.

`FAMILIES` is ordered: recognition asks each family in turn, so more specific ones come first.
"""

from __future__ import annotations

from .base import Defaults, ModelFamily, UnsupportedCheckpoint
from .chroma import CHROMA
from .flux import FLUX
from .sd import SD1, SD2, SDXL, scaled_linear_alphas_cumprod
from .sd3 import SD3
from .zimage import ZIMAGE

FAMILIES: dict[str, ModelFamily] = {family.name: family for family in (SDXL, SD2, SD1, SD3, CHROMA, FLUX, ZIMAGE)}


def family_named(name: str) -> ModelFamily:
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown model family {name!r}; known: {', '.join(FAMILIES)}") from None


def family_for_folder(index: dict, text_config: dict | None = None) -> ModelFamily | None:
    """The family that claims a diffusers folder with this model_index.json (and first text encoder config)."""
    return next((f for f in FAMILIES.values() if f.claims_folder(index, text_config)), None)


def family_for_weights(keys) -> ModelFamily | None:
    """The family that claims a single file with these keys (for SD1/SD2/SDXL, sd_detection.py then settles
    inpainting and the prediction type)."""
    keys = set(keys)
    return next((f for f in FAMILIES.values() if f.claims_weights(keys)), None)


__all__ = ["CHROMA", "FAMILIES", "FLUX", "SD1", "SD2", "SD3", "SDXL", "Defaults", "ModelFamily",
           "UnsupportedCheckpoint", "ZIMAGE", "family_for_folder", "family_for_weights", "family_named",
           "scaled_linear_alphas_cumprod"]
