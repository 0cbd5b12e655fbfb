"""img2img and inpaint on tiny random-weight models: geometry, the step rule, masks, infotext, CLI."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from checkpoint_files import write_diffusers_folder
from tiny_models import make_tiny_model
from webui.generation import batches as batches_module
from webui.generation import img2img as img2img_module
from webui.generation import masks
from webui.generation.decoding import decode_latents, encode_pixels
from webui.generation.denoiser import JobControl
from webui.generation.images import read_infotext
from webui.generation.img2img import Img2ImgParams, img2img, prepare_init_image
from webui.generation.infotext import parse_infotext
from webui.generation.params import ParamsError
from webui.generation.rng import ImageRNG

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def sd1():
    return make_tiny_model("sd1")


def noise_image(width, height, seed=0):
    return Image.fromarray((np.random.RandomState(seed).rand(height, width, 3) * 255).astype(np.uint8))


def box_mask(size, box):
    mask = Image.new("L", size)
    mask.paste(255, box)
    return mask


def params(**overrides):
    base = dict(prompt="a [cat:dog:0.5]", negative_prompt="blurry", steps=4, width=64, height=64, seed=1234,
                sampler_name="Euler", save_images=False, init_images=[noise_image(64, 64)])
    base.update(overrides)
    return Img2ImgParams(**base)


def pixels_of(image):
    """[1, 3, H, W] in [-1, 1], as the VAE takes it."""
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 127.5 - 1).permute(2, 0, 1)[None]


def as_array(image):
    return np.asarray(image, dtype=np.int16)


def spy_run_pass(monkeypatch):
    """Record what img2img hands the sampler."""
    calls = []
    real = img2img_module.run_pass

    def spy(model, plan, sigmas, x, *args, **kwargs):
        calls.append({"sigmas": sigmas, "x": x, **kwargs})
        return real(model, plan, sigmas, x, *args, **kwargs)

    monkeypatch.setattr(img2img_module, "run_pass", spy)
    return calls


# --- resize modes -------------------------------------------------------------------------


def test_just_resize_stretches():
    image = noise_image(80, 40)
    assert masks.resize_image(0, image, 64, 64).size == (64, 64)
    assert np.array_equal(masks.resize_image(0, image, 64, 64), image.resize((64, 64), Image.LANCZOS))


def test_crop_and_resize_keeps_the_centre():
    # 3 bands across a 96x32 image: red | green | blue; a square crop keeps only green.
    image = Image.new("RGB", (96, 32), (255, 0, 0))
    image.paste((0, 255, 0), (32, 0, 64, 32))
    image.paste((0, 0, 255), (64, 0, 96, 32))
    out = as_array(masks.resize_image(1, image, 64, 64))
    assert out.shape == (64, 64, 3)
    assert np.abs(out[:, 8:56] - [0, 255, 0]).max() <= 3  # away from Lanczos ringing at the edges
    # A tall target crops top and bottom instead.
    tall = Image.new("RGB", (32, 96), (255, 0, 0))
    tall.paste((0, 255, 0), (0, 32, 32, 64))
    assert np.abs(as_array(masks.resize_image(1, tall, 64, 64))[8:56] - [0, 255, 0]).max() <= 3


def test_resize_and_fill_fits_and_stretches_the_edges():
    image = noise_image(80, 40)
    out = as_array(masks.resize_image(2, image, 64, 64))
    fitted = as_array(image.resize((64, 32), Image.LANCZOS))
    assert np.array_equal(out[16:48], fitted)  # fitted in the middle, untouched
    # The 16-row borders repeat one row each, sampled at the fitted image's top and bottom edges.
    assert (out[:16] == out[0]).all() and (out[48:] == out[63]).all()
    assert np.abs(out[0] - fitted[0]).mean() < np.abs(out[0] - fitted[16]).mean() / 2
    assert np.abs(out[63] - fitted[-1]).mean() < np.abs(out[63] - fitted[16]).mean() / 2
    side = as_array(masks.resize_image(2, noise_image(40, 80), 64, 64))
    fitted = as_array(noise_image(40, 80).resize((32, 64), Image.LANCZOS))
    assert np.array_equal(side[:, 16:48], fitted)
    assert (side[:, :16] == side[:, :1]).all() and (side[:, 48:] == side[:, 63:]).all()
    assert np.abs(side[:, 0] - fitted[:, 0]).mean() < np.abs(side[:, 0] - fitted[:, 16]).mean() / 2


@pytest.mark.parametrize("mode", [0, 1, 2, 3])
def test_every_resize_mode_gives_the_requested_size(sd1, mode):
    result = img2img(sd1, params(init_images=[noise_image(80, 48)], resize_mode=mode, width=64, height=96))
    assert result.images[0].size == (64, 96)
    assert "Denoising strength: 0.75" in result.infotexts[0]


def test_latent_resize_interpolates_the_latents(sd1, monkeypatch):
    calls = spy_run_pass(monkeypatch)
    image = noise_image(32, 48)
    img2img(sd1, params(init_images=[image], resize_mode=3, width=64, height=64))
    native = encode_pixels(sd1, pixels_of(image))
    expected = torch.nn.functional.interpolate(native, size=(8, 8), mode="bilinear")
    x = calls[0]["x"]
    assert x.shape == (1, 4, 8, 8)
    # x = init + noise * sigma: take the noise back out.
    noise = ImageRNG((4, 8, 8), [1234]).first()
    assert torch.allclose(x - noise * calls[0]["sigmas"][0], expected, atol=1e-4)


# --- denoising strength -------------------------------------------------------------------


def test_strength_zero_returns_the_vae_round_trip(sd1, monkeypatch):
    calls = spy_run_pass(monkeypatch)
    image = noise_image(64, 64)
    (out,) = img2img(sd1, params(init_images=[image], denoising_strength=0)).images
    pixels = pixels_of(image)
    (round_trip,) = decode_latents(sd1, encode_pixels(sd1, pixels))
    assert np.abs(as_array(out) - as_array(round_trip)).max() <= 1  # tensor layouts may round differently
    assert calls == []  # no sampling at all


@pytest.mark.parametrize("strength, fix_steps, expected", [
    (0.5, False, 6), (0.25, False, 3), (1.0, False, 10), (0.05, False, 1), (0.5, True, 10),
])
def test_strength_runs_a1111s_step_count(sd1, strength, fix_steps, expected):
    steps = []
    control = JobControl(on_step=lambda info: steps.append(info["step"]))
    img2img(sd1, params(steps=10, denoising_strength=strength, img2img_fix_steps=fix_steps), control)
    assert len(steps) == expected  # int(strength * steps) + 1, or exactly steps


def test_start_noise_level_and_multiplier(sd1, monkeypatch):
    calls = spy_run_pass(monkeypatch)
    result = img2img(sd1, params(steps=10, denoising_strength=0.5, initial_noise_multiplier=0.5))
    from webui.generation.sampling import choose_sampler, plan_sampling
    full = plan_sampling(sd1, choose_sampler("Euler", "Automatic"), 10).sigmas
    assert torch.equal(calls[0]["sigmas"], full[-7:])  # 6 steps from the 7th-last sigma
    image = params().init_images[0]
    pixels = pixels_of(image)
    noise = ImageRNG((4, 8, 8), [1234]).first()
    assert torch.allclose(calls[0]["x"], encode_pixels(sd1, pixels) + 0.5 * noise * full[-7], atol=1e-4)
    assert "Noise multiplier: 0.5" in result.infotexts[0]


def test_init_images_cycle_through_the_batch(sd1):
    inits = [noise_image(64, 64, 1), noise_image(64, 64, 2)]
    result = img2img(sd1, params(init_images=inits, batch_size=3, denoising_strength=0))
    one, two, three = (np.asarray(i) for i in result.images)
    assert np.array_equal(one, three) and not np.array_equal(one, two)
    assert result.seeds == [1234, 1235, 1236]


# --- inpaint ------------------------------------------------------------------------------


def test_pixels_outside_the_blurred_mask_come_back_exactly(sd1):
    image = noise_image(64, 64)
    mask = box_mask((64, 64), (24, 24, 40, 40))
    (out,) = img2img(sd1, params(init_images=[image], mask=mask, denoising_strength=1.0)).images
    out, original = np.asarray(out), np.asarray(image)
    blurred = np.asarray(masks.blur_mask(mask, 4, 4))
    outside = blurred == 0
    assert outside.sum() > 2000
    assert np.array_equal(out[outside], original[outside])
    # The band is at most the kernel radius (int(2.5 * 4 + 0.5) = 10) wide.
    far = np.ones((64, 64), bool)
    far[14:50, 14:50] = False
    assert np.array_equal(out[far], original[far])
    assert not np.array_equal(out[28:36, 28:36], original[28:36, 28:36])  # the masked area is repainted


def test_mask_blur_follows_a1111s_kernel():
    dot = Image.new("L", (41, 41))
    dot.putpixel((20, 20), 255)
    blurred = np.asarray(masks.blur_mask(dot, 2, 0), dtype=float)
    row = blurred[20]
    assert blurred[:20].max() == 0 and blurred[21:].max() == 0  # x only
    # 2 * int(2.5 * 2 + 0.5) + 1 = 11 taps: 5 either side, Gaussian of sigma 2.
    assert row[15:26].min() > 0 and row[:15].max() == 0 and row[26:].max() == 0
    weights = np.exp(-np.arange(-5, 6) ** 2 / 8)
    assert np.abs(row[15:26] - np.round(255 * weights / weights.sum())).max() <= 1
    assert masks.blur_mask(dot, 0, 0).tobytes() == dot.tobytes()


def test_rgba_alpha_is_the_mask(sd1):
    rgba = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    rgba.paste((0, 0, 0, 255), (24, 24, 40, 40))
    grey = box_mask((64, 64), (24, 24, 40, 40))
    assert masks.read_mask(rgba).tobytes() == grey.tobytes()
    opaque = Image.new("RGBA", (8, 8), (255, 255, 255, 255))
    assert masks.read_mask(opaque).getextrema() == (255, 255)  # fully opaque: its grey counts
    a = img2img(sd1, params(mask=rgba)).images[0]
    b = img2img(sd1, params(mask=grey)).images[0]
    assert np.array_equal(np.asarray(a), np.asarray(b))


def test_mask_of_another_size_is_resized(sd1):
    small = box_mask((32, 32), (12, 12, 20, 20))
    out = img2img(sd1, params(mask=small, mask_blur=0)).images[0]  # (A1111 blurs before resizing)
    same = img2img(sd1, params(mask=small.resize((64, 64), Image.LANCZOS), mask_blur=0)).images[0]
    assert np.array_equal(np.asarray(out), np.asarray(same))


def test_empty_mask_is_refused(sd1):
    with pytest.raises(ParamsError, match="the mask is empty"):
        img2img(sd1, params(mask=Image.new("L", (64, 64))))
    with pytest.raises(ParamsError, match="the mask is empty.*inverted"):
        img2img(sd1, params(mask=Image.new("L", (64, 64), 255), inpainting_mask_invert=1))


def test_unreadable_image_or_mask_says_so(sd1, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(ParamsError, match="cannot read the init image .*broken.png"):
        img2img(sd1, params(init_images=[bad]))
    with pytest.raises(ParamsError, match="cannot read the mask .*missing.png"):
        img2img(sd1, params(mask=tmp_path / "missing.png"))
    with pytest.raises(ParamsError, match="at least one init image"):
        img2img(sd1, params(init_images=[]))


def test_invert_repaints_the_outside(sd1):
    image = noise_image(64, 64)
    mask = box_mask((64, 64), (16, 16, 48, 48))
    (out,) = img2img(sd1, params(init_images=[image], mask=mask, inpainting_mask_invert=1, mask_blur=0)).images
    out, original = np.asarray(out), np.asarray(image)
    assert np.array_equal(out[16:48, 16:48], original[16:48, 16:48])
    assert not np.array_equal(out[:8], original[:8])


def test_fill_paints_the_hole_with_surrounding_colours():
    image = Image.new("RGB", (64, 64), (200, 30, 30))
    image.paste((30, 30, 200), (32, 0, 64, 64))
    image.paste((0, 255, 0), (8, 24, 24, 40))  # what the mask hides must not leak into the fill
    mask = box_mask((64, 64), (8, 24, 24, 40))
    filled = as_array(masks.fill_masked_area(image, mask))
    outside = np.asarray(mask) == 0
    assert np.array_equal(filled[outside], as_array(image)[outside])
    hole = filled[24:40, 8:24]
    assert hole[..., 1].max() < 60 and hole[..., 0].mean() > hole[..., 2].mean() + 50  # reddish, no green


def _fed_latents(sd1, monkeypatch, fill):
    calls = spy_run_pass(monkeypatch)
    mask = box_mask((64, 64), (16, 16, 48, 48))
    img2img(sd1, params(mask=mask, mask_blur=0, inpainting_fill=fill))
    return calls[-1]


def test_masked_content_modes_change_the_start(sd1, monkeypatch):
    inside = (slice(None), slice(None), slice(2, 6), slice(2, 6))
    original = _fed_latents(sd1, monkeypatch, 1)
    latent_mask = original["latent_mask"]
    assert latent_mask.shape == (1, 1, 8, 8) and latent_mask.sum() == 16 and latent_mask[inside].min() == 1
    pixels = pixels_of(params().init_images[0])
    assert torch.allclose(original["init_latent"], encode_pixels(sd1, pixels), atol=1e-5)

    nothing = _fed_latents(sd1, monkeypatch, 3)["init_latent"]
    assert nothing[inside].abs().max() == 0 and nothing[:, :, 0].abs().min() > 0

    noise = _fed_latents(sd1, monkeypatch, 2)["init_latent"]
    seed_noise = ImageRNG((4, 8, 8), [1234]).first()
    assert torch.allclose(noise[inside], seed_noise[inside])

    fill = _fed_latents(sd1, monkeypatch, 0)["init_latent"]
    assert not torch.allclose(fill[inside], original["init_latent"][inside], atol=1e-3)
    assert not torch.allclose(fill[inside], seed_noise[inside])


def test_only_masked_crop_region_follows_a1111():
    mask = box_mask((100, 80), (10, 20, 30, 30))
    assert masks.crop_region(mask, 4) == (6, 16, 34, 34)
    # 28x18 grown to 28x28 about its centre, for a square working size.
    assert masks.expand_crop_region((6, 16, 34, 34), 64, 64, 100, 80) == (6, 11, 34, 39)
    # Near the edge it slides back inside the image.
    assert masks.expand_crop_region((0, 0, 40, 10), 64, 64, 100, 80) == (0, 0, 40, 40)
    assert masks.expand_crop_region((90, 70, 100, 80), 128, 64, 100, 80) == (80, 70, 100, 80)
    assert masks.crop_region(Image.new("L", (8, 8)), 4) is None


def test_only_masked_pastes_back_in_place(sd1, monkeypatch):
    image = noise_image(128, 96)
    mask = box_mask((128, 96), (80, 10, 100, 30))
    p = params(init_images=[image], mask=mask, inpaint_full_res=True, inpaint_full_res_padding=8, mask_blur=2)
    prepared = prepare_init_image(image, mask, p)
    # Blurred bbox (75, 5)-(105, 35) plus 8: (67, 0, 113, 43) -> square, slid inside the image.
    assert prepared.paste_to == (67, 0, 46, 46)
    assert prepared.pixels.size == (64, 64) and prepared.mask.size == (64, 64)

    # Make the model's output solid green: green must appear exactly under the mask.
    monkeypatch.setattr(batches_module, "decode_latents",  # the shared batch loop decodes
                        lambda model, latents, **_: [Image.new("RGB", (64, 64), (0, 255, 0))] * len(latents))
    result = img2img(sd1, p)
    out, original = as_array(result.images[0]), as_array(image)
    assert result.images[0].size == (128, 96)
    # Only-masked pastes with the blurred mask itself: fully green where it reaches 255.
    core = np.asarray(masks.blur_mask(mask, 2, 2)) == 255
    assert core[10:30, 80:100].sum() >= 100 and (out[core] == [0, 255, 0]).all()
    changed = np.argwhere((out != original).any(axis=2))
    rows, cols = changed[:, 0], changed[:, 1]
    assert rows.min() >= 5 and rows.max() < 35 and cols.min() >= 75 and cols.max() < 105
    fields = parse_infotext(result.infotexts[0])
    assert fields["Inpaint area"] == "Only masked" and fields["Masked area padding"] == "8"
    assert fields["Size-1"] == "64"  # the working size, as A1111 writes it


def test_inpainting_model_gets_mask_and_masked_image(monkeypatch):
    model = make_tiny_model("sd1", inpainting=True)
    calls = spy_run_pass(monkeypatch)
    image = noise_image(64, 64)
    mask = box_mask((64, 64), (16, 16, 48, 48))
    result = img2img(model, params(init_images=[image], mask=mask, mask_blur=0, batch_size=2))
    cond = calls[0]["image_cond"]
    assert cond.shape == (2, 5, 8, 8)
    expected_mask = torch.zeros(8, 8)
    expected_mask[2:6, 2:6] = 1
    assert torch.equal(cond[0, 0], expected_mask) and torch.equal(cond[1, 0], expected_mask)
    pixels = pixels_of(image)
    pixels[:, :, 16:48, 16:48] = 0  # greyed out under the mask
    assert torch.allclose(cond[0, 1:], encode_pixels(model, pixels)[0], atol=1e-4)
    assert "Conditional mask weight: 1.0" in result.infotexts[0]
    # Without a mask the whole image counts as masked.
    img2img(model, params(init_images=[image]))
    assert calls[-1]["image_cond"][:, 0].min() == 1 and calls[-1]["latent_mask"] is None


def test_sdxl_img2img():
    (image,) = img2img(make_tiny_model("sdxl"), params(init_images=[noise_image(64, 64)], steps=2)).images
    assert image.size == (64, 64)


# --- infotext and parameters --------------------------------------------------------------


def test_inpaint_infotext_round_trips(sd1, tmp_path):
    p = params(mask=box_mask((64, 64), (8, 8, 40, 40)), inpainting_fill=2, inpainting_mask_invert=1,
               inpaint_full_res=True, inpaint_full_res_padding=16, mask_blur=6, denoising_strength=0.6,
               initial_noise_multiplier=0.9, save_images=True, outdir=tmp_path)
    result = img2img(sd1, p)
    assert read_infotext(result.paths[0]) == result.infotexts[0]
    fields = parse_infotext(result.infotexts[0])
    assert fields["Prompt"] == "a [cat:dog:0.5]" and fields["Negative prompt"] == "blurry"
    expected = {"Denoising strength": "0.6", "Mask blur": "6", "Mask mode": "Inpaint not masked",
                "Masked content": "latent noise", "Inpaint area": "Only masked", "Masked area padding": "16",
                "Noise multiplier": "0.9", "Steps": "4", "Seed": "1234"}
    assert {key: fields[key] for key in expected} == expected
    assert "Image CFG scale" not in fields  # no model of ours uses it
    text = result.infotexts[0]
    assert text.index("Denoising strength") < text.index("Mask blur") < text.index("Version")
    # Defaults are left out and read back as A1111's.
    plain = parse_infotext(img2img(sd1, params(mask=box_mask((64, 64), (8, 8, 40, 40)), mask_blur=0)).infotexts[0])
    assert "Mask blur" not in plain
    assert (plain["Mask mode"], plain["Masked content"], plain["Inpaint area"]) == (
        "Inpaint masked", "original", "Whole picture")


def test_default_output_folder(sd1, tmp_path):
    result = img2img(sd1, params(save_images=True), outputs_root=tmp_path)
    assert result.paths[0].parent.parent == tmp_path / "img2img-images"


def test_bad_parameters_say_what_is_wrong(sd1):
    with pytest.raises(ParamsError, match="resize_mode must be 0, 1, 2 or 3"):
        img2img(sd1, params(resize_mode=4))
    with pytest.raises(ParamsError, match="denoising_strength must be between 0 and 1"):
        img2img(sd1, params(denoising_strength=1.5))
    with pytest.raises(ParamsError, match="inpainting_fill must be"):
        img2img(sd1, params(inpainting_fill=7))
    with pytest.raises(ParamsError, match="hires fix is a txt2img option"):
        img2img(sd1, params(enable_hr=True))


# --- command line -------------------------------------------------------------------------


def run_cli(*args, cwd):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "webui.cli", "img2img", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=300)


@pytest.mark.slow
def test_cli_img2img_end_to_end(tmp_path):
    folder = write_diffusers_folder(make_tiny_model("sd1"), tmp_path / "models" / "Stable-diffusion" / "tiny")
    noise_image(72, 64).save(tmp_path / "init.png")
    box_mask((72, 64), (20, 20, 40, 40)).save(tmp_path / "mask.png")
    result = run_cli("--ckpt", str(folder), "--init", "init.png", "--mask", "mask.png", "--prompt", "a fox",
                     "--steps", "3", "--seed", "5", "--denoising-strength", "0.5", "--inpainting-fill", "0",
                     "--mask-blur", "2", "--batch-size", "2", "--outdir", str(tmp_path / "out"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 2
    for line, seed in zip(lines, (5, 6)):
        path, text = line.split("\t")
        text = json.loads(text)
        assert Path(path).is_file() and read_infotext(path) == text
        assert Image.open(path).size == (72, 64)  # default size: the init image's
        assert text.startswith("a fox\nSteps: 3, Sampler: DPM++ 2M,") and f"Seed: {seed}," in text
        assert "Denoising strength: 0.5" in text and "Mask blur: 2, Masked content: fill" in text

    bad = run_cli("--ckpt", str(folder), "--init", "nowhere.png", cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.startswith("error: cannot read the init image")
    assert len(bad.stderr.strip().splitlines()) == 1
