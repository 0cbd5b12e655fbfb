"""The txt2img tab: prompts, A1111's parameter controls and hires fix, over the job queue."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from ..generation.params import ParamsError, Txt2ImgParams
from ..generation.samplers import sampler_names, scheduler_labels
from ..generation.upscalers import upscaler_names
from ..state import SharedState
from ..styles import apply_styles, read_styles, save_style
from .common import (Controls, OutputPanel, Sessions, error_html, numeric_params, output_panel, sampler_controls,
                     seed_controls, size_batch_cfg_controls)
from .extra_networks import extra_networks
from .scripts import ScriptUI, paste_into, script_ui

SAME_SAMPLER = "Use same sampler"
SAME_SCHEDULER = "Use same scheduler"


@dataclass
class GenerationTab:
    controls: Controls
    panel: OutputPanel


@dataclass
class PromptButtons:
    generate: gr.Button
    interrupt: gr.Button
    skip: gr.Button
    styles: gr.Dropdown  # styles merged into the prompts when the job is submitted


def prompt_row(state: SharedState, controls: Controls, tab: str) -> PromptButtons:
    with gr.Row(elem_id=f"{tab}_toprow"):
        with gr.Column(scale=6):
            controls.fields["prompt"] = gr.Textbox(label="Prompt", lines=3, elem_id=f"{tab}_prompt",
                                                   placeholder="Prompt (press Ctrl+Enter to generate)")
            controls.fields["negative_prompt"] = gr.Textbox(label="Negative prompt", lines=2, elem_id=f"{tab}_neg_prompt")
        with gr.Column(scale=1, min_width=160):
            generate = gr.Button("Generate", variant="primary", elem_id=f"{tab}_generate")
            with gr.Row():
                interrupt = gr.Button("Interrupt", elem_id=f"{tab}_interrupt", min_width=60)
                skip = gr.Button("Skip", elem_id=f"{tab}_skip", min_width=60)
            styles = style_controls(state, controls, tab)
    return PromptButtons(generate, interrupt, skip, styles)


def style_controls(state: SharedState, controls: Controls, tab: str) -> gr.Dropdown:
    """A1111's styles: pick saved ones (applied at Generate) or save the current prompts as one."""
    styles = gr.Dropdown(list(read_styles(state)), value=[], multiselect=True, label="Styles",
                         elem_id=f"{tab}_styles")
    with gr.Accordion("Save style", open=False):
        name = gr.Textbox(label="Style name", elem_id=f"{tab}_style_name")
        save = gr.Button("Save prompts as style", elem_id=f"{tab}_style_save")

    def save_current(style_name, prompt, negative_prompt, chosen):
        try:
            save_style(state, style_name, prompt, negative_prompt)
        except (ParamsError, OSError) as error:
            gr.Warning(str(error))
        return gr.update(choices=list(read_styles(state)), value=chosen)

    save.click(save_current, [name, controls["prompt"], controls["negative_prompt"], styles], styles)
    styles.focus(lambda chosen: gr.update(choices=list(read_styles(state)), value=chosen), styles, styles)
    return styles


