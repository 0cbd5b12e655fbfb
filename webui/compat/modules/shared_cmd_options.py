"""A1111's `modules.shared_cmd_options`: the parsed command line."""

from webui import compat
from .shared import cmd_opts  # noqa: F401


__getattr__ = compat.report_missing_names(__name__)
