"""A1111's `modules.call_queue`: wrappers A1111 puts around UI callbacks (no queue needed here)."""

from __future__ import annotations

import functools
import threading

from webui import compat

queue_lock = threading.Lock()


def wrap_queued_call(func):
    @functools.wraps(func)
    def f(*args, **kwargs):
        with queue_lock:
            return func(*args, **kwargs)
    return f


def wrap_gradio_call(func, extra_outputs=None, add_stats=False):
    return func


def wrap_gradio_gpu_call(func, extra_outputs=None):
    return wrap_queued_call(func)


__getattr__ = compat.report_missing_names(__name__)
