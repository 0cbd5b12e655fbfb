"""LoRA: tiny Kohya-layout files made here, applied to a tiny SD1 model for one job and removed exactly."""

import hashlib
import logging

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from tiny_models import make_tiny_model
from prompt_parser import ExtraNetwork
from webui.generation.infotext import parse_infotext
from webui.generation.params import Txt2ImgParams
from webui.generation.processing import txt2img
from webui.networks import LoraLibrary, activated_loras, lora_multipliers, parse_state_dict, prompt_networks
from webui.networks.apply import ldm_unet_name

UNET_LAYERS = [
    "down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k",
    "down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q",
    "up_blocks_1_attentions_0_transformer_blocks_0_attn2_to_v",
]


def kohya_lora(seed: int, rank: int = 4, conv: bool = True, te: bool = True) -> dict[str, torch.Tensor]:
    """A random LoRA for the tiny SD1 model, with Kohya's key names (LoCon conv layers included)."""
    g = torch.Generator().manual_seed(seed)
    state = {}

    def layer(name, out_dim, in_dim, kernel=None, alpha=2.0):
        down_shape = (rank, in_dim) if kernel is None else (rank, in_dim, kernel, kernel)
        up_shape = (out_dim, rank) if kernel is None else (out_dim, rank, 1, 1)
        state[f"{name}.lora_down.weight"] = torch.randn(down_shape, generator=g) * 0.5
        state[f"{name}.lora_up.weight"] = torch.randn(up_shape, generator=g) * 0.5
        state[f"{name}.alpha"] = torch.tensor(alpha)

    for name in UNET_LAYERS:
        layer(f"lora_unet_{name}", 32, 32)
    if conv:
        layer("lora_unet_down_blocks_0_resnets_0_conv1", 32, 32, kernel=3)
        layer("lora_unet_down_blocks_0_attentions_0_proj_in", 32, 32, kernel=1)
    if te:
        layer("lora_te_text_model_encoder_layers_0_self_attn_q_proj", 32, 32)
        layer("lora_te_text_model_encoder_layers_1_mlp_fc1", 64, 32)
    return state


@pytest.fixture(scope="module")
def sd1():
    return make_tiny_model("sd1")


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    folder = tmp_path_factory.mktemp("Lora")
    save_file(kohya_lora(1), str(folder / "first.safetensors"), metadata={"ss_output_name": "first_alias"})
    (folder / "sub").mkdir()
    save_file(kohya_lora(2), str(folder / "sub" / "second.safetensors"))
    # An SDXL-style LoRA: second text encoder, and widths the tiny SD1 model does not have.
    xl = {"lora_te2_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight": torch.randn(4, 1280),
          "lora_te2_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight": torch.randn(1280, 4),
          "lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q.lora_down.weight": torch.randn(4, 640),
          "lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q.lora_up.weight": torch.randn(640, 4)}
    save_file(xl, str(folder / "xl_style.safetensors"))
    loha = {"lora_unet_down_blocks_0_attentions_0_proj_in.hada_w1_a": torch.randn(32, 4),
            "lora_unet_down_blocks_0_attentions_0_proj_in.hada_w1_b": torch.randn(4, 32)}
    save_file(loha, str(folder / "loha.safetensors"))
    return LoraLibrary(folder)


def tags(*texts):
    return [ExtraNetwork("lora", tuple(t.split(":"))) for t in texts]


def outputs(model):
    """The UNet's output and the text encoder's embedding for fixed inputs."""
    g = torch.Generator().manual_seed(0)
    sample = torch.randn(1, 4, 8, 8, generator=g)
    ids = torch.tensor([[49406, 320, 1125, 49407] + [49407] * 4])
    with torch.no_grad():
        text = model.text_encoders[0](ids).last_hidden_state
        unet = model.unet(sample, torch.tensor([500]), encoder_hidden_states=torch.randn(1, 8, 32, generator=g)).sample
    return unet, text


def state_of(model):
    return {k: v.clone() for k, v in {**model.unet.state_dict(), **model.text_encoders[0].state_dict()}.items()}


