"""The txt2img tab: prompts, A1111's parameter controls and hires fix, over the job queue."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import gradio as gr

from ..generation.params import SAME_SAMPLER, SAME_SCHEDULER, Limits, ParamsError, Txt2ImgParams
from ..generation.samplers import sampler_names, scheduler_labels
from ..generation.upscalers import upscaler_names
from ..auth import ui_caller
from ..state import SharedState
from ..styles import StylesFile, StylesRefused, apply_styles, load_styles, save_style, write_refusal
from .common import (Controls, OutputPanel, Sessions, error_html, numeric_params, output_panel, sampler_controls,
                     seed_controls, size_batch_cfg_controls)
from .extra_networks import extra_networks
from .scripts import ScriptUI, paste_into, script_ui

log = logging.getLogger(__name__)


@dataclass
class GenerationTab:
    controls: Controls
    panel: OutputPanel
    save_style: gr.Accordion  # shown only to who may write styles.csv (show_save_style_to_writers)


@dataclass
class PromptButtons:
    generate: gr.Button
    interrupt: gr.Button
    skip: gr.Button
    styles: gr.Dropdown  # styles merged into the prompts when the job is submitted
    save_style: gr.Accordion


def prompt_row(state: SharedState, controls: Controls, tab: str) -> PromptButtons:
    with gr.Row(elem_id=f"{tab}_toprow"):
        with gr.Column(scale=6):
            controls.fields["prompt"] = gr.Textbox(label="Prompt", lines=3, elem_id=f"{tab}_prompt",
                                                   placeholder="Prompt (press Ctrl+Enter to generate)")
            controls.fields["negative_prompt"] = gr.Textbox(label="Negative prompt", lines=2, elem_id=f"{tab}_neg_prompt")
        with gr.Column(scale=1, min_width=220):  # wide enough for "Interrupt" and "Skip" side by side
            generate = gr.Button("Generate", variant="primary", elem_id=f"{tab}_generate")
            with gr.Row():  # shown in Generate's place while a job runs (wire_generation)
                interrupt = gr.Button("Interrupt", elem_id=f"{tab}_interrupt", min_width=60, visible=False)
                skip = gr.Button("Skip", elem_id=f"{tab}_skip", min_width=60, visible=False)
            styles, save_style = style_controls(state, controls, tab)
    return PromptButtons(generate, interrupt, skip, styles, save_style)


def style_controls(state: SharedState, controls: Controls, tab: str) -> tuple[gr.Dropdown, gr.Accordion]:
    """A1111's styles: pick saved ones (applied at Generate) or save the current prompts as one."""
    found = load_styles(state)
    styles = gr.Dropdown(list(found.styles), value=[], multiselect=True, label="Styles",
                         elem_id=f"{tab}_styles")
    # What is wrong with styles.csv, under the picker: otherwise a lost style is only missing from the list.
    problems = gr.Markdown(styles_problems_note(found), visible=bool(found.problems),
                           elem_id=f"{tab}_styles_problems")
    with gr.Accordion("Save style", open=False, elem_id=f"{tab}_style_save_panel") as save_panel:
        name = gr.Textbox(label="Style name", elem_id=f"{tab}_style_name")
        save = gr.Button("Save prompts as style", elem_id=f"{tab}_style_save")

    def reread(**dropdown):
        found = load_styles(state)
        note = gr.update(value=styles_problems_note(found), visible=bool(found.problems))
        return gr.update(choices=list(found.styles), **dropdown), note

    def save_current(style_name, prompt, negative_prompt, chosen, request: gr.Request):
        try:
            save_style(state, style_name, prompt, negative_prompt, ui_caller(request))  # checks the role
        except StylesRefused as error:  # an error, not a warning: Gradio's API callers see it too
            raise gr.Error(str(error)) from None
        except (ParamsError, OSError) as error:
            gr.Warning(str(error))
        return reread(value=chosen)

    save.click(save_current, [name, controls["prompt"], controls["negative_prompt"], styles], [styles, problems])
    # New choices only: sending the value back too could undo a pick made while this round trip ran.
    styles.focus(reread, None, [styles, problems])
    return styles, save_panel


def show_save_style_to_writers(state: SharedState, demo: gr.Blocks, tabs: list[GenerationTab]) -> None:
    """Each page shows the Save style panels only to who may write styles.csv (styles.write_refusal); the
    save handler checks again, whatever the page shows."""
    def shown(request: gr.Request):
        return [gr.update(visible=write_refusal(state, ui_caller(request)) is None)] * len(tabs)

    demo.load(shown, None, [tab.save_style for tab in tabs])


def styles_problems_note(found: StylesFile) -> str:
    """The Markdown shown under the Styles picker when styles.csv has problems ("" when none)."""
    if not found.problems:
        return ""
    return "**styles.csv has problems**; the list holds the styles that could be read:\n\n" + "\n".join(
        f"- {problem}" for problem in found.problems)


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
        # value="": the accordion starts closed, and a never-drawn Textbox sends its initial value (None by default).
        controls.fields["hr_prompt"] = gr.Textbox("", label="Hires prompt", lines=2, elem_id="hires_prompt",
                                                  placeholder="Leave empty to use the same prompt as the first pass")
        controls.fields["hr_negative_prompt"] = gr.Textbox("", label="Hires negative prompt", lines=2,
                                                           elem_id="hires_neg_prompt",
                                                           placeholder="Leave empty to use the same negative prompt")


