"""txt2img end to end on tiny random-weight models: every sampler, seeds, saving, infotext."""

import numpy as np
import torch
import pytest

from tiny_models import make_tiny_model
from webui.generation.denoiser import JobControl
from webui.generation.images import read_infotext
from webui.generation.infotext import parse_infotext
from webui.generation.params import ParamsError, Txt2ImgParams
from webui.generation.processing import txt2img
from webui.generation.samplers import sampler_names


@pytest.fixture(scope="module")
def sd1():
    return make_tiny_model("sd1")


def params(**overrides):
    base = dict(prompt="a (red:1.2) [cat:dog:0.5] circle", negative_prompt="blurry", steps=4, width=64, height=64,
                seed=1234, save_images=False)
    base.update(overrides)
    return Txt2ImgParams(**base)


@pytest.mark.parametrize("sampler", sampler_names())
def test_every_sampler_generates(sd1, sampler):
    result = txt2img(sd1, params(sampler_name=sampler))
    (image,) = result.images
    assert image.size == (64, 64)
    assert np.asarray(image).std() > 0
    assert f"Sampler: {sampler}," in result.infotexts[0]


def test_same_settings_reproduce_and_seeds_count_up(sd1):
    first = txt2img(sd1, params(batch_size=2, sampler_name="Euler a"))
    again = txt2img(sd1, params(batch_size=2, sampler_name="Euler a"))
    assert all(np.array_equal(a, b) for a, b in zip(first.images, again.images))
    assert first.seeds == [1234, 1235]
    # Image 2 of the batch is the image that seed 1235 gives alone.
    alone = txt2img(sd1, params(seed=1235, sampler_name="Euler a"))
    diff = np.abs(np.asarray(alone.images[0], dtype=int) - np.asarray(first.images[1], dtype=int))
    assert diff.max() <= 1  # batched and single UNet calls may round differently
    other = txt2img(sd1, params(seed=99, sampler_name="Euler a"))
    assert not np.array_equal(other.images[0], first.images[0])


def test_variation_seed_changes_the_image(sd1):
    plain = txt2img(sd1, params())
    varied = txt2img(sd1, params(subseed=7, subseed_strength=0.5))
    assert not np.array_equal(plain.images[0], varied.images[0])
    assert "Variation seed: 7, Variation seed strength: 0.5" in varied.infotexts[0]


def test_batch_count_and_saving_with_infotext(sd1, tmp_path):
    result = txt2img(sd1, params(n_iter=2, batch_size=1, save_images=True, outdir=tmp_path))
    assert len(result.paths) == 2 and [p.name for p in result.paths] == ["00000-1234.png", "00001-1235.png"]
    stored = read_infotext(result.paths[1])
    assert stored == result.infotexts[1]
    fields = parse_infotext(stored)
    assert fields["Prompt"] == "a (red:1.2) [cat:dog:0.5] circle"
    assert fields["Negative prompt"] == "blurry"
    assert (fields["Steps"], fields["Seed"], fields["Size-1"], fields["Size-2"]) == ("4", "1235", "64", "64")
    assert fields["Sampler"] == "DPM++ 2M" and fields["Schedule type"] == "Karras"


def test_default_output_folder(sd1, tmp_path):
    result = txt2img(sd1, params(save_images=True), outputs_root=tmp_path)
    assert result.paths[0].parent.parent == tmp_path / "txt2img-images"


def test_sdxl_and_v_prediction_and_inpainting_models_generate():
    for model in (make_tiny_model("sdxl"), make_tiny_model("sd2", v_prediction=True), make_tiny_model("sd1", inpainting=True)):
        (image,) = txt2img(model, params(steps=2)).images
        assert image.size == (64, 64)


def test_interrupt_stops_within_a_step_and_keeps_the_image_as_far_as_it_got(sd1, tmp_path):
    calls = []
    control = JobControl()

    def on_step(info):
        calls.append(info["step"])
        control.interrupted = True

    control.on_step = on_step
    result = txt2img(sd1, params(steps=10, sampler_name="Euler", n_iter=2, save_images=True), control, tmp_path)
    # As A1111: the interrupted batch's last denoised estimate, decoded and saved; no later batch runs.
    assert calls == [1] and len(result.images) == 1 and result.paths[0].is_file()
    whole = txt2img(sd1, params(steps=10, sampler_name="Euler"))
    assert np.abs(np.asarray(result.images[0], float) - np.asarray(whole.images[0], float)).mean() > 1
    # Before the first step there is nothing to show.
    assert txt2img(sd1, params(steps=10, sampler_name="Euler"), JobControl(interrupted=True)).images == []


def test_live_preview_hook(sd1):
    previews = []
    control = JobControl(on_step=lambda info: previews.append(info["preview"]() if info["preview"] else None))
    p = params(steps=4, sampler_name="Euler")
    p.settings.live_preview_every = 2
    txt2img(sd1, p, control)
    assert [type(x).__name__ for x in previews] == ["NoneType", "Image", "NoneType", "Image"]


