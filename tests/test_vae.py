"""Separate VAE files on a tiny model: loading (LDM and diffusers layouts), swapping, "Automatic", infotext, jobs."""

import argparse
import hashlib

import pytest
import torch
from safetensors.torch import save_file

from checkpoint_files import vae_to_ldm
from tiny_models import make_tiny_model, tiny_vae
from webui.generation.decoding import decode_latents
from webui.generation.infotext import parse_infotext
from webui.generation.params import Txt2ImgParams
from webui.generation.processing import txt2img
from webui.jobs import JobQueue
from webui.models.vae import VaeNotFound, apply_vae, list_vaes, resolve_vae
from webui.options import Options
from webui.state import SharedState


def write_vae(path, seed, ldm=True):
    torch.manual_seed(seed)
    vae = tiny_vae()
    state = vae.state_dict()
    save_file(vae_to_ldm(state, vae.config) if ldm else dict(state), path)
    return vae


@pytest.fixture
def model():
    return make_tiny_model("sd1")


def decoded(model, latents):
    return [image.tobytes() for image in decode_latents(model, latents)]


def test_switching_vae_changes_decode_and_switches_back(tmp_path, model):
    latents = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    own = decoded(model, latents)
    reference = write_vae(tmp_path / "other.safetensors", seed=7)
    apply_vae(model, tmp_path / "other.safetensors")
    swapped = decoded(model, latents)
    assert swapped != own
    expected = reference.eval().decode(latents / reference.config.scaling_factor).sample
    got = model.vae.decode(latents / model.vae.config.scaling_factor).sample
    assert torch.allclose(got, expected, atol=1e-5)  # the file's weights, converted from the LDM layout
    assert model.vae_file.name == "other.safetensors"
    assert model.vae_sha256 == hashlib.sha256((tmp_path / "other.safetensors").read_bytes()).hexdigest()
    apply_vae(model, None)
    assert decoded(model, latents) == own and model.vae_file is None and model.vae is model.own_vae


def test_diffusers_layout_vae_file(tmp_path, model):
    reference = write_vae(tmp_path / "plain.safetensors", seed=9, ldm=False)
    apply_vae(model, tmp_path / "plain.safetensors")
    assert torch.equal(model.vae.decoder.conv_out.weight, reference.decoder.conv_out.weight)


def test_automatic_picks_the_same_named_vae(tmp_path):
    ckpt_dir, vae_dir = tmp_path / "Stable-diffusion", tmp_path / "VAE"
    ckpt_dir.mkdir(), vae_dir.mkdir()
    checkpoint = ckpt_dir / "dreamy.safetensors"
    checkpoint.write_bytes(b"x")
    for name in ("dreamy.safetensors", "other.vae.pt"):
        (vae_dir / name).write_bytes(b"x")
    vaes = list_vaes(vae_dir, [ckpt_dir])
    assert [v.name for v in vaes] == ["dreamy.safetensors", "other.vae.pt"]
    assert resolve_vae("Automatic", checkpoint, vaes) == vae_dir / "dreamy.safetensors"
    # A VAE beside the checkpoint, named <stem>.vae.*, comes first.
    (ckpt_dir / "dreamy.vae.safetensors").write_bytes(b"x")
    vaes = list_vaes(vae_dir, [ckpt_dir])
    assert resolve_vae("Automatic", checkpoint, vaes) == (ckpt_dir / "dreamy.vae.safetensors").absolute()
    assert resolve_vae("Automatic", ckpt_dir / "plain.safetensors", vaes) is None  # no match: its own VAE
    assert resolve_vae("None", checkpoint, vaes) is None
    assert resolve_vae("other.vae.pt", checkpoint, vaes) == vae_dir / "other.vae.pt"
    with pytest.raises(VaeNotFound, match="missing.pt"):
        resolve_vae("missing.pt", checkpoint, vaes)


def test_infotext_vae_and_hash_round_trip(tmp_path, model):
    write_vae(tmp_path / "vae-ft-mse.safetensors", seed=5)
    apply_vae(model, tmp_path / "vae-ft-mse.safetensors")
    p = Txt2ImgParams(prompt="a cat", steps=2, width=64, height=64, seed=1, save_images=False)
    text = txt2img(model, p).infotexts[0]
    parsed = parse_infotext(text)
    assert parsed["VAE"] == "vae-ft-mse.safetensors"
    assert parsed["VAE hash"] == hashlib.sha256((tmp_path / "vae-ft-mse.safetensors").read_bytes()).hexdigest()[:10]
    assert text.index("Model:") < text.index("VAE hash:") < text.index("VAE:")
    apply_vae(model, None)
    assert "VAE" not in parse_infotext(txt2img(model, p).infotexts[0])


class OneModel:
    def __init__(self, model):
        self.model = model

    def current(self):
        return self.model

    def switch(self, name):
        return self.model


def test_job_uses_the_setting_and_the_per_request_override(tmp_path, model):
    (tmp_path / "models" / "VAE").mkdir(parents=True)
    write_vae(tmp_path / "models" / "VAE" / "fancy.safetensors", seed=11)
    flags = argparse.Namespace(data_dir=tmp_path, models_dir=tmp_path / "models", ckpt=None,
                               disable_nan_check=False)
    state = SharedState(flags, Options(tmp_path / "config.json"), OneModel(model))
    queue = JobQueue(state)
    queue.start()
    try:
        p = lambda: Txt2ImgParams(prompt="a cat", steps=2, width=64, height=64, seed=1, save_images=False)  # noqa: E731
        job = queue.submit("txt2img", p(), "me", override_settings={"sd_vae": "fancy.safetensors"}).wait(60)
        assert job.status == "done", job.error
        assert parse_infotext(job.result.infotexts[0])["VAE"] == "fancy.safetensors"
        job = queue.submit("txt2img", p(), "me").wait(60)  # the setting: Automatic, no same-named file
        assert job.status == "done" and "VAE" not in parse_infotext(job.result.infotexts[0])
        job = queue.submit("txt2img", p(), "me", override_settings={"sd_vae": "nope.pt"}).wait(60)
        assert job.status == "failed" and job.bad_input and "nope.pt" in job.error
    finally:
        queue.stop()
