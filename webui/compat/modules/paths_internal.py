"""A1111's `modules.paths_internal`: the same folders as modules.paths."""

from .paths import extensions_builtin_dir, modules_path, sd_configs_path  # noqa: F401  (script_path follows the flags)
from . import paths as _paths


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)
    return getattr(_paths, name)  # modules.paths records a name it lacks
