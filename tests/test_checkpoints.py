"""Checkpoints: bundled configs and tokenizer, discovery, hashes, detection, offline loading, unloading."""

from __future__ import annotations

import gc
import hashlib
import json
import os
import random
import socket
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from accelerate import init_empty_weights
from diffusers import AutoencoderKL, DDPMScheduler, DiffusionPipeline, UNet2DConditionModel
from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint
from safetensors.torch import save_file
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

from tests.checkpoint_files import ldm_state_dict, write_ckpt, write_config_dir, write_diffusers_folder, write_safetensors
from tests.tiny_models import make_tiny_model
from webui.models import hashes, loading
from webui.families.sd_detection import (
    CONFIGS_DIR,
    UnsupportedCheckpoint,
    detect,
    probe_prediction_type,
)
from webui.models.discovery import find_checkpoint, list_checkpoints, with_hash
from webui.models.loading import ModelSlot, load_checkpoint, unload
from webui.models.weights import CheckpointError
from webui.families import FAMILIES, scaled_linear_alphas_cumprod


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """No network at all: HF_HUB_OFFLINE as users set it, and any socket connection fails the test."""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


# One tiny model per variant for the whole module: building them is the slow part.
VARIANTS = {
    "sd1": dict(family="sd1"),
    "sd1-inpainting": dict(family="sd1", inpainting=True),
    "sd2": dict(family="sd2"),
    "sd2-inpainting": dict(family="sd2", inpainting=True),
    "sdxl": dict(family="sdxl"),
    "sdxl-inpainting": dict(family="sdxl", inpainting=True),
}


@pytest.fixture(scope="module")
def tiny():
    return {name: make_tiny_model(**options) for name, options in VARIANTS.items()}


@pytest.fixture(scope="module")
def files(tiny, tmp_path_factory):
    """For each variant: its tiny config folder and the model in all three layouts."""
    root = tmp_path_factory.mktemp("checkpoints")
    out = {}
    for name, model in tiny.items():
        out[name] = SimpleNamespace(
            config=write_config_dir(model, root / f"{name}-config"),
            safetensors=write_safetensors(model, root / f"{name}.safetensors"),
            ckpt=write_ckpt(model, root / f"{name}.ckpt", extra={"global_step": 1000}),
            diffusers=write_diffusers_folder(model, root / f"{name}-diffusers"),
        )
    return out


def assert_same_weights(expected: torch.nn.Module, actual: torch.nn.Module):
    want, got = expected.state_dict(), actual.state_dict()
    assert want.keys() == got.keys()
    for key in want:
        assert got[key].dtype == want[key].dtype, key
        assert torch.equal(got[key], want[key]), key


def assert_same_model(expected, actual):
    assert actual.family is expected.family
    assert_same_weights(expected.unet, actual.unet)
    assert_same_weights(expected.vae, actual.vae)
    assert len(actual.text_encoders) == len(expected.text_encoders)
    for want, got in zip(expected.text_encoders, actual.text_encoders):
        assert type(got) is type(want)
        assert_same_weights(want, got)


# ---- bundled tokenizer and configs ------------------------------------------------------------------------

