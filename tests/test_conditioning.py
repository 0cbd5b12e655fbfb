"""Text conditioning follows A1111's chunking and emphasis math."""

import pytest
import torch

from tiny_models import make_tiny_model
from webui.generation.conditioning import CHUNK_TOKENS, EncodeOptions, PromptEncoder, chunk_text, token_count

BOS, EOS, COMMA = 49406, 49407, 267


@pytest.fixture(scope="module")
def sd1():
    model = make_tiny_model("sd1")
    # Real CLIP features have a non-zero mean; a fresh final layer norm's are zero-mean to rounding, which
    # would hide the mean that "Original" emphasis restores.
    encoder = model.text_encoders[0]
    norm = getattr(encoder, "text_model", encoder).final_layer_norm
    with torch.no_grad():
        norm.bias.copy_(torch.linspace(0.2, 0.8, norm.bias.numel()))
    return model


@pytest.fixture(scope="module")
def tokenizer(sd1):
    return sd1.tokenizers[0]


def raw_hidden(model, ids, layer_from_end=1, final_norm=True, encoder_index=0):
    encoder = model.text_encoders[encoder_index]
    out = encoder(input_ids=torch.tensor([ids]), output_hidden_states=True)
    hidden = out.hidden_states[-layer_from_end]
    if final_norm:
        hidden = getattr(encoder, "text_model", encoder).final_layer_norm(hidden)
    return hidden[0]


def test_chunk_layout_and_padding(tokenizer):
    (chunk,) = chunk_text("a photo of a cat", tokenizer, EncodeOptions())
    assert chunk.tokens[:7] == [BOS, 320, 1125, 539, 320, 2368, EOS]
    assert len(chunk.tokens) == 77 and chunk.tokens[7:] == [EOS] * 70
    assert chunk.multipliers == [1.0] * 77
    (empty,) = chunk_text("", tokenizer, EncodeOptions())
    assert empty.tokens == [BOS] + [EOS] * 76


def test_emphasis_multipliers_follow_tokens(tokenizer):
    (chunk,) = chunk_text("a (cat:1.5) [dog]", tokenizer, EncodeOptions())
    cat, dog = tokenizer.convert_tokens_to_ids(["cat</w>", "dog</w>"])
    assert chunk.multipliers[chunk.tokens.index(cat)] == 1.5
    assert chunk.multipliers[chunk.tokens.index(dog)] == pytest.approx(1 / 1.1)
    ignored = chunk_text("a (cat:1.5)", tokenizer, EncodeOptions(emphasis="Ignore"))[0]
    assert ignored.multipliers[ignored.tokens.index(cat)] == 1.5  # parsed; Ignore acts at encode time
    literal = chunk_text("a (cat:1.5)", tokenizer, EncodeOptions(emphasis="None"))[0]
    as_words = tokenizer("a (cat:1.5)", add_special_tokens=False)["input_ids"]
    assert literal.tokens[1 : 1 + len(as_words)] == as_words and set(literal.multipliers) == {1.0}


def test_long_prompts_and_break_make_more_chunks(tokenizer):
    words = " ".join(["cat"] * 100)
    chunks = chunk_text(words, tokenizer, EncodeOptions())
    assert len(chunks) == 2 and all(len(c.tokens) == 77 for c in chunks)
    assert chunks[0].tokens[1:76] == [chunks[0].tokens[1]] * CHUNK_TOKENS
    assert len(chunk_text("a BREAK b", tokenizer, EncodeOptions())) == 2
    assert len(chunk_text("BREAK a", tokenizer, EncodeOptions())) == 2  # all-padding chunk first
    exact = " ".join(["cat"] * 75)
    assert len(chunk_text(exact + " BREAK b", tokenizer, EncodeOptions())) == 2  # no extra chunk
    # A BREAK inside brackets is only a word (A1111's quirk).
    assert len(chunk_text("(a BREAK b)", tokenizer, EncodeOptions())) == 1


def test_comma_backtrack_moves_the_last_phrase(tokenizer):
    text = " ".join(["cat"] * 70) + ", big red dog house now"
    first, second = chunk_text(text, tokenizer, EncodeOptions())
    assert first.tokens[71] == COMMA and first.tokens[72:] == [EOS] * 5
    assert second.tokens[1:7] == tokenizer(" big red dog house now", add_special_tokens=False)["input_ids"] + [EOS]
    no_backtrack = chunk_text(text, tokenizer, EncodeOptions(comma_padding_backtrack=0))
    assert no_backtrack[0].tokens[71] == COMMA and no_backtrack[0].tokens[72] != EOS


def test_token_counter(tokenizer):
    assert token_count("a photo of a cat", tokenizer) == (5, 75)
    assert token_count(" ".join(["cat"] * 100), tokenizer) == (100, 150)


