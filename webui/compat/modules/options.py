"""A1111's settings API (`shared.opts`, `OptionInfo`, `options_section`) over our Options.

`opts.<key>` reads the stored value, else the registered default, else A1111's default for the
settings extensions commonly read and we have no use for. `opts.add_option` registers the
setting with our Options (validated, saved in config.json, listed by /sdapi/v1/options).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from webui import compat
from webui.a1111_options import A1111_OPTIONS

log = logging.getLogger(__name__)

# A1111's settings as extensions read them: every v1.10 key (webui/a1111_options.py), and a few older ones.
A1111_DEFAULTS = {**A1111_OPTIONS, "return_info": True, "enable_emphasis": True,
                  "dont_fix_second_order_samplers_schedule": False}


class OptionInfo:
    """One setting as an extension declares it (A1111's fields; the chainable helpers return self)."""

    def __init__(self, default=None, label="", component=None, component_args=None, onchange=None, section=None,
                 refresh=None, comment_before="", comment_after="", infotext=None, restrict_api=False,
                 category_id=None):
        self.default = default
        self.label = label
        self.component = component
        self.component_args = component_args
        self.onchange = onchange
        self.section = section
        self.category_id = category_id
        self.refresh = refresh
        self.do_not_save = False
        self.comment_before = comment_before
        self.comment_after = comment_after
        self.infotext = infotext
        self.restrict_api = restrict_api
        self.reload_ui = False
        self.restart = False

    def link(self, label, url):
        self.comment_before += f"[<a href='{url}' target='_blank'>{label}</a>]"
        return self

    def js(self, label, js_func):
        self.comment_before += f"[<a onclick='{js_func}(); return false'>{label}</a>]"
        return self

    def info(self, info):
        self.comment_after += f"<span class='info'>({info})</span>"
        return self

    def html(self, html):
        self.comment_after += html
        return self

    def needs_restart(self):
        self.restart = True
        self.comment_after += " <span class='info'>(requires restart)</span>"
        return self

    def needs_reload_ui(self):
        self.reload_ui = True
        self.comment_after += " <span class='info'>(requires Reload UI)</span>"
        return self


class OptionHTML(OptionInfo):
    """Text shown among the settings, not a setting."""

    def __init__(self, text):
        super().__init__(str(text).strip(), label="", component=lambda **kwargs: __import__("gradio").HTML(
            value=text, elem_classes="settings-info", **kwargs))
        self.do_not_save = True


def options_section(section_identifier, options_dict: dict) -> dict:
    """Give every OptionInfo of the dict the section ((id, title), or (id, title, category))."""
    for value in options_dict.values():
        if len(section_identifier) == 2:
            value.section = section_identifier
        elif len(section_identifier) == 3:
            value.section = section_identifier[0:2]
            value.category_id = section_identifier[2]
    return options_dict


def in_data_dir(key: str, value):
    """Output folders (`outdir_*`) and `temp_dir` as extensions read them: absolute, under --data-dir (a relative
    one would land in the project folder, or wherever the server was started). "" stays "" ("not set"), except
    `temp_dir`, which A1111 leaves to the system and we keep in the data dir."""
    if not isinstance(value, str) or not (key.startswith("outdir_") or key == "temp_dir"):
        return value
    if key == "temp_dir" and not value:
        value = "tmp"
    if value and not os.path.isabs(value):
        return str(Path(compat.state().flags.data_dir) / value)
    return value



def _register_a1111_default(options, key) -> None:
    """An A1111 setting this WebUI has no use for (`outdir_save`, ...) becomes a setting when an extension sets
    it (images-browser points `opts.outdir_save` at a folder around a save), as it is one in A1111."""
    if key not in options and key in A1111_DEFAULTS:
        options.register(key, A1111_DEFAULTS[key])

class Options:
    """`shared.opts`: attribute access to the bound state's settings."""

    typemap = {int: float}

    def __getattr__(self, key):
        if key.startswith("__"):
            raise AttributeError(key)
        options = compat.state().options
        if key in options:
            return in_data_dir(key, options[key])
        if key in A1111_DEFAULTS:
            return in_data_dir(key, A1111_DEFAULTS[key])
        raise compat.missing("modules.shared.opts", key)

    def __setattr__(self, key, value):
        options = compat.state().options
        _register_a1111_default(options, key)
        options.update({key: value})  # validated; OptionsError (a ValueError) says why

    @property
    def data(self) -> dict:
        return {key: in_data_dir(key, value) for key, value in {**A1111_DEFAULTS, **compat.state().options.as_dict()}.items()}

    @property
    def data_labels(self) -> dict:
        options = compat.state().options
        labels = {key: OptionInfo(default) for key, default in options.defaults().items()}
        labels.update(options.registered())
        return labels

    def add_option(self, key: str, info: OptionInfo) -> None:
        if getattr(info, "do_not_save", False):
            return
        compat.state().options.register(key, info.default, onchange=info.onchange, info=info)

    def set(self, key, value, is_api=False, run_callbacks=True) -> bool:
        """Change a setting (saved); False when it is unknown, refused or unchanged."""
        options = compat.state().options
        _register_a1111_default(options, key)
        if key in options and options[key] == value:
            return False
        try:
            options.update({key: value})
        except ValueError as error:
            log.warning("setting %s not changed: %s", key, error)
            return False
        return True

    def get_default(self, key):
        defaults = compat.state().options.defaults()
        return defaults[key] if key in defaults else A1111_DEFAULTS.get(key)

    def onchange(self, key, func, call=True) -> None:
        options = compat.state().options
        options.register(key, options.defaults().get(key), onchange=func)
        if call:
            func()

    def save(self, filename=None) -> None:
        options = compat.state().options
        if filename is None or str(filename) == str(options.path):
            options.update({})  # our Options save on every change; this writes the file again
        else:
            with open(filename, "w", encoding="utf8") as handle:
                json.dump(options.as_dict(), handle, indent=4)

    def same_type(self, x, y) -> bool:
        if x is None or y is None:
            return True
        return self.typemap.get(type(x), type(x)) == self.typemap.get(type(y), type(y))

    def cast_value(self, key, value):
        default = self.get_default(key)
        if value is None or default is None:
            return value
        if isinstance(default, bool):
            return value if isinstance(value, bool) else str(value).lower() in ("true", "1", "yes")
        return type(default)(value)

    def dumpjson(self) -> str:
        return json.dumps(self.data)

    def __contains__(self, key) -> bool:
        return key in compat.state().options or key in A1111_DEFAULTS
