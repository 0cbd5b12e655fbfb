"""A1111's `modules.paths` (and paths_internal): where the project, models, data and extensions are."""

from __future__ import annotations

from pathlib import Path

from webui import compat

script_path = str(Path(__file__).resolve().parents[3])  # the project root
modules_path = str(Path(__file__).resolve().parent)
sd_path = script_path
sd_configs_path = str(Path(script_path) / "webui" / "models" / "configs")
extensions_builtin_dir = str(Path(script_path) / "webui" / "extensions" / "builtin")
paths: dict = {}


def __getattr__(name):
    """Folders that follow the flags: data_path, models_path, extensions_dir, default_sd_model_file..."""
    if name not in ("data_path", "models_path", "extensions_dir", "config_states_dir", "default_output_dir"):
        raise compat.missing(__name__, name)
    flags = compat.state().flags
    if name == "data_path":
        return str(flags.data_dir)
    if name == "models_path":
        return str(flags.models_dir)
    if name == "extensions_dir":
        from webui.extensions.loader import extensions_dir

        return str(extensions_dir(flags))
    if name == "config_states_dir":
        return str(Path(flags.data_dir) / "config_states")
    if name == "default_output_dir":
        return str(Path(flags.data_dir) / "outputs")
    raise compat.missing(__name__, name)
