"""The model-family interface with the flow-matching families: SD3, Flux.1 (dev, schnell) and Chroma, as
tiny random-weight diffusers folders loaded the way a user's folder is."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from tests.tiny_flow_models import BUILDERS, write_flow_folder
from webui.families import CHROMA, FLUX, SD1, SD3, SDXL, ZIMAGE, family_for_weights
from webui.generation import masks
from webui.generation.conditioning import EncodeOptions, PromptEncoder
from webui.generation.conditioning_t5 import T5TextEncoder
from webui.generation.img2img import Img2ImgParams, img2img
from webui.generation.infotext import parse_infotext
from webui.generation.params import ParamsError, Txt2ImgParams
from webui.generation.processing import txt2img
from webui.generation.samplers import FlowSchedule
from webui.models.loading import load_checkpoint
from webui.models.weights import CheckpointError

KINDS = tuple(BUILDERS)
FAMILY_OF = {"sd3": SD3, "flux": FLUX, "flux-schnell": FLUX, "chroma": CHROMA, "zimage": ZIMAGE, "flux-fill": FLUX}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("flow-models")
    return {kind: write_flow_folder(kind, root / kind) for kind in KINDS}


@pytest.fixture(scope="module")
def models(folders):
    return {kind: load_checkpoint(folder) for kind, folder in folders.items()}


def params(**overrides) -> Txt2ImgParams:
    base = dict(prompt="a (red:1.3) house", negative_prompt="blue", steps=3, width=64, height=64, seed=7,
                sampler_name="Euler", cfg_scale=2.0, save_images=False)
    return Txt2ImgParams(**{**base, **overrides})


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image).astype(np.int16)


@pytest.mark.parametrize("kind", KINDS)
def test_folder_is_recognised_and_loads_offline(models, kind):
    model = models[kind]
    assert model.family is FAMILY_OF[kind]
    assert model.prediction_type == "flow" and model.family.flow
    assert model.latent_channels == 16


def test_single_file_keys_name_their_family():
    assert family_for_weights({"model.diffusion_model.joint_blocks.0.x_block.attn.qkv.weight",
                               "model.diffusion_model.x_embedder.proj.weight"}) is SD3
    flux_keys = {"double_blocks.0.img_attn.qkv.weight", "single_blocks.0.linear1.weight", "img_in.weight"}
    assert family_for_weights(flux_keys) is FLUX
    assert family_for_weights(flux_keys | {"distilled_guidance_layer.in_proj.weight"}) is CHROMA
    assert family_for_weights({"model.diffusion_model.input_blocks.0.0.weight"}) is None  # the UNet families: detection.py


@pytest.mark.parametrize("kind", KINDS)
def test_every_offered_sampler_runs_and_seeds_reproduce(models, kind):
    model = models[kind]
    for sampler in model.family.samplers:
        first = txt2img(model, params(sampler_name=sampler, steps=2)).images[0]
        again = txt2img(model, params(sampler_name=sampler, steps=2)).images[0]
        assert first.size == (64, 64)
        assert np.array_equal(pixels(first), pixels(again)), sampler
        assert pixels(first).std() > 0, sampler
    other_seed = txt2img(model, params(sampler_name=sampler, steps=2, seed=8)).images[0]
    assert not np.array_equal(pixels(first), pixels(other_seed))


def test_samplers_the_family_does_not_offer_are_refused(models):
    with pytest.raises(ParamsError, match="DDIM sampler does not work with Flux.1"):
        txt2img(models["flux"], params(sampler_name="DDIM"))
    with pytest.raises(ParamsError, match="multiples of 16"):
        txt2img(models["flux"], params(width=72))


def test_variation_seed_moves_the_image(models):
    model = models["sd3"]
    plain = pixels(txt2img(model, params()).images[0])
    varied = pixels(txt2img(model, params(subseed=99, subseed_strength=0.5)).images[0])
    assert not np.array_equal(plain, varied)


def _recorded_text(model, run):
    """The text conditioning the transformer saw at each call, while `run()` generates."""
    seen = []
    hook = model.unet.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(kwargs["encoder_hidden_states"].clone()), with_kwargs=True)
    try:
        run()
    finally:
        hook.remove()
    return seen


@pytest.mark.parametrize("kind", ["sd3", "flux", "chroma"])
def test_prompt_editing_swaps_the_conditioning_at_its_step(models, kind):
    model = models[kind]
    # cfg 1 with one AND part: one transformer call per step, on the prompt's conditioning only.
    seen = _recorded_text(model, lambda: txt2img(model, params(prompt="[cat:dog:2] house", steps=4, cfg_scale=1.0)))
    # The scheduled texts of one prompt are one encode group, as A1111 encodes them.
    cat, dog = (cond.crossattn for cond in PromptEncoder(model).encode_group(["cat house", "dog house"]))
    assert not torch.allclose(cat, dog)
    assert len(seen) == 4
    for step, crossattn in enumerate(seen):
        expected = cat if step <= 2 else dog  # A1111: "[a:b:2]" is a up to and including step index 2
        assert torch.allclose(crossattn[0].float(), expected.float(), atol=1e-5), step


def test_t5_emphasis_multiplies_token_embeddings_and_nothing_is_cut(models):
    model = models["flux"]
    t5 = model.family.long_text_encoder(model)
    ids, weights = t5.tokens("a (red:1.5) house")
    assert weights == [1.0, 1.5, 1.0, 1.0] and ids[-1] == t5.tokenizer.eos_token_id
    options = EncodeOptions()
    plain, emphasised = t5.encode(["a red house", "a (red:1.5) house"], options)
    assert plain.shape == emphasised.shape and not torch.allclose(plain, emphasised)
    long_prompt = " ".join(["red house"] * 400)  # 800 words: longer than Flux's 512 tokens
    assert t5.encode([long_prompt], options).shape[0 + 1] == 801  # every token and the end token, no truncation
    assert t5.encode(["a house"], options).shape[1] == 512  # short ones are padded as the model was trained


def test_chroma_reads_t5_with_one_masked_pad_and_no_clip(models):
    model = models["chroma"]
    encoder = PromptEncoder(model)
    assert encoder.encoders == [] and isinstance(encoder.long_encoder, T5TextEncoder)
    cond = encoder.encode_group(["a red house"])[0]
    assert cond.pooled is None and cond.tokens == 3 + 1 + 1  # the words, the end token, one masked pad


def test_sd3_conditioning_is_clip_tokens_then_t5_tokens(models):
    model = models["sd3"]
    cond = PromptEncoder(model).encode_group(["a red house"])[0]
    assert cond.tokens == 77 + 256  # one CLIP chunk, then T5 padded to SD3's 256
    assert cond.crossattn.shape[-1] == 32 and cond.pooled.shape == (32,)  # T5's width; CLIP-L + CLIP-G pooled
    assert torch.count_nonzero(cond.crossattn[:77, 32:]) == 0  # no channels beyond T5's width to pad here


def test_flux_takes_distilled_guidance_and_writes_it(models):
    model = models["flux"]
    seen = []
    hook = model.unet.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(kwargs["guidance"].clone()), with_kwargs=True)
    try:
        result = txt2img(model, params(cfg_scale=1.0, distilled_cfg_scale=2.5))
    finally:
        hook.remove()
    assert all(torch.allclose(g.float(), torch.tensor([2.5])) for g in seen)
    parsed = parse_infotext(result.infotexts[0])
    assert parsed["Distilled CFG Scale"] == "2.5"
    assert float(parsed["Shift"]) == pytest.approx(FLUX.shift_for(model, 64, 64), abs=1e-4)
    other = txt2img(model, params(cfg_scale=1.0, distilled_cfg_scale=6.0)).images[0]
    assert not np.array_equal(pixels(result.images[0]), pixels(other))


def test_flux_shift_depends_on_the_image_size(models):
    model = models["flux"]
    assert FLUX.shift_for(model, 1024, 1024) == pytest.approx(np.exp(1.15))  # 4096 tokens: max_shift
    assert FLUX.shift_for(model, 256, 256) == pytest.approx(np.exp(0.5))  # 256 tokens: base_shift
    assert FLUX.shift_for(models["flux-schnell"], 1024, 1024) == 1.0  # schnell: no shift
    schedule = FlowSchedule(3.0)
    sigmas = schedule.get_sigmas(4)
    t = torch.linspace(1, 0.001, 4, dtype=torch.float64)
    assert torch.allclose(sigmas[:-1], (3 * t / (1 + 2 * t)).float(), atol=1e-6) and sigmas[-1] == 0


@pytest.mark.parametrize("kind", ["sd3", "flux"])
def test_inpaint_keeps_unmasked_pixels_and_img2img_starts_from_the_image(models, kind):
    model = models[kind]
    image = Image.fromarray((np.random.RandomState(0).rand(64, 64, 3) * 255).astype(np.uint8))
    mask = Image.new("L", (64, 64))
    mask.paste(255, (24, 24, 40, 40))
    base = dict(prompt="a red house", steps=4, width=64, height=64, seed=3, sampler_name="Euler", save_images=False,
                init_images=[image], cfg_scale=2.0)
    out = pixels(img2img(model, Img2ImgParams(**base, mask=mask, denoising_strength=1.0)).images[0])
    outside = np.asarray(masks.blur_mask(mask, 4, 4)) == 0
    assert np.array_equal(out[outside], pixels(image)[outside])
    assert not np.array_equal(out[28:36, 28:36], pixels(image)[28:36, 28:36])
    # Strength 0 gives the image back through the VAE; a low strength stays nearer to it than a high one.
    low = pixels(img2img(model, Img2ImgParams(**base, denoising_strength=0.2)).images[0])
    high = pixels(img2img(model, Img2ImgParams(**base, denoising_strength=0.95)).images[0])
    roundtrip = pixels(img2img(model, Img2ImgParams(**base, denoising_strength=0.0)).images[0])
    assert np.abs(low - roundtrip).mean() < np.abs(high - roundtrip).mean()


def test_hires_fix_runs_on_a_flow_model(models):
    result = txt2img(models["flux"], params(enable_hr=True, hr_scale=2.0, denoising_strength=0.5))
    assert result.images[0].size == (128, 128)


def test_unet_families_keep_their_own_schedule_and_samplers():
    assert SD1.samplers is None and not SD1.flow and SDXL.zero_empty_negative
    assert set(SD3.samplers) >= {"Euler", "Euler a", "DPM++ 2M"}


def test_missing_text_encoder_or_truncated_weights_say_what_is_wrong(folders, tmp_path):
    no_t5 = shutil.copytree(folders["flux"], tmp_path / "no-t5")
    shutil.rmtree(no_t5 / "text_encoder_2")
    with pytest.raises(CheckpointError, match=r"T5-XXL text encoder is missing.*text_encoder_2/"):
        load_checkpoint(no_t5)
    cut = shutil.copytree(folders["sd3"], tmp_path / "cut")
    weights = cut / "transformer" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="cut: could not be loaded"):
        load_checkpoint(cut)


def test_api_lists_families_and_runs_flux_with_its_defaults(tmp_path, folders):
    import os

    from fastapi import FastAPI

    from tests.live_server import LiveServer
    from webui.api import register_api
    from webui.flags import parse_flags
    from webui.state import SharedState

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    models_dir = tmp_path / "models" / "Stable-diffusion"
    models_dir.mkdir(parents=True)
    for kind in ("flux", "sd3"):
        shutil.copytree(folders[kind], models_dir / kind)
    state = SharedState.create(parse_flags(["--data-dir", str(tmp_path), "--use-cpu", "all", "--precision", "full"]))
    app = FastAPI()
    register_api(app, state)
    live = LiveServer(app)
    try:
        import httpx

        with httpx.Client(base_url=live.url, timeout=120) as http:
            listed = {m["model_name"]: m["family"] for m in http.get("/sdapi/v1/sd-models").json()}
            assert listed == {"flux": "flux", "sd3": "sd3"}
            body = {"prompt": "a red house", "steps": 2, "width": 64, "height": 64,
                    "override_settings": {"sd_model_checkpoint": "flux"}}
            reply = http.post("/sdapi/v1/txt2img", json=body)
            assert reply.status_code == 200, reply.text
            info = json.loads(reply.json()["info"])
            assert info["sampler_name"] == "Euler" and info["cfg_scale"] == 1.0  # the family's defaults
            assert "Distilled CFG Scale: 3.5" in info["infotexts"][0]
            refused = http.post("/sdapi/v1/txt2img", json={**body, "sampler_name": "DDIM"})
            assert refused.status_code == 400 and "does not work with Flux.1" in refused.text
    finally:
        live.stop()
        state.queue.stop()


def test_diffusers_format_lora_reaches_the_flux_transformer_and_is_removed_after(models, tmp_path):
    from safetensors.torch import save_file

    from webui.networks.lora import LoraLibrary

    model = models["flux"]
    g = torch.Generator().manual_seed(0)
    state = {}
    for block in ("transformer_blocks.0.attn.to_q", "single_transformer_blocks.0.attn.to_k"):
        state[f"transformer.{block}.lora_A.weight"] = torch.randn(4, 16, generator=g)
        state[f"transformer.{block}.lora_B.weight"] = torch.randn(16, 4, generator=g)
    save_file(state, str(tmp_path / "style.safetensors"))
    library = LoraLibrary(tmp_path)
    before = {k: v.clone() for k, v in model.unet.state_dict().items()}
    plain = txt2img(model, params(cfg_scale=1.0), networks=library)
    styled = txt2img(model, params(prompt="a (red:1.3) house <lora:style:1>", cfg_scale=1.0), networks=library)
    assert not styled.warnings, styled.warnings
    assert "Lora hashes" in styled.infotexts[0]
    assert not np.array_equal(pixels(plain.images[0]), pixels(styled.images[0]))
    assert all(torch.equal(before[k], v) for k, v in model.unet.state_dict().items())


@pytest.mark.parametrize("all_in_one", [False, True], ids=["transformer-only", "all-in-one"])
def test_flux_single_files_load_with_their_text_encoders_and_vae(tmp_path, all_in_one):
    from tests.tiny_flow_models import write_flux_single_files

    path = write_flux_single_files(tmp_path / "models", all_in_one=all_in_one)
    model = load_checkpoint(path)
    assert model.family is FLUX and FLUX.takes_guidance(model)
    assert [type(e).__name__ for e in model.text_encoders] == ["CLIPTextModel", "T5EncoderModel"]
    first = txt2img(model, params(cfg_scale=1.0)).images[0]
    again = txt2img(model, params(cfg_scale=1.0)).images[0]
    assert first.size == (64, 64) and np.array_equal(pixels(first), pixels(again)) and pixels(first).std() > 0


def test_flux_single_file_without_its_companions_says_what_to_put_where(tmp_path):
    from tests.tiny_flow_models import write_flux_single_files

    root = tmp_path / "models"
    path = write_flux_single_files(root)
    (root / "text_encoder" / "clip_l.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"CLIP-L text encoder \(width 16\) is missing: put clip_l.safetensors "
                                              r"in models/text_encoder/"):
        load_checkpoint(path)
    write_flux_single_files(root)
    shutil.rmtree(root / "text_encoder" / "t5xxl_tokenizer")
    with pytest.raises(CheckpointError, match="T5's tokenizer files are missing: .*models/text_encoder/t5xxl_tokenizer/"):
        load_checkpoint(path)


@pytest.mark.parametrize("all_in_one", [False, True], ids=["with-separate-encoders", "all-in-one"])
def test_sd35_single_files_load_with_their_text_encoders(tmp_path, all_in_one):
    from tests.tiny_flow_models import write_sd3_single_files

    model = load_checkpoint(write_sd3_single_files(tmp_path / "models", all_in_one=all_in_one))
    assert model.family is SD3 and model.unet.config.dual_attention_layers == (0,)
    assert [type(e).__name__ for e in model.text_encoders] == ["CLIPTextModelWithProjection"] * 2 + ["T5EncoderModel"]
    first = txt2img(model, params()).images[0]
    assert np.array_equal(pixels(first), pixels(txt2img(model, params()).images[0])) and pixels(first).std() > 0


def test_zimage_single_file_loads_with_qwen_its_tokenizer_and_the_vae(tmp_path):
    from tests.tiny_flow_models import write_zimage_single_files

    root = tmp_path / "models"
    path = write_zimage_single_files(root)
    model = load_checkpoint(path)
    assert model.family is ZIMAGE and type(model.text_encoders[0]).__name__ == "Qwen3Model"
    first = txt2img(model, params(cfg_scale=2.0)).images[0]
    assert np.array_equal(pixels(first), pixels(txt2img(model, params(cfg_scale=2.0)).images[0]))
    shutil.rmtree(root / "text_encoder" / "qwen3_tokenizer")
    with pytest.raises(CheckpointError, match="Qwen3's tokenizer files are missing: .*models/text_encoder/qwen3_tokenizer/"):
        load_checkpoint(path)


def test_chroma_single_file_loads_with_t5_and_the_vae(tmp_path):
    from tests.tiny_flow_models import write_chroma_single_files

    model = load_checkpoint(write_chroma_single_files(tmp_path / "models"))
    assert model.family is CHROMA and [type(e).__name__ for e in model.text_encoders] == ["T5EncoderModel"]
    first = txt2img(model, params(cfg_scale=3.0)).images[0]
    assert np.array_equal(pixels(first), pixels(txt2img(model, params(cfg_scale=3.0)).images[0]))
    assert pixels(first).std() > 0


def test_zimage_reads_qwen_through_its_chat_template_and_each_text_at_its_own_length(models):
    model = models["zimage"]
    encoder = model.family.long_text_encoder(model)
    ids, weights = encoder.tokens("a (red:1.5) house")
    template_ids = encoder.tokenizer(encoder.before, add_special_tokens=False)["input_ids"]
    assert ids[: len(template_ids)] == template_ids  # the user turn opens the sequence
    assert 1.5 in weights and weights[: len(template_ids)] == [1.0] * len(template_ids)
    seen = []
    hook = model.unet.register_forward_pre_hook(lambda module, args: seen.append([t.shape[0] for t in args[2]]))
    try:
        txt2img(model, params(prompt="a red house with a tree", negative_prompt="blue", cfg_scale=3.0))
    finally:
        hook.remove()
    cond, uncond = (PromptEncoder(model).encode_group([text])[0].tokens for text in ("a red house with a tree", "blue"))
    assert cond != uncond and all(lengths == [cond, uncond] for lengths in seen)  # one CFG batch, no padding


def test_kohya_named_flux_lora_splits_its_fused_layers_onto_diffusers_modules(models, tmp_path):
    from safetensors.torch import save_file

    from webui.networks import activated_loras
    from webui.networks.lora import LoraLibrary
    from prompt_parser import extract_extra_networks

    model = models["flux"]
    g = torch.Generator().manual_seed(1)
    inner = model.unet.config.num_attention_heads * model.unet.config.attention_head_dim
    single_rows = model.unet.single_transformer_blocks[0].attn.to_q.out_features * 3 \
        + model.unet.single_transformer_blocks[0].proj_mlp.out_features
    state = {}
    for name, rows in (("double_blocks_0_img_attn_qkv", 3 * inner), ("single_blocks_0_linear1", single_rows)):
        state[f"lora_unet_{name}.lora_down.weight"] = torch.randn(2, inner, generator=g)
        state[f"lora_unet_{name}.lora_up.weight"] = torch.randn(rows, 2, generator=g)
        state[f"lora_unet_{name}.alpha"] = torch.tensor(2.0)
    save_file(state, str(tmp_path / "kohya.safetensors"))
    block = model.unet.transformer_blocks[0].attn
    before = [m.weight.clone() for m in (block.to_q, block.to_k, block.to_v)]
    single = model.unet.single_transformer_blocks[0]
    mlp_before = single.proj_mlp.weight.clone()
    tags = extract_extra_networks("x <lora:kohya:0.5>")[1]
    with activated_loras(model, tags, LoraLibrary(tmp_path)) as active:
        assert not active.warnings, active.warnings
        full = state["lora_unet_double_blocks_0_img_attn_qkv.lora_up.weight"] @ \
            state["lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight"] * 0.5  # alpha / rank = 1
        for module, old, expected in zip((block.to_q, block.to_k, block.to_v), before, full.split(inner)):
            assert torch.allclose(module.weight - old, expected, atol=1e-5)
        single_full = state["lora_unet_single_blocks_0_linear1.lora_up.weight"] @ \
            state["lora_unet_single_blocks_0_linear1.lora_down.weight"] * 0.5
        assert torch.allclose(single.proj_mlp.weight - mlp_before, single_full[3 * inner:], atol=1e-5)  # q, k, v, mlp
    assert all(torch.equal(m.weight, old) for m, old in zip((block.to_q, block.to_k, block.to_v), before))


def test_choosing_a_checkpoint_of_another_family_switches_the_tabs_defaults(tmp_path, folders):
    from tests.checkpoint_files import write_diffusers_folder
    from tests.tiny_models import make_tiny_model
    from webui.flags import parse_flags
    from webui.state import SharedState
    from webui.ui.common import family_switch

    models_dir = tmp_path / "models" / "Stable-diffusion"
    models_dir.mkdir(parents=True)
    shutil.copytree(folders["flux"], models_dir / "flux")
    shutil.copytree(folders["zimage"], models_dir / "zimage")
    write_diffusers_folder(make_tiny_model("sd1"), models_dir / "tiny-sd1")
    state = SharedState.create(parse_flags(["--data-dir", str(tmp_path), "--use-cpu", "all"]))
    values, shown = family_switch(state, "flux", "sd1")
    assert shown == "flux" and values == {"width": 1024, "height": 1024, "steps": 20, "cfg_scale": 1.0,
                                          "sampler_name": "Euler", "distilled_cfg_scale": 3.5}
    assert family_switch(state, "flux", "flux") == ({}, "flux")  # same family: the user's values stay
    values, shown = family_switch(state, "zimage", "flux")
    assert shown == "zimage" and values["steps"] == 8 and values["cfg_scale"] == 1.0
    values, shown = family_switch(state, "tiny-sd1", "zimage")
    assert shown == "sd1" and values["cfg_scale"] == 7.0 and values["sampler_name"] == "DPM++ 2M"
    assert state.models.slot.model is None


def test_a_diffusers_folder_with_a_grown_vocabulary_uses_its_own_tokenizer(tmp_path):
    """diffusers' textual-inversion training saves a folder whose tokenizer and text encoder have an extra token;
    with the bundled tokenizer every job failed (IndexError), and the token would not be found."""
    from tests.checkpoint_files import write_diffusers_folder
    from tests.tiny_models import make_tiny_model

    model = make_tiny_model("sd1")
    tokenizer, encoder = model.tokenizers[0], model.text_encoders[0]
    tokenizer.add_tokens(["<my-cat>"])
    encoder.resize_token_embeddings(len(tokenizer))
    folder = write_diffusers_folder(model, tmp_path / "ti-trained")
    loaded = load_checkpoint(folder)
    new_id = loaded.tokenizers[0].convert_tokens_to_ids("<my-cat>")
    assert new_id == 49408 and loaded.text_encoders[0].get_input_embeddings().weight.shape[0] == 49409
    result = txt2img(loaded, Txt2ImgParams(prompt="a photo of <my-cat>", steps=2, width=64, height=64,
                                           sampler_name="Euler", save_images=False))
    assert result.images[0].size == (64, 64)


@pytest.mark.parametrize("kind", ["sd3", "flux", "zimage"])
def test_and_parts_and_alternation_run_on_flow_families(models, kind):
    model = models[kind]
    plain = pixels(txt2img(model, params(prompt="a red house")).images[0])
    both = pixels(txt2img(model, params(prompt="a red house AND a blue tree :0.8")).images[0])
    alternating = pixels(txt2img(model, params(prompt="a [red|blue] house")).images[0])
    assert not np.array_equal(plain, both) and not np.array_equal(plain, alternating)


def test_flux_fill_gets_the_masked_image_and_the_mask_and_keeps_the_rest(models):
    model = models["flux-fill"]
    assert model.is_inpainting and not models["flux"].is_inpainting
    image = Image.fromarray((np.random.RandomState(1).rand(64, 64, 3) * 255).astype(np.uint8))
    mask = Image.new("L", (64, 64))
    mask.paste(255, (16, 16, 48, 48))
    seen = []
    hook = model.unet.register_forward_pre_hook(lambda m, a, kw: seen.append(kw["hidden_states"].shape), with_kwargs=True)
    try:
        out = img2img(model, Img2ImgParams(prompt="a red house", steps=3, width=64, height=64, seed=2, init_images=[image],
                                           mask=mask, denoising_strength=1.0, sampler_name="Euler",
                                           save_images=False)).images[0]
    finally:
        hook.remove()
    assert seen and all(shape[-1] == 64 + 64 + 256 for shape in seen)  # latents, masked image, 8x8 mask blocks
    outside = np.asarray(masks.blur_mask(mask, 4, 4)) == 0
    assert np.array_equal(pixels(out)[outside], pixels(image)[outside])
    blocks = FLUX.inpaint_conditioning(model, torch.zeros(1, 16, 8, 8), torch.nn.functional.pad(torch.ones(1, 1, 8, 8), (0, 56, 0, 56)))
    assert blocks.shape == (1, 80, 8, 8) and blocks[0, 16:, 0, 0].sum() == 64 and blocks[0, 16:, 1:, :].sum() == 0


@pytest.mark.parametrize("kind, original", [("sd3", "joint_blocks_0_x_block_attn_qkv"),
                                             ("chroma", "double_blocks_0_img_attn_qkv")])
def test_kohya_named_loras_of_sd3_and_chroma_reach_the_split_attention(models, tmp_path, kind, original):
    from safetensors.torch import save_file

    from prompt_parser import extract_extra_networks
    from webui.networks import activated_loras
    from webui.networks.lora import LoraLibrary

    model = models[kind]
    attn = model.unet.transformer_blocks[0].attn
    width = attn.to_q.in_features
    g = torch.Generator().manual_seed(2)
    down, up = torch.randn(2, width, generator=g), torch.randn(3 * attn.to_q.out_features, 2, generator=g)
    save_file({f"lora_unet_{original}.lora_down.weight": down, f"lora_unet_{original}.lora_up.weight": up,
               f"lora_unet_{original}.alpha": torch.tensor(2.0)}, str(tmp_path / "k.safetensors"))
    before = attn.to_k.weight.clone()
    with activated_loras(model, extract_extra_networks("x <lora:k:1>")[1], LoraLibrary(tmp_path)) as active:
        assert not active.warnings, active.warnings
        expected = (up @ down).split(attn.to_q.out_features)[1]  # k is the middle third of the fused qkv
        assert torch.allclose(attn.to_k.weight - before, expected, atol=1e-5)
    assert torch.equal(attn.to_k.weight, before)
