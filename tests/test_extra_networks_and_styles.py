"""Extra-network tags and prompt styles."""

from prompt_parser import (
    ExtraNetwork,
    apply_styles_to_prompt,
    extract_extra_networks,
    merge_prompts,
    parse_extra_networks,
)


def test_tags_are_removed_and_returned_in_order():
    text, networks = extract_extra_networks("a cat <lora:film:0.8>, <hypernet:x:1> <lora:b:0.5:te=0.2>")
    assert text == "a cat ,  "
    assert networks == (
        ExtraNetwork("lora", ("film", "0.8")),
        ExtraNetwork("hypernet", ("x", "1")),
        ExtraNetwork("lora", ("b", "0.5", "te=0.2")),
    )


def test_positional_and_named_arguments():
    network = ExtraNetwork("lora", ("b", "0.5", "te=0.2", "a=b=c"))
    assert network.name == "b"
    assert network.positional == ["b", "0.5", "a=b=c"]
    assert network.named == {"te": "0.2"}


def test_grouped_by_kind_like_a1111():
    text, by_kind = parse_extra_networks("<lora:a:1> x <lora:b> <ti:c:2>")
    assert text == " x  "
    assert [n.items for n in by_kind["lora"]] == [("a", "1"), ("b",)]
    assert [n.items for n in by_kind["ti"]] == [("c", "2")]


def test_not_tags():
    for prompt in ["<lora>", "<:x:1>", "<lora:>", "a < b > c", "<lo ra:x:1>"]:
        assert extract_extra_networks(prompt) == (prompt, ())


def test_style_with_placeholder_wraps_the_prompt():
    assert merge_prompts("a photo of {prompt}, 35mm", "a cat") == "a photo of a cat, 35mm"


def test_style_without_placeholder_is_appended():
    assert merge_prompts(" 35mm, film ", " a cat ") == "a cat, 35mm, film"
    assert merge_prompts("35mm", "") == "35mm"
    assert merge_prompts("", "a cat") == "a cat"


def test_styles_apply_in_order():
    assert apply_styles_to_prompt("cat", ["art of {prompt}", "4k"]) == "art of cat, 4k"
