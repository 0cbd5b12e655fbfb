"""Infotext: A1111's text layout, byte for byte, and parsing it back to A1111's dictionary."""

from webui.generation.infotext import (
    INFOTEXT_FIELD_ORDER,
    create_infotext,
    old_hires_first_pass_size,
    order_params,
    parse_infotext,
    parse_version,
    quote,
    unquote,
)

# What A1111 adds to every parse when the text does not say otherwise.
DEFAULTS = {
    "Clip skip": "1",
    "Hires resize-1": 0,
    "Hires resize-2": 0,
    "Hires sampler": "Use same sampler",
    "Hires schedule type": "Use same scheduler",
    "Hires checkpoint": "Use same checkpoint",
    "Hires prompt": "",
    "Hires negative prompt": "",
    "Mask mode": "Inpaint masked",
    "Masked content": "original",
    "Inpaint area": "Whole picture",
    "Masked area padding": 32,
    "RNG": "GPU",
    "Schedule type": "Automatic",
    "Schedule max sigma": 0,
    "Schedule min sigma": 0,
    "Schedule rho": 0,
    "VAE Encoder": "Full",
    "VAE Decoder": "Full",
    "FP8 weight": "Disable",
    "Refiner switch by sampling steps": False,
}


def test_create_basic_layout():
    params = {"Steps": 20, "Sampler": "Euler a", "CFG scale": 7.0, "Seed": 1234, "Size": "512x768"}
    assert create_infotext("a cat", "ugly", params) == (
        "a cat\nNegative prompt: ugly\nSteps: 20, Sampler: Euler a, CFG scale: 7.0, Seed: 1234, Size: 512x768"
    )


def test_create_without_negative_prompt_and_none_values():
    params = {"Steps": 20, "Image CFG scale": None, "Seed": 5, "Variation seed": None, "Size": "64x64"}
    assert create_infotext("a cat", "", params) == "a cat\nSteps: 20, Seed: 5, Size: 64x64"


def test_create_quotes_only_commas_newlines_and_colons():
    params = {
        "Steps": 20,
        "Lora hashes": "add_detail: 7c6bad76eb54, other: 0123456789ab",
        "Hires prompt": 'line one\nline "two"',
        "Template": "a, b",
        "Wildcard": "日本語 ünïcödé",
        "Plain": 'has "quotes" but nothing else',
        "Styles": "日本, 語",
    }
    assert create_infotext("p", "", params) == (
        "p\n"
        'Steps: 20, Lora hashes: "add_detail: 7c6bad76eb54, other: 0123456789ab", '
        'Hires prompt: "line one\\nline \\"two\\"", Template: "a, b", Wildcard: 日本語 ünïcödé, '
        'Plain: has "quotes" but nothing else, Styles: "日本, 語"'
    )


def test_create_writes_a_value_equal_to_its_key_bare():
    params = {"Steps": 4, "ADetailer": "ADetailer", "Tiling": "True", "Flag": True}
    assert create_infotext("x", "", params) == "x\nSteps: 4, ADetailer, Tiling: True, Flag: True"


def test_create_multiline_prompts_and_strip():
    text = create_infotext("  first\nsecond", "neg one\nneg two", {"Steps": 1})
    assert text == "first\nsecond\nNegative prompt: neg one\nneg two\nSteps: 1"
    assert create_infotext("", "", {"Steps": 1, "Seed": 2}) == "Steps: 1, Seed: 2"


def test_quote_and_unquote():
    assert quote(7) == 7 and quote("plain") == "plain"
    assert quote("a:b") == '"a:b"'
    assert quote(["x", "y, z"]) == '["x", "y, z"]'  # JSON data stays JSON, as in A1111
    assert unquote('"a\\"b"') == 'a"b'
    assert unquote('"broken\\"') == '"broken\\"'  # not valid JSON: left as it is
    assert unquote("plain") == "plain" and unquote("") == ""


def test_order_params():
    mixed = {
        "Version": "v1.10.1",
        "Lora hashes": "x: 1",
        "Seed": 1,
        "Hires upscale": 2,
        "Denoising strength": 0.7,
        "Steps": 20,
        "User": "me",
        "Sampler": "Euler",
    }
    assert list(order_params(mixed)) == [
        "Steps",
        "Sampler",
        "Seed",
        "Denoising strength",
        "Lora hashes",
        "Hires upscale",
        "Version",
        "User",
    ]
    assert INFOTEXT_FIELD_ORDER[:4] == ("Steps", "Sampler", "Schedule type", "CFG scale")
    assert INFOTEXT_FIELD_ORDER[-1] == "Tiling"


