"""A1111 prompt syntax: emphasis, prompt editing, alternation, AND, BREAK, extra networks.

Pure Python on Lark; no torch. The generation code uses `parse_prompt` and
`attention_runs`; the functions with A1111's names and return shapes are here for
extensions and users' scripts.
"""

from .attention import BREAK, attention_runs, parse_prompt_attention
from .composable import get_multicond_prompt_list, split_and
from .extra_networks import ExtraNetwork, extract_extra_networks, parse_extra_networks
from .prompt import (PromptPart, PromptSchedule, ScheduledText, and_parts, bracket_depth, old_timelines_differ,
                     parse_prompt, weight_outside)
from .scheduling import Timeline, get_learned_conditioning_prompt_schedules, prompt_schedule
from .styles import apply_styles_to_prompt, merge_prompts

__all__ = [
    "BREAK",
    "ExtraNetwork",
    "PromptPart",
    "PromptSchedule",
    "ScheduledText",
    "Timeline",
    "and_parts",
    "apply_styles_to_prompt",
    "attention_runs",
    "bracket_depth",
    "extract_extra_networks",
    "get_learned_conditioning_prompt_schedules",
    "get_multicond_prompt_list",
    "merge_prompts",
    "old_timelines_differ",
    "parse_extra_networks",
    "parse_prompt",
    "parse_prompt_attention",
    "prompt_schedule",
    "split_and",
    "weight_outside",
]
