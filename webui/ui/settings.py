"""The Settings tab: every option with A1111's label; "Apply settings" saves to config.json.

Below the built-in options come those extensions registered (on_ui_settings ->
shared.opts.add_option, run before the page is built), one accordion per section, each with the extension's component and
arguments (or one chosen by the default's type); they are saved the same way.
"""

from __future__ import annotations

import html
import logging
import re
from collections import defaultdict

import gradio as gr

from ..auth import ui_caller
from ..generation.conditioning import EMPHASIS_MODES
from ..generation.rng import SOURCES
from ..a1111_options import inert_options
from ..networks.hypernet_network import hypernetwork_library
from ..options import OPTION_DEFAULTS, OptionsError
from ..state import SharedState
from . import gradio_compat, icons
from .ui_components import ToolButton

log = logging.getLogger(__name__)

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
    "outdir_samples": ("Output directory for images; if empty, defaults to three directories below", *TEXT),
    "outdir_txt2img_samples": ("Output directory for txt2img images", *TEXT),
    "outdir_img2img_samples": ("Output directory for img2img images", *TEXT),
    "outdir_extras_samples": ("Output directory for images from extras tab", *TEXT),
    "outdir_grids": ("Output directory for grids; if empty, defaults to two directories below", *TEXT),
    "outdir_txt2img_grids": ("Output directory for txt2img grids", *TEXT),
    "outdir_img2img_grids": ("Output directory for img2img grids", *TEXT),
    "api_cancel_on_disconnect": ("Cancel the job of an API client that disconnects", *CHECKBOX),
    # Its choices (the files of models/hypernetworks) are filled in when the page is built.
    "sd_hypernetwork": ("Add hypernetwork to prompt", gr.Dropdown, {"choices": ["None"]}),
    "extra_networks_default_multiplier": ("Default multiplier for extra networks", gr.Slider,
                                          {"minimum": 0, "maximum": 2, "step": 0.01}),
}


def typed(default, value):
    """A component's value in the option's type (sliders give floats)."""
    if type(default) is int and isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def current(state: SharedState, key: str):
    return lambda: state.options[key]


def default_component(default):
    """A1111's choice when an extension names no component: by the default's type."""
    if isinstance(default, bool):
        return gr.Checkbox, {}
    if isinstance(default, (int, float)):
        return gr.Number, {}
    if isinstance(default, list):
        return gr.Dropdown, {"choices": list(default), "multiselect": True, "allow_custom_value": True}
    return gr.Textbox, {}


def plain(text) -> str:
    return re.sub(r"<[^>]+>", "", str(text or "")).strip()


def extension_option(state: SharedState, key: str, info, locked: bool):
    """The component of one extension setting (with a refresh button when it has `refresh`)."""
    args = info.component_args() if callable(info.component_args) else dict(info.component_args or {})
    component, defaults = (info.component, {}) if info.component is not None else default_component(info.default)
    kwargs = {**defaults, "label": plain(info.label) or key, "value": current(state, key), "elem_id": f"setting_{key}",
              **args}
    note = plain(getattr(info, "comment_after", ""))
    if note:
        kwargs.setdefault("info", note)
    if locked:
        kwargs["interactive"] = False
    with gradio_compat.extension_ui():  # Gradio 3 component arguments are the extension's
        if not getattr(info, "refresh", None):
            return component(**kwargs)
        with gr.Row():
            created = component(**kwargs)
            refresh = ToolButton(value=icons.REFRESH, elem_id=f"refresh_{key}")  # titled "Refresh" by icons

    def refreshed():
        info.refresh()
        return gr.update(**info.component_args()) if callable(info.component_args) else gr.update()

    refresh.click(refreshed, None, created)
    return created


def extension_options(state: SharedState, frozen: bool) -> dict:
    """{key: component} for every extension setting, grouped in accordions by section."""
    sections = defaultdict(list)
    for key, info in state.options.registered().items():
        section = tuple(info.section) if getattr(info, "section", None) else ("other", "Other")
        sections[section].append((key, info))
    components = {}
    for (section_id, title), items in sections.items():
        with gr.Accordion(plain(title) or str(section_id), open=True, elem_id=f"settings_{section_id}"):
            for key, info in items:
                try:
                    component = extension_option(state, key, info, frozen)
                except Exception:  # one extension's bad component must not take the page down
                    log.exception("setting %s could not be shown", key)
                    continue
                if not getattr(info, "do_not_save", False):  # A1111's OptionHTML: text only
                    components[key] = component
    return components


def load_warnings_html(state: SharedState) -> str:
    warnings = state.options.load_warnings
    if not warnings:
        return ""
    items = "".join(f"<li>{html.escape(warning)}</li>" for warning in warnings)
    return f'<div class="error" style="color:#c0392b">Settings read with problems:<ul>{items}</ul></div>'


def inert_options_html() -> str:
    """The A1111 settings kept only for A1111 clients: named, never shown as controls that would do nothing."""
    names = inert_options(OPTION_DEFAULTS)
    items = ", ".join(f"<code>{html.escape(name)}</code>" for name in names)
    return (f"<p>These {len(names)} A1111 settings are accepted by the API (<code>/sdapi/v1/options</code>, "
            f"<code>override_settings</code>) and stored in config.json so that A1111 clients and extensions keep "
            f"working, but this WebUI does not act on them:</p><p>{items}</p>")


def build(state: SharedState) -> None:
    frozen = state.options.frozen
    with gr.Row():
        apply = gr.Button("Apply settings", variant="primary", elem_id="settings_submit", interactive=not frozen)
    result = gr.HTML(elem_id="settings_result")
    # What was wrong in config.json at start (those settings are at their defaults until saved again).
    gr.HTML(lambda: load_warnings_html(state), elem_id="settings_load_warnings")
    components = {}
    with gr.Column(elem_id="settings"):
        for key, (label, component, arguments) in FIELDS.items():
            if key == "sd_hypernetwork":
                names = [f.name for f in hypernetwork_library(state).files()]
                arguments = {"choices": ["None", *names], "allow_custom_value": True}
            locked = frozen or key in state.options.frozen_keys
            # A callable value: each page load shows the current setting.
            components[key] = component(label=label, value=current(state, key), elem_id=f"setting_{key}",
                                        interactive=False if locked else None, **arguments)
    components.update(extension_options(state, frozen))
    with gr.Accordion("A1111 settings stored only (no effect here)", open=False, elem_id="settings_inert"):
        gr.HTML(inert_options_html(), elem_id="settings_inert_list")
    labels = {key: FIELDS[key][0] if key in FIELDS else plain(state.options.registered()[key].label) or key
              for key in components}

    def save(data: dict, request: gr.Request):
        refusal = state.access.refusal(ui_caller(request), "change the settings, which apply to everyone")
        if refusal is not None:  # checked here, on the server, whatever the page shows
            return f'<div class="error" style="color:#c0392b">{html.escape(refusal)}</div>'
        stored, defaults = state.options.as_dict(), state.options.defaults()
        changes = {key: typed(defaults.get(key), data[c]) for key, c in components.items()
                   if typed(defaults.get(key), data[c]) != stored.get(key)}
        if not changes:
            return '<div class="settings-result">Nothing to apply.</div>'
        try:
            state.options.update(changes)
        except OptionsError as error:
            return f'<div class="error" style="color:#c0392b">{html.escape(str(error))}</div>'
        names = ", ".join(labels[key] for key in changes)
        return f'<div class="settings-result">{len(changes)} settings changed: {html.escape(names)}.</div>'

    apply.click(save, set(components.values()), result)
