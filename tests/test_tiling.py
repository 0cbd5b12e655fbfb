"""Tiling (seamless textures): circular padding in the UNet and VAE for one job, undone after it."""

import numpy as np
import pytest
import torch

from tiny_models import make_tiny_model
from webui.extensions.processing import StableDiffusionProcessingTxt2Img
from webui.generation.decoding import decode_latents
from webui.generation.hooks import GenerationHooks
from webui.generation.img2img import Img2ImgParams, img2img
from webui.generation.infotext import parse_infotext
from webui.generation.params import Txt2ImgParams
from webui.generation.processing import txt2img
from webui.generation.tiling import convolutions, tiling


@pytest.fixture(scope="module")
def model():
    return make_tiny_model("sd1", seed=3)


def modes(model) -> set[str]:
    return {conv.padding_mode for conv in convolutions(model)}


def test_every_unet_and_vae_convolution_wraps_inside_the_block_and_is_restored_after(model):
    convs = convolutions(model)
    unet_convs = [m for m in model.unet.modules() if isinstance(m, torch.nn.Conv2d)]
    vae_convs = [m for m in model.vae.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == len(unet_convs) + len(vae_convs) > 10
    convs[0].padding_mode = "reflect"  # a mode of its own is given back as it was, not as "zeros"
    try:
        with tiling(model, True):
            assert modes(model) == {"circular"}
        assert convs[0].padding_mode == "reflect"
        assert {conv.padding_mode for conv in convs[1:]} == {"zeros"}
    finally:
        convs[0].padding_mode = "zeros"


def test_off_touches_nothing_and_an_error_inside_still_restores(model):
    with tiling(model, False):
        assert modes(model) == {"zeros"}
    with pytest.raises(RuntimeError, match="boom"):
        with tiling(model, True):
            raise RuntimeError("boom")
    assert modes(model) == {"zeros"}


def test_decoding_a_periodic_latent_gives_a_periodic_image_only_with_tiling(model):
    torch.manual_seed(0)
    tile = torch.randn(1, 4, 8, 8)
    doubled = torch.cat([tile, tile], dim=3)  # the same latent twice side by side: 128 pixels wide
    with tiling(model, True):
        one = np.asarray(decode_latents(model, tile)[0], dtype=np.int16)
        two = np.asarray(decode_latents(model, doubled)[0], dtype=np.int16)
    # With wrap-around padding each half sees exactly what the single tile saw around its edges.
    assert np.abs(two[:, :64] - one).max() <= 1 and np.abs(two[:, 64:] - one).max() <= 1
    plain_one = np.asarray(decode_latents(model, tile)[0], dtype=np.int16)
    plain_two = np.asarray(decode_latents(model, doubled)[0], dtype=np.int16)
    assert np.abs(plain_two[:, :64] - plain_one).max() > 5  # zero padding: the middle seam differs


def test_the_unet_commutes_with_a_circular_shift_only_with_tiling(model):
    torch.manual_seed(1)
    x = torch.randn(1, 4, 16, 16)
    cond = torch.randn(1, 77, 32)
    t = torch.tensor([500])

    def shifted_difference() -> float:
        with torch.no_grad():
            out = model.unet(x, t, encoder_hidden_states=cond).sample
            out_of_shifted = model.unet(torch.roll(x, 4, dims=3), t, encoder_hidden_states=cond).sample
        return (torch.roll(out, 4, dims=3) - out_of_shifted).abs().max().item()

    with tiling(model, True):
        assert shifted_difference() < 1e-4
    assert shifted_difference() > 1e-2


class PaddingSpy(GenerationHooks):
    """Records the convolutions' padding modes when sampling ends and when the images are decoded."""

    def __init__(self, model):
        self.model, self.seen = model, []

    def post_sample(self, batch, latents):
        self.seen.append(("sampled", modes(self.model)))
        return latents

    def postprocess_batch(self, batch, images):
        self.seen.append(("decoded", modes(self.model)))
        return images


class ShiftStart(GenerationHooks):
    """Rolls the starting latents round the image, in place, before sampling begins."""

    def __init__(self, columns: int):
        self.columns = columns

    def before_sampling(self, batch, x, noise, conds, unconds):
        x.copy_(torch.roll(x, self.columns, dims=3))


def test_txt2img_with_tiling_makes_an_image_that_wraps_round(model, tmp_path):
    """With every convolution wrapping, the image lives on a torus: starting from the same noise rolled 4
    latent columns round gives the same image rolled 32 pixels round, seam included. Zero padding breaks it."""
    common = dict(prompt="bricks", steps=3, width=64, height=64, seed=11, sampler_name="Euler", save_images=False)

    def wrap_error(tiled: bool) -> float:
        p = lambda: Txt2ImgParams(**common, tiling=tiled)  # noqa: E731
        image = np.asarray(txt2img(model, p(), outputs_root=tmp_path).images[0], dtype=np.float32)
        shifted = txt2img(model, p(), outputs_root=tmp_path, hooks=ShiftStart(4)).images[0]
        shifted = np.asarray(shifted, dtype=np.float32)
        return float(np.abs(np.roll(image, 32, axis=1) - shifted).max())

    assert wrap_error(True) <= 2
    assert wrap_error(False) > 20


def test_txt2img_with_tiling_writes_the_infotext_and_leaves_the_model_as_it_was(model, tmp_path):
    common = dict(prompt="bricks", steps=3, width=64, height=64, seed=11, sampler_name="Euler", save_images=False)
    spy = PaddingSpy(model)
    tiled = txt2img(model, Txt2ImgParams(**common, tiling=True), outputs_root=tmp_path, hooks=spy)
    assert spy.seen == [("sampled", {"circular"}), ("decoded", {"circular"})]
    assert modes(model) == {"zeros"}
    plain = txt2img(model, Txt2ImgParams(**common), outputs_root=tmp_path)
    assert parse_infotext(tiled.infotexts[0])["Tiling"] == "True"
    assert "Tiling" not in parse_infotext(plain.infotexts[0])


def test_img2img_with_tiling_samples_and_decodes_with_wrapping(model, tmp_path):
    spy = PaddingSpy(model)
    init = txt2img(model, Txt2ImgParams(steps=2, width=64, height=64, seed=5, save_images=False)).images[0]
    result = img2img(model, Img2ImgParams(init_images=[init], steps=3, width=64, height=64, seed=2, tiling=True,
                                          denoising_strength=0.6, save_images=False), outputs_root=tmp_path, hooks=spy)
    assert spy.seen == [("sampled", {"circular"}), ("decoded", {"circular"})]
    assert modes(model) == {"zeros"}
    assert parse_infotext(result.infotexts[0])["Tiling"] == "True"


def test_a_scripts_p_tiling_reaches_the_typed_params():
    p = StableDiffusionProcessingTxt2Img(prompt="x", tiling=True)
    assert p.tiling is True and p.to_params().tiling is True
    assert StableDiffusionProcessingTxt2Img(prompt="x").to_params().tiling is False


def test_the_api_takes_tiling_and_the_infotext_says_so(tmp_path):
    import base64
    import io
    import json
    import os

    import httpx
    from fastapi import FastAPI
    from PIL import Image

    from checkpoint_files import write_diffusers_folder
    from live_server import LiveServer
    from webui.api import register_api
    from webui.flags import parse_flags
    from webui.generation.images import read_infotext
    from webui.state import SharedState

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    write_diffusers_folder(make_tiny_model("sd1"), tmp_path / "models" / "Stable-diffusion" / "tiny")
    state = SharedState.create(parse_flags(["--data-dir", str(tmp_path), "--use-cpu", "all", "--ckpt", "tiny"]))
    app = FastAPI()
    register_api(app, state)
    request = {"prompt": "tiles", "steps": 2, "width": 64, "height": 64, "seed": 3, "save_images": False}
    try:
        with LiveServer(app) as live, httpx.Client(base_url=live.url, timeout=120) as client:
            tiled = client.post("/sdapi/v1/txt2img", json={**request, "tiling": True})
            plain = client.post("/sdapi/v1/txt2img", json={**request, "tiling": None})  # A1111 clients send null
    finally:
        state.queue.stop()
    assert tiled.status_code == 200, tiled.text
    assert "Tiling: True" in json.loads(tiled.json()["info"])["infotexts"][0]
    image = Image.open(io.BytesIO(base64.b64decode(tiled.json()["images"][0])))
    assert "Tiling: True" in read_infotext(image)
    assert plain.status_code == 200 and "Tiling" not in json.loads(plain.json()["info"])["infotexts"][0]


def test_pasting_an_infotext_with_tiling_ticks_the_checkbox():
    from webui.ui.common import Controls, pasted_values

    tiling_box, steps = object(), object()  # stand-ins: pasting only maps infotext keys to components
    controls = Controls(fields={"tiling": tiling_box, "steps": steps})
    assert pasted_values("bricks\nSteps: 3, Sampler: Euler, Tiling: True", controls) == {steps: 3, tiling_box: True}
    assert tiling_box not in pasted_values("bricks\nSteps: 3, Sampler: Euler, Seed: 1", controls)
