"""Prompts -> conditioning schedules: what the UNet is conditioned on at each denoiser call.

Each prompt is parsed once (prompt_parser), each of its AND parts is encoded as one
group (conditioning.py), and the denoiser only looks embeddings up per call.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from prompt_parser import ExtraNetwork, PromptPart, parse_prompt

from .conditioning import Conditioning, EncodeOptions, PromptEncoder
from .params import MAX_WEIGHT, ParamsError, weight_problem


@dataclass(frozen=True)
class PartConditioning:
    """One AND part: its schedule of texts, and the conditioning of each text."""

    part: PromptPart
    conds: dict[str, Conditioning]

    @property
    def weight(self) -> float:
        return self.part.weight

    def at(self, call: int) -> Conditioning:
        return self.conds[self.part.text_at(call)]


@dataclass(frozen=True)
class PromptConditioning:
    """One image's prompt (or negative prompt), ready for the denoiser."""

    parts: tuple[PartConditioning, ...]
    extra_networks: tuple[ExtraNetwork, ...] = ()

    def at(self, call: int) -> list[tuple[Conditioning, float]]:
        return [(part.at(call), part.weight) for part in self.parts]


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
    parts_cache: dict[tuple[str, ...], dict[str, Conditioning]] = {}
    zero_empty = negative and encoder.model.family.zero_empty_negative
    results: dict[str, PromptConditioning] = {}
    for prompt in prompts:
        if prompt in results:
            continue
        schedule = parse_prompt(prompt, steps, hires_steps, old_timelines=old_timelines, negative=negative)
        # Validation read the prompt as written; these are the texts the job really runs (prompt editing
        # can assemble a weight, and scripts may have changed the prompts since).
        if (found := schedule.weight_outside(MAX_WEIGHT)) is not None:
            raise ParamsError(weight_problem("negative_prompt" if negative else "prompt", found))
        parts = []
        for part in schedule.parts:
            texts = tuple(entry.text for entry in part.schedule)
            if texts not in parts_cache:
                if zero_empty and texts == ("",):
                    parts_cache[texts] = {"": encoder.zeros_like_empty(options)}
                else:
                    counts = Counter(texts)
                    distinct = list(counts)
                    conds = encoder.encode_group(distinct, options, [counts[t] for t in distinct])
                    parts_cache[texts] = dict(zip(distinct, conds))
            parts.append(PartConditioning(part, parts_cache[texts]))
        results[prompt] = PromptConditioning(tuple(parts), schedule.extra_networks)
    return [results[prompt] for prompt in prompts]


def encode_batch(encoder: PromptEncoder, prompts: list[str], negative_prompts: list[str], steps: int,
                 options: EncodeOptions, old_timelines: bool) -> tuple:
    """(conds, unconds) for one batch: its prompts and negative prompts over `steps` scheduled steps."""
    conds = encode_prompts(encoder, prompts, steps, options=options, old_timelines=old_timelines)
    unconds = encode_prompts(encoder, negative_prompts, steps, negative=True, options=options,
                             old_timelines=old_timelines)
    return conds, unconds
