"""The built-in demo model means what the prompt says: colours, emphasis, editing, inpaint, img2img.

These run the shipped weights (models/demo/shapes-demo) through the same code as any checkpoint, on
CPU, at 128x128. The bounds were measured on the shipped model (see its model card) with margin.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from webui.demo.evaluate import NAMES, colour_map, foreground_share, redness, shape_ious
from webui.demo.shapes import Scene, render
from webui.generation.img2img import Img2ImgParams, img2img
from webui.generation.params import Txt2ImgParams
from webui.generation.processing import txt2img
from webui.models.discovery import DEMO_MODEL, demo_checkpoint
from webui.models.loading import load_checkpoint

pytestmark = [pytest.mark.slow,  # see pyproject.toml
              pytest.mark.skipif(demo_checkpoint() is None, reason="the demo model is not in models/demo")]

SEEDS = [11, 22, 33, 44]


@pytest.fixture(scope="module")
def model():
    return load_checkpoint(DEMO_MODEL)


def generate(model, prompt: str, seed: int, **fields) -> Image.Image:
    p = Txt2ImgParams(prompt=prompt, seed=seed, steps=12, cfg_scale=5.0, width=128, height=128,
                      sampler_name="DPM++ 2M", save_images=False, **fields)
    return txt2img(model, p).images[0]


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


@pytest.mark.parametrize("colour", ["red", "blue", "green", "yellow"])
def test_a_colour_word_gives_mostly_that_colour(circle_shares, colour):
    # Measured on the shipped model: red 0.53 (the rest is mostly orange-red), blue 0.66, green 0.73, yellow 0.72;
    # no other of the four words gives more than a few percent of it.
    own = circle_shares[colour][colour]
    others = [shares[colour] for word, shares in circle_shares.items() if word != colour]
    assert own > 0.4 and own > max(others) + 0.3, circle_shares


@pytest.mark.parametrize("shape", ["square", "triangle", "star", "diamond"])
def test_a_shape_word_draws_that_shape(model, shape):
    # Measured: every seed's drawing fits its own outline best (IoU 0.80 to 0.94); circles are tested by colour.
    recognised = []
    for seed in SEEDS:
        ious = shape_ious(generate(model, f"a large blue {shape} in the center, white background", seed), "large")
        recognised.append(max(ious, key=ious.get) == shape)
    assert sum(recognised) >= 3, recognised


def test_emphasis_shifts_the_colour(model):
    # The trained text encoder repeats the colour in the tokens after it, so weights near 1 barely move
    # this model (measured redness: 0.6 -> +0.179, 1.5 -> +0.183); 0 and 3 do, on every seed.
    strong = [redness(generate(model, "a (red:3) circle, white background", seed)) for seed in SEEDS]
    weak = [redness(generate(model, "a (red:0) circle, white background", seed)) for seed in SEEDS]
    assert np.mean(strong) - np.mean(weak) > 0.05, (strong, weak)  # measured: +0.304 vs +0.177
    assert all(s > w for s, w in zip(strong, weak)), (strong, weak)


def test_prompt_editing_differs_from_both_prompts(model):
    for seed in SEEDS[:2]:
        edited = np.asarray(generate(model, "a [red:blue:0.5] square", seed), dtype=np.float32)
        for plain in ("a red square", "a blue square"):
            other = np.asarray(generate(model, plain, seed), dtype=np.float32)
            assert np.abs(edited - other).mean() > 6.0, plain  # measured: 12.8 at the least


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
    assert np.mean(shares) > 0.4, shares  # measured: 0.83 and 0.49


def test_img2img_at_low_strength_keeps_the_composition(model):
    init = render(Scene("star", "yellow", "large", "in the center", "purple"))
    p = Img2ImgParams(prompt="a yellow star, purple background", seed=5, steps=12, cfg_scale=5.0, width=128,
                      height=128, init_images=[init], denoising_strength=0.3, save_images=False)
    out = img2img(model, p).images[0]
    a = np.asarray(init.convert("L"), dtype=np.float32).ravel()
    b = np.asarray(out.convert("L"), dtype=np.float32).ravel()
    assert np.corrcoef(a, b)[0, 1] > 0.9  # measured: 0.943


def test_the_evaluation_script_reports_every_score(model):
    from webui.demo.evaluate import evaluate, report
    from webui.demo.shapes import COLOURS, POSITIONS, SHAPES

    scores = evaluate(model, seeds=(11,), steps=4)
    assert set(scores["colour"]) == set(COLOURS) and set(scores["shape"]) == set(SHAPES)
    assert set(scores["position_error"]) == set(POSITIONS)
    assert all(0 <= share <= 1 for share in scores["colour"].values())
    text = report(scores)
    assert all(f"  {name}" in text for name in (*COLOURS, *SHAPES, *POSITIONS))
