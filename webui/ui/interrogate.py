"""img2img's "Interrogate CLIP" button: the shown image's text (webui/interrogate) into the prompt box."""

from __future__ import annotations

import html
import logging

import gradio as gr

from ..api.errors import hide_paths
from ..interrogate import InterrogateError
from ..interrogate.service import interrogate_image
from ..state import SharedState

log = logging.getLogger(__name__)


def interrogate_button(state: SharedState, prompt: gr.Textbox, image_inputs: set, current_image) -> gr.Button:
    """A button that fills `prompt`; `current_image(data)` picks the image of the mode shown from the
    {component: value} of `image_inputs`. Missing models or no image: a notice, the prompt left as it was."""
    button = gr.Button("Interrogate CLIP", elem_id="interrogate")

    def run(data: dict):
        image = current_image(data)
        if image is None:
            gr.Warning("Interrogate CLIP: put an image into the tab first")
            return gr.skip()
        try:
            return interrogate_image(state, image)
        except InterrogateError as error:
            notice(str(error))
            return gr.skip()
        except Exception as error:  # the page keeps working whatever the models do
            log.exception("interrogate failed")
            notice(f"Interrogate CLIP failed: {error}")
            return gr.skip()

    def notice(message: str) -> None:
        # Gradio shows the text as HTML; server paths appear relative to the data folder, as in the API's errors.
        gr.Warning(html.escape(hide_paths(message, state.flags.data_dir)), duration=None)

    button.click(run, set(image_inputs), prompt, show_progress="minimal")
    return button
