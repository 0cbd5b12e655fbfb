"""A1111's `modules.paths` (and paths_internal): where the project, models, data and extensions are."""

from __future__ import annotations

from pathlib import Path

from webui import compat

_project_root = Path(__file__).resolve().parents[3]
modules_path = str(Path(__file__).resolve().parent)
sd_path = str(_project_root)
sd_configs_path = str(_project_root / "webui" / "models" / "configs")
extensions_builtin_dir = str(_project_root / "webui" / "extensions" / "builtin")
paths: dict = {}


def __getattr__(name):
    """Folders that follow the flags: data_path, models_path, extensions_dir, default_sd_model_file...

    `script_path` is A1111's root folder. Extensions build their working folders from it
    (tagcomplete writes `<script_path>/tmp/tagAutocompletePath.txt` and its page script reads it back as
    `file=tmp/...`), so it is the data dir, where the `file=` route reads relative paths from and where
    everything the WebUI writes goes: the project folder itself when no --data-dir is given."""
    if name not in ("script_path", "data_path", "models_path", "extensions_dir", "config_states_dir", "default_output_dir"):
        raise compat.missing(__name__, name)
    flags = compat.state().flags
    if name in ("data_path", "script_path"):
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
