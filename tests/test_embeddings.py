"""Textual inversion on tiny models: file formats, placement in the 75-token chunks, and what the encoder sees."""

import argparse
import hashlib

import pytest
import torch
from safetensors.torch import save_file

from tiny_models import make_tiny_model
from webui.generation.conditioning import CHUNK_TOKENS, EncodeOptions, PromptEncoder, chunk_text
from webui.generation.infotext import parse_infotext
from webui.generation.params import Txt2ImgParams
from webui.generation.processing import txt2img
from webui.networks.embeddings import EmbeddingDatabase, database_for, load_embedding


@pytest.fixture(scope="module")
def sd1():
    return make_tiny_model("sd1")


def _token_embedding(encoder):
    return getattr(encoder, "text_model", encoder).embeddings.token_embedding


def _ids(model, text):
    return model.tokenizers[0](text, add_special_tokens=False)["input_ids"]


@pytest.fixture
def folder(tmp_path, sd1):
    """One embedding in each A1111 format, plus one of the wrong width, in nested folders."""
    torch.manual_seed(0)
    root = tmp_path / "embeddings"
    (root / "sub").mkdir(parents=True)
    cat = _token_embedding(sd1.text_encoders[0]).weight[_ids(sd1, "cat")[0]].clone()
    # .pt from A1111's trainer: one vector equal to the word "cat"'s own token embedding.
    torch.save({"string_to_param": {"*": cat.unsqueeze(0)}, "name": "catlike", "step": 500,
                "sd_checkpoint": "abcdef1234", "sd_checkpoint_name": "tiny"}, root / "catlike.pt")
    # .bin in diffusers' style: one 1-D vector.
    torch.save({"<bluestyle>": torch.randn(32)}, root / "sub" / "bluestyle.bin")
    # .safetensors with emb_params: three vectors.
    save_file({"emb_params": torch.randn(3, 32)}, root / "easynegative.safetensors")
    # wrong width: 16 is not the tiny CLIP's 32.
    save_file({"emb_params": torch.randn(2, 16)}, root / "narrowthing.safetensors")
    return root


def test_formats_and_wrong_width_skipped(folder, sd1):
    found = EmbeddingDatabase(folder).for_model(sd1)
    assert set(found.loaded) == {"catlike", "bluestyle", "easynegative"}
    assert found.loaded["catlike"].step == 500 and found.loaded["catlike"].vectors == 1
    assert found.loaded["bluestyle"].vectors == 1 and found.loaded["easynegative"].vectors == 3
    embedding, reason = found.skipped["narrowthing"]
    assert embedding.shape == 16 and "16" in reason and "32" in reason
    listing = found.listing()
    assert listing["loaded"]["easynegative"] == {"step": None, "sd_checkpoint": None, "sd_checkpoint_name": None,
                                                 "shape": 32, "vectors": 3}
    assert listing["loaded"]["catlike"]["sd_checkpoint_name"] == "tiny"
    assert listing["skipped"]["narrowthing"]["reason"] == reason


def test_pickle_with_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"string_to_param": {"*": Evil()}}, tmp_path / "evil.pt")
    found = EmbeddingDatabase(tmp_path).for_model(None)
    assert not found.loaded and "weights_only" in found.skipped["evil"][1]


def test_vectors_reach_the_encoder_where_the_name_stands(folder, sd1):
    found = EmbeddingDatabase(folder).for_model(sd1)
    options = EncodeOptions()
    plain = PromptEncoder(sd1)
    with_ti = PromptEncoder(sd1, found)
    # An embedding whose vector is the token embedding of "cat" encodes exactly like the word "cat".
    expected = plain.encode_group(["a cat in the snow"], options)[0].crossattn
    got = with_ti.encode_group(["a catlike in the snow"], options)[0].crossattn
    assert torch.allclose(got, expected, atol=1e-5)
    assert list(with_ti.used_embeddings) == ["catlike"]
    # Without the database the name is ordinary words, and the result differs.
    assert not torch.allclose(plain.encode_group(["a catlike in the snow"], options)[0].crossattn, expected, atol=1e-3)


