"""The typed API the generation code uses: one call turns a prompt into its schedule."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from .attention import BREAK, attention_runs
from .composable import split_and
from .extra_networks import ExtraNetwork, extract_extra_networks
from .scheduling import Timeline, prompt_schedule


@dataclass(frozen=True)
class ScheduledText:
    """`text` applies to every step up to and including `end_step`."""

    end_step: int
    text: str


@dataclass(frozen=True)
class PromptPart:
    """One AND part of a prompt: its weight and what it says at each step."""

    weight: float
    schedule: tuple[ScheduledText, ...]

    def text_at(self, call: int) -> str:
        """The text for the sampler's denoiser call number `call`, counted from 0.

        As in A1111, the first entry with `end_step >= call` applies, so calls 0 and 1
        both use the first step's text. Past the end the last text holds (A1111 falls
        back to the first one there, which only samplers that make extra calls reach).
        """
        for entry in self.schedule:
            if entry.end_step >= call:
                return entry.text
        return self.schedule[-1].text


@dataclass(frozen=True)
class PromptSchedule:
    """Everything the generation code needs from one prompt."""

    prompt: str
    parts: tuple[PromptPart, ...]
    extra_networks: tuple[ExtraNetwork, ...]
    timeline: Timeline

    @property
    def steps(self) -> int:
        return self.timeline.steps

    @property
    def texts(self) -> tuple[str, ...]:
        """Every distinct text the schedule uses, in order of first use: encode each once."""
        seen: dict[str, None] = {}
        for part in self.parts:
            for entry in part.schedule:
                seen.setdefault(entry.text)
        return tuple(seen)

    def at(self, call: int) -> tuple[tuple[str, float], ...]:
        """`(text, weight)` of each AND part at denoiser call `call` (see text_at)."""
        return tuple((part.text_at(call), part.weight) for part in self.parts)

    def weight_outside(self, bound: float) -> tuple[str, float] | None:
        """The first `(text, weight)` whose weight is outside -bound..bound (or NaN), among the emphasis
        runs of every scheduled text and the AND parts' weights; None when all are inside."""
        return _outside(bound, ((part.schedule[-1].text, part.weight, [entry.text for entry in part.schedule])
                                for part in self.parts))


def parse_prompt(
    prompt: str,
    base_steps: int,
    hires_steps: int | None = None,
    *,
    old_timelines: bool = False,
    negative: bool = False,
) -> PromptSchedule:
    """Schedule a prompt (styles already applied) for a run of `base_steps` steps.

    Pass `hires_steps` for the hires-fix second pass. Steps here are denoiser calls:
    double them for second-order samplers, as A1111 does. A negative prompt is neither
    split at AND nor stripped of extra-network tags, as in A1111. Never raises on any
    prompt text: what is not valid syntax is used literally.
    """
    timeline = Timeline(base_steps, hires_steps, old_timelines)
    if negative:
        text, networks, pieces = prompt, (), [(prompt, 1.0)]
    else:
        text, networks = extract_extra_networks(prompt)
        pieces = split_and(text)
    parts = tuple(
        PromptPart(weight, tuple(ScheduledText(*entry) for entry in prompt_schedule(piece, timeline)))
        for piece, weight in pieces
    )
    return PromptSchedule(prompt, parts, networks, timeline)


_BRACKETS = re.compile(r"\\.|[][()]", re.DOTALL)  # an escaped character, or a bracket


def bracket_depth(prompt: str) -> int:
    """How deeply the prompt's brackets, ( and [, nest. An unclosed one counts (A1111 applies its
    emphasis to the rest of the prompt); escaped ones do not. Servers bound this (webui's
    --max-prompt-nesting): parsing and emphasis weights grow with it, and no real prompt nests deeply."""
    depth = deepest = 0
    for match in _BRACKETS.finditer(prompt):
        if match.group() in "([":
            depth += 1
            deepest = max(deepest, depth)
        elif match.group() in ")]":
            depth = max(depth - 1, 0)
    return deepest


def and_parts(prompt: str) -> int:
    """How many AND parts a (positive) prompt has: each is one more UNet row per step. Servers bound this
    (webui's --max-prompt-parts)."""
    return len(split_and(extract_extra_networks(prompt)[0]))


def weight_outside(prompt: str, bound: float, negative: bool = False) -> tuple[str, float] | None:
    """The first `(text, weight)` outside -bound..bound (or NaN) in the prompt as written, without a
    schedule: emphasis weights multiplied through nesting, and (for a positive prompt) the AND parts'
    weights. Prompt editing and alternation are read as they stand, their brackets as `[ ]` (which
    only lowers weights), so no step count is needed; `PromptSchedule.weight_outside` checks the texts
    of a schedule exactly. Servers refuse huge weights: they overflow the conditioning into NaNs."""
    if negative:
        return _outside(bound, [(prompt, 1.0, [prompt])])
    return _outside(bound, ((piece.strip(), weight, [piece])
                            for piece, weight in split_and(extract_extra_networks(prompt)[0])))


def _outside(bound: float, parts: Iterable[tuple[str, float, list[str]]]) -> tuple[str, float] | None:
    """Over (a part's text, its weight, its texts to read emphasis from): the first weight not within bound."""
    for name, part_weight, texts in parts:
        if not abs(part_weight) <= bound:  # `not <=`: NaN (0 x inf from nested weights) is outside too
            return name, part_weight
        for text in texts:
            for run, weight in attention_runs(text):
                if (run, weight) != BREAK and not abs(weight) <= bound:
                    return run, weight
    return None


def old_timelines_differ(prompt: str, base_steps: int, hires_steps: int | None = None) -> bool:
    """Whether "Use old prompt editing timelines" would change this prompt's schedule.

    With that option on, A1111 records `Old prompt editing timelines: True` in the
    infotext only when this is true.
    """
    new = parse_prompt(prompt, base_steps, hires_steps)
    old = parse_prompt(prompt, base_steps, hires_steps, old_timelines=True)
    return [p.schedule for p in new.parts] != [p.schedule for p in old.parts]
