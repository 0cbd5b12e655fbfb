"""The Settings tab: every option with A1111's label; "Apply settings" saves to config.json."""

from __future__ import annotations

import html

import gradio as gr

from ..generation.conditioning import EMPHASIS_MODES
from ..generation.rng import SOURCES
from ..state import OPTION_DEFAULTS, OptionsError, SharedState

# Option -> (A1111's label, component class, its arguments). The checkpoint is chosen at
# the top of the page.
CHECKBOX = (gr.Checkbox, {})
TEXT = (gr.Textbox, {})
FIELDS = {
    "CLIP_stop_at_last_layers": ("Clip skip", gr.Slider, {"minimum": 1, "maximum": 12, "step": 1}),
    "emphasis": ("Emphasis mode", gr.Radio, {"choices": list(EMPHASIS_MODES)}),
    "comma_padding_backtrack": ("Prompt word wrap length limit", gr.Slider, {"minimum": 0, "maximum": 74, "step": 1}),
    "sdxl_clip_l_skip": ("Clip skip SDXL", *CHECKBOX),
    "use_old_scheduling": ("Use old prompt editing timelines", *CHECKBOX),
    "randn_source": ("Random number generator source", gr.Radio, {"choices": list(SOURCES)}),
    "eta_noise_seed_delta": ("Eta noise seed delta", gr.Number, {"precision": 0}),
    "eta_ancestral": ("Eta for k-diffusion samplers", gr.Slider, {"minimum": 0, "maximum": 1, "step": 0.01}),
    "eta_ddim": ("Eta for DDIM", gr.Slider, {"minimum": 0, "maximum": 1, "step": 0.01}),
    "img2img_fix_steps": ("With img2img, do exactly the amount of steps the slider specifies", *CHECKBOX),
    "initial_noise_multiplier": ("Noise multiplier for img2img", gr.Slider, {"minimum": 0.5, "maximum": 1.5, "step": 0.001}),
    "live_previews_enable": ("Show live previews of the created image", *CHECKBOX),
    "show_progress_every_n_steps": ("Live preview display period (every N sampling steps; -1: only at the end)",
                                    gr.Slider, {"minimum": -1, "maximum": 32, "step": 1}),
    "samples_save": ("Always save all generated images", *CHECKBOX),
    "samples_format": ("File format for images", gr.Dropdown, {"choices": ["png", "jpg", "webp"]}),
    "samples_filename_pattern": ("Images filename pattern", *TEXT),
    "outdir_txt2img_samples": ("Output directory for txt2img images", *TEXT),
    "outdir_img2img_samples": ("Output directory for img2img images", *TEXT),
}


def typed(key: str, value):
    """A component's value in the option's type (sliders give floats)."""
    kind = type(OPTION_DEFAULTS[key])
    if kind is int and isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def current(state: SharedState, key: str):
    return lambda: state.options[key]


def build(state: SharedState) -> None:
    frozen = state.options.frozen
    with gr.Row():
        apply = gr.Button("Apply settings", variant="primary", elem_id="settings_submit", interactive=not frozen)
    result = gr.HTML(elem_id="settings_result")
    components = {}
    with gr.Column(elem_id="settings"):
        for key, (label, component, arguments) in FIELDS.items():
            locked = frozen or key in state.options.frozen_keys
            # A callable value: each page load shows the current setting.
            components[key] = component(label=label, value=current(state, key), elem_id=f"setting_{key}",
                                        interactive=False if locked else None, **arguments)

    def save(data: dict):
        stored = state.options.as_dict()
        changes = {key: typed(key, data[c]) for key, c in components.items() if typed(key, data[c]) != stored[key]}
        if not changes:
            return '<div class="settings-result">Nothing to apply.</div>'
        try:
            state.options.update(changes)
        except OptionsError as error:
            return f'<div class="error" style="color:#c0392b">{html.escape(str(error))}</div>'
        names = ", ".join(FIELDS[key][0] for key in changes)
        return f'<div class="settings-result">{len(changes)} settings changed: {html.escape(names)}.</div>'

    apply.click(save, set(components.values()), result)