def test_bundled_tokenizer_gives_clip_ids():
    tokenizer = CLIPTokenizer.from_pretrained(loading.TOKENIZER_DIR, local_files_only=True)
    assert tokenizer("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]


@pytest.mark.parametrize("family, pads", [("sd1", ["<|endoftext|>"]), ("sd2", ["!"]), ("sdxl", ["<|endoftext|>", "!"])])
def test_loader_tokenizers_pad_like_each_family(family, pads):
    tokenizers = FAMILIES[family].tokenizers(None)
    assert [t.pad_token for t in tokenizers] == pads
    assert all(t.model_max_length == 77 for t in tokenizers)


CONFIG_FACTS = {
    # name: (pipeline, cross_attention_dim, in_channels, prediction_type, text widths, unet sample size)
    "sd1": ("StableDiffusionPipeline", 768, 4, "epsilon", [768], 64),
    "sd1-inpainting": ("StableDiffusionInpaintPipeline", 768, 9, "epsilon", [768], 64),
    "sd2": ("StableDiffusionPipeline", 1024, 4, "epsilon", [1024], 64),
    "sd2-v": ("StableDiffusionPipeline", 1024, 4, "v_prediction", [1024], 96),
    "sd2-inpainting": ("StableDiffusionInpaintPipeline", 1024, 9, "epsilon", [1024], 64),
    "sdxl": ("StableDiffusionXLPipeline", 2048, 4, "epsilon", [768, 1280], 128),
    "sdxl-inpainting": ("StableDiffusionXLInpaintPipeline", 2048, 9, "epsilon", [768, 1280], 128),
}


def test_every_bundled_config_dir_is_checked():
    assert sorted(p.name for p in CONFIGS_DIR.iterdir() if p.is_dir()) == sorted(CONFIG_FACTS)


@pytest.mark.parametrize("name", sorted(CONFIG_FACTS))
def test_bundled_config_dir_facts(name):
    pipeline, context, in_channels, prediction, widths, sample_size = CONFIG_FACTS[name]
    folder = CONFIGS_DIR / name
    assert DiffusionPipeline.load_config(folder)["_class_name"] == pipeline
    unet = UNet2DConditionModel.load_config(folder / "unet")
    assert (unet["cross_attention_dim"], unet["in_channels"], unet["sample_size"]) == (context, in_channels, sample_size)
    assert AutoencoderKL.load_config(folder / "vae")["scaling_factor"] == (0.13025 if name.startswith("sdxl") else 0.18215)
    scheduler = DDPMScheduler.load_config(folder, subfolder="scheduler")
    assert scheduler["prediction_type"] == prediction
    assert (scheduler["beta_schedule"], scheduler["beta_start"], scheduler["beta_end"]) == ("scaled_linear", 0.00085, 0.012)
    encoders = ["text_encoder", "text_encoder_2"][: len(widths)]
    assert [CLIPTextConfig.from_pretrained(folder / e, local_files_only=True).hidden_size for e in encoders] == widths
    if name.startswith("sdxl"):
        assert unet["projection_class_embeddings_input_dim"] == 2816  # 6 time ids * 256 + bigG's 1280 pooled
        assert CLIPTextConfig.from_pretrained(folder / "text_encoder_2").projection_dim == 1280


@pytest.mark.parametrize("name", sorted(CONFIG_FACTS))
def test_full_size_layout_round_trips_through_detection_and_diffusers(name):
    """Full-size shapes (on the meta device, no memory): our LDM writer, detection and diffusers agree."""
    folder = CONFIGS_DIR / name
    with init_empty_weights():
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(folder / "unet"))
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(folder / "vae"))
        encoders = [CLIPTextModel(CLIPTextConfig.from_pretrained(folder / "text_encoder"))]
        if (folder / "text_encoder_2").is_dir():
            encoders.append(CLIPTextModelWithProjection(CLIPTextConfig.from_pretrained(folder / "text_encoder_2")))
    family = FAMILIES[name.split("-")[0]]
    state_dict = ldm_state_dict(SimpleNamespace(family=family, unet=unet, vae=vae, text_encoders=encoders))
    detection = detect(state_dict)
    assert detection.family is family and detection.inpainting == name.endswith("inpainting")
    assert detection.config_dir.name == ("sd2" if name == "sd2-v" else name)  # the probe picks sd2-v later
    assert detection.needs_probe == (name in ("sd2", "sd2-v"))
    assert sum(k.startswith("model.diffusion_model.") for k in state_dict) == {"sd1": 686, "sd2": 686, "sdxl": 1680}[family.name]
    assert convert_ldm_unet_checkpoint(state_dict, unet.config).keys() == unet.state_dict().keys()
    assert convert_ldm_vae_checkpoint(state_dict, vae.config).keys() == vae.state_dict().keys()


# ---- hashes ------------------------------------------------------------------------------------------------

