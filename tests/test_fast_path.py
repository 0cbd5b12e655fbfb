"""The compiled fast path (--compile, webui/fast_path.py) on a tiny SD1 UNet on the CPU.

Recompilation is read from dynamo's own counters: a prompt edit at step N, a new seed, a second job of the
same size and a CFG batch change (NGMS skipping the uncond pass) must not add a graph. Those tests use
dynamo with the quick "aot_eager" backend (what is traced and guarded is the same as with inductor); the
slow test compiles with inductor, as --compile does, and compares the image with eager.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from torch._dynamo.utils import counters

from tiny_models import make_tiny_model
from webui import fast_path
from webui.generation.denoiser import JobControl
from webui.generation.params import GenerationSettings, Txt2ImgParams
from webui.generation.processing import txt2img


def params(**given) -> Txt2ImgParams:
    values = dict(prompt="a red cat", negative_prompt="blurry", steps=4, width=64, height=64, seed=7,
                  save_images=False, sampler_name="DPM++ 2M")
    return Txt2ImgParams(**{**values, **given})


def pixels(model, **given) -> np.ndarray:
    return np.asarray(txt2img(model, params(**given)).images[0]).astype(int)


def graphs() -> int:
    return counters["stats"]["unique_graphs"]


class RecordingControl(JobControl):
    def __init__(self):
        super().__init__()
        self.said = []

    def say(self, text: str) -> None:
        super().say(text)
        self.said.append(text)


def test_compiled_path_gives_eager_image_and_never_recompiles_for_same_size_jobs(caplog):
    torch._dynamo.reset()
    model = make_tiny_model("sd1")
    eager = pixels(model)
    edited_eager = pixels(model, prompt="a [red:blue:2] cat", seed=8)
    compiled = fast_path.enable(model, backend="aot_eager")
    assert fast_path.enable(model) is compiled  # once per model
    control = RecordingControl()
    with caplog.at_level(logging.INFO, logger="webui.fast_path"):
        first = np.asarray(txt2img(model, params(), control=control).images[0]).astype(int)
    assert np.abs(first - eager).max() <= 1
    assert graphs() >= 1 and len(compiled.compiled_shapes) == 1
    assert "compiling the UNet2DConditionModel" in caplog.text and "batch 2" in caplog.text
    assert control.said and control.note is None  # said while compiling, cleared by the first finished step
    before = graphs()
    # a prompt edited at step 2 (other embeddings from then on), a new seed, and the same job again
    assert np.abs(pixels(model, prompt="a [red:blue:2] cat", seed=8) - edited_eager).max() <= 1
    assert np.abs(pixels(model) - eager).max() <= 1
    # NGMS drops the uncond rows every other step: padded up to the compiled batch, not recompiled
    pixels(model, settings=GenerationSettings(s_min_uncond=100.0))
    assert graphs() == before
    assert len(compiled.compiled_shapes) == 1
    # a new size compiles once, and says so
    control = RecordingControl()
    txt2img(model, params(width=96), control=control)
    assert graphs() == before + 1 and "[4, 8, 12]" in control.said[0]


def test_disable_restores_the_eager_forward():
    torch._dynamo.reset()
    model = make_tiny_model("sd1")
    fast_path.enable(model, backend="aot_eager")
    assert "forward" in model.unet.__dict__
    fast_path.disable(model)
    assert "forward" not in model.unet.__dict__ and model.fast_path is None
    before = graphs()
    pixels(model)
    assert graphs() == before


@pytest.mark.slow
@pytest.mark.parametrize("fp8", [False, True], ids=["full", "fp8-weights"])
def test_inductor_compiled_unet_matches_eager(fp8):
    """What --compile runs on a CPU (inductor's C++ kernels; needs a C compiler): same image within rounding,
    with FP8 weight too (the per-layer upcast compiled into the kernels)."""
    from webui import memory

    torch._dynamo.reset()
    model = make_tiny_model("sd1")
    if fp8:
        memory.store_fp8(model.unet, model.dtype)
    eager = pixels(model)
    fast_path.enable(model)
    assert np.abs(pixels(model) - eager).max() <= 2
    before = graphs()
    pixels(model, seed=11)
    assert graphs() == before
