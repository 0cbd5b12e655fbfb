"""Prompt editing and alternation: which text applies at which sampling step.

Parsing. A1111 reads prompts with an ambiguous Earley grammar whose top level accepts
stray brackets and colons as text; that costs seconds on long prompts and minutes on deep
nesting. We get the same readings in linear time:
  1. the prompt is cut into tokens (text runs, numbers, bracket characters, `:` and `|`);
  2. bracket pairs are matched with a stack; each matched pair is parsed once by Lark's
     LALR parser (grammar.lark), innermost first, an inner pair standing in as one token;
  3. a pair is structure (edit, alternation or emphasis group) when it and everything in
     it parse; otherwise its brackets are plain text, as at A1111's top level, and so is
     every pair around it;
  4. a `|` left outside every alternation, or a backslash with nothing to escape, makes
     the whole prompt plain text, as a failed parse does in A1111.

Evaluation. The parse becomes a flat list of *segments*: pieces of text, each guarded by
the branch choices under which it appears ("the `from` side of edit 3", "option 1 of
alternation 0"). The text at a step joins the segments whose guards hold, so nesting
depth never touches the Python stack.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import lark


class _TokenStream(lark.lexer.Lexer):
    """Hands Lark the tokens that _parse made, instead of lexing text."""

    def __init__(self, lexer_conf):
        pass

    def lex(self, tokens, *_):
        return iter(tokens)


_GRAMMAR = Path(__file__).with_name("grammar.lark").read_text(encoding="utf-8")
_pair_parser = lark.Lark(_GRAMMAR, parser="lalr", lexer=_TokenStream, maybe_placeholders=True)

_TOKEN = re.compile(r"(?P<TEXT>(?:[^\\\[\]():|]|\\.)+)|(?P<SYNTAX>[][():|])|(?P<LONE_BACKSLASH>\\)")
_SYNTAX_TYPES = {
    "(": "_OPEN_ROUND", ")": "_CLOSE_ROUND", "[": "_OPEN_SQUARE", "]": "_CLOSE_SQUARE",
    ":": "_COLON", "|": "_BAR",
}
_CLOSER_OF = {"_OPEN_ROUND": "_CLOSE_ROUND", "_OPEN_SQUARE": "_CLOSE_SQUARE"}
# A1111 reads `when` with Lark's common SIGNED_NUMBER (exponents allowed); take the very
# same pattern from Lark.
_SIGNED_NUMBER = re.compile(
    lark.Lark("start: SIGNED_NUMBER\n%import common.SIGNED_NUMBER")
    .get_terminal("SIGNED_NUMBER").pattern.to_regexp()
)
_SPACES = re.compile(r"\s*")


def _number_in(run: str) -> str | None:
    """The number a text run consists of, spaces around it allowed, else None."""
    start = _SPACES.match(run).end()
    number = _SIGNED_NUMBER.match(run, start)
    if number is None or _SPACES.fullmatch(run, number.end()) is None:
        return None
    return number.group(0)


@dataclass(frozen=True)
class Timeline:
    """How the numbers in `[from:to:when]` map to steps.

    `base_steps` is the first pass's step count. In a hires-fix second pass,
    `hires_steps` is that pass's count: integers keep counting on from the first pass and
    fractions 1.0..2.0 cover the second pass. `old` selects A1111's pre-1.6 rule ("Use old
    prompt editing timelines"), which ignores the hires pass and reads every value below 1
    as a fraction.
    """

    base_steps: int
    hires_steps: int | None = None
    old: bool = False

    @property
    def steps(self) -> int:
        """The step count the schedule spans: the last entry always ends here."""
        if self.hires_steps is None or self.old:
            return self.base_steps
        return self.hires_steps

    def step_for(self, number: str) -> int:
        """The last step on which an edit written with `number` shows its `from` text."""
        steps = self.steps
        value = float(number)
        if self.old:
            value = value * steps if value < 1 else value
        elif "." in number:
            value = (value - (0.0 if self.hires_steps is None else 1.0)) * steps
        else:
            value = value - (0 if self.hires_steps is None else self.base_steps)
        # A1111 truncates and then clamps to `steps`; clamping first gives the same result
        # and keeps huge or infinite values (`1e999`) from overflowing int().
        if math.isnan(value):  # only from inf * 0 steps
            value = 0.0
        return math.trunc(max(min(value, steps), -1e18))


@dataclass(frozen=True)
class _Segment:
    text: str
    # (switch index, branch) pairs; for an edit branch 0 is `from`, 1 is `to`; for an
    # alternation the branch is the option number.
    guards: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class _ParsedPrompt:
    segments: tuple[_Segment, ...]
    # One entry per switch: the NUMBER text of an edit, or the option count (int) of an
    # alternation.
    switches: tuple[str | int, ...]

    @property
    def alternates(self) -> bool:
        return any(isinstance(switch, int) for switch in self.switches)


@lru_cache(maxsize=1024)
def _parse(prompt: str) -> _ParsedPrompt | None:
    """Parse a prompt, or return None when it is not valid editing syntax."""
    tokens = []
    for match in _TOKEN.finditer(prompt):
        if match.lastgroup == "LONE_BACKSLASH":
            return None
        run = match.group()
        if match.lastgroup == "SYNTAX":
            tokens.append(lark.Token(_SYNTAX_TYPES[run], run))
        else:
            tokens.append(lark.Token("NUMBER" if _number_in(run) else "TEXT", run))

    pairs: list[lark.Tree] = []  # parsed bracket pairs; a NESTED token holds an index
    frames: list[list[lark.Token]] = [[]]  # the top level, then each open bracket's tokens
    for token in tokens:
        if token.type in _CLOSER_OF:
            frames.append([token])
        elif token.type in ("_CLOSE_ROUND", "_CLOSE_SQUARE") and len(frames) > 1:
            frame = frames.pop()
            frame.append(token)
            if _CLOSER_OF[frame[0].type] != token.type:
                # A crossed pair such as `[ ( ]`: no bracket still open can close
                # properly, so all of them are text.
                frames = [[text for open_frame in frames for text in open_frame] + frame]
                continue
            pair = _parse_pair(frame)
            if pair is None:
                frames[-1].extend(frame)  # text, which also makes any enclosing pair text
            else:
                frames[-1].append(lark.Token("NESTED", str(len(pairs))))
                pairs.append(pair)
        else:
            frames[-1].append(token)
    top = [token for frame in frames for token in frame]  # unclosed brackets are text
    if any(token.type == "_BAR" for token in top):
        return None
    return _flatten(top, pairs)


def _parse_pair(tokens: list[lark.Token]) -> lark.Tree | None:
    try:
        return _pair_parser.parse(tokens)
    except lark.exceptions.LarkError:
        return None


def _flatten(top: list[lark.Token], pairs: list[lark.Tree]) -> _ParsedPrompt:
    segments: list[_Segment] = []
    switches: list[str | int] = []
    # Depth-first, left to right, with an explicit stack of (node, guards).
    stack: list[tuple[object, tuple[tuple[int, int], ...]]] = [(token, ()) for token in reversed(top)]
    while stack:
        node, guards = stack.pop()
        if node is None:  # the missing `from` of [to:when]
            continue
        if isinstance(node, lark.Token):
            if node.type == "NESTED":
                stack.append((pairs[int(node)], guards))
            else:  # text, numbers and the brackets of emphasis groups, verbatim
                segments.append(_Segment(str(node), guards))
            continue
        index = len(switches)
        if node.data == "edit":
            before, after, when = node.children
            switches.append(_number_in(when))
            children = [(before, guards + ((index, 0),)), (after, guards + ((index, 1),))]
        elif node.data == "alternation":
            switches.append(len(node.children))
            children = [(option, guards + ((index, i),)) for i, option in enumerate(node.children)]
        else:
            children = [(child, guards) for child in node.children]
        stack.extend(reversed(children))
    return _ParsedPrompt(tuple(_merge(segments)), tuple(switches))


def _merge(segments: list[_Segment]) -> list[_Segment]:
    """Join neighbouring segments with the same guards, so evaluation touches fewer."""
    merged: list[_Segment] = []
    for segment in segments:
        if merged and merged[-1].guards == segment.guards:
            merged[-1] = _Segment(merged[-1].text + segment.text, segment.guards)
        else:
            merged.append(segment)
    return merged


def prompt_schedule(prompt: str, timeline: Timeline) -> tuple[tuple[int, str], ...]:
    """The `(end_step, text)` pairs for one prompt, sorted by end step.

    An entry applies to every step up to and including its end step; the last one ends at
    `timeline.steps`. A prompt that is not valid editing syntax is used as it is.
    """
    steps = timeline.steps
    if "[" not in prompt:  # no editing possible: the parse would give the text back
        return ((steps, prompt),)
    parsed = _parse(prompt)
    if parsed is None:
        return ((steps, prompt),)

    edit_steps = {
        index: timeline.step_for(switch)
        for index, switch in enumerate(parsed.switches)
        if isinstance(switch, str)
    }
    points = {steps}
    points.update(step for step in edit_steps.values() if step >= 1)
    if parsed.alternates:
        points.update(range(1, steps + 1))

    def branch_at(index: int, step: int) -> int:
        switch = parsed.switches[index]
        if isinstance(switch, int):
            return (step - 1) % switch
        return 0 if step <= edit_steps[index] else 1

    schedule = []
    for step in sorted(points):
        branches = {}
        pieces = []
        for segment in parsed.segments:
            for index, branch in segment.guards:
                current = branches.get(index)
                if current is None:
                    current = branches[index] = branch_at(index, step)
                if current != branch:
                    break
            else:
                pieces.append(segment.text)
        schedule.append((step, "".join(pieces)))
    return tuple(schedule)


def get_learned_conditioning_prompt_schedules(
    prompts, base_steps, hires_steps=None, use_old_scheduling=False
):
    """A1111's function: one list of `[end_step, text]` per prompt, in input order.

    >>> get_learned_conditioning_prompt_schedules(["a [b:3]"], 10)
    [[[3, 'a '], [10, 'a b']]]
    """
    timeline = Timeline(base_steps, hires_steps, use_old_scheduling)
    cache = {prompt: prompt_schedule(prompt, timeline) for prompt in set(prompts)}
    return [[[step, text] for step, text in cache[prompt]] for prompt in prompts]
