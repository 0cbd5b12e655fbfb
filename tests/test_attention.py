"""Emphasis weights, escapes and BREAK, checked against A1111's documented results."""

import pytest

from prompt_parser import attention_runs, parse_prompt_attention


@pytest.mark.parametrize(
    "text, expected",
    [
        ("normal text", [["normal text", 1.0]]),
        ("an (important) word", [["an ", 1.0], ["important", 1.1], [" word", 1.0]]),
        ("(unbalanced", [["unbalanced", 1.1]]),
        ("\\(literal\\]", [["(literal]", 1.0]]),
        ("(unnecessary)(parens)", [["unnecessaryparens", 1.1]]),
        (
            "a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
            [
                ["a ", 1.0],
                ["house", 1.5730000000000004],
                [" ", 1.1],
                ["on", 1.0],
                [" a ", 1.1],
                ["hill", 0.55],
                [", sun, ", 1.1],
                ["sky", 1.4641000000000006],
                [".", 1.1],
            ],
        ),
    ],
)
def test_a1111_documented_examples(text, expected):
    assert parse_prompt_attention(text) == expected


def test_weights():
    assert parse_prompt_attention("(a:1.3)") == [["a", 1.3]]
    assert parse_prompt_attention("( a : 1.3 )") == [[" a ", 1.3]]
    assert parse_prompt_attention("((a:1.5):2)") == [["a", 3.0]]
    assert parse_prompt_attention("(a:-1)") == [["a", -1.0]]
    assert parse_prompt_attention("[a]") == [["a", 1 / 1.1]]
    assert parse_prompt_attention("[[a]]") == [["a", 1 / 1.1 / 1.1]]
    assert parse_prompt_attention("([a])") == [["a", 1 / 1.1 * 1.1]]


def test_square_brackets_have_no_weight_form():
    assert parse_prompt_attention("[a:1.5]") == [["a:1.5", 1 / 1.1]]


def test_exponent_is_not_a_weight():
    assert parse_prompt_attention("(a:1e2)") == [["a:1e2", 1.1]]


def test_malformed_weight_is_text_instead_of_an_error():
    # A1111 raises ValueError on these.
    assert parse_prompt_attention("(a:1.2.3)") == [["a:1.2.3", 1.1]]
    assert parse_prompt_attention("(a:.)") == [["a:.", 1.1]]
    assert parse_prompt_attention("x (a: -. ) y") == [["x ", 1.0], ["a: -. ", 1.1], [" y", 1.0]]


def test_stray_closers_and_colons_are_text():
    assert parse_prompt_attention("a) b] c:d") == [["a) b] c:d", 1.0]]
    assert parse_prompt_attention("a:1.2) b") == [["a:1.2) b", 1.0]]


def test_unclosed_groups_apply_round_then_square():
    assert parse_prompt_attention("[a (b") == [["a ", 1 / 1.1], ["b", 1.1 * (1 / 1.1)]]


def test_escapes():
    assert parse_prompt_attention("\\\\") == [["\\", 1.0]]
    assert parse_prompt_attention("a \\x b") == [["a x b", 1.0]]
    assert parse_prompt_attention("(\\()") == [["(", 1.1]]
    assert parse_prompt_attention("end \\") == [["end ", 1.0]]


def test_break():
    assert parse_prompt_attention("a BREAK b") == [["a", 1.0], ["BREAK", -1], ["b", 1.0]]
    assert parse_prompt_attention("a BREAK") == [["a", 1.0], ["BREAK", -1], ["", 1.0]]
    assert parse_prompt_attention("a\nBREAK\n\nb") == [["a", 1.0], ["BREAK", -1], ["b", 1.0]]
    assert parse_prompt_attention("BREAKING a") == [["BREAKING a", 1.0]]
    assert parse_prompt_attention("a break b") == [["a break b", 1.0]]
    # A BREAK inside brackets gets its marker multiplied, so encoders read it as a word.
    assert parse_prompt_attention("(a BREAK b)") == [["a", 1.1], ["BREAK", -1.1], ["b", 1.1]]


def test_two_breaks_leave_an_empty_run_between():
    assert parse_prompt_attention("a BREAK BREAK b") == [
        ["a", 1.0], ["BREAK", -1], ["", 1.0], ["BREAK", -1], ["b", 1.0]
    ]


def test_empty():
    assert parse_prompt_attention("") == [["", 1.0]]
    assert parse_prompt_attention("()") == [["", 1.0]]


def test_cached_form_is_immutable_and_equal():
    assert attention_runs("a (b)") == (("a ", 1.0), ("b", 1.1))
    runs = parse_prompt_attention("a (b)")
    runs[0][0] = "changed"
    assert parse_prompt_attention("a (b)")[0][0] == "a "
