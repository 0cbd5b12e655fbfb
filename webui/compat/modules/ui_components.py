"""A1111's `modules.ui_components`: its small components, as Gradio 6 ones (webui/ui/ui_components.py)."""

from webui import compat
from webui.ui.ui_components import (  # noqa: F401
    Box, DropdownEditable, DropdownMulti, FormColorPicker, FormColumn, FormGroup, FormHTML, FormRow, InputAccordion,
    ResizeHandleRow, ToolButton,
)


class FormComponent:
    """A1111's marker class; our components above do not need it, extensions may still import it."""

    webui_do_not_create_gradio_pyi_thank_you = True


__getattr__ = compat.report_missing_names(__name__)