def test_sha256_matches_hashlib_and_short_form(tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes(os.urandom(3 * (1 << 20) + 17))  # several read chunks and a partial one
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert hashes.sha256_file(path) == hashes.sha256(path) == digest
    assert hashes.short_hash(digest) == digest[:10]


def test_hash_cache_reads_each_file_once_and_notices_changes(tmp_path, monkeypatch):
    path, cache = tmp_path / "model.ckpt", tmp_path / "data" / "cache.json"
    path.write_bytes(b"first version")
    cache.parent.mkdir()
    cache.write_text(json.dumps({"other-section": {"keep": "me"}}))
    reads = []
    real = hashes.sha256_file
    monkeypatch.setattr(hashes, "sha256_file", lambda p: reads.append(p) or real(p))

    first = hashes.sha256(path, cache)
    assert hashes.sha256(path, cache) == first and len(reads) == 1
    assert hashes.cached_sha256(path, cache) == first
    stored = json.loads(cache.read_text())
    assert stored["other-section"] == {"keep": "me"}
    assert stored[hashes.SECTION][str(path.resolve())]["sha256"] == first

    path.write_bytes(b"second version, longer")  # size and mtime change
    assert hashes.cached_sha256(path, cache) is None
    assert hashes.sha256(path, cache) == hashlib.sha256(b"second version, longer").hexdigest()
    assert len(reads) == 2


def test_damaged_hash_cache_is_rebuilt(tmp_path):
    path, cache = tmp_path / "model.ckpt", tmp_path / "cache.json"
    path.write_bytes(b"weights")
    cache.write_text("{not json")
    assert hashes.sha256(path, cache) == hashlib.sha256(b"weights").hexdigest()
    assert hashes.cached_sha256(path, cache) == hashlib.sha256(b"weights").hexdigest()


def test_a_diffusers_folder_hash_follows_its_weights_not_its_place_or_notes(tmp_path):
    def folder(root: Path, unet: bytes) -> Path:
        for relative, content in (("model_index.json", b"{}"), ("unet/diffusion_pytorch_model.safetensors", unet),
                                  ("vae/config.json", b"{}"), ("webui.json", b'{"demo": true}'), ("README.md", b"card")):
            (root / relative).parent.mkdir(parents=True, exist_ok=True)
            (root / relative).write_bytes(content)
        return root

    cache = tmp_path / "cache.json"
    first = folder(tmp_path / "a", b"weights")
    digest = hashes.sha256(first, cache)
    assert len(digest) == 64 and hashes.cached_sha256(first, cache) == digest
    assert hashes.sha256(folder(tmp_path / "copy", b"weights")) == digest  # moved or copied: the same
    (first / "webui.json").write_text('{"defaults": {"steps": 9}}')  # our metadata and notes do not count
    (first / "README.md").write_text("another card")
    assert hashes.sha256(first, cache) == digest
    (first / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"retrained")
    assert hashes.cached_sha256(first, cache) is None
    assert hashes.sha256(first, cache) != digest
    info = list_checkpoints(tmp_path / "none", ckpt_dir=tmp_path, cache_path=cache)[0]
    assert info.kind == "diffusers" and info.title == f"{info.name} [{hashes.sha256(info.path, cache)[:10]}]"


# ---- discovery ---------------------------------------------------------------------------------------------

def make_tree(root: Path) -> dict[str, Path]:
    def touch(relative: str, content: bytes = b"x") -> Path:
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        return path

    models, extra = root / "models" / "Stable-diffusion", root / "extra"
    paths = {
        "top": touch("models/Stable-diffusion/Top Model.safetensors", b"top"),
        "nested": touch("models/Stable-diffusion/anime/v2/deep.ckpt", b"deep"),
        "pt": touch("models/Stable-diffusion/old.pt", b"old"),
        "extra": touch("extra/sub/elsewhere.safetensors", b"elsewhere"),
        "single": touch("loose/single.safetensors", b"single"),
    }
    touch("models/Stable-diffusion/Top Model.vae.safetensors")  # a VAE kept beside its checkpoint
    touch("models/Stable-diffusion/notes.txt")
    touch("models/Stable-diffusion/Put Stable Diffusion checkpoints here.txt")
    folder = models / "diffusers" / "my-pipeline"
    touch("models/Stable-diffusion/diffusers/my-pipeline/model_index.json", b"{}")
    touch("models/Stable-diffusion/diffusers/my-pipeline/unet/diffusion_pytorch_model.safetensors")
    paths.update(diffusers=folder, models=models, extra_dir=extra)
    return paths


def test_list_checkpoints_names_kinds_and_order(tmp_path):
    tree = make_tree(tmp_path)
    found = list_checkpoints(tree["models"], ckpt_dir=tree["extra_dir"], ckpt=tree["single"])
    assert [(c.name, c.kind) for c in found] == [
        ("single", "safetensors"),  # --ckpt first
        ("anime/v2/deep", "ckpt"),
        ("diffusers/my-pipeline", "diffusers"),  # the folder, not the weight files inside it
        ("old", "ckpt"),
        ("sub/elsewhere", "safetensors"),  # from --ckpt-dir, relative to it
        ("Top Model", "safetensors"),
    ]
    assert all(c.path.is_absolute() for c in found)
    assert found[0].path == tree["single"].absolute()
    assert [c.title for c in found] == [c.name for c in found]  # nothing hashed yet


def test_ckpt_inside_the_models_folder_is_listed_once_with_its_relative_name(tmp_path):
    tree = make_tree(tmp_path)
    found = list_checkpoints(tree["models"], ckpt=tree["nested"])
    assert found[0].name == "anime/v2/deep"
    assert [c.name for c in found].count("anime/v2/deep") == 1


def test_missing_folders_give_an_empty_list(tmp_path):
    assert list_checkpoints(tmp_path / "nope", ckpt_dir=tmp_path / "nope2", ckpt=tmp_path / "none.ckpt") == []


def test_titles_carry_the_short_hash_once_known(tmp_path):
    tree = make_tree(tmp_path)
    cache = tmp_path / "cache.json"
    info = next(c for c in list_checkpoints(tree["models"], cache_path=cache) if c.name == "Top Model")
    assert info.sha256 is None and info.title == "Top Model"
    hashed = with_hash(info, cache)
    digest = hashlib.sha256(b"top").hexdigest()
    assert hashed.sha256 == digest and hashed.title == f"Top Model [{digest[:10]}]"
    relisted = next(c for c in list_checkpoints(tree["models"], cache_path=cache) if c.name == "Top Model")
    assert relisted.title == hashed.title  # known from the cache without reading the file again


def test_find_checkpoint_by_every_a1111_name(tmp_path):
    tree = make_tree(tmp_path)
    checkpoints = [with_hash(c, tmp_path / "cache.json") for c in list_checkpoints(tree["models"])]
    deep = next(c for c in checkpoints if c.name == "anime/v2/deep")
    short = deep.short_hash
    for query in ["anime/v2/deep", "anime/v2/deep.ckpt", "anime\\v2\\deep.ckpt", "deep.ckpt", "deep",
                  "anime_v2_deep", short, deep.sha256, deep.title, f"anime/v2/deep.ckpt [{short}]", f"deep [{short}]",
                  "ANIME/V2/DEEP", f"renamed-since [{short}]", "anime/v2/deep [0123456789]", "v2/de"]:
        assert find_checkpoint(query, checkpoints) == deep, query
    assert find_checkpoint("Top", checkpoints).name == "Top Model"
    for missing in ["no such model", ""]:
        with pytest.raises(LookupError, match="no checkpoint matches"):
            find_checkpoint(missing, checkpoints)


def test_find_checkpoint_lists_the_folders_itself_and_takes_paths(tmp_path, monkeypatch):
    tree = make_tree(tmp_path)
    folders = dict(models_dir=tree["models"], ckpt_dir=tree["extra_dir"])
    assert find_checkpoint("elsewhere", **folders).path == tree["extra"].absolute()
    assert find_checkpoint(None, **folders).name == "anime/v2/deep"  # no choice: the first, as A1111
    assert find_checkpoint(str(tree["nested"]), **folders).name == "anime/v2/deep"
    outside = find_checkpoint(tree["single"], **folders)  # a path outside the folders: named by its file
    assert (outside.name, outside.path) == ("single", tree["single"].absolute())
    monkeypatch.chdir(tmp_path)
    assert find_checkpoint("loose/single.safetensors", **folders).path == tree["single"].absolute()
    with pytest.raises(LookupError, match="no checkpoints found"):
        find_checkpoint(None, models_dir=tmp_path / "empty")


# ---- detection ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_detect_tiny_state_dicts(name, tiny):
    detection = detect(ldm_state_dict(tiny[name]))
    assert detection.family.name == VARIANTS[name]["family"]
    assert detection.inpainting == name.endswith("inpainting")
    assert detection.config_dir == CONFIGS_DIR / name
    assert detection.prediction_type == "epsilon"
    assert detection.needs_probe == (name == "sd2")


def test_v_pred_marker_key_means_v_prediction(tiny):
    state_dict = {**ldm_state_dict(tiny["sdxl"]), "v_pred": torch.tensor([])}
    detection = detect(state_dict)
    assert detection.prediction_type == "v_prediction" and not detection.needs_probe


def without(state_dict: dict, prefix: str) -> dict:
    return {k: v for k, v in state_dict.items() if not k.startswith(prefix)}


def test_unsupported_layouts_are_named(tiny):
    sdxl = ldm_state_dict(tiny["sdxl"])
    refiner = {k.replace("conditioner.embedders.1.", "conditioner.embedders.0."): v
               for k, v in without(sdxl, "conditioner.embedders.0.").items()}
    sd1 = ldm_state_dict(tiny["sd1"])
    lora = {"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": torch.zeros(4, 4)}
    vae_only = {k.removeprefix("first_stage_model."): v for k, v in sd1.items() if k.startswith("first_stage_model.")}
    eight_channels = {**sd1, "model.diffusion_model.input_blocks.0.0.weight": torch.zeros(32, 8, 3, 3)}
    wider_text = {**sd1, "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight": torch.zeros(10, 48)}
    cases = [
        (refiner, "refiner"), (lora, "LoRA"), (vae_only, "VAE"), (eight_channels, "8 input channels"),
        (wider_text, "48"), (without(sd1, "first_stage_model."), "no VAE"),
        (without(sd1, "cond_stage_model."), "no text encoder"), ({"foo": torch.zeros(1)}, "unrecognised"),
    ]
    for state_dict, words in cases:
        with pytest.raises(UnsupportedCheckpoint, match=words):
            detect(state_dict)


class IdealDenoiser(torch.nn.Module):
    """The exact optimum for data x0 ~ N(mean, std^2), answering as an epsilon or a v model would."""

    def __init__(self, mean: torch.Tensor, std: float, prediction_type: str):
        super().__init__()
        self.mean, self.std, self.prediction_type = mean, std, prediction_type
        self.alphas_cumprod = scaled_linear_alphas_cumprod()

    def forward(self, sample, timestep, encoder_hidden_states):
        alpha_bar = self.alphas_cumprod[int(timestep)].double()
        a, s = alpha_bar.sqrt(), (1 - alpha_bar).sqrt()
        x = sample.double()
        x0 = self.mean + a * self.std**2 / (a**2 * self.std**2 + s**2) * (x - a * self.mean)
        eps = (x - a * x0) / s
        out = eps if self.prediction_type == "epsilon" else a * eps - s * x0
        return SimpleNamespace(sample=out.float())


@pytest.mark.parametrize("std", [0.3, 1.0, 1.5])
@pytest.mark.parametrize("mean_scale", [0.0, 0.5, 1.5])
@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_probe_tells_ideal_epsilon_and_v_models_apart(prediction_type, mean_scale, std):
    grid = torch.linspace(0, 3.14, 16)
    mean = mean_scale * torch.sin(grid)[None, None, :, None] * torch.cos(grid)[None, None, None, :] * torch.ones(1, 4, 1, 1)
    unet = IdealDenoiser(mean.double(), std, prediction_type)
    assert probe_prediction_type(unet, torch.zeros(1, 77, 8)) == prediction_type


def test_probe_runs_a_real_unet_and_reads_an_input_blind_one_as_v():
    unet = make_tiny_model("sd2", seed=3).unet
    with torch.no_grad():
        unet.conv_out.weight.zero_()
        unet.conv_out.bias.fill_(0.1)  # answers the same whatever the noise: that is no epsilon model
    assert probe_prediction_type(unet, torch.randn(1, 77, 32)) == "v_prediction"
    unet.conv_out.bias.fill_(float("nan"))
    with pytest.raises(ValueError, match="non-finite"):
        probe_prediction_type(unet, torch.randn(1, 77, 32))


# ---- loading -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, layout", [*((name, "safetensors") for name in sorted(VARIANTS)),
                                          ("sd1", "ckpt"), ("sd2", "ckpt"), ("sdxl", "ckpt")])
