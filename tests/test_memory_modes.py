"""--medvram, --medvram-sdxl, --lowvram, big text encoders off the GPU, fp8 weight storage (webui/memory.py) and
the flags that turn them on (webui/runtime.py), on tiny CPU models.

There is one device here, so placement is read from the device map (`Placement.where`: "compute" or
"offload" per unit) at the moment each network runs, recorded by forward pre-hooks registered after the
placement's own (they run in registration order, so they see where the units are when the forward starts).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from quick_jobs import params, pixels
from tiny_models import make_tiny_model
from webui import memory, runtime
from webui.flags import parse_flags
from webui.generation.infotext import parse_infotext
from webui.generation.params import GenerationSettings
from webui.generation.processing import txt2img


def watch(placement: memory.Placement, modules: dict) -> list[tuple[str, dict]]:
    """(name of the module that ran, the device map as it started) for every call of `modules`."""
    seen = []
    for name, module in modules.items():
        module.register_forward_pre_hook(lambda m, args, name=name: seen.append((name, dict(placement.where))))
    return seen


@pytest.fixture(scope="module")
def eager_sdxl() -> np.ndarray:
    return pixels(make_tiny_model("sdxl"))


def test_medvram_puts_text_encoders_unet_and_vae_on_the_gpu_in_turn(eager_sdxl):
    model = make_tiny_model("sdxl")
    placement = memory.configure(model, memory.MemoryOptions("medvram"))
    assert set(placement.where.values()) == {"offload"}  # nothing on the GPU until it is used
    seen = watch(placement, {"text": model.text_encoders[1], "unet": model.unet, "vae": model.vae.decoder})
    assert (pixels(model) == eager_sdxl).all()  # same image as with everything in place
    by_network = {name: where for name, where in seen}
    assert by_network["text"] == {"text_encoders": "compute", "unet": "offload", "vae": "offload"}
    assert by_network["unet"] == {"text_encoders": "offload", "unet": "compute", "vae": "offload"}
    assert by_network["vae"] == {"text_encoders": "offload", "unet": "offload", "vae": "compute"}
    # one move per phase, not per step: text -> unet -> vae
    moved_on = [unit for unit, role in placement.moves if role == "compute"]
    assert moved_on == ["text_encoders", "unet", "vae"]


def test_lowvram_keeps_one_block_at_a_time_on_the_gpu(eager_sdxl):
    model = make_tiny_model("sdxl")
    placement = memory.configure(model, memory.MemoryOptions("lowvram"))
    unet_blocks = [name for name in placement.units if name.startswith("unet.")]
    assert {"unet.down_blocks.0", "unet.mid_block.resnets.0", "unet.up_blocks.1", "unet.conv_in"} <= set(unet_blocks)
    text_units = [name for name in placement.units if name.startswith("text_encoders.")]
    assert "text_encoders.0.encoder.layers.2" in text_units and "text_encoders.1.text_model.encoder.layers.0" in text_units
    blocks = {"conv_out": model.unet.conv_out, "down_blocks.0": model.unet.down_blocks[0],
              "mid_block.resnets.0": model.unet.mid_block.resnets[0]}
    seen = watch(placement, blocks)
    assert (pixels(model) == eager_sdxl).all()
    assert seen
    for name, where in seen:
        on_gpu = [unit for unit, role in where.items() if role == "compute"]
        assert on_gpu == [f"unet.{name}"]


def test_medvram_sdxl_applies_to_sdxl_only():
    options = memory.MemoryOptions("normal", medvram_sdxl=True)
    sd1, sdxl = make_tiny_model("sd1"), make_tiny_model("sdxl")
    assert not memory.configure(sd1, options).swapped
    assert memory.configure(sdxl, options).swapped == {"text_encoders", "unet", "vae"}


def test_a_vae_swapped_in_after_loading_joins_the_placement():
    from tiny_models import tiny_vae

    model = make_tiny_model("sd1")
    placement = memory.configure(model, memory.MemoryOptions("medvram"))
    model.vae = tiny_vae().eval()
    txt2img(model, params())
    assert model.placement is not placement and model.placement.active == "vae"  # it decoded last
    assert model.placement.where == {"text_encoders": "offload", "unet": "offload", "vae": "compute"}
    assert model.placement.units["vae"] == [model.vae]


def test_big_text_encoders_leave_the_gpu_once_the_prompt_is_encoded(tmp_path):
    from tiny_flow_models import write_flow_folder
    from webui.models.loading import load_checkpoint

    model = load_checkpoint(write_flow_folder("flux", tmp_path / "flux"), "cpu", torch.float32)
    expected = pixels(model, cfg_scale=1.0)
    placement = memory.configure(model, memory.MemoryOptions("normal"))
    assert placement.swapped == {"text_encoders"}  # the transformer and VAE stay put in the normal mode
    seen = watch(placement, {"t5": model.text_encoders[1], "transformer": model.unet})
    assert (pixels(model, cfg_scale=1.0) == expected).all()
    by_network = dict(seen)
    assert by_network["t5"]["text_encoders"] == "compute"
    assert by_network["transformer"] == {"text_encoders": "offload", "unet": "compute", "vae": "compute"}


def test_fp8_weight_stores_float8_and_upcasts_per_layer(eager_sdxl):
    model = make_tiny_model("sdxl")
    memory.configure(model, memory.MemoryOptions(fp8="Enable for SDXL"))
    stored = {p.dtype for p in model.unet.parameters()}
    assert torch.float8_e4m3fn in stored and torch.float32 in stored  # Linear/Conv in fp8, norms as they were
    linear = next(m for m in model.unet.modules() if isinstance(m, torch.nn.Linear))
    assert linear.weight.dtype == torch.float8_e4m3fn
    result = txt2img(model, params())
    image = np.asarray(result.images[0]).astype(int)
    assert linear.weight.dtype == torch.float8_e4m3fn  # back to storage after computing
    assert 0 < np.abs(image - eager_sdxl).mean() < 8  # rounded weights: close to, not the same as, full precision
    assert parse_infotext(result.infotexts[0])["FP8 weight"] == "Enable for SDXL"
    sd1 = make_tiny_model("sd1")
    memory.configure(sd1, memory.MemoryOptions(fp8="Enable for SDXL"))
    assert not memory.uses_fp8(sd1.unet)


def test_memory_flags_work_on_launch_and_cli_and_contradictions_are_refused(tmp_path, capsys):
    from webui.cli import build_parser

    flags = parse_flags(["--medvram", "--xformers", "--data-dir", str(tmp_path)])
    assert flags.ignored == []  # none of them is a no-op any more
    assert runtime.RuntimeOptions.from_flags(flags).memory.mode == "medvram"
    cli = build_parser().parse_args(["txt2img", "--lowvram", "--prompt", "x"])
    assert runtime.RuntimeOptions.from_flags(cli).memory.mode == "lowvram"
    with pytest.raises(SystemExit):
        parse_flags(["--compile", "--lowvram", "--data-dir", str(tmp_path)])
    assert "--compile cannot be used with --lowvram" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown memory mode"):
        memory.MemoryOptions("tinyvram")


def test_cli_loads_with_medvram_and_the_model_is_placed(tmp_path):
    from checkpoint_files import write_diffusers_folder
    from webui.cli import _load_model, build_parser

    folder = write_diffusers_folder(make_tiny_model("sd1"), tmp_path / "models" / "Stable-diffusion" / "tiny")
    args = build_parser().parse_args(["txt2img", "--ckpt", str(folder), "--data-dir", str(tmp_path), "--medvram",
                                      "--use-cpu", "all"])
    model = _load_model(args)
    assert model.placement.swapped == {"text_encoders", "unet", "vae"}
    assert model.memory_options.mode == "medvram"


def test_ngms_and_skip_early_cfg_skip_the_uncond_pass_and_say_so():
    model = make_tiny_model("sd1")
    rows = []
    model.unet.register_forward_pre_hook(lambda m, args: rows.append(args[0].shape[0]))
    txt2img(model, params())
    assert rows == [2] * 4  # cond + uncond in one call per step
    rows.clear()
    result = txt2img(model, params(settings=GenerationSettings(s_min_uncond=100.0, s_min_uncond_all=True)))
    assert rows == [1] * 4  # every sigma is below 100: no uncond pass at all
    info = parse_infotext(result.infotexts[0])
    assert str(info["NGMS"]) == "100.0" and str(info["NGMS all steps"]) == "True"
    rows.clear()
    txt2img(model, params(settings=GenerationSettings(s_min_uncond=100.0)))
    assert rows == [2, 1, 2, 1]  # every other call, as A1111
    rows.clear()
    result = txt2img(model, params(settings=GenerationSettings(skip_early_cond=0.5)))
    assert rows == [1, 1, 1, 2]  # steps 0..2 of 4 are within the first half (A1111's <=)
    assert str(parse_infotext(result.infotexts[0])["Skip Early CFG"]) == "0.5"


def test_a_vae_decode_that_runs_out_of_memory_falls_back_to_tiles(caplog):
    model = make_tiny_model("sd1")
    expected = txt2img(model, params()).images[0]
    model.vae.tile_sample_min_size, model.vae.tile_latent_min_size = 32, 4  # tiles smaller than the 64px image
    sizes = []

    def small_tiles_only(module, args):
        sizes.append(args[0].shape[-1])
        if args[0].shape[-1] > model.vae.tile_latent_min_size:  # the whole 8x8 latent "does not fit"
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

    model.vae.decoder.register_forward_pre_hook(small_tiles_only)
    with caplog.at_level("WARNING"):
        image = txt2img(model, params()).images[0]
    assert "ran out of memory; decoding in tiles" in caplog.text
    assert sizes[0] == 8 and max(sizes[1:]) <= model.vae.tile_latent_min_size  # then tile by tile
    assert image.size == expected.size
    # tiles blend at their seams: close to the whole decode, not equal
    assert np.abs(np.asarray(image).astype(int) - np.asarray(expected).astype(int)).mean() < 40


def test_the_server_loads_checkpoints_with_the_flags_and_settings(tmp_path):
    """launch.py's path: --medvram from the flags, FP8 weight and compile_unet from the settings, at each load."""
    from checkpoint_files import write_diffusers_folder
    from webui.state import SharedState

    write_diffusers_folder(make_tiny_model("sdxl"), tmp_path / "models" / "Stable-diffusion" / "tiny-xl")
    state = SharedState.create(parse_flags(["--data-dir", str(tmp_path), "--use-cpu", "all", "--medvram-sdxl"]))
    state.options.update({"fp8_storage": "Enable for SDXL"})
    options = state.models.runtime_options()
    assert options.memory == memory.MemoryOptions("normal", medvram_sdxl=True, fp8="Enable for SDXL")
    assert options.loads_on_cpu and not options.compile
    model = state.models.current()
    assert model.placement.swapped == {"text_encoders", "unet", "vae"}  # SDXL: --medvram-sdxl applies
    assert memory.uses_fp8(model.unet)
    state.options.update({"compile_unet": True})
    assert state.models.runtime_options().compile