def test_bad_parameters_say_what_is_wrong(sd1):
    with pytest.raises(ParamsError, match="width must be a multiple of 8"):
        txt2img(sd1, params(width=65))
    with pytest.raises(ParamsError, match="unknown sampler 'Nope'"):
        txt2img(sd1, params(sampler_name="Nope"))


def test_malformed_prompt_still_generates(sd1):
    result = txt2img(sd1, params(prompt="((a][:b:c [d:3] (x:1.2.3) \\ AND", negative_prompt="[unclosed"))
    assert len(result.images) == 1


def count_unet_calls(model):
    calls = []
    handle = model.unet.register_forward_pre_hook(lambda m, a, kw: calls.append(a[0].shape), with_kwargs=True)
    return calls, handle


@pytest.mark.parametrize("upscaler", ["Latent", "Latent (bicubic antialiased)", "Lanczos"])
def test_hires_fix_reaches_the_target_size_with_its_own_steps(sd1, upscaler):
    calls, handle = count_unet_calls(sd1)
    try:
        result = txt2img(sd1, params(steps=3, sampler_name="Euler", enable_hr=True, hr_scale=1.5, hr_upscaler=upscaler,
                                     hr_second_pass_steps=2, denoising_strength=0.5))
    finally:
        handle.remove()
    assert result.images[0].size == (96, 96)
    # 3 first-pass steps at 8x8 latents, then exactly 2 hires steps at 12x12 (cond and uncond batched).
    assert [tuple(shape[2:]) for shape in calls] == [(8, 8)] * 3 + [(12, 12)] * 2
    fields = parse_infotext(result.infotexts[0])
    assert fields["Size-1"] == "64" and fields["Hires upscale"] == "1.5" and fields["Hires steps"] == "2"
    assert fields["Hires upscaler"] == upscaler and fields["Denoising strength"] == "0.5"


def test_hires_resize_crops_to_the_requested_box(sd1):
    result = txt2img(sd1, params(width=64, height=128, enable_hr=True, hr_resize_x=96, hr_resize_y=96, steps=2,
                                 hr_upscaler="Latent (nearest)"))
    assert result.images[0].size == (96, 96)
    assert "Hires resize: 96x96" in result.infotexts[0]


def test_hires_prompt_sampler_and_schedule(sd1):
    calls, handle = count_unet_calls(sd1)
    try:
        result = txt2img(sd1, params(steps=2, sampler_name="Euler", enable_hr=True, hr_scale=1.25,
                                     hr_sampler_name="Heun", hr_prompt="a [blue:green:25] square", hr_second_pass_steps=2))
    finally:
        handle.remove()
    # Heun makes 2 calls per step, minus one on the last step to sigma 0.
    assert len(calls) == 2 + 3
    fields = parse_infotext(result.infotexts[0])
    assert fields["Hires sampler"] == "Heun" and fields["Hires prompt"] == "a [blue:green:25] square"


def test_hires_second_pass_reads_the_hires_timeline(sd1):
    from webui.generation.conditioning import PromptEncoder
    from webui.generation.prompt_conditioning import encode_prompts

    # 20 first-pass steps and 10 hires steps: 25 is hires step 5, 1.5 its middle.
    (cond,) = encode_prompts(PromptEncoder(sd1), ["[a:b:25] [c:d:1.5]"], 20, 10)
    assert [e.end_step for e in cond.parts[0].part.schedule] == [5, 10]


def test_unknown_upscaler_is_refused(sd1):
    with pytest.raises(ParamsError, match="unknown upscaler"):
        txt2img(sd1, params(enable_hr=True, hr_upscaler="4x-Nope"))


@pytest.mark.parametrize("part", ["UNet", "VAE"])
def test_nans_fail_the_job_with_advice_unless_the_check_is_off(part):
    from webui.generation.decoding import NansError
    from webui.generation.params import GenerationSettings

    model = make_tiny_model("sd1", seed=7)
    layer = model.unet.conv_out if part == "UNet" else model.vae.decoder.conv_out
    with torch.no_grad():
        layer.bias[0] = float("nan")
    with pytest.raises(NansError, match=f"The {part} produced NaNs.*--no-half"):
        txt2img(model, params(steps=2))
    kept = txt2img(model, params(steps=2, settings=GenerationSettings(nan_check=False)))
    assert len(kept.images) == 1  # --disable-nan-check: the (broken) image is returned as before


def test_s_tmax_zero_means_no_upper_bound_as_in_a1111(sd1):
    # A client that sends A1111's default s_tmax 0 with churn gets churn at every sigma, not none at all.
    def pixels(**given):
        return np.asarray(txt2img(sd1, params(**{"sampler_name": "Heun", "s_churn": 5.0, **given})).images[0]).astype(int)

    unbounded = pixels()
    assert (pixels(s_tmax=0.0) == unbounded).all()
    assert (pixels(s_churn=0.0) != unbounded).any()  # the churn does change the image