def test_single_file_loads_offline_with_identical_weights(name, layout, tiny, files, tmp_path):
    path = getattr(files[name], layout)
    model = load_checkpoint(path, "cpu", torch.float32, config_dir=files[name].config, cache_path=tmp_path / "cache.json")
    assert_same_model(tiny[name], model)
    assert model.is_inpainting == name.endswith("inpainting")
    assert model.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert (model.name, model.path) == (name, path.absolute())
    assert model.default_size == 64  # tiny: UNet sample size 8 x VAE factor 8
    assert torch.equal(model.alphas_cumprod, scaled_linear_alphas_cumprod())
    assert [t.pad_token for t in model.tokenizers] == [t.pad_token for t in tiny[name].tokenizers]
    assert all(not p.requires_grad for p in model.unet.parameters())
    if name != "sd2":  # plain SD2's prediction type comes from the probe (see below)
        assert model.prediction_type == "epsilon"


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_diffusers_folder_loads_offline_with_identical_weights(name, tiny, files):
    model = load_checkpoint(files[name].diffusers)
    assert_same_model(tiny[name], model)
    assert model.sha256 == hashes.sha256(files[name].diffusers) and model.name == f"{name}-diffusers"
    assert model.prediction_type == "epsilon" and model.default_size == 64


def test_checkpoint_info_from_discovery_loads(files, tmp_path):
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "mine.safetensors").write_bytes(files["sd1"].safetensors.read_bytes())
    [info] = list_checkpoints(folder)
    model = load_checkpoint(info, config_dir=files["sd1"].config)
    assert model.name == "mine" and model.sha256 == hashlib.sha256(info.path.read_bytes()).hexdigest()