def test_a_lora_changes_both_parts_and_is_removed_exactly(sd1, library):
    before_state, (unet0, text0) = state_of(sd1), outputs(sd1)
    with activated_loras(sd1, tags("first:0.8"), library) as active:
        unet1, text1 = outputs(sd1)
    assert active.warnings == [] and active.applied == ["first"]
    assert not torch.equal(unet0, unet1) and not torch.equal(text0, text1)
    unet2, text2 = outputs(sd1)
    assert torch.equal(unet0, unet2) and torch.equal(text0, text2)
    after = state_of(sd1)
    assert all(torch.equal(before_state[k], after[k]) for k in before_state)


def test_the_update_is_up_times_down_times_alpha_over_rank(sd1, library):
    name = "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k"
    module = sd1.unet.get_submodule(name)
    original = module.weight.clone()
    state = kohya_lora(1)
    key = "lora_unet_" + name.replace(".", "_")
    expected = state[f"{key}.lora_up.weight"] @ state[f"{key}.lora_down.weight"] * (2.0 / 4) * 0.5
    with activated_loras(sd1, tags("first:0.5"), library):
        torch.testing.assert_close(module.weight - original, expected, rtol=1e-4, atol=1e-5)


def test_two_loras_stack(sd1, library):
    results = []
    for texts in (["first:1"], ["second:1"], ["first:1", "second:1"]):
        with activated_loras(sd1, tags(*texts), library):
            results.append(outputs(sd1)[0])
    first, second, both = results
    assert not torch.equal(both, first) and not torch.equal(both, second)
    conv = sd1.unet.get_submodule("down_blocks.0.resnets.0.conv1")
    original = conv.weight.clone()
    deltas = []
    for texts in (["first:1"], ["second:1"], ["first:1", "second:1"]):
        with activated_loras(sd1, tags(*texts), library):
            deltas.append(conv.weight - original)
    torch.testing.assert_close(deltas[2], deltas[0] + deltas[1], rtol=1e-4, atol=1e-5)


def test_weight_zero_is_none_and_split_weights(sd1, library):
    unet0, text0 = outputs(sd1)
    with activated_loras(sd1, tags("first:0"), library):
        unet, text = outputs(sd1)
    assert torch.equal(unet, unet0) and torch.equal(text, text0)
    with activated_loras(sd1, tags("first:1:0"), library):  # text encoder only
        unet, text = outputs(sd1)
    assert torch.equal(unet, unet0) and not torch.equal(text, text0)
    with activated_loras(sd1, tags("first:te=0:unet=1"), library):  # UNet only
        unet, text = outputs(sd1)
    assert not torch.equal(unet, unet0) and torch.equal(text, text0)


def test_multipliers_follow_a1111():
    assert lora_multipliers(("n",)) == (1.0, 1.0)
    assert lora_multipliers(("n", "0.8")) == (0.8, 0.8)
    assert lora_multipliers(("n", "0.8", "0.5")) == (0.8, 0.5)
    assert lora_multipliers(("n", "te=0.2", "unet=0.3")) == (0.2, 0.3)
    assert lora_multipliers(("n", "0.7", "unet=0.1")) == (0.7, 0.1)


def test_unknown_wrong_family_and_loha_warn_and_change_nothing(sd1, library, caplog):
    unet0, text0 = outputs(sd1)
    with caplog.at_level(logging.WARNING):
        with activated_loras(sd1, tags("nobody:1", "xl_style:1", "loha:1"), library) as active:
            unet, text = outputs(sd1)
    assert torch.equal(unet, unet0) and torch.equal(text, text0)
    joined = "\n".join(active.warnings)
    assert "Couldn't find Lora with name nobody" in joined
    assert "another model family" in joined
    assert "LoHa/LoKr not supported yet" in joined
    assert active.infotext == {} and "LoHa/LoKr" in caplog.text


def test_alias_lookup_and_parse_cache(library):
    assert library.find("first_alias").name == "first"
    file = library.find("second")
    assert library.load(file) is library.load(file)


