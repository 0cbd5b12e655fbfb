"""Prompt styles: saved prompt fragments applied to what the user typed."""

from __future__ import annotations

from collections.abc import Iterable


def merge_prompts(style_prompt: str, prompt: str) -> str:
    """Apply one style: `{prompt}` in the style is replaced by the prompt; a style
    without it is appended after ", " (empty sides left out)."""
    if "{prompt}" in style_prompt:
        return style_prompt.replace("{prompt}", prompt)
    return ", ".join(part for part in (prompt.strip(), style_prompt.strip()) if part)


def apply_styles_to_prompt(prompt: str, styles: Iterable[str]) -> str:
    """Apply several styles in order, each to the result of the one before."""
    for style in styles:
        prompt = merge_prompts(style, prompt)
    return prompt