def test_sd2_prediction_type_follows_the_probe(files, monkeypatch):
    seen = []
    for answer in ["v_prediction", "epsilon"]:
        monkeypatch.setattr(loading, "probe_prediction_type", lambda unet, context, answer=answer: seen.append(context.shape) or answer)
        model = load_checkpoint(files["sd2"].safetensors, config_dir=files["sd2"].config)
        assert model.prediction_type == answer
    assert seen == [torch.Size([1, 77, 32])] * 2  # ran once per load, on the empty prompt's encoding


def test_sd2_v_model_through_the_real_probe(files, tmp_path):
    """A UNet that ignores its input cannot be an epsilon model: the real probe marks it v."""
    model = make_tiny_model("sd2")
    with torch.no_grad():
        model.unet.conv_out.weight.zero_()
    path = write_safetensors(model, tmp_path / "v-model.safetensors")
    assert load_checkpoint(path, config_dir=files["sd2"].config).prediction_type == "v_prediction"


def test_sd2_v_folder_scheduler_sets_prediction_type(tmp_path):
    model = make_tiny_model("sd2", v_prediction=True)
    folder = write_diffusers_folder(model, tmp_path / "sd2-v")
    assert load_checkpoint(folder).prediction_type == "v_prediction"


@pytest.mark.parametrize("layout", ["safetensors", "diffusers"])
def test_half_precision_with_a_full_precision_vae(layout, files, tiny):
    model = load_checkpoint(getattr(files["sdxl"], layout), dtype=torch.float16, vae_dtype=torch.float32,
                            config_dir=files["sdxl"].config)
    assert {p.dtype for m in (model.unet, *model.text_encoders) for p in m.parameters()} == {torch.float16}
    assert {p.dtype for p in model.vae.parameters()} == {torch.float32} and model.vae.dtype == torch.float32
    assert model.dtype == torch.float16
    assert torch.equal(model.unet.conv_in.weight, tiny["sdxl"].unet.conv_in.weight.half())
    assert_same_weights(tiny["sdxl"].vae, model.vae)