def test_multi_vector_embedding_rows_at_its_position(folder, sd1):
    found = EmbeddingDatabase(folder).for_model(sd1)
    easy = found.loaded["easynegative"]
    encoder = PromptEncoder(sd1, found)
    (chunk,) = chunk_text("ugly, easynegative, blurry", sd1.tokenizers[0], EncodeOptions(), found)
    prefix = len(_ids(sd1, "ugly,"))
    assert chunk.fixes == [(prefix, easy)]
    assert chunk.tokens[1 + prefix : 1 + prefix + 3] == [0, 0, 0]
    assert chunk.tokens[1 + prefix + 3] == _ids(sd1, ",")[0]
    # What the transformer receives: token embeddings with the three vectors written in, plus positions.
    text_model = getattr(sd1.text_encoders[0], "text_model", sd1.text_encoders[0])
    seen = []
    handle = text_model.embeddings.register_forward_hook(lambda m, a, out: seen.append(out.detach().clone()))
    try:
        encoder.encode_group(["ugly, easynegative, blurry"])
    finally:
        handle.remove()
    ids = torch.tensor([chunk.tokens])
    manual = _token_embedding(sd1.text_encoders[0])(ids)
    manual[0, 1 + prefix : 1 + prefix + 3] = easy.vectors_for("")
    manual = manual + text_model.embeddings.position_embedding(torch.arange(77)).unsqueeze(0)
    assert torch.allclose(seen[0], manual, atol=1e-6)


def test_embedding_crossing_a_chunk_boundary_moves_whole(folder, sd1):
    found = EmbeddingDatabase(folder).for_model(sd1)
    text = "a " * 74 + "easynegative dog"
    first, second = chunk_text(text, sd1.tokenizers[0], EncodeOptions(), found)
    eos = sd1.tokenizers[0].eos_token_id
    assert first.fixes == [] and first.tokens[75] == eos and first.tokens[74] == _ids(sd1, "a")[0]
    assert [offset for offset, _ in second.fixes] == [0] and second.tokens[1:4] == [0, 0, 0]
    assert second.tokens[4] == _ids(sd1, "dog")[0]
    # Exactly filling the chunk: no move.
    (only,) = chunk_text("a " * 72 + "easynegative", sd1.tokenizers[0], EncodeOptions(), found)
    assert only.fixes[0][0] == 72 and len(only.tokens) == CHUNK_TOKENS + 2


def test_comma_backtrack_carries_the_embedding_along(folder, sd1):
    found = EmbeddingDatabase(folder).for_model(sd1)
    text = "a " * 65 + ", b catlike " + "c " * 10
    first, second = chunk_text(text, sd1.tokenizers[0], EncodeOptions(), found)
    assert first.fixes == [] and second.fixes and second.tokens[1 + second.fixes[0][0]] == 0


def test_weight_in_brackets_applies_to_the_slots(folder, sd1):
    found = EmbeddingDatabase(folder).for_model(sd1)
    (chunk,) = chunk_text("a (easynegative:1.5) b", sd1.tokenizers[0], EncodeOptions(), found)
    offset = chunk.fixes[0][0]
    assert chunk.multipliers[1 + offset : 1 + offset + 3] == [1.5] * 3
    assert chunk.multipliers[offset] == 1.0 and chunk.multipliers[1 + offset + 3] == 1.0
    encoder = PromptEncoder(sd1, found)
    weighted = encoder.encode_group(["a (easynegative:1.5) b"])[0].crossattn
    plain = encoder.encode_group(["a easynegative b"])[0].crossattn
    assert not torch.allclose(weighted, plain)


def test_longest_name_wins(tmp_path, sd1):
    save_file({"emb_params": torch.randn(1, 32)}, tmp_path / "blue.safetensors")
    save_file({"emb_params": torch.randn(2, 32)}, tmp_path / "bluesky.safetensors")
    found = EmbeddingDatabase(tmp_path).for_model(sd1)
    (chunk,) = chunk_text("bluesky", sd1.tokenizers[0], EncodeOptions(), found)
    assert [e.name for _, e in chunk.fixes] == ["bluesky"]


