"""A1111's hypernetworks: .pt files read with weights_only, hooks on the UNet's attention k/v inputs, the
`hypernet` extra network and the sd_hypernetwork setting, over real HTTP."""

import base64
import io
import os
import pickle

import httpx
import numpy as np
import pytest
import torch
from fastapi import FastAPI
from PIL import Image

from checkpoint_files import write_diffusers_folder
from live_server import LiveServer
from tiny_models import make_tiny_model, tiny_unet
from webui.api import register_api
from webui.flags import parse_flags
from webui.networks.hypernet_network import hypernetworks_applied
from webui.networks.hypernetworks import HypernetworkError, HypernetworkLibrary, read_hypernetwork_file
from webui.state import SharedState

SMALL = {"steps": 2, "width": 64, "height": 64, "seed": 7, "sampler_name": "Euler"}


def a1111_layers(width: int, seed: int, relu: bool = True, scale: float = 0.5) -> dict:
    """One MLP as A1111 saves it: layer_structure [1, 2, 1], "linear.N" keys (N skips the activation)."""
    g = torch.Generator().manual_seed(seed)
    second = 2 if relu else 1
    return {"linear.0.weight": torch.randn(width * 2, width, generator=g) * scale,
            "linear.0.bias": torch.randn(width * 2, generator=g) * scale,
            f"linear.{second}.weight": torch.randn(width, width * 2, generator=g) * scale,
            f"linear.{second}.bias": torch.randn(width, generator=g) * scale}


def write_hypernetwork(path, widths, seed=0, **settings):
    data = {"layer_structure": [1, 2, 1], "activation_func": "relu", "add_layer_norm": False, "use_dropout": False,
            "name": path.stem, "step": 1000, "sd_checkpoint_name": "tiny", **settings}
    relu = data["activation_func"] != "linear"
    for i, width in enumerate(widths):
        data[width] = [a1111_layers(width, seed + 2 * i, relu), a1111_layers(width, seed + 2 * i + 1, relu)]
    torch.save(data, path)
    return path


def test_a1111_file_loads_with_its_settings(tmp_path):
    network = read_hypernetwork_file(write_hypernetwork(tmp_path / "style.pt", [32, 64]))
    assert sorted(network.layers) == [32, 64] and network.info["step"] == 1000
    key_mlp = network.layers[32][0]
    assert [type(m).__name__ for m in key_mlp] == ["Linear", "ReLU", "Linear"]
    # linear activation: no module between the two Linear layers; old linear1/linear2 names are read too
    old = {"layer_structure": [1, 2, 1], "activation_func": "linear",
           32: [{"linear1.weight": torch.zeros(64, 32), "linear1.bias": torch.zeros(64),
                 "linear2.weight": torch.zeros(32, 64), "linear2.bias": torch.zeros(32)}] * 2}
    torch.save(old, tmp_path / "old.pt")
    assert [type(m).__name__ for m in read_hypernetwork_file(tmp_path / "old.pt").layers[32][1]] == ["Linear", "Linear"]


class Payload:  # anything a plain-weights reader must refuse: unpickling it would run code from the file
    def __reduce__(self):
        return (print, ("this ran",))


def test_files_that_need_code_or_do_not_fit_are_refused_clearly(tmp_path):
    with open(tmp_path / "evil.pt", "wb") as handle:
        pickle.dump({32: Payload()}, handle)
    with pytest.raises(HypernetworkError, match="plain weights"):
        read_hypernetwork_file(tmp_path / "evil.pt")
    torch.save({"layer_structure": [1, 2, 1], 32: [{"linear.0.weight": torch.zeros(3, 3)}] * 2}, tmp_path / "bad.pt")
    with pytest.raises(HypernetworkError, match="does not fit"):
        read_hypernetwork_file(tmp_path / "bad.pt")
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(HypernetworkError, match="dict of layers"):
        read_hypernetwork_file(tmp_path / "list.pt")
    torch.save({"activation_func": "nope", 32: [a1111_layers(32, 0)] * 2}, tmp_path / "act.pt")
    with pytest.raises(HypernetworkError, match="activation"):
        read_hypernetwork_file(tmp_path / "act.pt")