def test_parse_hand_written_a1111_infotext_exactly():
    text = (
        "masterpiece, (best quality:1.2), a girl\n"
        "standing in the rain\n"
        "Negative prompt: lowres, bad anatomy\n"
        "Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 1234, Size: 512x768, "
        "Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Denoising strength: 0.7, Clip skip: 2, "
        'Hires upscale: 2, Hires upscaler: Latent, Lora hashes: "add_detail: 7c6bad76eb54", Version: v1.10.1'
    )
    assert parse_infotext(text) == {
        **DEFAULTS,
        "Prompt": "masterpiece, (best quality:1.2), a girl\nstanding in the rain",
        "Negative prompt": "lowres, bad anatomy",
        "Steps": "20",
        "Sampler": "DPM++ 2M",
        "Schedule type": "Karras",
        "CFG scale": "7",
        "Seed": "1234",
        "Size-1": "512",
        "Size-2": "768",
        "Model hash": "6ce0161689",
        "Model": "v1-5-pruned-emaonly",
        "Denoising strength": "0.7",
        "Clip skip": "2",
        "Hires upscale": "2",
        "Hires upscaler": "Latent",
        "Lora hashes": "add_detail: 7c6bad76eb54",
        "Version": "v1.10.1",
        "Emphasis": "Original",  # the prompt uses (…:1.2) and the text does not name a mode
    }


def test_round_trip():
    prompt = 'a "quoted" cat, on a mat: sitting\nsecond line with 日本語'
    negative = "blurry, lowres\nsecond negative line"
    params = {
        "Steps": 30,
        "Sampler": "Euler a",
        "CFG scale": 6.5,
        "Seed": 4294967293,
        "Size": "640x960",
        "Model": "my model",
        "Variation seed": 99,
        "Variation seed strength": 0.25,
        "Seed resize from": "512x512",
        "Hires resize": "1024x1536",
        "Hires prompt": 'hires, "detailed"\nsecond: line',
        "Wildcard prompt": "ünïcödé, ✓: ok",
        "Backslash": "C:\\models\\x",
        "Version": "v1.10.1",
    }
    parsed = parse_infotext(create_infotext(prompt, negative, params))
    assert parsed["Prompt"] == prompt
    assert parsed["Negative prompt"] == negative
    assert (parsed["Size-1"], parsed["Size-2"]) == ("640", "960")
    assert (parsed["Seed resize from-1"], parsed["Seed resize from-2"]) == ("512", "512")
    assert (parsed["Hires resize-1"], parsed["Hires resize-2"]) == ("1024", "1536")
    for key in ("Steps", "Sampler", "CFG scale", "Seed", "Model", "Variation seed", "Variation seed strength",
                "Hires prompt", "Wildcard prompt", "Backslash", "Version"):
        assert parsed[key] == str(params[key]), key
    assert "Size" not in parsed


def test_last_line_with_fewer_than_three_pairs_is_prompt_text():
    text = "a cat\nStyle: cute, Mood: calm"
    parsed = parse_infotext(text)
    assert parsed["Prompt"] == "a cat\nStyle: cute, Mood: calm"
    assert "Style" not in parsed and "Mood" not in parsed
    negative = parse_infotext("a cat\nNegative prompt: dog\nonly: two, pairs: here")
    assert negative["Negative prompt"] == "dog\nonly: two, pairs: here"


def test_negative_prompt_switch_and_line_handling():
    text = "\n\n  first  \n\nthird\nNegative prompt:   bad\n\nworse\nSteps: 1, Seed: 2, CFG scale: 3"
    parsed = parse_infotext(text)
    assert parsed["Prompt"] == "first\n\nthird"
    assert parsed["Negative prompt"] == "bad\n\nworse"
    # Empty lines right after the label are dropped, as in A1111 (no separator yet).
    parsed = parse_infotext("p\nNegative prompt:\n\nbad\nSteps: 1, Seed: 2, CFG scale: 3")
    assert parsed["Negative prompt"] == "bad"


def test_parse_only_prompt_gives_defaults():
    assert parse_infotext("just a prompt") == {**DEFAULTS, "Prompt": "just a prompt", "Negative prompt": ""}
    assert parse_infotext("") == {**DEFAULTS, "Prompt": "", "Negative prompt": ""}


