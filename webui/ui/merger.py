"""The Checkpoint Merger tab (A1111's): the form over models/merge.py; the merged file joins the checkpoint list."""

from __future__ import annotations

import html
import logging

import gradio as gr

from ..auth import ui_caller
from ..models.merge import FORMATS, METHODS, MergeError, MergeRequest, merge_checkpoints
from ..models.vae import state_vaes
from ..state import SharedState
from . import icons

log = logging.getLogger(__name__)


def _titles(state: SharedState) -> list[str]:
    return [info.title for info in state.models.checkpoints() if info.kind != "diffusers"]


def _vae_names(state: SharedState) -> list[str]:
    return ["None", *(vae.name for vae in state_vaes(state))]


def run_merge(state: SharedState, request: MergeRequest) -> str:
    """Merge, refresh the checkpoint list; the message to show (the new checkpoint, or why not)."""
    vae_path = None
    if request.bake_in_vae and request.bake_in_vae != "None":
        vae_path = next((vae.path for vae in state_vaes(state) if vae.name == request.bake_in_vae), None)
        if vae_path is None:
            raise MergeError(f"VAE {request.bake_in_vae!r} not found; press refresh")
    path = merge_checkpoints(request, state.models.find, state.models.models_dir, vae_path,
                             cache_path=state.models.cache_path)
    state.models.refresh()
    title = next((info.title for info in state.models.checkpoints() if info.path == path.absolute()), path.name)
    return title


def build(state: SharedState) -> None:
    titles = _titles(state)
    with gr.Row(equal_height=False):
        with gr.Column(variant="compact"):
            gr.HTML("<p>A merged checkpoint is written to the checkpoints folder "
                    f"(<code>{html.escape(state.models.models_dir.name)}</code>) and appears in the checkpoint "
                    "list. <b>Weighted sum</b>: A &times; (1 &minus; M) + B &times; M. "
                    "<b>Add difference</b>: A + (B &minus; C) &times; M.</p>")
            with gr.Row():
                primary = gr.Dropdown(titles, label="Primary model (A)", elem_id="modelmerger_primary_model_name")
                secondary = gr.Dropdown(titles, label="Secondary model (B)",
                                        elem_id="modelmerger_secondary_model_name")
                tertiary = gr.Dropdown(titles, label="Tertiary model (C)", elem_id="modelmerger_tertiary_model_name")
                refresh = icons.icon_button(icons.REFRESH, "Refresh the checkpoint and VAE lists",
                                            "modelmerger_refresh_checkpoint_names")
            custom_name = gr.Textbox(label="Custom Name (Optional)", elem_id="modelmerger_custom_name")
            multiplier = gr.Slider(0.0, 1.0, value=0.3, step=0.05, label="Multiplier (M) - set to 0 to get model A",
                                   elem_id="modelmerger_interp_amount")
            method = gr.Radio(list(METHODS), value="Weighted sum", label="Interpolation Method",
                              elem_id="modelmerger_interp_method")
            with gr.Row():
                checkpoint_format = gr.Radio(list(FORMATS), value="safetensors", label="Checkpoint format",
                                             elem_id="modelmerger_checkpoint_format")
                save_as_half = gr.Checkbox(False, label="Save as float16", elem_id="modelmerger_save_as_half")
            with gr.Row():
                bake_in_vae = gr.Dropdown(_vae_names(state), value="None", label="Bake in VAE",
                                          elem_id="modelmerger_bake_in_vae")
                discard_weights = gr.Textbox(label="Discard weights with matching name",
                                             elem_id="modelmerger_discard_weights")
            save_metadata = gr.Checkbox(True, label="Save metadata", elem_id="modelmerger_save_metadata")
            merge = gr.Button("Merge", variant="primary", elem_id="modelmerger_merge")
        with gr.Column(variant="compact"):
            result = gr.HTML(elem_id="modelmerger_result")

    def refreshed():
        choices = [info.title for info in state.models.refresh() if info.kind != "diffusers"]
        return (*(gr.update(choices=choices) for _ in range(3)), gr.update(choices=_vae_names(state)))

    def merged(a, b, c, name, m, how, fmt, half, vae, discard, metadata, request: gr.Request):
        refusal = state.access.refusal(ui_caller(request), "merge checkpoints, which adds files for everyone")
        if refusal is not None:
            return f'<div class="error" style="color:#c0392b">{html.escape(refusal)}</div>', *(gr.update(),) * 3
        merge_request = MergeRequest(a or "", b or "", c or "", how, float(m), bool(half), (name or "").strip(), fmt,
                                     vae or "None", discard or "", bool(metadata))
        try:
            title = run_merge(state, merge_request)
        except (MergeError, OSError) as error:
            return f'<div class="error" style="color:#c0392b">{html.escape(str(error))}</div>', *(gr.update(),) * 3
        except Exception as error:  # a merge going wrong must not take the page down
            log.exception("checkpoint merge failed")
            return f'<div class="error" style="color:#c0392b">Merge failed: {html.escape(str(error))}</div>', \
                *(gr.update(),) * 3
        choices = _titles(state)
        message = f'<div class="modelmerger-done">Checkpoint saved: {html.escape(title)}</div>'
        return message, *(gr.update(choices=choices) for _ in range(3))

    refresh.click(refreshed, None, [primary, secondary, tertiary, bake_in_vae])
    merge.click(merged, [primary, secondary, tertiary, custom_name, multiplier, method, checkpoint_format,
                         save_as_half, bake_in_vae, discard_weights, save_metadata],
                [result, primary, secondary, tertiary])