def test_diffusers_peft_keys_map_like_kohya():
    g = torch.Generator().manual_seed(3)
    down, up = torch.randn(4, 32, generator=g), torch.randn(32, 4, generator=g)
    peft = parse_state_dict("p", {
        "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_out.0.lora_A.weight": down,
        "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_out.0.lora_B.weight": up,
        "text_encoder.text_model.encoder.layers.0.self_attn.k_proj.lora_A.weight": down,
        "text_encoder.text_model.encoder.layers.0.self_attn.k_proj.lora_B.weight": up,
    })
    assert set(peft.layers) == {("unet", "down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_out_0"),
                                (0, "encoder_layers_0_self_attn_k_proj")}
    kohya = parse_state_dict("k", {"lora_te_text_model_encoder_layers_0_self_attn_k_proj.lora_down.weight": down,
                                   "lora_te_text_model_encoder_layers_0_self_attn_k_proj.lora_up.weight": up})
    assert set(kohya.layers) == {(0, "encoder_layers_0_self_attn_k_proj")}


def test_ldm_names_of_diffusers_modules():
    assert ldm_unet_name("down_blocks.1.attentions.0.proj_in", 2, {1, 2, 3}) == "input_blocks.4.1.proj_in"
    assert ldm_unet_name("down_blocks.0.downsamplers.0.conv", 2, set()) == "input_blocks.3.0.op"
    assert ldm_unet_name("mid_block.resnets.1.conv2", 2, set()) == "middle_block.2.out_layers.3"
    assert ldm_unet_name("up_blocks.0.upsamplers.0.conv", 2, set()) == "output_blocks.2.1.conv"
    assert ldm_unet_name("up_blocks.1.upsamplers.0.conv", 2, {1}) == "output_blocks.5.2.conv"


def test_txt2img_records_lora_hashes_and_leaves_the_model_as_it_was(sd1, library):
    p = dict(prompt="a red circle <lora:first:0.7> <lora:second:0.4>", steps=3, width=64, height=64, seed=7,
             save_images=False)
    plain = txt2img(sd1, Txt2ImgParams(**{**p, "prompt": "a red circle"}))
    with_lora = txt2img(sd1, Txt2ImgParams(**p), networks=library)
    again = txt2img(sd1, Txt2ImgParams(**{**p, "prompt": "a red circle"}))
    assert not np.array_equal(np.asarray(plain.images[0]), np.asarray(with_lora.images[0]))
    assert np.array_equal(np.asarray(plain.images[0]), np.asarray(again.images[0]))
    digest = {name: hashlib.sha256(library.find(name).path.read_bytes()).hexdigest()[:12]
              for name in ("first", "second")}
    parsed = parse_infotext(with_lora.infotexts[0])
    assert parsed["Lora hashes"] == f"first: {digest['first']}, second: {digest['second']}"
    text = with_lora.infotexts[0]
    assert f'Lora hashes: "first: {digest["first"]}, second: {digest["second"]}"' in text
    assert text.index("Lora hashes") < text.index("Version")
    assert "Lora hashes" not in plain.infotexts[0] and with_lora.warnings == []
    missing = txt2img(sd1, Txt2ImgParams(**{**p, "prompt": "a <lora:nobody:1>"}), networks=library)
    assert missing.images and "Couldn't find Lora with name nobody" in missing.warnings[0]


def test_prompt_networks_reads_tags():
    found = prompt_networks("a <lora:x:0.5> b", "", "<hypernet:h:1>")
    assert [(n.kind, n.items) for n in found] == [("lora", ("x", "0.5")), ("hypernet", ("h", "1"))]


def test_api_lists_and_refreshes_loras(tmp_path):
    from webui.api import info
    from webui.flags import parse_flags
    from webui.state import SharedState

    state = SharedState.create(parse_flags(["--data-dir", str(tmp_path), "--use-cpu", "all"]))
    assert info.loras(state) == []
    folder = tmp_path / "models" / "Lora"
    folder.mkdir(parents=True)
    save_file(kohya_lora(5, te=False), str(folder / "style.safetensors"), metadata={"ss_output_name": "style_v1",
                                                                                "ss_base_model_version": "sd_v1"})
    info.refresh_loras(state)
    (entry,) = info.loras(state)
    assert entry["name"] == "style" and entry["alias"] == "style_v1" and entry["path"].endswith("style.safetensors")
    assert entry["metadata"]["ss_base_model_version"] == "sd_v1"
