"""A1111's `modules.cmd_args`: the flag parser, for code that reads its defaults."""

from webui import compat
from webui.flags import build_parser

parser = build_parser()


__getattr__ = compat.report_missing_names(__name__)
