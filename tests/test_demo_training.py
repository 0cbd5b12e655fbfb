"""The demo model's training script: a few steps end in a folder the WebUI loads, and reruns go on from where
the last one stopped (from its checkpoints, or from an exported model when they are gone)."""

from __future__ import annotations

import json

import pytest
import torch

from webui.demo.train import main, seed_from_export
from webui.generation.params import Txt2ImgParams
from webui.generation.processing import txt2img
from webui.models.loading import METADATA_FILE, load_checkpoint

pytestmark = pytest.mark.slow  # see pyproject.toml

TINY = ["--count", "8", "--vae-batch", "4", "--unet-batch", "2", "--threads", "1"]


def saved_step(work, name="unet.pt") -> int:
    return torch.load(work / name, weights_only=True)["step"]


def test_training_exports_a_model_the_webui_draws_with(tmp_path):
    work, folder = tmp_path / "work", tmp_path / "model"
    main([*TINY, "--work", str(work), "--vae-steps", "2", "--unet-steps", "2", "--export", str(folder)])

    assert saved_step(work, "vae.pt") == 2 and saved_step(work) == 2
    record = json.loads((folder / METADATA_FILE).read_text())
    assert record["demo"] is True and record["training"]["unet_steps"] == 2
    model = load_checkpoint(folder)
    p = Txt2ImgParams(prompt="a red circle", seed=1, steps=2, width=128, height=128, save_images=False)
    assert txt2img(model, p).images[0].size == (128, 128)

    main([*TINY, "--work", str(work), "--vae-steps", "2", "--unet-steps", "3"])  # resumes: one more step
    assert saved_step(work) == 3


def test_training_goes_on_from_an_exported_model(tmp_path):
    first, folder = tmp_path / "first", tmp_path / "model"
    main([*TINY, "--work", str(first), "--vae-steps", "2", "--unet-steps", "2", "--export", str(folder)])

    seeded = tmp_path / "seeded"
    seeded.mkdir()
    seed_from_export(folder, seeded)
    state, exported = torch.load(seeded / "unet.pt", weights_only=True), load_checkpoint(folder)
    assert state["step"] == 2 and "optimizer" not in state
    for key, weight in exported.unet.state_dict().items():
        assert torch.equal(state["unet"][key], weight.float()) and torch.equal(state["ema_unet"][key], weight.float())

    second = tmp_path / "second"
    main([*TINY, "--work", str(second), "--vae-steps", "2", "--unet-steps", "3", "--init-from", str(folder),
          "--export", str(tmp_path / "again")])
    assert saved_step(second, "vae.pt") == 2 and saved_step(second) == 3  # no step was redone
    record = json.loads((tmp_path / "again" / METADATA_FILE).read_text())["training"]
    assert record["unet_steps"] == 3 and record["continued_from"]["unet_steps"] == 2
