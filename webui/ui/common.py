"""Pieces every generation tab shares: checkpoint row, parameter controls, the job runner
(progress, preview, gallery, infotext) and pasting infotext values back into the controls.

The UI only fills A1111's parameter fields and hands them to the job queue; it never calls
the generation code itself.
"""

from __future__ import annotations

import html
import uuid
from dataclasses import dataclass, field

import gradio as gr

from ..auth import ui_caller
from ..generation.infotext import parse_infotext
from ..generation.samplers import sampler_names, scheduler_labels
from ..options import OptionsError
from ..state import SharedState
from . import icons

POLL_SECONDS = 0.25


def demo_notice(state: SharedState) -> str:
    """Say so while the only checkpoint is the built-in demo model, and where real ones go."""
    checkpoints = state.models.checkpoints()
    if not checkpoints or not all(info.builtin for info in checkpoints):
        return ""
    return (f"Using the small built-in demo model **{checkpoints[0].name}**: 128x128 pictures of simple "
            "coloured shapes (try \"a large red circle on the left, blue background\"). For real pictures, "
            f"put Stable Diffusion checkpoints (`.safetensors`) in `{state.models.models_dir}` and press "
            f"{icons.REFRESH} (Refresh) beside the checkpoint list.")


def checkpoint_row(state: SharedState, demo: gr.Blocks, sessions: "Sessions") -> gr.Dropdown:
    """The checkpoint dropdown with its refresh button. Choosing one only records the
    choice (`sd_model_checkpoint`, see choose_setting); the queue loads it for the next job, so the page never waits."""
    with gr.Row(elem_id="quicksettings"):
        dropdown = gr.Dropdown([info.title for info in state.models.checkpoints()], value=None,
                               label="Stable Diffusion checkpoint", elem_id="setting_sd_model_checkpoint",
                               scale=0, min_width=360)
        refresh = icons.icon_button(icons.REFRESH, "Refresh the checkpoint list", "refresh_sd_model_checkpoint")

    def choose(title, request: gr.Request):
        if title:
            choose_setting(state, sessions, request, "sd_model_checkpoint", title)

    def refresh_list(current):
        titles = [info.title for info in state.models.refresh()]
        return gr.update(choices=titles, value=current if current in titles else (titles[0] if titles else None))

    def on_load():  # each page shows the current choice
        titles = [info.title for info in state.models.checkpoints()]
        chosen = state.models.selected_title()  # the list's own title, hash included once known
        return gr.update(choices=titles, value=chosen if chosen in titles else (titles[0] if titles else None))

    notice = gr.Markdown(demo_notice(state), elem_id="demo_model_notice")
    dropdown.input(choose, dropdown, None)  # user choices only, not the page-load update
    refresh.click(refresh_list, dropdown, dropdown).then(lambda: demo_notice(state), None, notice)
    demo.load(on_load, None, dropdown)
    vae_dropdown(state, demo, sessions)
    return dropdown


FAMILY_FIELDS = ("width", "height", "steps", "cfg_scale", "sampler_name", "distilled_cfg_scale")


def family_switch(state: SharedState, title: str | None, shown: str | None) -> tuple[dict, str | None]:
    """The field values to show when checkpoint `title` is chosen on a page that shows family `shown`: the new
    family's defaults when it is another family (as Forge's UI presets switch), else nothing, so a user's own
    values stay while they change checkpoints within a family. Returns (values, the family now shown)."""
    family, defaults = state.models.family_and_defaults(title) if title else (None, {})
    if family is None or family == shown:
        return {}, shown if family is None else family
    return {name: value for name, value in defaults.items() if name in FAMILY_FIELDS}, family


def wire_family_defaults(state: SharedState, demo: gr.Blocks, dropdown: gr.Dropdown, tabs: list) -> None:
    """Choosing a checkpoint of another family sets the generation tabs' size, steps, CFG and sampler to its;
    so does opening the page when the checkpoint in use is of another family than the page was built for
    (a model added after the server started)."""
    targets = [(tab.controls[name], name) for tab in tabs for name in FAMILY_FIELDS if name in tab.controls.fields]
    built_for = state.models.family_and_defaults(state.models.selected_title())[0]  # the tabs' defaults are its
    shown = gr.State(None)

    def on_choice(title, previous):
        values, family = family_switch(state, title, previous)
        return [gr.update(value=values[name]) if name in values else gr.update() for _, name in targets] + [family]

    dropdown.input(on_choice, [dropdown, shown], [component for component, _ in targets] + [shown],
                   show_progress="hidden")
    demo.load(lambda: on_choice(state.models.selected_title(), built_for), None,
              [component for component, _ in targets] + [shown])


