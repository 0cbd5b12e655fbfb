"""A1111's UI entry points (`modules.txt2img.txt2img`, `modules.img2img.img2img`) called by extensions with the
UI's positional arguments: the leading fields named, a `p` built from them, and the job run through our queue."""

from __future__ import annotations

from webui import compat


def named(entry: str, names: tuple[str, ...], args: tuple) -> tuple[dict, list]:
    """A1111's leading positional fields by name, and the rest (the script arguments, index 0 = the selected script)."""
    if len(args) < len(names):
        raise TypeError(f"{entry} takes A1111's {len(names)} leading UI fields after id_task and request "
                        f"({', '.join(names)}), then the script arguments; got {len(args)}")
    return dict(zip(names, args)), list(args[len(names):])


def check_unsupported(entry: str, fields: dict) -> None:
    """Fields A1111 reads that have no counterpart here: a clear error rather than a silently different image."""
    texts = [text for text in fields.pop("override_settings_texts", None) or [] if text]
    if texts:
        raise ValueError(f"{entry}: override_settings_texts ({texts!r}) are not supported here; "
                         "set the options, or pass override_settings through the API")


def styled(fields: dict) -> tuple[str, str]:
    """The prompts with the chosen styles merged in (the UI does this before a job is queued)."""
    from webui.styles import apply_styles

    prompt, negative = fields["prompt"] or "", fields["negative_prompt"] or ""
    names = list(fields.get("prompt_styles") or [])
    return apply_styles(compat.state(), names, prompt, negative) if names else (prompt, negative)


def run(p, tab: str, script_args: list) -> tuple[list, str, str, str]:
    """Run p as a queued job with the tab's scripts; A1111's (images, generation_info_js, html_info, html_log)."""
    from webui.extensions.processing import process_images, runner_for

    from .modules.ui_common import plaintext_to_html

    p.scripts = runner_for(compat.state(), tab)
    p.script_args = script_args
    processed = process_images(p)  # outside a job: it waits for one in the queue, the scripts run there
    return (processed.images + processed.extra_images, processed.js(), plaintext_to_html(processed.info),
            plaintext_to_html(processed.comments, classname="comments"))
