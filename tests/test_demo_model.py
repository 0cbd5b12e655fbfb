"""The built-in demo model means what the prompt says: colours, emphasis, editing, inpaint, img2img.

These run the shipped weights (models/demo/shapes-demo) through the same code as any checkpoint, on
CPU, at 128x128. The bounds were measured on the shipped model (see its model card) with margin.
"""

from __future__ import annotations

import argparse

import numpy as np
import pytest
from PIL import Image

from webui.demo.shapes import COLOURS, Scene, render
from webui.generation.img2img import Img2ImgParams, img2img
from webui.generation.params import Txt2ImgParams
from webui.generation.processing import txt2img
from webui.models.discovery import DEMO_MODEL, demo_checkpoint
from webui.models.loading import load_checkpoint

pytestmark = pytest.mark.skipif(demo_checkpoint() is None, reason="the demo model is not in models/demo")

SEEDS = [11, 22, 33, 44]
PALETTE = np.array(list(COLOURS.values()), dtype=np.float32)
NAMES = list(COLOURS)


@pytest.fixture(scope="module")
def model():
    return load_checkpoint(DEMO_MODEL)


def generate(model, prompt: str, seed: int, **fields) -> Image.Image:
    p = Txt2ImgParams(prompt=prompt, seed=seed, steps=12, cfg_scale=5.0, width=128, height=128,
                      sampler_name="DPM++ 2M", save_images=False, **fields)
    return txt2img(model, p).images[0]


def colour_map(image: Image.Image) -> np.ndarray:
    """Index of the nearest named colour for every pixel."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32).reshape(-1, 1, 3)
    return np.argmin(((pixels - PALETTE[None]) ** 2).sum(-1), axis=1)


def foreground_share(image: Image.Image, colour: str) -> float:
    """Of the pixels that are not the background (the most common colour), the share nearest `colour`."""
    classes = colour_map(image)
    background = np.bincount(classes, minlength=len(NAMES)).argmax()
    foreground = classes[classes != background]
    return float((foreground == NAMES.index(colour)).mean()) if foreground.size else 0.0


def redness(image: Image.Image) -> float:
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32) / 255
    return float((rgb[..., 0] - (rgb[..., 1] + rgb[..., 2]) / 2).mean())


def test_demo_is_offered_when_there_is_no_checkpoint(tmp_path):
    from webui.flags import parse_flags
    from webui.state import SharedState

    flags = parse_flags(["--data-dir", str(tmp_path), "--models-dir", str(tmp_path / "models")])
    state = SharedState.create(flags)
    assert [info.builtin for info in state.models.checkpoints()] == [True]
    assert state.models.checkpoints()[0].path == DEMO_MODEL


def test_model_metadata_gives_size_and_steps(model):
    assert model.is_demo and model.default_size == 128
    assert model.metadata["defaults"]["width"] == 128 and model.metadata["defaults"]["steps"] > 0


@pytest.fixture(scope="module")
def circle_shares(model):
    """share[prompt colour][measured colour]: foreground share of each colour, averaged over SEEDS."""
    colours = ["red", "blue", "green", "yellow"]
    images = {c: [generate(model, f"a {c} circle", seed) for seed in SEEDS] for c in colours}
    return {c: {o: float(np.mean([foreground_share(im, o) for im in images[c]])) for o in colours} for c in colours}


@pytest.mark.parametrize("colour", ["red", "blue", "yellow"])
def test_a_colour_word_gives_that_colour_more_than_any_other_word(circle_shares, colour):
    # Measured on the shipped model: red 0.14 (vs <= 0.001 for the other words), blue 0.57 (vs <= 0),
    # yellow 0.38 (vs <= 0.24). Green is not tested: "yellow" draws as much green as "green" does.
    own = circle_shares[colour][colour]
    others = [shares[colour] for word, shares in circle_shares.items() if word != colour]
    assert own > max(others) + 0.1, circle_shares


def test_a_blue_circle_is_mostly_blue(circle_shares):
    assert circle_shares["blue"]["blue"] > 0.5, circle_shares


def test_emphasis_shifts_the_colour(model):
    strong = [redness(generate(model, "a (red:1.5) circle, white background", seed)) for seed in SEEDS]
    weak = [redness(generate(model, "a (red:0.6) circle, white background", seed)) for seed in SEEDS]
    assert np.mean(strong) - np.mean(weak) > 0.05, (strong, weak)  # measured: 0.100 vs -0.034


def test_prompt_editing_differs_from_both_prompts(model):
    for seed in SEEDS[:2]:
        edited = np.asarray(generate(model, "a [red:blue:0.5] square", seed), dtype=np.float32)
        for plain in ("a red square", "a blue square"):
            other = np.asarray(generate(model, plain, seed), dtype=np.float32)
            assert np.abs(edited - other).mean() > 3.0, plain


def test_inpaint_turns_the_masked_region_green(model):
    init = render(Scene("circle", "red", "medium", "on the right", "white"))
    mask = Image.new("L", (128, 128), 0)
    mask.paste(255, (8, 32, 64, 96))  # the left part, away from the circle
    shares = []
    for seed in SEEDS[:2]:
        p = Img2ImgParams(prompt="a large green square on the left, white background", seed=seed, steps=12,
                          cfg_scale=5.0, width=128, height=128, init_images=[init], mask=mask, mask_blur=2,
                          denoising_strength=1.0, inpainting_fill=1, save_images=False)
        out = img2img(model, p).images[0]
        region = colour_map(out.crop((8, 32, 64, 96)))
        shares.append(float((region == NAMES.index("green")).mean()))
        outside = np.asarray(out, dtype=np.float32)[:, 80:], np.asarray(init, dtype=np.float32)[:, 80:]
        assert np.abs(outside[0] - outside[1]).mean() < 4.0  # the circle is kept
    assert np.mean(shares) > 0.3, shares


def test_img2img_at_low_strength_keeps_the_composition(model):
    init = render(Scene("star", "yellow", "large", "in the center", "purple"))
    p = Img2ImgParams(prompt="a yellow star, purple background", seed=5, steps=12, cfg_scale=5.0, width=128,
                      height=128, init_images=[init], denoising_strength=0.3, save_images=False)
    out = img2img(model, p).images[0]
    a = np.asarray(init.convert("L"), dtype=np.float32).ravel()
    b = np.asarray(out.convert("L"), dtype=np.float32).ravel()
    assert np.corrcoef(a, b)[0, 1] > 0.9