def txt2img_params(state: SharedState, values: dict) -> Txt2ImgParams:
    return Txt2ImgParams(**numeric_params(values))  # the queue fills the settings from the options


def _outputs_update(panel_update: tuple | None = None, running: bool | None = None) -> tuple:
    """One update for `wire_generation`'s outputs: the panel's (`Sessions.follow`'s; none when
    None), the selected index, then Generate/Interrupt/Skip: those shown while `running` (left
    alone when None)."""
    update = list(panel_update or [gr.skip() for _ in range(6)])  # in OutputPanel.outputs()'s order
    images, selected = update[2], gr.skip()
    if isinstance(images, list):  # new images: opened on the first, as the preview fits it whole in the gallery
        update[2], selected = gr.update(value=images, selected_index=0 if images else None), 0
    buttons = [gr.skip()] * 3 if running is None else [gr.update(visible=not running), gr.update(visible=running),
                                                       gr.update(visible=running)]
    return *update, selected, *buttons


def followed(updates, job_id: str = ""):
    """`Sessions.follow`'s updates for wire_generation's outputs, the last one (the job's result) together with
    the Generate button. Gradio's closing message repeats only a run's last update, so a result followed by an
    update of skips could leave the gallery empty on a loaded machine (seen in full-suite runs); a last update
    that holds the result puts it there in any case."""
    last = None
    try:
        for update in updates:
            if last is not None:
                yield _outputs_update(last)
            last = update
    except Exception as error:  # whatever happens, the page gets its Generate button back
        log.exception("following job %s failed", job_id)
        last = (error_html(str(error)), *[gr.skip()] * 5)
    yield _outputs_update(last, running=False)


def wire_generation(state: SharedState, sessions: Sessions, tab: str, kind: str, buttons, controls: Controls,
                    panel: OutputPanel, make_params, extra_inputs: set = frozenset(),
                    scripts: ScriptUI | None = None) -> None:
    """Generate submits to the queue and follows the job; Interrupt and Skip reach this session's job.
    The scripts' control values go with it as `script_args`, in the runner's order."""
    generate, interrupt, skip = buttons.generate, buttons.interrupt, buttons.skip

    def run(data: dict, request: gr.Request):
        if sessions.busy(tab, request):  # Ctrl+Enter while Generate is hidden: one job per tab at a time
            return
        try:
            params = make_params(state, data)
            params.limits = Limits.from_flags(state.flags)  # the server's (--max-*), checked before queueing
            if data.get(buttons.styles):
                params.prompt, params.negative_prompt = apply_styles(
                    state, data[buttons.styles], params.prompt, params.negative_prompt)
            params.validate()
        except ParamsError as error:
            yield _outputs_update((error_html(str(error)), *[gr.skip()] * 5))
            return
        script_args = scripts.values(data) if scripts is not None else None
        job = sessions.submit(tab, kind, params, request, script_args)
        # As A1111: Interrupt and Skip take Generate's place while the job is queued or running.
        yield _outputs_update(running=True)
        yield from followed(sessions.follow(job), job.id)

    inputs = controls.inputs() | set(extra_inputs) | {buttons.styles} | (scripts.components() if scripts else set())
    outputs = [*panel.outputs(), panel.selected, generate, interrupt, skip]  # as _outputs_update
    for trigger in (generate.click, controls["prompt"].submit):
        trigger(run, inputs, outputs, concurrency_limit=None, show_progress="hidden")

    def on_interrupt(request: gr.Request):
        sessions.interrupt(tab, request)

    def on_skip(request: gr.Request):
        sessions.skip(tab, request)

    interrupt.click(on_interrupt, None, None, concurrency_limit=None)
    skip.click(on_skip, None, None, concurrency_limit=None)


# A1111's shortcut: Ctrl+Enter (Cmd+Enter) generates in the txt2img or img2img tab that shows; while that tab's
# job runs its Generate button is hidden and the keys do nothing (`run` refuses a second job from the tab too).
GENERATE_SHORTCUT_JS = """() => {
    document.addEventListener("keydown", (event) => {
        if (event.key !== "Enter" || !(event.ctrlKey || event.metaKey)) return;
        const panel = ["tab_txt2img", "tab_img2img"].map((id) => document.getElementById(id))
            .find((tab) => tab && tab.offsetParent !== null);
        const generate = panel && panel.querySelector("button[id$=_generate]");
        if (!generate || generate.offsetParent === null) return;
        event.preventDefault();
        generate.click();
    });
    return [];
}"""


def generate_shortcut(demo: gr.Blocks) -> None:
    demo.load(None, None, None, js=GENERATE_SHORTCUT_JS)


def build(state: SharedState, sessions: Sessions) -> GenerationTab:
    controls = Controls(defaults=state.models.generation_defaults())
    buttons = prompt_row(state, controls, "txt2img")
    extra_networks(state, controls["prompt"], "txt2img", sessions)
    with gr.Row():
        with gr.Column(scale=1, elem_id="txt2img_settings"):
            sampler_controls(controls, "txt2img")
            controls.fields["tiling"] = gr.Checkbox(False, label="Tiling", elem_id="txt2img_tiling")
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
    return GenerationTab(controls, panel, buttons.save_style)
