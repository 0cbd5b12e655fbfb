"""`python -m webui.cli txt2img` on a real checkpoint folder: one line per saved image."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from checkpoint_files import write_diffusers_folder, write_safetensors
from tiny_models import make_tiny_model
from webui.generation.images import read_infotext

pytestmark = pytest.mark.slow  # see pyproject.toml

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args, cwd):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "webui.cli", "txt2img", *args], capture_output=True, text=True,
                          cwd=cwd, env={**env, "PYTHONPATH": str(ROOT)}, timeout=300)


def test_txt2img_prints_path_and_infotext_per_image(tmp_path):
    folder = write_diffusers_folder(make_tiny_model("sd1"), tmp_path / "models" / "Stable-diffusion" / "tiny")
    result = run_cli("--ckpt", str(folder), "--prompt", "a red circle, (blue:1.2)", "--negative-prompt", "ugly",
                     "--steps", "3", "--width", "64", "--height", "64", "--seed", "42", "--batch-size", "2",
                     "--sampler", "Euler a", "--outdir", str(tmp_path / "out"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 2
    for line, seed in zip(lines, (42, 43)):
        path, infotext = line.split("\t")
        infotext = json.loads(infotext)
        assert Path(path).is_file() and read_infotext(path) == infotext
        assert infotext.startswith("a red circle, (blue:1.2)\nNegative prompt: ugly\nSteps: 3, Sampler: Euler a,")
        assert f"Seed: {seed}," in infotext and "Model: tiny" in infotext


def test_without_outdir_images_go_to_the_data_dirs_settings_folder(tmp_path):
    folder = write_diffusers_folder(make_tiny_model("sd1"), tmp_path / "models" / "Stable-diffusion" / "tiny")
    (tmp_path / "config.json").write_text('{"outdir_txt2img_samples": "mine"}')  # as the WebUI saved it
    result = run_cli("--ckpt", str(folder), "--prompt", "x", "--steps", "1", "--width", "64", "--height", "64",
                     "--data-dir", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    path = Path(result.stdout.split("\t")[0])
    assert path.is_file() and path.parent.parent == tmp_path / "mine"  # then the <date> subfolder


def test_txt2img_hires_fix_from_the_command_line(tmp_path):
    folder = write_diffusers_folder(make_tiny_model("sd1"), tmp_path / "tiny")
    result = run_cli("--ckpt", str(folder), "--prompt", "a square", "--steps", "2", "--width", "64", "--height", "64",
                     "--enable-hr", "--hr-scale", "1.5", "--hr-second-pass-steps", "2", "--denoising-strength", "0.6",
                     "--outdir", str(tmp_path / "out"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    path, infotext = result.stdout.strip().split("\t")
    from PIL import Image

    assert Image.open(path).size == (96, 96)
    assert "Denoising strength: 0.6" in json.loads(infotext) and "Hires upscale: 1.5" in json.loads(infotext)


def test_unusable_checkpoint_is_a_one_line_error(tmp_path):
    bad = tmp_path / "broken.safetensors"
    write_safetensors(make_tiny_model("sd1"), bad)
    bad.write_bytes(bad.read_bytes()[:1000])  # truncated download
    result = run_cli("--ckpt", str(bad), "--prompt", "x", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and "broken.safetensors" in result.stderr
    assert "Traceback" not in result.stderr


def test_fresh_data_dir_uses_the_demo_model_with_its_defaults(tmp_path):
    # No checkpoint of the user's: the CLI draws with the built-in demo model, as the WebUI and the API do,
    # with the model's own defaults (128x128, CFG 5) for the flags left out.
    from webui.models.discovery import demo_checkpoint

    if demo_checkpoint() is None:
        pytest.fail("the built-in demo model is missing from models/demo")
    result = run_cli("--prompt", "a blue square", "--seed", "1", "--steps", "2", "--data-dir", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    path, infotext = result.stdout.strip().split("\t")
    infotext = json.loads(infotext)
    assert "CFG scale: 5," in infotext and "Size: 128x128" in infotext and "Sampler: DPM++ 2M" in infotext
    assert "Model: shapes-demo" in infotext and "Model hash: " in infotext
    # The name the UI and /sdapi/v1/sd-models show; flags given win over the model's defaults.
    result = run_cli("--ckpt", "shapes-demo", "--prompt", "a blue square", "--steps", "1", "--cfg-scale", "3",
                     "--width", "64", "--height", "64", "--data-dir", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    infotext = json.loads(result.stdout.strip().split("\t")[1])
    assert "CFG scale: 3," in infotext and "Size: 64x64" in infotext and "Model: shapes-demo" in infotext