def test_k_and_v_inputs_become_x_plus_mlp_times_weight_and_hooks_go_away(tmp_path):
    torch.manual_seed(0)
    unet = tiny_unet(32).eval()
    path = write_hypernetwork(tmp_path / "hn.pt", [32, 64], activation_func="linear")
    network = read_hypernetwork_file(path)
    attention = next(m for m in unet.modules() if getattr(m, "to_k", None) is not None and m.to_k.in_features == 32)
    x = torch.randn(1, 5, 32)
    with torch.no_grad():
        plain_k, plain_v = attention.to_k(x), attention.to_v(x)
        sd_k, sd_v = path and torch.load(path, weights_only=True)[32]

        def mlp(sd, t):  # A1111's formula, by hand: x + (W2 (W1 x + b1) + b2) * weight
            h = t @ sd["linear.0.weight"].T + sd["linear.0.bias"]
            return h @ sd["linear.1.weight"].T + sd["linear.1.bias"]

        with hypernetworks_applied(unet, [(network, 0.7)]) as hooked:
            k, v = attention.to_k(x), attention.to_v(x)
        assert hooked > 0
        expected_k = torch.nn.functional.linear(x + mlp(sd_k, x) * 0.7, attention.to_k.weight, attention.to_k.bias)
        expected_v = torch.nn.functional.linear(x + mlp(sd_v, x) * 0.7, attention.to_v.weight, attention.to_v.bias)
        torch.testing.assert_close(k, expected_k, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(v, expected_v, rtol=1e-5, atol=1e-5)
        assert not torch.allclose(k, plain_k)
        torch.testing.assert_close(attention.to_k(x), plain_k, rtol=0, atol=0)  # removed after the block
        torch.testing.assert_close(attention.to_v(x), plain_v, rtol=0, atol=0)


def test_library_finds_files_in_subfolders(tmp_path):
    (tmp_path / "sub").mkdir()
    write_hypernetwork(tmp_path / "sub" / "anime.pt", [32])
    library = HypernetworkLibrary(tmp_path)
    assert [f.name for f in library.files()] == ["anime"] and library.find("missing") is None


# -- over HTTP --------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def server(tmp_path_factory):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    root = tmp_path_factory.mktemp("data")
    write_diffusers_folder(make_tiny_model("sd1"), root / "models" / "Stable-diffusion" / "tiny")
    (root / "models" / "hypernetworks").mkdir(parents=True)
    write_hypernetwork(root / "models" / "hypernetworks" / "tiny_hn.pt", [32, 64], scale=2.0)
    state = SharedState.create(parse_flags(["--data-dir", str(root), "--use-cpu", "all", "--precision", "full",
                                            "--ckpt", "tiny"]))
    app = FastAPI()
    register_api(app, state)
    live = LiveServer(app)
    yield live.url, state, root
    live.stop()
    state.queue.stop()


def image_of(response) -> np.ndarray:
    assert response.status_code == 200, response.text
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(response.json()["images"][0]))).convert("RGB"))


def test_api_lists_and_applies_hypernetworks(server):
    url, state, root = server
    with httpx.Client(base_url=url, timeout=120) as http:
        listed = http.get("/sdapi/v1/hypernetworks").json()
        assert listed == [{"name": "tiny_hn", "path": str(root / "models" / "hypernetworks" / "tiny_hn.pt")}]
        plain = image_of(http.post("/sdapi/v1/txt2img", json={**SMALL, "prompt": "a fox"}))
        tagged = http.post("/sdapi/v1/txt2img", json={**SMALL, "prompt": "a fox <hypernet:tiny_hn:1>"})
        assert np.abs(image_of(tagged).astype(int) - plain).max() > 0  # the hypernetwork changed the image
        assert "<hypernet:tiny_hn:1>" in tagged.json()["info"]
        # The setting adds it to the prompt at the default weight: the same image as the tag.
        chosen = http.post("/sdapi/v1/txt2img", json={**SMALL, "prompt": "a fox",
                                                      "override_settings": {"sd_hypernetwork": "tiny_hn"}})
        assert np.array_equal(image_of(chosen), image_of(tagged)) and "<hypernet:tiny_hn:1>" in chosen.json()["info"]
        weaker = image_of(http.post("/sdapi/v1/txt2img", json={**SMALL, "prompt": "a fox <hypernet:tiny_hn:0.2>"}))
        assert not np.array_equal(weaker, image_of(tagged))
        # The hooks are gone after each job: the plain prompt gives the plain image again.
        assert np.array_equal(image_of(http.post("/sdapi/v1/txt2img", json={**SMALL, "prompt": "a fox"})), plain)
        missing = http.post("/sdapi/v1/txt2img", json={**SMALL, "prompt": "a fox <hypernet:nowhere:1>"})
        assert np.array_equal(image_of(missing), plain)  # an unknown name changes nothing, the job runs
        assert http.post("/sdapi/v1/options", json={"sd_hypernetwork": "tiny_hn"}).status_code == 200
        assert np.array_equal(image_of(http.post("/sdapi/v1/txt2img", json={**SMALL, "prompt": "a fox"})),
                              image_of(tagged))
        assert http.post("/sdapi/v1/options", json={"sd_hypernetwork": "None"}).status_code == 200


def test_extra_networks_card_inserts_the_tag(server):
    from webui.ui.extra_networks import SECTIONS

    url, state, root = server
    cards, hint = SECTIONS["Hypernetworks"]
    assert [(card.name, card.insert) for card in cards(state, True)] == [("tiny_hn", "<hypernet:tiny_hn:1>")]
    assert "hypernetworks" in hint(state)  # with no files, the hint names the folder
