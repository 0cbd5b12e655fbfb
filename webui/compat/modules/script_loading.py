"""A1111's `modules.script_loading`: import a Python file by path."""

from __future__ import annotations

import importlib.util
import os

from webui import compat


def load_module(path):
    spec = importlib.util.spec_from_file_location(os.path.basename(path), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def preload_extensions(extensions_dir, parser, extension_list=None):
    pass


__getattr__ = compat.report_missing_names(__name__)
