"""Prompts -> conditioning schedules: what the UNet is conditioned on at each denoiser call.

Each prompt is parsed once (prompt_parser), each of its AND parts is encoded as one
group (conditioning.py), and the denoiser only looks embeddings up per call.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from prompt_parser import ExtraNetwork, parse_prompt

from .conditioning import Conditioning, EncodeOptions, PromptEncoder


@dataclass(frozen=True)
class ScheduledConditioning:
    end_step: int
    cond: Conditioning


@dataclass(frozen=True)
class PartConditioning:
    """One AND part: its weight and its conditioning over the steps."""

    weight: float
    schedule: tuple[ScheduledConditioning, ...]

    def at(self, call: int) -> Conditioning:
        # A1111's rule: the first entry whose end step is at or after the call count.
        for entry in self.schedule:
            if entry.end_step >= call:
                return entry.cond
        return self.schedule[-1].cond


@dataclass(frozen=True)
class PromptConditioning:
    """One image's prompt (or negative prompt), ready for the denoiser."""

    parts: tuple[PartConditioning, ...]
    extra_networks: tuple[ExtraNetwork, ...] = ()

    def at(self, call: int) -> list[tuple[Conditioning, float]]:
        return [(part.at(call), part.weight) for part in self.parts]

    @property
    def switch_steps(self) -> tuple[int, ...]:
        return tuple(sorted({e.end_step for part in self.parts for e in part.schedule}))


def encode_prompts(
    encoder: PromptEncoder,
    prompts: list[str],
    steps: int,
    hires_steps: int | None = None,
    *,
    negative: bool = False,
    options: EncodeOptions = EncodeOptions(),
    old_timelines: bool = False,
) -> list[PromptConditioning]:
    """Conditioning schedules for a batch of prompts (one per image).

    `steps` counts denoiser calls (A1111 doubles it for second-order samplers). Equal
    prompts, and equal AND parts across prompts, are encoded once.
    """
    parts_cache: dict[tuple[str, ...], tuple[Conditioning, ...]] = {}
    zero_empty = negative and encoder.model.family.name == "sdxl"
    results: dict[str, PromptConditioning] = {}
    for prompt in prompts:
        if prompt in results:
            continue
        schedule = parse_prompt(prompt, steps, hires_steps, old_timelines=old_timelines, negative=negative)
        parts = []
        for part in schedule.parts:
            texts = tuple(entry.text for entry in part.schedule)
            if texts not in parts_cache:
                if zero_empty and texts == ("",):
                    # A1111 (like diffusers) conditions SDXL on zeros for an empty negative prompt.
                    parts_cache[texts] = (encoder.zeros_like_empty(options),)
                else:
                    counts = Counter(texts)
                    distinct = list(counts)
                    conds = dict(zip(distinct, encoder.encode_group(distinct, options, [counts[t] for t in distinct])))
                    parts_cache[texts] = tuple(conds[t] for t in texts)
            conds = parts_cache[texts]
            parts.append(
                PartConditioning(
                    part.weight,
                    tuple(ScheduledConditioning(e.end_step, c) for e, c in zip(part.schedule, conds)),
                )
            )
        results[prompt] = PromptConditioning(tuple(parts), schedule.extra_networks)
    return [results[prompt] for prompt in prompts]
