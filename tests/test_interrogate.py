"""Interrogate CLIP: BLIP's caption plus CLIP's best list entries, from tiny random-weight models saved as the
Hugging Face folders a user puts in models/BLIP and models/clip_interrogator (or has in the HF cache)."""

import base64
import io
import json
import re
import shutil

import httpx
import pytest
import torch
from fastapi import FastAPI
from PIL import Image
from transformers import BlipForConditionalGeneration, BlipProcessor

from interrogate_files import write_hf_cache_repo, write_tiny_blip, write_tiny_clip
from live_server import LiveServer
from webui.api import register_api
from webui.flags import parse_flags
from webui.interrogate import (
    InterrogateSettings, Interrogator, ModelsMissing, ModelUnreadable, find_models, load_categories,
)
from webui.interrogate.categories import BUNDLED_LISTS
from webui.state import SharedState

IMAGE = Image.new("RGB", (48, 40), (180, 40, 30))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The two tiny model folders, written once; tests copy them where they need them."""
    root = tmp_path_factory.mktemp("tiny-interrogate")
    return write_tiny_blip(root / "blip"), write_tiny_clip(root / "clip")


def install(models_dir, tiny, blip=True, clip=True):
    if blip:
        shutil.copytree(tiny[0], models_dir / "BLIP" / "my-blip")
    if clip:
        shutil.copytree(tiny[1], models_dir / "clip_interrogator" / "my-clip")
    return models_dir


def list_items(name: str) -> list[str]:
    path = next(BUNDLED_LISTS.glob(f"{name}*.txt"))
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_the_bundled_lists_are_four_categories_flavors_giving_three():
    categories = {category.name: category for category in load_categories(None)}
    assert sorted(categories) == ["artists", "flavors", "mediums", "movements"]
    assert categories["flavors"].top_count == 3 and categories["artists"].top_count == 1
    assert all(len(category.items) >= 30 for category in categories.values())


def test_a_users_list_replaces_the_bundled_one_of_its_name_and_adds_new_ones(tmp_path):
    (tmp_path / "mediums.txt").write_text("a fresco\n\na stencil\n", encoding="utf-8")
    (tmp_path / "moods.top2.txt").write_text("calm\nangry\nsad\n", encoding="utf-8")
    categories = {category.name: category for category in load_categories(tmp_path, skip=["artists"])}
    assert sorted(categories) == ["flavors", "mediums", "moods", "movements"]
    assert categories["mediums"].items == ("a fresco", "a stencil")
    assert categories["moods"].top_count == 2


def test_models_are_found_in_the_a1111_folders_and_missing_ones_are_named(tmp_path, tiny):
    with pytest.raises(ModelsMissing) as missing:
        find_models(tmp_path, hf_cache=tmp_path / "empty-cache")
    assert str(tmp_path / "BLIP") in str(missing.value) and str(tmp_path / "clip_interrogator") in str(missing.value)
    install(tmp_path, tiny, clip=False)
    with pytest.raises(ModelsMissing) as missing:
        find_models(tmp_path, hf_cache=tmp_path / "empty-cache")
    assert "clip_interrogator" in str(missing.value) and "BLIP caption model" not in str(missing.value)
    install(tmp_path, tiny, blip=False)
    assert find_models(tmp_path, hf_cache=tmp_path / "empty-cache") == (
        tmp_path / "BLIP" / "my-blip", tmp_path / "clip_interrogator" / "my-clip")


def test_a_blip_folder_of_another_head_is_passed_over(tmp_path, tiny):
    install(tmp_path, tiny)
    retrieval = shutil.copytree(tiny[0], tmp_path / "BLIP" / "a-retrieval-model")  # sorts first
    config = json.loads((retrieval / "config.json").read_text(encoding="utf-8"))
    (retrieval / "config.json").write_text(json.dumps({**config, "architectures": ["BlipForImageTextRetrieval"]}))
    assert find_models(tmp_path, hf_cache=tmp_path / "empty-cache")[0] == tmp_path / "BLIP" / "my-blip"


def test_models_in_the_local_hugging_face_cache_are_used_when_the_folders_are_empty(tmp_path, tiny):
    cache = tmp_path / "hf-cache"
    blip = write_hf_cache_repo(cache, "Salesforce/blip-image-captioning-base", lambda f: shutil.copytree(tiny[0], f))
    clip = write_hf_cache_repo(cache, "openai/clip-vit-large-patch14", lambda f: shutil.copytree(tiny[1], f))
    assert find_models(tmp_path / "models", hf_cache=cache) == (blip, clip)
    text = Interrogator(tmp_path / "models", hf_cache=cache).interrogate(IMAGE)
    assert text.count(", ") >= 6  # caption, artist, 3 flavors, medium, movement


def test_the_text_is_blips_caption_then_the_best_entry_of_each_list(tmp_path, tiny):
    models = install(tmp_path / "models", tiny)
    text = Interrogator(models, hf_cache=tmp_path / "empty").interrogate(IMAGE)
    # The caption as BLIP itself writes it with A1111's settings (1 beam, 24 to 48 tokens).
    processor = BlipProcessor.from_pretrained(tiny[0], local_files_only=True)
    model = BlipForConditionalGeneration.from_pretrained(tiny[0], local_files_only=True).eval()
    with torch.no_grad():
        tokens = model.generate(**processor(images=IMAGE, return_tensors="pt"), num_beams=1, min_length=24,
                                max_length=48)
    caption = processor.decode(tokens[0], skip_special_tokens=True).strip()
    assert caption and text.startswith(caption + ", ")
    words = text[len(caption) + 2 :].split(", ")
    # Categories in name order: artists (1), flavors (3, different), mediums (1), movements (1).
    assert len(words) == 6
    assert words[0] in list_items("artists")
    assert set(words[1:4]) <= set(list_items("flavors")) and len(set(words[1:4])) == 3
    assert words[4] in list_items("mediums") and words[5] in list_items("movements")


def test_settings_limit_skip_and_rank_the_entries(tmp_path, tiny):
    models = install(tmp_path / "models", tiny)
    (models / "clip_interrogator" / "shapes.top2.txt").write_text("a circle\na square\na triangle\n", encoding="utf-8")
    interrogator = Interrogator(models, hf_cache=tmp_path / "empty")
    settings = InterrogateSettings(min_length=2, max_length=6, dict_limit=2, return_ranks=True,
                                   skip_categories=("artists", "flavors", "mediums", "movements"))
    text = interrogator.interrogate(IMAGE, settings)
    ranked = re.findall(r"\((a circle|a square|a triangle):(\d\.\d{3})\)", text)
    # Only the first two lines count (dict_limit); their softmax shares add up to 1, best first.
    assert [word for word, _ in ranked] in (["a circle", "a square"], ["a square", "a circle"])
    shares = [float(share) for _, share in ranked]
    assert shares[0] >= shares[1] and abs(sum(shares) - 1) < 0.002
    assert not any(word in text for word in list_items("mediums"))


def test_a_folder_that_cannot_be_loaded_is_named(tmp_path, tiny):
    models = install(tmp_path / "models", tiny)
    (models / "BLIP" / "my-blip" / "model.safetensors").write_bytes(b"not weights")
    with pytest.raises(ModelUnreadable, match="my-blip"):
        Interrogator(models, hf_cache=tmp_path / "empty").interrogate(IMAGE)


def b64_png(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    data = tmp_path_factory.mktemp("interrogate-api")
    state = SharedState.create(parse_flags(["--data-dir", str(data), "--use-cpu", "all"]))
    state.interrogator = Interrogator(data / "models", hf_cache=data / "no-hf-cache")  # this machine's cache unseen
    app = FastAPI()
    register_api(app, state)
    with LiveServer(app) as live, httpx.Client(base_url=live.url, timeout=120) as client:
        yield client, data
    state.queue.stop()


def test_api_without_models_says_what_to_put_where(api):
    client, _ = api
    response = client.post("/sdapi/v1/interrogate", json={"image": b64_png(IMAGE), "model": "clip"})
    assert response.status_code == 404
    detail = response.json()["detail"]
    assert "BLIP" in detail and "clip_interrogator" in detail and "nothing is downloaded" in detail


def test_api_refuses_unknown_models_and_bad_images(api):
    client, _ = api
    for model in ("deepdanbooru", "nope"):
        response = client.post("/sdapi/v1/interrogate", json={"image": b64_png(IMAGE), "model": model})
        assert response.status_code == 404 and "Model not found" in response.json()["detail"]
    assert client.post("/sdapi/v1/interrogate", json={"image": "not base64!"}).status_code == 400
    assert client.post("/sdapi/v1/interrogate", json={"model": "clip"}).status_code == 400


def test_api_gives_the_caption_once_the_models_are_in_place(api, tiny):
    client, data = api
    install(data / "models", tiny)
    response = client.post("/sdapi/v1/interrogate", json={"image": b64_png(IMAGE)})  # model defaults to clip
    assert response.status_code == 200, response.text
    caption = response.json()["caption"]
    assert caption.count(", ") == 6 and caption.split(", ")[-1] in list_items("movements")


def test_extensions_reach_the_same_interrogator_as_shared_interrogator(tmp_path, tiny):
    import webui.compat as compat

    models = install(tmp_path / "models", tiny)
    (models / "clip_interrogator" / "shapes.txt").write_text("a circle\na square\n", encoding="utf-8")
    state = SharedState.create(parse_flags(["--data-dir", str(tmp_path), "--use-cpu", "all"]))
    state.interrogator = Interrogator(models, hf_cache=tmp_path / "empty")
    compat.install()
    compat.bind(state)
    from modules import interrogate, shared

    text = shared.interrogator.interrogate(IMAGE)
    assert text.count(", ") == 7 and text.split(", ")[-1] in ("a circle", "a square")  # the user's list, last by name
    shared.interrogator.unload()
    assert interrogate.category_types() == ["artists", "flavors", "mediums", "movements", "shapes"]


@pytest.mark.parametrize("use_cpu", [["interrogate"], ["all"]])
def test_use_cpu_interrogate_keeps_the_models_on_the_cpu(tmp_path, use_cpu):
    from webui.interrogate.service import state_interrogator

    state = SharedState.create(parse_flags(["--data-dir", str(tmp_path), "--use-cpu", *use_cpu]))
    interrogator = state_interrogator(state)
    assert interrogator.device.type == "cpu" and interrogator.dtype == torch.float32
    assert interrogator.models_dir == tmp_path / "models" and state_interrogator(state) is interrogator
