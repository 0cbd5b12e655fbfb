"""A1111's `modules.ui_components`: its small gradio components, as thin current-gradio ones."""

from __future__ import annotations

import gradio as gr


def _with_class(kwargs: dict, name: str) -> dict:
    classes = kwargs.pop("elem_classes", None) or []
    classes = [classes] if isinstance(classes, str) else list(classes)
    return {**kwargs, "elem_classes": [name, *classes]}


class FormComponent:
    webui_do_not_create_gradio_pyi_thank_you = True

    def get_expected_parent(self):
        return FormRow

from gradio.events import Dependency

class ToolButton(gr.Button, FormComponent):
    """A small square button (🔄, 📋...) beside a field."""

    def __init__(self, value="", *args, **kwargs):
        super().__init__(value, *args, **_with_class(kwargs, "tool"))
    from typing import Callable, Literal, Sequence, Any, TYPE_CHECKING
    from gradio.blocks import Block
    if TYPE_CHECKING:
        from gradio.components import Timer
        from gradio.components.base import Component


class ResizeHandleRow(gr.Row):
    def __init__(self, **kwargs):
        super().__init__(**_with_class(kwargs, "resize-handle-row"))
    from typing import Callable, Literal, Sequence, Any, TYPE_CHECKING
    from gradio.blocks import Block
    if TYPE_CHECKING:
        from gradio.components import Timer
        from gradio.components.base import Component


class FormRow(gr.Row, FormComponent):
    pass
    from typing import Callable, Literal, Sequence, Any, TYPE_CHECKING
    from gradio.blocks import Block
    if TYPE_CHECKING:
        from gradio.components import Timer
        from gradio.components.base import Component


class FormColumn(gr.Column, FormComponent):
    pass
    from typing import Callable, Literal, Sequence, Any, TYPE_CHECKING
    from gradio.blocks import Block
    if TYPE_CHECKING:
        from gradio.components import Timer
        from gradio.components.base import Component


class FormGroup(gr.Group, FormComponent):
    pass
    from typing import Callable, Literal, Sequence, Any, TYPE_CHECKING
    from gradio.blocks import Block
    if TYPE_CHECKING:
        from gradio.components import Timer
        from gradio.components.base import Component


class FormHTML(gr.HTML, FormComponent):
    pass
    from typing import Callable, Literal, Sequence, Any, TYPE_CHECKING
    from gradio.blocks import Block
    if TYPE_CHECKING:
        from gradio.components import Timer
        from gradio.components.base import Component


class FormColorPicker(gr.ColorPicker, FormComponent):
    pass
    from typing import Callable, Literal, Sequence, Any, TYPE_CHECKING
    from gradio.blocks import Block
    if TYPE_CHECKING:
        from gradio.components import Timer
        from gradio.components.base import Component


class DropdownMulti(gr.Dropdown, FormComponent):
    def __init__(self, **kwargs):
        super().__init__(multiselect=True, **kwargs)
    from typing import Callable, Literal, Sequence, Any, TYPE_CHECKING
    from gradio.blocks import Block
    if TYPE_CHECKING:
        from gradio.components import Timer
        from gradio.components.base import Component


class DropdownEditable(gr.Dropdown, FormComponent):
    def __init__(self, **kwargs):
        super().__init__(allow_custom_value=True, **kwargs)
    from typing import Callable, Literal, Sequence, Any, TYPE_CHECKING
    from gradio.blocks import Block
    if TYPE_CHECKING:
        from gradio.components import Timer
        from gradio.components.base import Component


class InputAccordion(gr.Checkbox):
    """A1111's accordion whose value is a checkbox (on/off): `with InputAccordion(False, label=...) as on:`
    puts components inside it, and `on` is an input whose value the script receives."""

    global_index = 0

    def __init__(self, value=False, **kwargs):
        self.accordion_id = kwargs.get("elem_id") or f"input-accordion-{InputAccordion.global_index}"
        InputAccordion.global_index += 1
        label = kwargs.pop("label", "")
        accordion_args = {"label": label, "open": kwargs.pop("open", bool(value)),
                          "elem_id": f"{self.accordion_id}-accordion", "elem_classes": ["input-accordion"],
                          "visible": kwargs.get("visible", True)}
        self.accordion = gr.Accordion(**accordion_args)
        with self.accordion:
            super().__init__(value, label=f"Enable {label}".strip(), **{**kwargs, "elem_id": self.accordion_id})

    def extra(self):
        """A column on the accordion's right, as in A1111 (here simply inside it)."""
        return gr.Column(elem_classes="input-accordion-extra", min_width=0)

    def __enter__(self):
        self.accordion.__enter__()
        return self

    def __exit__(self, exc_type, exc_val, exc_tb):
        self.accordion.__exit__(exc_type, exc_val, exc_tb)

    def get_block_name(self):
        return "checkbox"
    from typing import Callable, Literal, Sequence, Any, TYPE_CHECKING
    from gradio.blocks import Block
    if TYPE_CHECKING:
        from gradio.components import Timer
        from gradio.components.base import Component