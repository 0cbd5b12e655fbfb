"""Composable diffusion: `a cat :1.2 AND a dog` splits a prompt into weighted parts."""

from __future__ import annotations

import re

_AND = re.compile(r"\bAND\b")
_PART_WEIGHT = re.compile(r"[-+]?(?:\d+\.?|\d*\.\d+)")


def split_and(prompt: str) -> list[tuple[str, float]]:
    """The `(text, weight)` parts of a prompt, split at the uppercase word AND.

    A part may end in `:number`, its weight (1.0 without one). Trailing spaces are not
    part of a part's text; leading ones are, as in A1111 (`"a AND b"` gives "a" and " b").
    """
    parts = []
    for part in _AND.split(prompt):
        text, colon, tail = part.rpartition(":")
        if colon and _PART_WEIGHT.fullmatch(tail.strip()):
            parts.append((text.rstrip(), float(tail)))
        else:
            parts.append((part.rstrip(), 1.0))
    return parts


def get_multicond_prompt_list(prompts):
    """A1111's function: `(res_indexes, prompt_flat_list, prompt_indexes)`.

    Parts are deduplicated by exact text across all prompts: `prompt_flat_list` holds each
    distinct text once, `prompt_indexes` maps text to its index there, and `res_indexes`
    has, per prompt, its `(index, weight)` pairs.
    """
    res_indexes = []
    prompt_flat_list: list[str] = []
    prompt_indexes: dict[str, int] = {}
    for prompt in prompts:
        indexes = []
        for text, weight in split_and(prompt):
            index = prompt_indexes.get(text)
            if index is None:
                index = prompt_indexes[text] = len(prompt_flat_list)
                prompt_flat_list.append(text)
            indexes.append((index, weight))
        res_indexes.append(indexes)
    return res_indexes, prompt_flat_list, prompt_indexes