def choose_setting(state: SharedState, sessions: "Sessions", request: gr.Request | None, key: str, value) -> None:
    """A quick setting (checkpoint, VAE). With a login, only admins change it for everyone (config.json);
    anyone else's choice applies to their own session's jobs, so the dropdown still works for them."""
    if not state.access.is_admin(ui_caller(request).user):
        sessions.choose(request, key, value)
        return
    try:
        state.options.update({key: value})
    except OptionsError as error:
        gr.Warning(str(error))


def vae_dropdown(state: SharedState, demo: gr.Blocks, sessions: "Sessions") -> gr.Dropdown:
    """A1111's "SD VAE" quick setting: Automatic (named like the checkpoint), None, or a file."""
    from ..models.vae import state_vaes

    def choices() -> list[str]:
        return ["Automatic", "None", *(vae.name for vae in state_vaes(state))]

    with gr.Row(elem_id="quicksettings_vae"):
        dropdown = gr.Dropdown(choices(), value=state.options["sd_vae"], label="SD VAE", elem_id="setting_sd_vae",
                               scale=0, min_width=280)

    def choose(name, request: gr.Request):
        choose_setting(state, sessions, request, "sd_vae", name)

    dropdown.input(choose, dropdown, None)
    # New choices only: sending the value back too could undo a pick made while this round trip ran.
    dropdown.focus(lambda: gr.update(choices=choices()), None, dropdown)
    demo.load(lambda: gr.update(choices=choices(), value=state.options["sd_vae"]), None, dropdown)
    return dropdown


@dataclass
class Controls:
    """The components of one tab, by the A1111 parameter name each one fills; and what pasting
    infotext also reaches: scripts' `infotext_fields` and the on_infotext_pasted callbacks."""

    fields: dict[str, gr.components.Component] = field(default_factory=dict)
    script_fields: list = field(default_factory=list)  # [(component, infotext key or fn(params))]
    callbacks: object = None  # the CallbackRegistry, when extensions are loaded
    # The chosen checkpoint's own defaults (the demo model's 128x128, 20 steps...): see ModelManager.
    defaults: dict = field(default_factory=dict)

    def __getitem__(self, name: str) -> gr.components.Component:
        return self.fields[name]

    def inputs(self) -> set:
        return set(self.fields.values())

    def paste_targets(self) -> list:
        """Every component pasting infotext may set."""
        return [*self.fields.values(), *(c for c, _ in self.script_fields if c not in self.fields.values())]

    def values(self, data: dict) -> dict:
        """Parameter name -> value from a handler's {component: value} dictionary."""
        return {name: data[component] for name, component in self.fields.items() if component in data}


def sampler_controls(controls: Controls, tab: str) -> None:
    with gr.Row():
        controls.fields["sampler_name"] = gr.Dropdown(sampler_names(), value=controls.defaults.get("sampler_name", "DPM++ 2M"), label="Sampling method",
                                                      elem_id=f"{tab}_sampling")
        controls.fields["scheduler"] = gr.Dropdown(scheduler_labels(), value="Automatic", label="Schedule type",
                                                   elem_id=f"{tab}_scheduler")
        controls.fields["steps"] = gr.Slider(1, 150, value=controls.defaults.get("steps", 20), step=1, label="Sampling steps", elem_id=f"{tab}_steps")


