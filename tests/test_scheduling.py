"""Prompt editing and alternation schedules, checked against A1111's documented results."""

import pytest

from prompt_parser import Timeline, get_learned_conditioning_prompt_schedules, prompt_schedule


def g(prompt, steps=10, hires_steps=None, old=False):
    return get_learned_conditioning_prompt_schedules([prompt], steps, hires_steps, old)[0]


@pytest.mark.parametrize(
    "prompt, expected",
    [
        ("test", [[10, "test"]]),
        ("a [b:3]", [[3, "a "], [10, "a b"]]),
        ("a [b: 3]", [[3, "a "], [10, "a b"]]),
        ("a [[[b]]:2]", [[2, "a "], [10, "a [[b]]"]]),
        ("[(a:2):3]", [[3, ""], [10, "(a:2)"]]),
        ("a [b : c : 1] d", [[1, "a b  d"], [10, "a  c  d"]]),
        ("a[b:[c:d:2]:1]e", [[1, "abe"], [2, "ace"], [10, "ade"]]),
        ("a [unbalanced", [[10, "a [unbalanced"]]),
        ("a [b:.5] c", [[5, "a  c"], [10, "a b c"]]),
        ("((a][:b:c [d:3]", [[3, "((a][:b:c "], [10, "((a][:b:c d"]]),
        ("[a|(b:1.1)]", [[s, "a" if s % 2 else "(b:1.1)"] for s in range(1, 11)]),
        ("[fe|]male", [[s, "female" if s % 2 else "male"] for s in range(1, 11)]),
        ("[fe|||]male", [[s, "female" if s % 4 == 1 else "male"] for s in range(1, 11)]),
    ],
)
def test_a1111_documented_examples(prompt, expected):
    assert g(prompt) == expected


def test_from_to_and_remove():
    assert g("a [cat:dog:4] b") == [[4, "a cat b"], [10, "a dog b"]]
    assert g("a [cat::4] b") == [[4, "a cat b"], [10, "a  b"]]
    assert g("[cat:dog:0.25]", 20) == [[5, "cat"], [20, "dog"]]


def test_when_edge_values():
    assert g("[a:b:1.0]") == [[10, "a"]]  # a dot makes it a fraction: all steps
    assert g("[a:b:1]") == [[1, "a"], [10, "b"]]  # step 1
    assert g("[a:b:0]") == [[10, "b"]]
    assert g("[a:b:-3]") == [[10, "b"]]
    assert g("[a:b:50]") == [[10, "a"]]  # clamped
    assert g("[a:b:1e1]", 20) == [[10, "a"], [20, "b"]]  # exponents are integers without a dot
    assert g("[a:b:1e999]") == [[10, "a"]]  # A1111 overflows here; we clamp
    assert g("[a:b:-1e999]") == [[10, "b"]]
    assert g("[a:b:+2]") == [[2, "a"], [10, "b"]]
    assert g("[a:b:2.]") == [[10, "a"]]  # 2.0 of the steps


def test_nested_alternation_uses_the_same_step():
    assert [text for _, text in g("[a|[b|c]]", 4)] == ["a", "c", "a", "c"]


def test_alternation_and_edit_together():
    schedule = g("[x|y] [p:q:2]", 4)
    assert schedule == [[1, "x p"], [2, "y p"], [3, "x q"], [4, "y q"]]


def test_not_syntax_is_kept_whole():
    for prompt in ["a | b", "[a:b|c:2]", "trailing \\", "[a:b:c:5]", "[a:5x]", "back\\\nslash [a:2]"]:
        assert g(prompt) == [[10, prompt]]


def test_bad_bracket_pair_is_text_but_others_still_work():
    assert g("[a:b] [c:2]") == [[2, "[a:b] "], [10, "[a:b] c"]]
    assert g("(a:b:c) [c:2]") == [[2, "(a:b:c) "], [10, "(a:b:c) c"]]
    assert g("[ ( ] [c:2]") == [[2, "[ ( ] "], [10, "[ ( ] c"]]


def test_escapes_stay_for_the_emphasis_parser():
    assert g("\\[a:b:2\\]") == [[10, "\\[a:b:2\\]"]]
    assert g("[\\(a\\):b:2]") == [[2, "\\(a\\)"], [10, "b"]]


def test_hires_pass_integers_count_on_from_first_pass():
    # 20 first-pass steps, 10 hires steps: 25 is hires step 5.
    assert g("[a:b:25]", 20, 10) == [[5, "a"], [10, "b"]]
    assert g("[a:b:15]", 20, 10) == [[10, "b"]]  # switched during the first pass


def test_hires_pass_fractions_cover_one_to_two():
    assert g("a [b:1.5] c", 10, 10) == [[5, "a  c"], [10, "a b c"]]
    assert g("a [b:.5] c", 10, 10) == [[10, "a b c"]]
    assert g("[a:b:1.25]", 20, 10) == [[2, "a"], [10, "b"]]
    # Float arithmetic as in A1111: (1.2 - 1.0) * 10 is 1.999..., truncated to 1.
    assert g("[a:b:1.2]", 20, 10) == [[1, "a"], [10, "b"]]


def test_old_timelines():
    # Values below 1 are fractions, everything else is a step; the hires count is ignored.
    assert g("[a:b:0.5]", 10, None, True) == [[5, "a"], [10, "b"]]
    assert g("[a:b:1.5]", 10, None, True) == [[1, "a"], [10, "b"]]
    assert g("[a:b:1.5]", 10, 30, True) == [[1, "a"], [10, "b"]]
    assert g("[a:b:3]", 10, 30, True) == [[3, "a"], [10, "b"]]


def test_output_order_follows_input_with_duplicates():
    result = get_learned_conditioning_prompt_schedules(["x [a:2]", "y", "x [a:2]"], 4)
    assert result == [[[2, "x "], [4, "x a"]], [[4, "y"]], [[2, "x "], [4, "x a"]]]


def test_timeline_steps():
    assert Timeline(20).steps == 20
    assert Timeline(20, 10).steps == 10
    assert Timeline(20, 10, old=True).steps == 20


@pytest.mark.parametrize("depth", [500, 5000])
def test_deep_nesting_is_parsed_without_recursion(depth):
    deep = "[" * depth + "a" + "]" * depth
    assert prompt_schedule(deep, Timeline(10)) == ((10, deep),)
    edits = "[a:" * depth + "b" + ":5]" * depth
    schedule = prompt_schedule(edits, Timeline(10))
    assert schedule == ((5, "a"), (10, "b"))


def test_zero_steps_does_not_raise():
    assert g("[a:b:0.5] [c|d]", 0) == [[0, "a d"]]  # what A1111 computes
