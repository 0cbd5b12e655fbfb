"""A1111's old name for `modules.infotext_utils`."""

from webui import compat
from .infotext_utils import *  # noqa: F401,F403
from .infotext_utils import (  # noqa: F401
    ParamBinding, add_paste_fields, bind_buttons, create_buttons, image_from_url_text, parse_generation_parameters,
    paste_fields, register_paste_params_button, registered_param_bindings,
)


__getattr__ = compat.report_missing_names(__name__)