# ---- refusing and reporting bad files ----------------------------------------------------------------------

SIDE_EFFECTS = []


def _run_on_unpickle(message):
    SIDE_EFFECTS.append(message)
    return message


class Payload:
    """Unpickling this runs code (`_run_on_unpickle`), as a malicious .ckpt would."""

    def __reduce__(self):
        return _run_on_unpickle, ("code from the checkpoint ran",)


def test_pickle_that_needs_code_is_refused_without_running_it(tiny, tmp_path):
    path = write_ckpt(tiny["sd1"], tmp_path / "sneaky.ckpt", extra={"callback": Payload()})
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(path)
    message = str(error.value)
    assert "sneaky.ckpt" in message and "safetensors" in message and "_run_on_unpickle" in message
    assert SIDE_EFFECTS == []


def test_numpy_scalars_in_old_training_checkpoints_are_allowed(tiny, files, tmp_path):
    import numpy

    path = write_ckpt(tiny["sd1"], tmp_path / "trained.ckpt", extra={"global_step": numpy.int64(470000), "epoch": numpy.float64(6)})
    assert_same_model(tiny["sd1"], load_checkpoint(path, config_dir=files["sd1"].config))
    # Files pickled under numpy 1 name the scalar type numpy.core.*; numpy 2 moved it to numpy._core.
    old = tmp_path / "numpy1.ckpt"
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(old, "w") as target:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename.endswith("data.pkl"):
                assert b"numpy._core.multiarray" in data
                data = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
            target.writestr(item, data)
    assert_same_model(tiny["sd1"], load_checkpoint(old, config_dir=files["sd1"].config))


