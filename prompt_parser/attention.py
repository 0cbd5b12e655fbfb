"""Emphasis: `(text)`, `[text]`, `(text:1.3)`, escapes and BREAK, as A1111 weighs them.

The input is one scheduled text (prompt editing already resolved); the output is a list
of `[text, weight]` runs for the text encoder.
"""

from __future__ import annotations

import re
from functools import lru_cache

ROUND_MULTIPLIER = 1.1
SQUARE_MULTIPLIER = 1 / 1.1
BREAK = ("BREAK", -1)

# One token per match, tried in this order: an escape (a backslash and the character it
# protects; a backslash before anything else is dropped), an opening bracket, a weight
# with the `)` that closes it, a closing bracket, a run of plain text, a lone colon.
_TOKEN = re.compile(
    r"""
      \\(?P<escaped>[()\[\]\\])
    | \\
    | (?P<open>[(\[])
    | :\s*(?P<weight>[+-]?[.\d]+)\s*\)
    | (?P<close>[)\]])
    | [^\\()\[\]:]+
    | :
    """,
    re.VERBOSE,
)
# BREAK and the whitespace around it (A1111's \s*\bBREAK\b\s*). The whitespace is stripped from the pieces
# instead of matched: that pattern backtracks over every whitespace run, quadratic on long runs of spaces.
_BREAK = re.compile(r"\bBREAK\b")


def parse_prompt_attention(text: str) -> list[list]:
    """A1111's function: the `[text, weight]` runs of an emphasised text.

    >>> parse_prompt_attention("an (important) word")
    [['an ', 1.0], ['important', 1.1], [' word', 1.0]]

    BREAK comes out as `["BREAK", -1]`. Unlike A1111, a malformed weight such as
    `(a:1.2.3)` never raises: it is read as text, like any other colon that is not a
    weight, so that example gives `[["a:1.2.3", 1.1]]`.
    """
    return [[run, weight] for run, weight in attention_runs(text)]


@lru_cache(maxsize=4096)
def attention_runs(text: str) -> tuple[tuple[str, float], ...]:
    """Cached, immutable form of parse_prompt_attention."""
    runs: list[list] = []
    open_round: list[int] = []  # index in `runs` where each open group starts
    open_square: list[int] = []

    def multiply_from(start: int, factor: float) -> None:
        for run in runs[start:]:
            run[1] *= factor

    def add_text(plain: str) -> None:
        pieces = _BREAK.split(plain)
        for i, piece in enumerate(pieces):
            if i:
                runs.append(list(BREAK))
                piece = piece.lstrip()  # str.strip's whitespace is re's \s
            if i < len(pieces) - 1:
                piece = piece.rstrip()
            runs.append([piece, 1.0])

    for match in _TOKEN.finditer(text):
        token = match.group()
        if token.startswith("\\"):
            runs.append([match.group("escaped") or "", 1.0])
        elif match.group("open"):
            (open_round if token == "(" else open_square).append(len(runs))
        elif match.group("weight") is not None and open_round:
            weight = _to_float(match.group("weight"))
            if weight is None:  # `(a:1.2.3)`: the colon part is text, `)` closes
                add_text(token[:-1])
                multiply_from(open_round.pop(), ROUND_MULTIPLIER)
            else:
                multiply_from(open_round.pop(), weight)
        elif token == ")" and open_round:
            multiply_from(open_round.pop(), ROUND_MULTIPLIER)
        elif token == "]" and open_square:
            multiply_from(open_square.pop(), SQUARE_MULTIPLIER)
        else:  # plain text, a stray closing bracket, a colon that is no weight
            add_text(token)

    # Groups left open still count, round ones first, each from where it opened.
    for start in open_round:
        multiply_from(start, ROUND_MULTIPLIER)
    for start in open_square:
        multiply_from(start, SQUARE_MULTIPLIER)

    if not runs:
        return (("", 1.0),)
    merged = [runs[0]]
    for run in runs[1:]:  # neighbours of exactly equal weight become one run
        if run[1] == merged[-1][1]:
            merged[-1][0] += run[0]
        else:
            merged.append(run)
    return tuple((run, weight) for run, weight in merged)


def _to_float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None
