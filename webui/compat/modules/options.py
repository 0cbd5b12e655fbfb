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

log = logging.getLogger(__name__)

# A1111 settings that extensions read although we do not use them: answered with A1111's defaults.
A1111_DEFAULTS = {
    "outdir_samples": "", "outdir_grids": "", "outdir_txt2img_grids": "outputs/txt2img-grids",
    "outdir_img2img_grids": "outputs/img2img-grids", "outdir_extras_samples": "outputs/extras-images",
    "outdir_save": "log/images", "temp_dir": "", "clean_temp_dir_at_start": False, "save_to_dirs": True, "use_save_to_dirs_for_ui": False, "grid_save": True, "grid_save_to_dirs": True,
    "grid_format": "png", "grid_extended_filename": False, "grid_only_if_multiple": True,
    "grid_prevent_empty_spots": False, "grid_zip_filename_pattern": "", "n_rows": -1, "font": "",
    "grid_text_active_color": "#000000", "grid_text_inactive_color": "#999999", "grid_background_color": "#ffffff",
    "return_grid": True, "return_info": True, "return_mask": False, "return_mask_composite": False,
    "do_not_show_images": False, "enable_pnginfo": True, "save_txt": False, "save_images_add_number": True,
    "save_images_before_face_restoration": False, "save_selected_only": True, "jpeg_quality": 80,
    "webp_lossless": False, "export_for_4chan": True, "img_downscale_threshold": 4.0, "target_side_length": 4000,
    "img_max_size_mp": 200, "use_original_name_batch": True, "use_upscaler_name_as_suffix": False,
    "directories_filename_pattern": "[date]", "directories_max_prompt_words": 8, "samples_log_stdout": False,
    "enable_emphasis": True, "enable_batch_seeds": True, "token_merging_ratio": 0.0, "s_min_uncond": 0.0,
    "s_churn": 0.0, "s_tmin": 0.0, "s_tmax": 0.0, "s_noise": 1.0, "sd_checkpoint_hash": "", "sd_unet": "Automatic",
    "sd_vae_overrides_per_model_preferences": True, "sd_hypernetwork": "None", "face_restoration": False,
    "face_restoration_model": "CodeFormer", "code_former_weight": 0.5, "upscaler_for_img2img": None,
    "show_progressbar": True, "live_preview_content": "Prompt", "live_preview_refresh_period": 1000,
    "interrogate_keep_models_in_memory": False, "disable_weights_auto_swap": True, "extra_networks_default_multiplier": 1.0,
    "extra_networks_add_text_separator": " ", "textual_inversion_add_hashes_to_infotext": True,
    "sd_lora": "None", "lora_functional": False, "localization": "None", "quicksettings_list": ["sd_model_checkpoint"],
    "hidden_tabs": [], "ui_reorder_list": [], "gradio_theme": "Default", "js_modal_lightbox": True,
    "keyedit_precision_attention": 0.1, "keyedit_precision_extra": 0.05, "keyedit_delimiters": r".,\/!?%^*;:{}=`~() ",
    "disable_token_counters": False, "add_model_name_to_info": True, "add_model_hash_to_info": True,
    "add_vae_name_to_info": True, "add_vae_hash_to_info": True, "add_user_name_to_info": False,
    "add_version_to_infotext": True, "infotext_styles": "Apply if any", "memmon_poll_rate": 8,
    "multiple_tqdm": True, "print_hypernet_extra": False, "list_hidden_files": True, "api_enable_requests": True,
    "api_forbid_local_requests": True, "api_useragent": "", "auto_backcompat": True, "use_old_emphasis_implementation": False,
    "use_old_karras_scheduler_sigmas": False, "no_dpmpp_sde_batch_determinism": False, "use_old_hires_fix_width_height": False,
    "dont_fix_second_order_samplers_schedule": False, "hires_fix_use_firstpass_conds": False,
    "sd_checkpoint_cache": 0, "sd_vae_checkpoint_cache": 0, "always_discard_next_to_last_sigma": False,
    "sgm_noise_multiplier": False, "img2img_extra_noise": 0.0, "img2img_color_correction": False,
    "img2img_background_color": "#ffffff", "tiling": False, "hires_fix_refiner_pass": "second pass",
    "persistent_cond_cache": True, "batch_cond_uncond": True, "fp8_storage": "Disable", "cache_fp16_weight": False,
    "samplers_in_dropdown": True, "dimensions_and_batch_together": True, "sd_checkpoint_dropdown_use_short": False,
    "hires_fix_show_sampler": False, "hires_fix_show_prompts": False, "disable_all_extensions": "none",
    "disabled_extensions": [], "restore_config_state_file": "", "sd_checkpoints_limit": 1, "sd_checkpoints_keep_in_cpu": True,
}


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
