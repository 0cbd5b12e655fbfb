"""A1111's `modules.prompt_parser`: our prompt_parser package under its old module name."""

from prompt_parser import *  # noqa: F401,F403
from prompt_parser import (  # noqa: F401
    get_learned_conditioning_prompt_schedules, get_multicond_prompt_list, parse_prompt_attention,
)

from webui import compat


__getattr__ = compat.report_missing_names(__name__)