def corrupt_files(source: Path, folder: Path) -> list[Path]:
    data = source.read_bytes()
    header = int.from_bytes(data[:8], "little")
    cases = {
        "truncated.safetensors": data[: len(data) // 2],
        "header-cut.safetensors": data[: 8 + header // 2],
        "bad-header.safetensors": data[:8] + b"{" * header + data[8 + header:],
        "random.safetensors": random.Random(0).randbytes(4096),
        "random.ckpt": random.Random(1).randbytes(4096),
        "random-pickle.ckpt": b"\x80\x04" + random.Random(2).randbytes(4096),
        "empty.ckpt": b"",
        "pickle.pt": b"\x80\x02}q\x00.",  # a bare pickle of {} : not a torch checkpoint
    }
    paths = []
    for name, content in cases.items():
        (folder / name).write_bytes(content)
        paths.append(folder / name)
    return paths


def test_corrupt_files_give_a_clear_error_naming_the_file(files, tmp_path):
    ckpt = files["sd1"].ckpt.read_bytes()
    (tmp_path / "truncated.ckpt").write_bytes(ckpt[: len(ckpt) // 2])
    for path in [*corrupt_files(files["sd1"].safetensors, tmp_path), tmp_path / "truncated.ckpt"]:
        with pytest.raises(CheckpointError) as error:
            load_checkpoint(path, config_dir=files["sd1"].config)
        assert str(error.value).startswith(path.name), str(error.value)
        shown_context = error.value.__context__ is not None and not error.value.__suppress_context__
        assert error.value.__cause__ is None and not shown_context  # no deep traceback attached


def test_wrong_or_missing_keys_give_a_clear_error(tiny, files, tmp_path):
    sd1 = ldm_state_dict(tiny["sd1"])
    missing = dict(sd1)
    del missing["model.diffusion_model.out.2.weight"]
    wrong_shape = {**sd1, "model.diffusion_model.out.2.weight": torch.zeros(4, 32, 1, 1)}
    no_encoder_layer = without(sd1, "cond_stage_model.transformer.text_model.encoder.layers.2.")
    cases = {
        "not-sd.safetensors": ({"model.weight": torch.zeros(3)}, "not a Stable Diffusion checkpoint"),
        "missing.safetensors": (missing, "UNET weights missing: conv_out.weight"),
        "wrong-shape.safetensors": (wrong_shape, "do not fit the SD 1.x layout"),
        "short-encoder.safetensors": (no_encoder_layer, "text encoder"),
    }
    for filename, (state_dict, words) in cases.items():
        save_file(state_dict, str(tmp_path / filename))
        with pytest.raises(CheckpointError, match=words) as error:
            load_checkpoint(tmp_path / filename, config_dir=files["sd1"].config)
        assert str(error.value).startswith(filename)


def test_not_a_checkpoint_at_all(tmp_path):
    (tmp_path / "notes.txt").write_text("hi")
    (tmp_path / "folder").mkdir()
    for path in [tmp_path / "notes.txt", tmp_path / "folder", tmp_path / "missing.safetensors"]:
        with pytest.raises(CheckpointError, match=path.name):
            load_checkpoint(path)


def test_unsupported_or_broken_diffusers_folders(tiny, tmp_path):
    def folder(name: str, index: dict | None = None, drop: str | None = None) -> Path:
        path = write_diffusers_folder(tiny["sdxl"], tmp_path / name)
        if index is not None:
            (path / "model_index.json").write_text(json.dumps(index))
        if drop:
            (path / drop).unlink()
        return path

    refiner = {"_class_name": "StableDiffusionXLImg2ImgPipeline", "text_encoder": [None, None],
               "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"]}
    cases = [
        (folder("refiner", refiner), "refiner"),
        (folder("hunyuan", {"_class_name": "HunyuanDiTPipeline"}), "HunyuanDiTPipeline is not a pipeline this WebUI loads"),
        (folder("flux", {"_class_name": "FluxPipeline"}), "flux: transformer/ is missing"),
        (folder("no-unet-config", drop="unet/config.json"), "unet/config.json is missing"),
        (folder("no-weights", drop="vae/diffusion_pytorch_model.safetensors"), "no-weights: could not be loaded"),
    ]
    for path, words in cases:
        with pytest.raises(CheckpointError, match=words):
            load_checkpoint(path)


# ---- switching and freeing ---------------------------------------------------------------------------------

def test_unload_frees_weights_even_with_references_left(files):
    model = load_checkpoint(files["sd1"].safetensors, config_dir=files["sd1"].config)
    unet = model.unet  # e.g. a stale reference held by some UI state
    unload(model)
    assert all(p.is_meta for p in unet.parameters())
    assert model.text_encoders == []


def rss_bytes() -> int:
    try:
        import psutil

        return psutil.Process().memory_info().rss
    except ImportError:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.slow
def test_switching_ten_times_does_not_grow_memory(tiny, files):
    slot = ModelSlot("cpu", torch.float32)
    options = {"sd1": files["sd1"], "sdxl": files["sdxl"]}
    model_bytes = sum(p.numel() * 4 for m in (tiny["sdxl"].unet, tiny["sdxl"].vae, *tiny["sdxl"].text_encoders) for p in m.parameters())

    def switch(name):
        return slot.switch(options[name].safetensors, config_dir=options[name].config)

    for name in ["sd1", "sdxl"]:  # warm up allocator and caches
        switch(name)
    gc.collect()
    before = rss_bytes()
    previous = None
    for i in range(10):
        model = switch(["sd1", "sdxl"][i % 2])
        if previous is not None:
            assert all(p.is_meta for p in previous.unet.parameters())  # the old one was freed
        previous = model
    assert slot.switch(options["sdxl"].safetensors) is previous  # the same checkpoint again: no reload
    gc.collect()
    growth = rss_bytes() - before
    # A leak of one model per switch would add ~10 models; allow less than one for allocator noise.
    assert growth < model_bytes, f"RSS grew by {growth / 2**20:.1f} MiB over ten switches"
    slot.unload()
    assert slot.model is None and all(p.is_meta for p in previous.unet.parameters())


def test_failed_switch_leaves_the_slot_empty(files, tmp_path):
    slot = ModelSlot()
    old = slot.switch(files["sd1"].safetensors, config_dir=files["sd1"].config)
    (tmp_path / "broken.safetensors").write_bytes(b"nonsense")
    with pytest.raises(CheckpointError, match="broken.safetensors"):
        slot.switch(tmp_path / "broken.safetensors")
    assert slot.model is None and all(p.is_meta for p in old.unet.parameters())