def hires_controls(controls: Controls) -> None:
    with gr.Accordion("Hires. fix", open=False, elem_id="txt2img_hr"):
        controls.fields["enable_hr"] = gr.Checkbox(False, label="Enable hires. fix", elem_id="txt2img_enable_hr")
        with gr.Row():
            controls.fields["hr_upscaler"] = gr.Dropdown(upscaler_names(), value="Latent", label="Upscaler",
                                                         elem_id="txt2img_hr_upscaler")
            controls.fields["hr_second_pass_steps"] = gr.Slider(0, 150, value=0, step=1, label="Hires steps",
                                                                elem_id="txt2img_hires_steps")
            controls.fields["denoising_strength"] = gr.Slider(0, 1, value=0.7, step=0.01, label="Denoising strength",
                                                              elem_id="txt2img_denoising_strength")
        with gr.Row():
            controls.fields["hr_scale"] = gr.Slider(1, 4, value=2.0, step=0.05, label="Upscale by", elem_id="txt2img_hr_scale")
            controls.fields["hr_resize_x"] = gr.Slider(0, 2048, value=0, step=8, label="Resize width to",
                                                       elem_id="txt2img_hr_resize_x")
            controls.fields["hr_resize_y"] = gr.Slider(0, 2048, value=0, step=8, label="Resize height to",
                                                       elem_id="txt2img_hr_resize_y")
        with gr.Row():
            controls.fields["hr_sampler_name"] = gr.Dropdown([SAME_SAMPLER, *sampler_names()], value=SAME_SAMPLER,
                                                             label="Hires sampling method", elem_id="hr_sampler")
            controls.fields["hr_scheduler"] = gr.Dropdown([SAME_SCHEDULER, *scheduler_labels()], value=SAME_SCHEDULER,
                                                          label="Hires schedule type", elem_id="hr_scheduler")
        controls.fields["hr_prompt"] = gr.Textbox(label="Hires prompt", lines=2, elem_id="hires_prompt",
                                                  placeholder="Leave empty to use the same prompt as the first pass")
        controls.fields["hr_negative_prompt"] = gr.Textbox(label="Hires negative prompt", lines=2, elem_id="hires_neg_prompt",
                                                           placeholder="Leave empty to use the same negative prompt")


def txt2img_params(state: SharedState, values: dict) -> Txt2ImgParams:
    values = numeric_params(values)
    if values.get("hr_sampler_name") == SAME_SAMPLER:
        values["hr_sampler_name"] = ""
    if values.get("hr_scheduler") == SAME_SCHEDULER:
        values["hr_scheduler"] = ""
    return Txt2ImgParams(**values)  # the queue fills the settings from the options


def wire_generation(state: SharedState, sessions: Sessions, tab: str, kind: str, buttons, controls: Controls,
                    panel: OutputPanel, make_params, extra_inputs: set = frozenset(),
                    scripts: ScriptUI | None = None) -> None:
    """Generate submits to the queue and follows the job; Interrupt and Skip reach this session's job.
    The scripts' control values go with it as `script_args`, in the runner's order."""
    generate, interrupt, skip = buttons.generate, buttons.interrupt, buttons.skip

    def run(data: dict, request: gr.Request):
        try:
            params = make_params(state, data)
            if data.get(buttons.styles):
                params.prompt, params.negative_prompt = apply_styles(
                    state, data[buttons.styles], params.prompt, params.negative_prompt)
            params.validate()
        except ParamsError as error:
            yield error_html(str(error)), gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
            return
        script_args = scripts.values(data) if scripts is not None else None
        yield from sessions.follow(sessions.submit(tab, kind, params, request, script_args))

    inputs = controls.inputs() | set(extra_inputs) | {buttons.styles} | (scripts.components() if scripts else set())
    for trigger in (generate.click, controls["prompt"].submit):
        trigger(run, inputs, panel.outputs(), concurrency_limit=None, show_progress="hidden")
    def on_interrupt(request: gr.Request):
        sessions.interrupt(tab, request)

    def on_skip(request: gr.Request):
        sessions.skip(tab, request)

    interrupt.click(on_interrupt, None, None, concurrency_limit=None)
    skip.click(on_skip, None, None, concurrency_limit=None)


def build(state: SharedState, sessions: Sessions) -> GenerationTab:
    controls = Controls(defaults=state.models.generation_defaults())
    buttons = prompt_row(state, controls, "txt2img")
    extra_networks(state, controls["prompt"], "txt2img")
    with gr.Row():
        with gr.Column(scale=1, elem_id="txt2img_settings"):
            sampler_controls(controls, "txt2img")
            hires_controls(controls)
            size_batch_cfg_controls(controls, "txt2img")
            seeds_holder = gr.State(())
            seed_controls(controls, "txt2img", seeds_holder)
            scripts = script_ui(state, "txt2img")  # after the core controls: scripts may look them up
            paste_into(controls, state, scripts)
        with gr.Column(scale=1, elem_id="txt2img_results"):
            panel = output_panel("txt2img", seeds_holder)
    wire_generation(state, sessions, "txt2img", "txt2img", buttons, controls, panel,
                    lambda state, data: txt2img_params(state, controls.values(data)), scripts=scripts)
    return GenerationTab(controls, panel)
