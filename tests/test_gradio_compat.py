"""Gradio 3.41 code, as A1111 extensions write it, building on the Gradio we run; and the
component reporting window (before/after_component) that exists only while a UI is built."""

import threading

import gradio as gr

from webui.ui import gradio_compat
from webui.ui.ui_components import InputAccordion, ToolButton


def config(demo: gr.Blocks) -> dict:
    """elem_id -> (frontend type, props) of every component in the page config."""
    components = demo.get_config_file()["components"]
    return {c["props"].get("elem_id"): (c["type"], c["props"]) for c in components if c["props"].get("elem_id")}


def test_gradio3_arguments_and_names_while_extension_code_runs():
    with gr.Blocks() as demo:
        with gradio_compat.extension_ui():
            with gr.Box(elem_id="box"):
                text = gr.Textbox(label="t", elem_id="text", tooltip="A1111's", show_copy_button=True).style(
                    container=False)
                image = gr.Image(source="webcam", tool="sketch", type="pil", elem_id="image")
                choice = gr.Dropdown(["a", "b"], value="not a choice", elem_id="choice")
                tool = gr.Button("T", variant="tool", elem_id="tool")
                gallery = gr.Gallery(elem_id="gallery").style(grid=4)
                event = tool.click(lambda x: x, text, text, _js="(x) => x.trim()", _preprocess=True)
                event.then(fn=None, _js="() => 1")
    assert image.sources == ["webcam"] and choice.allow_custom_value and text.container is False
    assert tool.variant == "secondary" and "tool" in tool.elem_classes and gallery.columns == 4
    page = config(demo)
    assert page["box"][0] == "group"
    assert [d["js"] for d in demo.get_config_file()["dependencies"]][:2] == ["(x) => x.trim()", "() => 1"]
    assert gr.Slider.update(maximum=5) == {"maximum": 5, "__type__": "update"}
    assert isinstance(text, gr.components.IOComponent)


def test_outside_extension_code_gradio_is_untouched():
    before = vars(gr.Textbox)["__init__"], vars(gr.Button)["click"]
    with gr.Blocks():
        with gradio_compat.extension_ui():
            assert vars(gr.Textbox)["__init__"] is not before[0]
        try:
            gr.Textbox(source="upload")  # our own code keeps Gradio's checks
            raise AssertionError("an unknown argument was accepted")
        except TypeError:
            pass
    assert (vars(gr.Textbox)["__init__"], vars(gr.Button)["click"]) == before


def test_components_are_reported_on_the_building_thread_only():
    seen, elsewhere = [], []
    with gr.Blocks():
        with gradio_compat.observe_components(lambda phase, block, kwargs: seen.append((phase, kwargs.get("elem_id")))):
            gr.Slider(1, 9, value=3, elem_id="mine")
            other = threading.Thread(target=lambda: elsewhere.append(gr.Textbox(elem_id="theirs", render=False)))
            other.start()
            other.join()
    assert seen == [("before", "mine"), ("after", "mine")]
    assert elsewhere and ("before", "theirs") not in seen


def test_a1111_components_render_as_gradio_ones():
    with gr.Blocks() as demo:
        ToolButton("\U0001f504", elem_id="refresh")
        with InputAccordion(True, label="Extra", elem_id="extra") as enabled:
            gr.Textbox(elem_id="inside")
    page = config(demo)
    assert page["refresh"][0] == "button" and page["refresh"][1]["value"] == "\U0001f504"
    assert "tool" in page["refresh"][1]["elem_classes"]
    assert page["extra"][0] == "accordion" and page["extra"][1]["open"] is True
    assert page["extra-checkbox"][0] == "checkbox" and enabled.value is True
