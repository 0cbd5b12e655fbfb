"""No prompt text makes any public parser function raise."""

import json
import subprocess
import sys

from hypothesis import given, settings
from hypothesis import strategies as st

import prompt_parser as pp

# Arbitrary text, and text made mostly of syntax so that the parsers' corners get hit.
syntax = st.lists(
    st.sampled_from(
        list("[]():|\\<>{} ,.-+e0123456789\n\t")
        + ["AND", "BREAK", ":1.2", ":0.5]", "<lora:x:1>", "[a:b:3]", "(x:1.3)", "1e999", "\\(", "\u00a0", "٣"]
    ),
    max_size=40,
).map("".join)
prompts = st.one_of(st.text(max_size=200), syntax)
steps = st.integers(min_value=-3, max_value=150)


@settings(max_examples=300, deadline=None)
@given(prompts, steps, st.one_of(st.none(), steps), st.booleans())
def test_schedules(prompt, base_steps, hires_steps, old):
    result = pp.get_learned_conditioning_prompt_schedules([prompt, prompt], base_steps, hires_steps, old)
    assert len(result) == 2 and result[0] == result[1]
    for end_step, text in result[0]:
        assert isinstance(end_step, int) and isinstance(text, str)


@settings(max_examples=300, deadline=None)
@given(prompts)
def test_attention(prompt):
    runs = pp.parse_prompt_attention(prompt)
    assert runs and all(isinstance(text, str) and isinstance(weight, (int, float)) for text, weight in runs)


@settings(max_examples=300, deadline=None)
@given(st.lists(prompts, max_size=3))
def test_multicond(prompt_list):
    res_indexes, flat, indexes = pp.get_multicond_prompt_list(prompt_list)
    assert len(res_indexes) == len(prompt_list)
    assert all(flat[index] == text for text, index in indexes.items())


@settings(max_examples=300, deadline=None)
@given(prompts, st.integers(min_value=1, max_value=60), st.one_of(st.none(), st.integers(1, 60)), st.booleans(), st.booleans())
def test_typed_api(prompt, base_steps, hires_steps, old, negative):
    schedule = pp.parse_prompt(prompt, base_steps, hires_steps, old_timelines=old, negative=negative)
    for call in range(schedule.steps + 2):
        assert len(schedule.at(call)) == len(schedule.parts)
    for text in schedule.texts:
        pp.attention_runs(text)
    pp.old_timelines_differ(prompt, base_steps, hires_steps)


@settings(max_examples=200, deadline=None)
@given(prompts, prompts)
def test_extra_networks_and_styles(prompt, style):
    text, by_kind = pp.parse_extra_networks(prompt)
    assert len(text) <= len(prompt)
    assert all(network.kind == kind and network.items for kind, found in by_kind.items() for network in found)
    pp.merge_prompts(style, prompt)
    pp.apply_styles_to_prompt(prompt, [style, style])


@settings(max_examples=25, deadline=None)
@given(syntax)
def test_command_line(prompt):
    out = subprocess.run(
        [sys.executable, "-m", "prompt_parser", "--json", "--steps", "6"],
        input=prompt, capture_output=True, text=True, check=True,
    ).stdout
    assert json.loads(out)["steps"] == 6