def size_batch_cfg_controls(controls: Controls, tab: str) -> None:
    with gr.Row():
        with gr.Column(scale=4):
            controls.fields["width"] = gr.Slider(64, 2048, value=controls.defaults.get("width", 512), step=8, label="Width", elem_id=f"{tab}_width")
            controls.fields["height"] = gr.Slider(64, 2048, value=controls.defaults.get("height", 512), step=8, label="Height", elem_id=f"{tab}_height")
        with gr.Column(scale=0, min_width=48):  # A1111's switch; extensions look it up by its id
            swap = icons.icon_button(icons.SWAP, "Swap width and height", f"{tab}_res_switch_btn")
        with gr.Column(scale=1, min_width=200):  # room for a slider's number box and track
            controls.fields["n_iter"] = gr.Slider(1, 100, value=1, step=1, label="Batch count", elem_id=f"{tab}_batch_count")
            controls.fields["batch_size"] = gr.Slider(1, 8, value=1, step=1, label="Batch size", elem_id=f"{tab}_batch_size")
    size = [controls["width"], controls["height"]]
    swap.click(None, size, size, js="(width, height) => [height, width]", show_progress="hidden")  # in the page, as A1111
    controls.fields["cfg_scale"] = gr.Slider(1, 30, value=controls.defaults.get("cfg_scale", 7.0), step=0.5, label="CFG Scale", elem_id=f"{tab}_cfg_scale")
    # Forge's name; only families with distilled guidance (Flux dev) read it.
    controls.fields["distilled_cfg_scale"] = gr.Slider(0, 30, value=controls.defaults.get("distilled_cfg_scale", 3.5),
                                                       step=0.1, label="Distilled CFG Scale",
                                                       elem_id=f"{tab}_distilled_cfg_scale")


def seed_controls(controls: Controls, tab: str, last_seeds: gr.State) -> None:
    """Seed with dice (-1) and recycle (last seed), and the variation seed accordion."""
    with gr.Row():
        seed = gr.Number(-1, label="Seed", precision=0, elem_id=f"{tab}_seed", scale=4)
        dice = icons.icon_button(icons.RANDOM, "Random seed (-1)", f"{tab}_random_seed")
        reuse = icons.icon_button(icons.REUSE, "Reuse the seed of the selected image", f"{tab}_reuse_seed")
    with gr.Accordion("Extra", open=False, elem_id=f"{tab}_subseed_accordion"):
        with gr.Row():
            subseed = gr.Number(-1, label="Variation seed", precision=0, elem_id=f"{tab}_subseed", scale=4)
            sub_dice = icons.icon_button(icons.RANDOM, "Random variation seed (-1)", f"{tab}_random_subseed")
            sub_reuse = icons.icon_button(icons.REUSE, "Reuse the variation seed of the selected image",
                                          f"{tab}_reuse_subseed")
            strength = gr.Slider(0, 1, value=0, step=0.01, label="Variation strength", elem_id=f"{tab}_subseed_strength")
        with gr.Row():
            resize_w = gr.Slider(0, 2048, value=0, step=8, label="Resize seed from width", elem_id=f"{tab}_seed_resize_from_w")
            resize_h = gr.Slider(0, 2048, value=0, step=8, label="Resize seed from height", elem_id=f"{tab}_seed_resize_from_h")
    dice.click(lambda: -1, None, seed)
    sub_dice.click(lambda: -1, None, subseed)
    reuse.click(lambda seeds, current: seeds[0] if seeds else current, [last_seeds, seed], seed)
    sub_reuse.click(lambda seeds, current: seeds[1] if seeds else current, [last_seeds, subseed], subseed)
    controls.fields.update(seed=seed, subseed=subseed, subseed_strength=strength,
                           seed_resize_from_w=resize_w, seed_resize_from_h=resize_h)


def numeric_params(values: dict) -> dict:
    """Sliders and numbers arrive as floats; A1111's integer fields become ints, and
    a seed-resize size of 0 means "off" (-1)."""
    ints = ("steps", "width", "height", "n_iter", "batch_size", "seed", "subseed", "seed_resize_from_w",
            "seed_resize_from_h", "hr_second_pass_steps", "hr_resize_x", "hr_resize_y", "mask_blur",
            "inpaint_full_res_padding")
    out = dict(values)
    for name in ints:
        if out.get(name) is not None:
            out[name] = int(out[name])
    for name in ("seed", "subseed"):
        if out.get(name) is None:
            out[name] = -1
    for name in ("seed_resize_from_w", "seed_resize_from_h"):
        if out.get(name, -1) <= 0:
            out[name] = -1
    return out


@dataclass
class OutputPanel:
    progress: gr.HTML
    preview: gr.Image
    gallery: gr.Gallery
    infotext: gr.HTML
    result: gr.State  # {"images": [...], "infotexts": [...]} of the last job
    last_seeds: gr.State  # (seed, subseed) of the selected image
    selected: gr.State  # index of the selected image
    send_img2img: gr.Button
    send_inpaint: gr.Button

    def outputs(self) -> list:
        return [self.progress, self.preview, self.gallery, self.infotext, self.result, self.last_seeds]


