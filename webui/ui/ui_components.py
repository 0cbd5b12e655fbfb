"""A1111's `modules.ui_components` (and Gradio 3's `gr.Box`) as Gradio 6 components.

Each is a thin subclass that the browser draws as the Gradio component it extends (hence
`get_block_name`). A1111 mixed a `FormComponent` class into its rows and groups; in Gradio 6
that class is a real component with its own constructor, so these extend the layout alone.
"""

from __future__ import annotations

import itertools

import gradio as gr

from . import gradio_compat

gradio_compat.install()  # before the classes below: Gradio must not write .pyi stubs for them

_accordion_ids = itertools.count()


def _classes(extra: str, kwargs: dict) -> list[str]:
    given = kwargs.pop("elem_classes", None)
    return [extra, *([given] if isinstance(given, str) else (given or []))]


class Box(gr.Group):
    """Gradio 3's `gr.Box`: a bordered group; a Group is the nearest thing."""

    def get_block_name(self):
        return "group"


class ToolButton(gr.Button):
    """A small icon button beside a field. `value` is named: Gradio 6 drops positional
    arguments that a subclass's constructor takes as `*args`."""

    def __init__(self, value="", **kwargs):
        kwargs.setdefault("scale", 0)
        kwargs.setdefault("min_width", 40)
        super().__init__(value, elem_classes=_classes("tool", kwargs), **kwargs)

    def get_block_name(self):
        return "button"


class ResizeHandleRow(gr.Row):
    def __init__(self, **kwargs):
        super().__init__(elem_classes=_classes("resize-handle-row", kwargs), **kwargs)

    def get_block_name(self):
        return "row"


class FormRow(gr.Row):
    def get_block_name(self):
        return "row"


class FormColumn(gr.Column):
    def get_block_name(self):
        return "column"


class FormGroup(gr.Group):
    def get_block_name(self):
        return "group"


class FormHTML(gr.HTML):
    def get_block_name(self):
        return "html"


class FormColorPicker(gr.ColorPicker):
    def get_block_name(self):
        return "colorpicker"


class DropdownMulti(gr.Dropdown):
    def __init__(self, **kwargs):
        super().__init__(multiselect=True, **kwargs)

    def get_block_name(self):
        return "dropdown"


class DropdownEditable(gr.Dropdown):
    def __init__(self, **kwargs):
        super().__init__(allow_custom_value=True, **kwargs)

    def get_block_name(self):
        return "dropdown"


class InputAccordion(gr.Checkbox):
    """An accordion whose value is whether it is open (A1111: open = enabled). Its value is a
    hidden checkbox, so scripts take it as an input; `with InputAccordion(...) as enabled:`
    fills the accordion."""

    def __init__(self, value=False, **kwargs):
        self.accordion_id = kwargs.get("elem_id") or f"input-accordion-{next(_accordion_ids)}"
        label = kwargs.get("label", "Accordion")
        checkbox_args = {**kwargs, "elem_id": f"{self.accordion_id}-checkbox", "visible": False}
        super().__init__(value=value, elem_classes=_classes("input-accordion-checkbox", checkbox_args),
                         **checkbox_args)
        self.accordion = gr.Accordion(label, open=value, elem_id=self.accordion_id,
                                      elem_classes=["input-accordion"], visible=kwargs.get("visible", True))
        self.accordion.expand(lambda: True, None, self, show_progress="hidden")
        self.accordion.collapse(lambda: False, None, self, show_progress="hidden")
        self.change(lambda opened: gr.update(open=bool(opened)), self, self.accordion, show_progress="hidden")

    def extra(self):
        """A row for extra controls, at the top of the accordion (A1111 puts it in the title)."""
        return gr.Row(elem_id=f"{self.accordion_id}-extra", elem_classes="input-accordion-extra")

    def __enter__(self):
        self.accordion.__enter__()
        return self

    def __exit__(self, *exc):
        return self.accordion.__exit__(*exc)

    def get_block_name(self):
        return "checkbox"


gr.Box = Box  # Gradio 3's name (see gradio_compat.install)
