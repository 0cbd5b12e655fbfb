"""The Checkpoint Merger (models/merge.py): A1111's formulas tensor by tensor, fp16, metadata, a baked-in VAE,
and the merged file in the checkpoint list, loadable at once."""

import json
import os

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from checkpoint_files import write_config_dir, write_diffusers_folder, write_safetensors
from tiny_models import make_tiny_model
from webui.flags import parse_flags
from webui.models.discovery import with_hash
from webui.models.loading import load_checkpoint
from webui.models.merge import MergeError, MergeRequest, merge_checkpoints, merge_state_dicts
from webui.state import SharedState
from webui.ui.merger import run_merge


@pytest.fixture(scope="module")
def state(tmp_path_factory):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    root = tmp_path_factory.mktemp("data")
    folder = root / "models" / "Stable-diffusion"
    folder.mkdir(parents=True)
    for name, seed in (("alpha", 1), ("beta", 2), ("gamma", 3)):
        write_safetensors(make_tiny_model("sd1", seed=seed), folder / f"{name}.safetensors")
    write_diffusers_folder(make_tiny_model("sd1"), folder / "folder_model")
    beta = load_file(folder / "beta.safetensors")
    (root / "models" / "VAE").mkdir(parents=True)
    save_file({k.removeprefix("first_stage_model."): v for k, v in beta.items() if k.startswith("first_stage_model.")},
              root / "models" / "VAE" / "beta_vae.safetensors")
    return SharedState.create(parse_flags(["--data-dir", str(root), "--use-cpu", "all", "--precision", "full"]))


def tensors(state, name):
    return load_file(state.models.find(name).path)


def test_weighted_sum_is_a_times_1_minus_m_plus_b_times_m_and_appears_in_the_list(state):
    title = run_merge(state, MergeRequest("alpha", "beta", method="Weighted sum", multiplier=0.25))
    assert title.startswith("alpha_0.75-beta_0.25-Weighted_sum-merged")
    merged, a, b = tensors(state, title), tensors(state, "alpha"), tensors(state, "beta")
    assert merged.keys() == a.keys()
    floats = [key for key in a if a[key].is_floating_point() and not key.endswith("position_ids")]
    assert len(floats) > 100
    for key in floats:
        torch.testing.assert_close(merged[key], a[key] * 0.75 + b[key] * 0.25, rtol=1e-6, atol=1e-6)
    assert any(not torch.equal(merged[key], a[key]) for key in floats)
    # A1111's merge metadata: the recipe and the models merged, by sha256.
    with safe_open(str(state.models.find(title).path), "pt") as handle:
        metadata = handle.metadata()
    recipe = json.loads(metadata["sd_merge_recipe"])
    assert recipe["interp_method"] == "Weighted sum" and recipe["multiplier"] == 0.25
    assert recipe["primary_model_hash"] == with_hash(state.models.find("alpha"), state.models.cache_path).sha256
    assert set(json.loads(metadata["sd_merge_models"])) == {recipe["primary_model_hash"], recipe["secondary_model_hash"]}
    # The merged checkpoint loads as any other (with the tiny model's config, as test_checkpoints loads them).
    model = load_checkpoint(state.models.find(title), config_dir=write_config_dir(make_tiny_model("sd1"),
                                                                                  state.flags.data_dir / "tiny-config"))
    torch.testing.assert_close(model.unet.conv_in.weight, merged["model.diffusion_model.input_blocks.0.0.weight"])


def test_add_difference_fp16_and_a_custom_name(state):
    title = run_merge(state, MergeRequest("alpha", "beta", "gamma", method="Add difference", multiplier=0.5,
                                          save_as_half=True, custom_name="mixed"))
    assert title.startswith("mixed")
    merged, a, b, c = (tensors(state, n) for n in (title, "alpha", "beta", "gamma"))
    for key, value in a.items():
        if value.is_floating_point() and not key.endswith("position_ids"):
            assert merged[key].dtype == torch.float16
            expected = (value + (b[key] - c[key]) * 0.5).half()
            torch.testing.assert_close(merged[key], expected, rtol=1e-3, atol=1e-3)


def test_no_interpolation_bakes_in_a_vae_and_drops_discarded_weights(state):
    title = run_merge(state, MergeRequest("alpha", method="No interpolation", custom_name="alpha_vae",
                                          checkpoint_format="ckpt", bake_in_vae="beta_vae.safetensors",
                                          discard_weights=r"^cond_stage_model\..*position_ids$"))
    info = state.models.find(title)
    assert info.path.suffix == ".ckpt"
    merged = torch.load(info.path, weights_only=True)["state_dict"]
    a, b = tensors(state, "alpha"), tensors(state, "beta")
    for key in a:
        if key.startswith("first_stage_model."):
            assert torch.equal(merged[key], b[key])
        elif key.endswith("position_ids"):
            assert key not in merged
        else:
            assert torch.equal(merged[key], a[key])


def test_bad_requests_are_refused_with_the_reason(state):
    output = state.models.models_dir
    for request, message in [
        (MergeRequest("alpha", "beta", method="Add difference"), "tertiary"),
        (MergeRequest("alpha", method="Weighted sum"), "secondary"),
        (MergeRequest("alpha", "beta", multiplier=1.5), "multiplier"),
        (MergeRequest("alpha", "beta", custom_name="../outside"), "file name"),
        (MergeRequest("alpha", "folder_model"), "diffusers folder"),
        (MergeRequest("alpha", "nowhere"), "nowhere"),
        (MergeRequest("alpha", "beta", discard_weights="("), "regular expression"),
        (MergeRequest("alpha", method="No interpolation", custom_name="alpha"), "overwrite"),
    ]:
        with pytest.raises(MergeError, match=message):
            merge_checkpoints(request, state.models.find, output)


def test_shapes_that_differ_are_an_error_except_an_inpainting_first_conv():
    a = {"x.weight": torch.ones(2, 3)}
    with pytest.raises(MergeError, match="shapes differ"):
        merge_state_dicts(a, {"x.weight": torch.ones(3, 3)}, None, "Weighted sum", 0.5)
    key = "model.diffusion_model.input_blocks.0.0.weight"
    inpaint, plain = {key: torch.zeros(4, 9, 3, 3)}, {key: torch.ones(4, 4, 3, 3)}
    merged = merge_state_dicts(inpaint, plain, None, "Weighted sum", 0.5)[key]
    assert torch.all(merged[:, :4] == 0.5) and torch.all(merged[:, 4:] == 0)
    # keys only A has are kept; integer tensors are never averaged
    out = merge_state_dicts({"only_a": torch.ones(2), "step": torch.tensor([3])}, {"step": torch.tensor([5])}, None,
                            "Weighted sum", 0.5)
    assert torch.equal(out["only_a"], torch.ones(2)) and out["step"].item() == 3