def output_panel(tab: str, last_seeds: gr.State) -> OutputPanel:
    progress = gr.HTML("", elem_id=f"{tab}_progress")
    preview = gr.Image(label="Live preview", visible=False, interactive=False, elem_id=f"{tab}_preview", height=320)
    gallery = gr.Gallery(label="Output", columns=4, height=420, elem_id=f"{tab}_gallery", interactive=False,
                         format="png",  # lossless: Gradio's default, webp, changes pixels
                         # The whole image, never cropped: new results open in the preview, which
                         # fits the image into the gallery (wire_generation); the grid keeps four
                         # columns, so one result is not a full-width square cell taller than the gallery.
                         preview=True, object_fit="contain", fit_columns=False)
    with gr.Row():
        send_img2img = gr.Button("Send to img2img", elem_id=f"{tab}_send_to_img2img")
        send_inpaint = gr.Button("Send to inpaint", elem_id=f"{tab}_send_to_inpaint")
    infotext = gr.HTML("", elem_id=f"html_info_{tab}")  # A1111's id
    panel = OutputPanel(progress, preview, gallery, infotext, gr.State({}), last_seeds, gr.State(0),
                        send_img2img, send_inpaint)

    def select(result, event: gr.SelectData):
        index = event.index if isinstance(event.index, int) else 0
        texts = result.get("infotexts") or []
        seeds = result.get("seeds") or []
        if index >= len(texts):
            return index, gr.skip(), gr.skip()
        return index, infotext_html(texts[index]), seeds[index]

    gallery.select(select, panel.result, [panel.selected, infotext, panel.last_seeds])
    return panel


def infotext_html(text: str) -> str:
    return f'<div class="infotext">{html.escape(text).replace(chr(10), "<br>")}</div>'


def error_html(message: str) -> str:
    return f'<div class="error" style="color:#c0392b"><b>Error:</b> {html.escape(message)}</div>'


def progress_html(job, position: int | None) -> str:
    if job.status == "queued":
        text = f"In queue: {position}" if position else "Waiting..."
        return f'<div class="progress-text">{html.escape(text)}</div>'
    percent = int(round((job.progress or 0) * 100))
    eta = f", ETA: {job.eta:.0f}s" if job.eta else ""
    step = f" (step {job.step}/{job.steps})" if job.steps else ""
    return (f'<div class="progress"><div style="background:#ddd;border-radius:4px;height:18px">'
            f'<div style="background:#f97316;width:{percent}%;height:18px;border-radius:4px"></div></div>'
            f'<div class="progress-text">{percent}%{eta}{step}</div></div>')


class Sessions:
    """Which job each browser session is running in each tab, so Interrupt and Skip reach
    only the session's own job."""

    def __init__(self, state: SharedState):
        self.state = state
        self._jobs: dict[tuple[str, str], str] = {}
        self._choices: dict[str, dict] = {}  # owner -> the quick settings a non-admin chose for their own jobs

    @staticmethod
    def owner(request: gr.Request | None) -> str:
        return (request.session_hash if request is not None else None) or "anonymous"

    def submit(self, tab: str, kind: str, params, request: gr.Request | None, script_args: list | None = None):
        owner = self.owner(request)
        job = self.state.queue.submit(kind, params, owner, task_id=f"task({uuid.uuid4().hex[:15]})",
                                      script_args=script_args, override_settings=self._choices.get(owner))
        self._jobs[(owner, tab)] = job.id
        return job

    def busy(self, tab: str, request: gr.Request | None) -> bool:
        """Whether this browser tab's last job in `tab` is still queued or running."""
        job = self.state.queue.get(self._jobs.get((self.owner(request), tab), ""))
        return job is not None and job.status in ("queued", "running")

    def choose(self, request: gr.Request | None, key: str, value) -> None:
        self._choices.setdefault(self.owner(request), {})[key] = value

    def interrupt(self, tab: str, request: gr.Request) -> None:
        task_id = self._jobs.get((self.owner(request), tab))
        if task_id:
            self.state.queue.interrupt(task_id, self.owner(request))

    def skip(self, tab: str, request: gr.Request) -> None:
        task_id = self._jobs.get((self.owner(request), tab))
        if task_id:
            self.state.queue.skip(task_id, self.owner(request))

    def follow(self, job):
        """Yield (progress, preview, gallery, infotext, result, seeds) updates until the job ends."""
        shown_preview = None
        while job.status in ("queued", "running"):
            preview = gr.skip()
            if job.preview is not None and job.preview_id != shown_preview:
                shown_preview = job.preview_id
                preview = gr.update(value=job.preview, visible=True)
            position = self.state.queue.position(job.id) if job.status == "queued" else 0
            yield progress_html(job, position), preview, gr.skip(), gr.skip(), gr.skip(), gr.skip()
            job.wait(POLL_SECONDS)
        result = job.result
        images = list(result.images) if result is not None else []
        infotexts = list(result.infotexts) if result is not None else []
        seeds = list(zip(result.seeds, result.subseeds)) if result is not None else []
        if job.status == "failed":
            message = error_html(job.error or "the job failed")
        elif job.status == "interrupted":  # the images shown are what was finished, the last one as far as it got
            message = f'<div class="progress-text">Interrupted{"" if images else ": nothing was finished"}</div>'
        else:
            message = ""
        stored = {"images": images, "infotexts": infotexts, "seeds": seeds}
        yield (message, gr.update(value=None, visible=False), images,
               infotext_html(infotexts[0]) if infotexts else "", stored, seeds[0] if seeds else ())