def test_plain_text_equals_the_encoder_output(sd1):
    (cond,) = PromptEncoder(sd1).encode_group(["a cat"])
    expected = raw_hidden(sd1, [BOS, 320, 2368] + [EOS] * 74)
    torch.testing.assert_close(cond.crossattn, expected)


def test_original_emphasis_scales_tokens_and_restores_the_mean(sd1):
    (cond,) = PromptEncoder(sd1).encode_group(["a (cat:1.5)"])
    z = raw_hidden(sd1, [BOS, 320, 2368] + [EOS] * 74)
    multipliers = torch.ones(77, 1)
    multipliers[2] = 1.5
    scaled = z * multipliers
    torch.testing.assert_close(cond.crossattn, scaled * (z.mean() / scaled.mean()))
    (no_norm,) = PromptEncoder(sd1).encode_group(["a (cat:1.5)"], EncodeOptions(emphasis="No norm"))
    torch.testing.assert_close(no_norm.crossattn, scaled)
    (ignored,) = PromptEncoder(sd1).encode_group(["a (cat:1.5)"], EncodeOptions(emphasis="Ignore"))
    torch.testing.assert_close(ignored.crossattn, z)


def test_group_mean_counts_repeated_texts(sd1):
    encoder = PromptEncoder(sd1)
    weighted = encoder.encode_group(["(a:1.3)", "b"], counts=[3, 1])
    repeated = encoder.encode_group(["(a:1.3)", "(a:1.3)", "(a:1.3)", "b"])
    torch.testing.assert_close(weighted[0].crossattn, repeated[0].crossattn)
    torch.testing.assert_close(weighted[1].crossattn, repeated[3].crossattn)
    alone = encoder.encode_group(["(a:1.3)"])
    assert not torch.allclose(alone[0].crossattn, weighted[0].crossattn)  # A1111's coupling


def test_texts_in_a_group_get_equal_chunk_counts(sd1):
    short, long = PromptEncoder(sd1).encode_group(["a", "a BREAK b"])
    assert short.crossattn.shape == long.crossattn.shape == (154, 32)
    empty_chunk = raw_hidden(sd1, [BOS] + [EOS] * 76)
    torch.testing.assert_close(short.crossattn[77:], empty_chunk)


def test_clip_skip(sd1):
    skip1, skip2 = (PromptEncoder(sd1).encode_group(["a cat"], EncodeOptions(clip_skip=n))[0] for n in (1, 2))
    torch.testing.assert_close(skip2.crossattn, raw_hidden(sd1, [BOS, 320, 2368] + [EOS] * 74, layer_from_end=2))
    assert not torch.allclose(skip1.crossattn, skip2.crossattn)


def test_openclip_pads_with_zero_after_the_first_eos():
    sd2 = make_tiny_model("sd2")
    seen = []
    sd2.text_encoders[0].register_forward_pre_hook(lambda m, a, kw: seen.append(kw["input_ids"].clone()), with_kwargs=True)
    PromptEncoder(sd2).encode_group(["a cat"])
    assert seen[0][0, :4].tolist() == [BOS, 320, 2368, EOS] and seen[0][0, 4:].tolist() == [0] * 73


def test_sdxl_two_encoders_pooled_and_zero_negative():
    sdxl = make_tiny_model("sdxl")
    encoder = PromptEncoder(sdxl)
    (cond,) = encoder.encode_group(["a cat"])
    ids = [BOS, 320, 2368] + [EOS] * 74
    clip_l = raw_hidden(sdxl, ids, layer_from_end=2, final_norm=False)
    big_g = raw_hidden(sdxl, [BOS, 320, 2368, EOS] + [0] * 73, layer_from_end=2, final_norm=False, encoder_index=1)
    torch.testing.assert_close(cond.crossattn, torch.cat([clip_l, big_g], dim=-1))
    pooled = sdxl.text_encoders[1](input_ids=torch.tensor([[BOS, 320, 2368, EOS] + [0] * 73])).text_embeds[0]
    torch.testing.assert_close(cond.pooled, pooled)
    zeros = encoder.zeros_like_empty()
    assert zeros.crossattn.shape == (77, 64) and not zeros.crossattn.any() and not zeros.pooled.any()


def test_original_emphasis_survives_a_zero_mean_hidden_state():
    # An untrained encoder's final layer norm can give a mean of exactly 0: 0/0 must not turn into NaNs.
    from webui.generation.conditioning import _apply_emphasis

    hidden = torch.tensor([[[1.0, -1.0], [2.0, -2.0]]])
    for multipliers in ([1.0, 1.0], [1.5, 1.0]):
        out = _apply_emphasis(hidden, torch.tensor([multipliers]), torch.ones(1), "Original")
        assert not torch.isnan(out).any()
        assert torch.equal(out, hidden * torch.tensor(multipliers).view(1, 2, 1))