def test_ti_hashes_in_infotext_positive_and_negative(folder, sd1):
    found = EmbeddingDatabase(folder).for_model(sd1)
    p = Txt2ImgParams(prompt="a catlike", negative_prompt="easynegative", steps=2, width=64, height=64, seed=1,
                      save_images=False)
    result = txt2img(sd1, p, embeddings=found)
    text = result.infotexts[0]
    digest = lambda path: hashlib.sha256(path.read_bytes()).hexdigest()[:12]  # noqa: E731
    expected = f"catlike: {digest(folder / 'catlike.pt')}, easynegative: {digest(folder / 'easynegative.safetensors')}"
    assert parse_infotext(text)["TI hashes"] == expected
    assert text.index("TI hashes") < text.index("Version")
    plain = txt2img(sd1, p)  # without the database: no TI hashes, another image
    assert "TI hashes" not in plain.infotexts[0]
    assert plain.images[0].tobytes() != result.images[0].tobytes()


def test_sdxl_embedding_uses_clip_l_and_clip_g(tmp_path):
    sdxl = make_tiny_model("sdxl")
    save_file({"clip_l": torch.randn(2, 32), "clip_g": torch.randn(2, 32)}, tmp_path / "xlstyle.safetensors")
    save_file({"emb_params": torch.randn(2, 32)}, tmp_path / "oldstyle.safetensors")
    found = EmbeddingDatabase(tmp_path).for_model(sdxl)
    assert set(found.loaded) == {"xlstyle"} and "SDXL" in found.skipped["oldstyle"][1]
    emb = found.loaded["xlstyle"]
    assert emb.shape == 64 and emb.vectors == 2
    seen = {}
    handles = [getattr(enc, "text_model", enc).embeddings.register_forward_hook(
        lambda m, a, out, i=i: seen.setdefault(i, out.detach().clone())) for i, enc in enumerate(sdxl.text_encoders)]
    try:
        PromptEncoder(sdxl, found).encode_group(["xlstyle"])
    finally:
        for handle in handles:
            handle.remove()
    for i, key in enumerate(("clip_l", "clip_g")):
        text_model = getattr(sdxl.text_encoders[i], "text_model", sdxl.text_encoders[i])
        positions = text_model.embeddings.position_embedding.weight[1:3]
        assert torch.allclose(seen[i][0, 1:3], emb.vectors_for(key) + positions, atol=1e-6)


def test_database_rereads_changed_files_and_state_wiring(tmp_path, sd1):
    flags = argparse.Namespace(data_dir=tmp_path, embeddings_dir=None)
    state = argparse.Namespace(flags=flags, embeddings=None)
    database = database_for(state)
    assert database is database_for(state) and database.directory == tmp_path / "embeddings"
    (tmp_path / "embeddings").mkdir()
    assert database.for_model(sd1).loaded == {}
    save_file({"emb_params": torch.randn(1, 32)}, tmp_path / "embeddings" / "fresh.safetensors")
    assert set(database.for_model(sd1).loaded) == {"fresh"}
    assert load_embedding(tmp_path / "embeddings" / "fresh.safetensors").name == "fresh"


def test_api_listings(tmp_path, folder):
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from webui.api import register_api
    from webui.flags import parse_flags
    from webui.state import SharedState

    (tmp_path / "models" / "VAE").mkdir(parents=True)
    (tmp_path / "models" / "VAE" / "kl-f8.safetensors").write_bytes(b"x")
    flags = parse_flags(["--data-dir", str(tmp_path), "--use-cpu", "all", "--precision", "full"])
    state = SharedState.create(flags)
    app = FastAPI()
    register_api(app, state)
    try:
        client = TestClient(app)
        listing = client.get("/sdapi/v1/embeddings").json()  # no model loaded: every readable file
        assert set(listing["loaded"]) == {"catlike", "bluestyle", "easynegative", "narrowthing"}
        assert listing["loaded"]["catlike"] == {"step": 500, "sd_checkpoint": "abcdef1234",
                                                "sd_checkpoint_name": "tiny", "shape": 32, "vectors": 1}
        save_file({"emb_params": torch.randn(1, 32)}, folder / "later.safetensors")
        assert client.post("/sdapi/v1/refresh-embeddings").status_code == 200
        assert "later" in client.get("/sdapi/v1/embeddings").json()["loaded"]
        assert client.get("/sdapi/v1/sd-vae").json() == [
            {"model_name": "kl-f8.safetensors", "filename": str((tmp_path / "models" / "VAE" / "kl-f8.safetensors").absolute())}]
        assert state.options["sd_vae"] == "Automatic"
    finally:
        state.queue.stop()
