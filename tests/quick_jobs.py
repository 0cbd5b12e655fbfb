"""A small txt2img job on a tiny model, as the memory and fp8 tests run it: one place for its defaults."""

from __future__ import annotations

import numpy as np

from webui.generation.params import Txt2ImgParams
from webui.generation.processing import txt2img


def params(**given) -> Txt2ImgParams:
    values = dict(prompt="a red cat", negative_prompt="blurry", steps=4, width=64, height=64, seed=7,
                  save_images=False, sampler_name="Euler")
    return Txt2ImgParams(**{**values, **given})


def pixels(model, **given) -> np.ndarray:
    return np.asarray(txt2img(model, params(**given)).images[0]).astype(int)