def test_parse_values_quoted_size_and_empty():
    text = 'p\nSteps: 20, Note: "a, b: \\"c\\"", Odd: 12x, Empty: , Spaced:   7  , Hash: "0x1", Id: "abc"'
    parsed = parse_infotext(text)
    assert parsed["Note"] == 'a, b: "c"'
    assert parsed["Odd"] == "12x"
    assert "Empty" not in parsed  # A1111 skips a pair with an empty value
    assert parsed["Spaced"] == "7  "
    assert (parsed["Hash-1"], parsed["Hash-2"]) == ("0", "1")  # a quoted WxH splits too, as in A1111
    assert parsed["Id"] == "abc"


def test_parse_keeps_given_values_over_defaults_and_skip_fields():
    text = "p\nSteps: 1, Clip skip: 2, RNG: CPU, FP8 weight: Enable for SDXL, Emphasis: No norm"
    parsed = parse_infotext(text, skip_fields=["Steps"])
    assert (parsed["Clip skip"], parsed["RNG"], parsed["Emphasis"]) == ("2", "CPU", "No norm")
    assert parsed["Cache FP16 weight for LoRA"] is False  # only added when FP8 is on
    assert "Steps" not in parsed
    assert "Cache FP16 weight for LoRA" not in parse_infotext("p\nSteps: 1, Seed: 2, CFG scale: 3")


def test_emphasis_default_only_when_prompts_use_emphasis():
    plain = parse_infotext("a cat BREAK a dog\nSteps: 1, Seed: 2, CFG scale: 3")
    assert "Emphasis" not in plain
    weighted = parse_infotext("a cat\nNegative prompt: [blurry]\nSteps: 1, Seed: 2, CFG scale: 3")
    assert weighted["Emphasis"] == "Original"


def test_hypernet_and_old_hires_fix():
    parsed = parse_infotext("a cat\nSteps: 1, Hypernet: anime, Hypernet strength: 0.5")
    assert parsed["Prompt"] == "a cat<hypernet:anime:0.5>"
    old = parse_infotext("a cat\nSteps: 1, Size: 1024x768, First pass size: 0x0, Seed: 3")
    assert (old["Size-1"], old["Size-2"]) == old_hires_first_pass_size(1024, 768) == (640, 448)
    assert (old["Hires resize-1"], old["Hires resize-2"]) == (1024, 768)
    given = parse_infotext("a cat\nSteps: 1, Size: 1024x768, First pass size: 512x384, Seed: 3")
    assert (given["Size-1"], given["Size-2"], given["Hires resize-1"]) == (512, 384, 1024)


def test_version_parsing():
    assert str(parse_version("v1.10.1")) == "1.10.1"
    assert str(parse_version("v1.7.0-225-g1234abc")) == "1.7.0.post225"
    assert str(parse_version("v1.6.0-RC-28-gdeadbee")) == "1.6.0rc0"
    assert parse_version("f0.0.17v1.8.0rc-latest-276-g29be1da7") is None
    assert parse_version(None) is None


def test_backcompat_flags():
    def parse(prompt, version, sampler="Euler", extra=""):
        return parse_infotext(f"{prompt}\nSteps: 1, Sampler: {sampler}, Seed: 2{extra}, Version: {version}")

    old = parse("a [cat:dog:0.5]", "v1.5.2", "DDIM", ", Refiner: sdxl_refiner")
    assert old["Old prompt editing timelines"] is True
    assert old["Pad conds v0"] is True
    assert old["Downcast alphas_cumprod"] is True
    assert old["Refiner switch by sampling steps"] is True

    no_bracket = parse("a cat", "v1.5.2")
    assert "Old prompt editing timelines" not in no_bracket and "Pad conds v0" not in no_bracket

    v170 = parse("a [cat:dog:0.5]", "v1.7.0-224-gabcdef0")
    assert v170["Downcast alphas_cumprod"] is True and "Old prompt editing timelines" not in v170
    assert "Downcast alphas_cumprod" not in parse("a", "v1.7.0-225-gabcdef0")

    new = parse("a [cat:dog:0.5]", "v1.10.1", "DDIM", ", Refiner: sdxl_refiner")
    for flag in ("Old prompt editing timelines", "Pad conds v0", "Downcast alphas_cumprod"):
        assert flag not in new
    assert new["Refiner switch by sampling steps"] is False

    # No version (or back-compat off): nothing is switched on.
    assert "Downcast alphas_cumprod" not in parse_infotext("a [b]\nSteps: 1, Seed: 2, CFG scale: 3")
    off = parse_infotext("a [b]\nSteps: 1, Seed: 2, Version: v1.5.0", backcompat=False)
    assert "Old prompt editing timelines" not in off
