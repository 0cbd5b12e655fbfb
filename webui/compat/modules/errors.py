"""A1111's `modules.errors`: report an error and go on."""

from __future__ import annotations

import logging
import traceback

from webui import compat
from webui.generation.params import ParamsError

log = logging.getLogger("extensions")

# Ours, beyond A1111: a script raises InvalidInput for a value its user must change (an unknown axis type, a
# range with too many values). The job fails as the user's error: the API answers 400 with the message, the
# UI shows it. Any other exception from a script is the server's error (500).
InvalidInput = ParamsError


def report(message: str, *, exc_info: bool = False) -> None:
    log.error(message, exc_info=exc_info)


def display(e: Exception, task, *, full_traceback=False) -> None:
    log.error("%s: %s", task, e, exc_info=e if full_traceback else None)


def display_once(e: Exception, task) -> None:
    display(e, task)


def print_error_explanation(message: str) -> None:
    log.error(message)


def format_exception(e, tb):
    return traceback.format_exception(type(e), e, tb)


def run(code, task):
    try:
        code()
    except Exception as e:
        display(e, task)


__getattr__ = compat.report_missing_names(__name__)