def test_pad_conds_v0_batches_prompt_and_negative_of_different_lengths_in_one_call():
    model = make_tiny_model("sd1")
    rows = []
    model.unet.register_forward_pre_hook(lambda m, args: rows.append(args[0].shape[0]))
    long_prompt = ", ".join(["a red cat on a blue sofa"] * 14)  # over 75 tokens: two chunks against one
    plain = txt2img(model, params(prompt=long_prompt))
    assert rows == [1, 1] * 4  # cond and uncond in separate calls, as A1111 by default
    rows.clear()
    padded = txt2img(model, params(prompt=long_prompt, settings=GenerationSettings(pad_cond_uncond_v0=True)))
    assert rows == [2] * 4
    assert str(parse_infotext(padded.infotexts[0])["Pad conds v0"]) == "True"
    assert "Pad conds" not in plain.infotexts[0]


def test_pad_conds_pads_the_shorter_text_with_empty_prompt_chunks_in_one_call():
    from webui.generation.conditioning import EncodeOptions, PromptEncoder

    model = make_tiny_model("sd1")
    texts = []
    model.unet.register_forward_pre_hook(lambda m, args, kwargs: texts.append(kwargs["encoder_hidden_states"]),
                                         with_kwargs=True)
    long_prompt = ", ".join(["a red cat on a blue sofa"] * 14)  # two chunks against the negative's one
    plain = txt2img(model, params(prompt=long_prompt))
    assert [t.shape[0] for t in texts] == [1, 1] * 4  # off: separate calls, as before
    texts.clear()
    padded = txt2img(model, params(prompt=long_prompt, settings=GenerationSettings(pad_cond_uncond=True)))
    assert [t.shape[0] for t in texts] == [2] * 4  # prompt and negative in one call per step
    encoder = PromptEncoder(model)
    negative = encoder.encode_group(["blurry"], EncodeOptions())[0].crossattn
    empty = encoder.encode_group([""], EncodeOptions())[0].crossattn
    uncond = texts[0][1]
    assert uncond.shape[0] == 154 and torch.equal(uncond[:77], negative)
    assert torch.allclose(uncond[77:], empty)  # the empty prompt's chunk, not the negative's last vector repeated
    assert not torch.allclose(uncond[77:], negative[-1:].expand(77, -1))
    assert str(parse_infotext(padded.infotexts[0])["Pad conds"]) == "True"
    assert "Pad conds" not in plain.infotexts[0]
