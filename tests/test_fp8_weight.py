"""FP8 weight (webui/memory.py): checkpoints stored in fp8 keep their fp8 weights when they load, the FP8 weight
and compile_unet settings apply from the next job on, and a model with fp8 weights compiles (webui/fast_path.py).
Tiny models on the CPU."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from torch._dynamo.utils import counters

from checkpoint_files import write_config_dir, write_diffusers_folder, write_safetensors
from quick_jobs import params, pixels
from tiny_models import make_tiny_model
from webui import fast_path, memory, runtime
from webui.flags import parse_flags
from webui.generation.infotext import parse_infotext
from webui.generation.processing import txt2img
from webui.models.loading import load_checkpoint


def in_fp8(path, prefix: str, storage: torch.dtype):
    """The checkpoint at `path` written again with its tensors under `prefix` stored as `storage`."""
    weights = load_file(path)
    save_file({k: v.to(storage) if k.startswith(prefix) else v for k, v in weights.items()}, path)
    return path


def linear_layers(network):
    """The Linear layers FP8 weight stores in fp8 (not those kept in the compute dtype: norms, proj_out, ...)."""
    return [m for name, m in network.named_modules() if isinstance(m, torch.nn.Linear)
            and not any(re.search(pattern, name) for pattern in memory.KEEP_PATTERNS)]


@pytest.mark.parametrize("storage", [torch.float8_e4m3fn, torch.float8_e5m2])
def test_a_checkpoint_stored_in_fp8_loads_with_fp8_weights(tmp_path, storage):
    tiny = make_tiny_model("sd1")
    config = write_config_dir(tiny, tmp_path / "config")
    path = in_fp8(write_safetensors(tiny, tmp_path / "tiny-fp8.safetensors"), "model.diffusion_model.", storage)
    model = load_checkpoint(path, "cpu", torch.float32, config_dir=config)
    assert {m.weight.dtype for m in linear_layers(model.unet)} == {storage}  # kept as stored, not upcast
    assert model.unet.conv_norm_out.weight.dtype == torch.float32  # norms compute as they are: upcast
    assert model.text_encoders[0].dtype == torch.float32 and model.vae.dtype == torch.float32
    # the same image as the full-precision model with its UNet weights rounded to fp8 the same way
    with torch.no_grad():
        for weight in tiny.unet.parameters():
            weight.copy_(weight.to(storage).float())
    result = txt2img(model, params())
    assert (np.asarray(result.images[0]).astype(int) == pixels(tiny)).all()
    assert parse_infotext(result.infotexts[0])["FP8 weight"] == "Enable"  # whatever the setting says
    runtime.prepare(model, runtime.RuntimeOptions())  # FP8 weight "Disable": still fp8, still said
    assert memory.uses_fp8(model.unet) and memory.fp8_label(model) == "Enable"
    assert memory.fp8_label(tiny) is None


def test_a_flux_transformer_stored_in_fp8_loads_with_fp8_weights(tmp_path):
    from tiny_flow_models import write_flux_single_files
    from webui.families.flux_layout import PREFIX

    path = in_fp8(write_flux_single_files(tmp_path / "models"), PREFIX, torch.float8_e4m3fn)
    model = load_checkpoint(path)
    assert {m.weight.dtype for m in linear_layers(model.unet)} == {torch.float8_e4m3fn}
    assert {p.dtype for p in model.text_encoders[1].parameters()} == {torch.float32}  # from its own file
    image = pixels(model, cfg_scale=1.0)
    assert image.std() > 0


def test_fp8_weight_on_flux_keeps_the_t5_layers_transformers_keeps_in_float32(tmp_path):
    """T5 casts its hidden states to `wo`'s weight type before calling it: an fp8 `wo` failed every job."""
    from tiny_flow_models import write_flow_folder

    model = load_checkpoint(write_flow_folder("flux", tmp_path / "flux"), "cpu", torch.float32)
    memory.configure(model, memory.MemoryOptions(fp8="Enable"))
    t5 = model.text_encoders[1]
    weights = {name: p.dtype for name, p in t5.named_parameters() if name.endswith(".weight")}
    assert weights["encoder.block.0.layer.1.DenseReluDense.wo.weight"] == torch.float32
    assert weights["encoder.block.0.layer.0.SelfAttention.q.weight"] == torch.float8_e4m3fn
    assert pixels(model, cfg_scale=1.0).std() > 0


def test_fp8_weight_and_compile_settings_apply_to_the_next_job(tmp_path):
    from webui.api.info import set_options  # POST /sdapi/v1/options
    from webui.state import SharedState

    write_diffusers_folder(make_tiny_model("sdxl"), tmp_path / "models" / "Stable-diffusion" / "tiny-xl")
    state = SharedState.create(parse_flags(["--data-dir", str(tmp_path), "--use-cpu", "all", "--medvram"]))
    model = state.models.current()
    original = {k: v.clone() for k, v in model.unet.state_dict().items()}
    assert not memory.uses_fp8(model.unet) and model.fast_path is None
    placement, moves = model.placement, len(model.placement.moves)
    set_options(state, {"fp8_storage": "Enable for SDXL"})
    assert state.models.current() is model and memory.uses_fp8(model.unet)  # stored in fp8 in place
    # --medvram's new placement replaced the old one without putting the whole model on the GPU first
    assert model.placement is not placement and len(placement.moves) == moves
    assert set(model.placement.where.values()) == {"offload"}
    assert memory.fp8_label(model) == "Enable for SDXL"
    set_options(state, {"compile_unet": True})
    assert state.models.current() is model and model.fast_path is not None and memory.uses_fp8(model.unet)
    set_options(state, {"compile_unet": False, "fp8_storage": "Disable"})
    reloaded = state.models.current()  # the full-precision weights are in the file: loaded again
    assert reloaded is not model and reloaded.fast_path is None and not memory.uses_fp8(reloaded.unet)
    assert all(torch.equal(v, original[k]) for k, v in reloaded.unet.state_dict().items())
    assert state.models.switch("tiny-xl") is reloaded  # nothing changed since: nothing done


def test_compiled_fp8_unet_matches_eager_fp8_and_never_recompiles():
    """Traced by dynamo (the quick aot_eager backend: what is traced and guarded is the same as with inductor)."""
    torch._dynamo.reset()
    counters.clear()
    model = make_tiny_model("sd1")
    memory.store_fp8(model.unet, model.dtype)
    eager, eager_other_seed = pixels(model), pixels(model, seed=11)
    fast_path.enable(model, backend="aot_eager")
    assert np.abs(pixels(model) - eager).max() <= 1
    graphs = counters["stats"]["unique_graphs"]
    assert graphs >= 1 and counters["graph_break"] == {}  # the per-layer upcast is in the graph
    assert np.abs(pixels(model, seed=11) - eager_other_seed).max() <= 1  # a second job
    assert counters["stats"]["unique_graphs"] == graphs
    assert {m.weight.dtype for m in linear_layers(model.unet)} == {torch.float8_e4m3fn}


def test_compile_is_applied_to_fp8_models():
    model = make_tiny_model("sdxl")
    runtime.prepare(model, runtime.RuntimeOptions(memory.MemoryOptions(fp8="Enable"), compile=True))
    assert memory.uses_fp8(model.unet) and model.fast_path is not None
