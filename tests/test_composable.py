"""AND: composable diffusion parts and their weights."""

from prompt_parser import get_multicond_prompt_list, split_and


def test_split_keeps_leading_space_drops_trailing():
    assert split_and("a AND b") == [("a", 1.0), (" b", 1.0)]


def test_part_weights():
    assert split_and("a cat :1.2 AND a dog: -0.5  ") == [("a cat", 1.2), (" a dog", -0.5)]
    assert split_and("x:.5 AND y:2. AND z:+3") == [("x", 0.5), (" y", 2.0), (" z", 3.0)]


def test_not_a_part_weight():
    assert split_and("a:1.2.3") == [("a:1.2.3", 1.0)]
    assert split_and("(a:1.2)") == [("(a:1.2)", 1.0)]
    assert split_and("a:1e2") == [("a:1e2", 1.0)]
    assert split_and("a: b") == [("a: b", 1.0)]


def test_only_the_uppercase_word_splits():
    assert split_and("ANDROID and sand") == [("ANDROID and sand", 1.0)]
    assert split_and("a AND") == [("a", 1.0), ("", 1.0)]


def test_multicond_list_deduplicates_by_exact_text():
    res_indexes, flat, indexes = get_multicond_prompt_list(["a AND a", "a AND b:2"])
    assert res_indexes == [[(0, 1.0), (1, 1.0)], [(0, 1.0), (2, 2.0)]]
    assert flat == ["a", " a", " b"]
    assert indexes == {"a": 0, " a": 1, " b": 2}
