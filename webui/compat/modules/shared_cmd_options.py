"""A1111's `modules.shared_cmd_options`: the parsed command line."""

from .shared import cmd_opts  # noqa: F401