# Infotext key -> (parameter name, converter); pasted into whichever tab has that control.
PASTE_KEYS = {
    "Prompt": ("prompt", str),
    "Negative prompt": ("negative_prompt", str),
    "Steps": ("steps", int),
    "Sampler": ("sampler_name", str),
    "Schedule type": ("scheduler", str),
    "Tiling": ("tiling", lambda value: str(value) == "True"),
    "CFG scale": ("cfg_scale", float),
    "Distilled CFG Scale": ("distilled_cfg_scale", float),
    "Seed": ("seed", int),
    "Size-1": ("width", int),
    "Size-2": ("height", int),
    "Batch size": ("batch_size", int),
    "Variation seed": ("subseed", int),
    "Variation seed strength": ("subseed_strength", float),
    "Seed resize from-1": ("seed_resize_from_w", int),
    "Seed resize from-2": ("seed_resize_from_h", int),
    "Denoising strength": ("denoising_strength", float),
    "Hires upscale": ("hr_scale", float),
    "Hires steps": ("hr_second_pass_steps", int),
    "Hires upscaler": ("hr_upscaler", str),
    "Hires resize-1": ("hr_resize_x", int),
    "Hires resize-2": ("hr_resize_y", int),
    "Hires sampler": ("hr_sampler_name", str),
    "Hires schedule type": ("hr_scheduler", str),
    "Hires prompt": ("hr_prompt", str),
    "Hires negative prompt": ("hr_negative_prompt", str),
    "Mask blur": ("mask_blur", int),
    "Masked area padding": ("inpaint_full_res_padding", int),
}
# Radios whose infotext value is the label itself.
PASTE_LABELS = {"Mask mode": "inpainting_mask_invert", "Masked content": "inpainting_fill", "Inpaint area": "inpaint_full_res"}


def pasted_values(text: str, controls: Controls) -> dict:
    """{component: value} for every control of `controls` the infotext has a value for."""
    params = parse_infotext(text or "")
    if controls.callbacks is not None:  # extensions may add or change values (A1111's on_infotext_pasted)
        controls.callbacks.run("infotext_pasted", text or "", params)
    updates = {}
    for key, (name, convert) in PASTE_KEYS.items():
        if key in params and name in controls.fields:
            try:
                updates[controls[name]] = convert(float(params[key]) if convert is int else params[key])
            except (TypeError, ValueError):
                continue
    for key, name in PASTE_LABELS.items():
        if key in params and name in controls.fields:
            updates[controls[name]] = str(params[key])
    if "enable_hr" in controls.fields:  # as A1111: a hires key together with a denoising strength
        hires = any(params.get(key) for key in ("Hires upscale", "Hires upscaler", "Hires steps", "Hires resize-1"))
        updates[controls["enable_hr"]] = bool(hires and "Denoising strength" in params)
    for component, key in controls.script_fields:
        try:
            value = key(params) if callable(key) else params.get(key)
        except Exception:  # a script's converter failing costs only its own field
            continue
        if value is not None:
            updates[component] = value
    return updates
