"""The Extensions tab: the installed extensions (enable, check for updates, update, uninstall),
installing from a git URL or a local folder, and "Apply and restart UI".

Every action goes through webui/extensions/manager.py with the user who asked (gr.Request): it
refuses changes when the server listens beyond this machine without
--enable-insecure-extension-access, and, with a login, to everyone but the --admin-users. The
check is made on the server for every event, whatever the page shows; the tab says why.
"""

from __future__ import annotations

import html
from datetime import datetime

import gradio as gr

from ..auth import ui_caller
from ..extensions import manager
from ..extensions.loader import DISABLE_ALL_CHOICES, Extension
from ..options import OptionsError
from ..state import SharedState

RESTART_JS = "(signal) => { if (signal === 'restart') window.webuiReloadAfterRestart?.(); return []; }"


def build(state: SharedState) -> None:
    allowed = manager.access_allowed(state)
    now = manager.listing(state)  # the page starts with these; selecting the tab refreshes them
    with gr.Tab("Extensions", id="extensions", elem_id="tab_extensions") as tab:
        # Filled for each user when the tab opens (a login's non-admins are told why they cannot change anything).
        access_note = gr.HTML(_access_html(manager.ACCESS_DENIED if not allowed else None),
                              elem_id="extensions_access")
        statuses = gr.State({})  # name -> result of the last "Check for updates"
        shown = gr.State([ext.name for ext in now])  # the extensions the checkboxes list
        restart_signal = gr.Textbox(visible=False)
        with gr.Tabs(elem_id="tabs_extensions"):
            with gr.Tab("Installed", id="installed"):
                with gr.Row():
                    apply = gr.Button("Apply and restart UI", variant="primary", elem_id="extensions_apply",
                                      interactive=allowed)
                    check = gr.Button("Check for updates", elem_id="extensions_check", interactive=allowed)
                    disable_all = gr.Radio(list(DISABLE_ALL_CHOICES), label="Disable all extensions",
                                           value=state.options.as_dict().get("disable_all_extensions", "none"),
                                           elem_id="extensions_disable_all", interactive=allowed)
                enabled = gr.CheckboxGroup([ext.name for ext in now], value=[ext.name for ext in now if ext.enabled],
                                           label="Enabled", elem_id="extensions_enabled", interactive=allowed)
                to_update = gr.CheckboxGroup(label="Update when applying (extensions with new commits)",
                                             elem_id="extensions_update", interactive=allowed)
                table = gr.HTML(table_html(now, {}), elem_id="extensions_table")
                with gr.Row():
                    removable = gr.Dropdown([ext.name for ext in now if not ext.builtin], value=None,
                                            label="Extension to uninstall", elem_id="extensions_uninstall_name",
                                            interactive=allowed, scale=3)
                    uninstall = gr.Button("Uninstall", variant="stop", elem_id="extensions_uninstall",
                                          interactive=allowed, scale=1)
                message = gr.HTML(elem_id="extensions_message")
            with gr.Tab("Install from URL", id="install"):
                url = gr.Textbox(label="URL of the extension's git repository, or a local folder",
                                 elem_id="extension_install_url", interactive=allowed)
                branch = gr.Textbox(label="Branch (empty: the default one)", elem_id="extension_install_branch",
                                    interactive=allowed)
                dirname = gr.Textbox(label="Folder name (empty: from the URL)", elem_id="extension_install_dirname",
                                     interactive=allowed)
                install = gr.Button("Install", variant="primary", elem_id="extension_install_button",
                                    interactive=allowed)
                result = gr.HTML(elem_id="extension_install_result")

    listing = [shown, disable_all, enabled, to_update, table, removable]

    def refresh(found: dict) -> list:
        extensions = manager.listing(state)
        user = [ext.name for ext in extensions if not ext.builtin]
        updatable = [name for name, status in found.items() if status.endswith(("commit", "commits"))]
        return [[ext.name for ext in extensions],
                gr.update(value=state.options.as_dict().get("disable_all_extensions", "none")),
                gr.update(choices=[ext.name for ext in extensions], value=[e.name for e in extensions if e.enabled]),
                gr.update(choices=updatable, value=updatable),
                table_html(extensions, found),
                gr.update(choices=user, value=None)]

    def opened(found: dict, request: gr.Request):
        return [*refresh(found), _access_html(manager.access_refusal(state, ui_caller(request)))]

    def check_updates(found: dict, request: gr.Request):
        try:
            names = [ext.name for ext in manager.listing(state) if ext.remote]
            found = {**found, **manager.check_for_updates(state, names, ui_caller(request))}
            return [found, *refresh(found), _note(f"Checked {len(names)} extension(s) for updates.")]
        except manager.ManagerError as error:
            return [found, *refresh(found), _note(str(error), error=True)]

    def apply_and_restart(listed: list, names: list, mode: str, update_names: list, found: dict,
                          request: gr.Request):
        done = []
        caller = ui_caller(request)
        try:
            for name in update_names:
                manager.update(state, name, caller)
                done.append(f"{name} updated.")
                found = {**found, name: "latest"}
            manager.save_enabled(state, names, mode or "none", shown=listed, caller=caller)
            if manager.restart(state, caller):
                return [found, *refresh(found), _note(" ".join(done + ["Restarting the WebUI…"])), "restart"]
            note = "Saved. Restart the WebUI to apply the changes."
            return [found, *refresh(found), _note(" ".join(done + [note])), ""]
        except (manager.ManagerError, OptionsError) as error:
            return [found, *refresh(found), _note(" ".join(done + [str(error)]), error=True), ""]

    def remove(name: str | None, found: dict, request: gr.Request):
        try:
            if not name:
                raise manager.ManagerError("choose the extension to uninstall")
            manager.uninstall(state, name, ui_caller(request))
            note = _note(f"{name} was removed. Its code runs until the WebUI restarts.")
        except manager.ManagerError as error:
            note = _note(str(error), error=True)
        return [*refresh(found), note]

    def install_from(source: str, branch_name: str, folder: str, found: dict, request: gr.Request):
        try:
            ext = manager.install(state, source, branch_name, folder, ui_caller(request))
        except manager.ManagerError as error:
            return [*refresh(found), _note(str(error), error=True)]
        outcome = (ext.install_error if ext.install_error
                   else "Restart the WebUI (Installed: Apply and restart UI) to load it.")
        outcome = " ".join([outcome, *(f"Note: {warning}." for warning in ext.warnings)])
        output = (f"<details><summary>install.py output</summary><pre>{html.escape(ext.install_output)}</pre></details>"
                  if ext.install_output else "")
        return [*refresh(found), _note(f"Installed {ext.name} into {ext.path}. {outcome}",
                                       error=bool(ext.install_error)) + output]

    tab.select(opened, statuses, [*listing, access_note], show_progress="hidden")
    check.click(check_updates, statuses, [statuses, *listing, message])
    apply.click(apply_and_restart, [shown, enabled, disable_all, to_update, statuses],
                [statuses, *listing, message, restart_signal]
                ).then(None, restart_signal, None, js=RESTART_JS)
    uninstall.click(remove, [removable, statuses], [*listing, message])
    install.click(install_from, [url, branch, dirname, statuses], [*listing, result])


def _access_html(refusal: str | None) -> str:
    return f'<p class="extensions-access">{html.escape(refusal)}</p>' if refusal else ""


def _note(text: str, error: bool = False) -> str:
    return f'<p class="{"extensions-error" if error else "extensions-note"}">{html.escape(text)}</p>'


def table_html(extensions: list[Extension], found: dict) -> str:
    rows = []
    for ext in extensions:
        url = ext.remote or ""
        link = (f'<a href="{html.escape(url)}" target="_blank" rel="noopener">{html.escape(url)}</a>'
                if url.startswith(("https://", "http://")) else html.escape(url))
        date = datetime.fromtimestamp(ext.commit_date).strftime("%Y-%m-%d %H:%M") if ext.commit_date else ""
        rows.append(
            f'<tr data-extension="{html.escape(ext.name)}"><td>{html.escape(ext.name)}'
            f'{" <small>(built-in)</small>" if ext.builtin else ""}</td><td>{link}</td>'
            f'<td>{html.escape(ext.branch or "")}</td><td>{html.escape(ext.version)}</td><td>{date}</td>'
            f'<td>{html.escape(found.get(ext.name, ""))}</td><td>{html.escape(status(ext))}</td></tr>')
    head = "".join(f"<th>{name}</th>" for name in ("Extension", "URL", "Branch", "Version", "Date", "Update", "State"))
    body = "".join(rows) or '<tr><td colspan="7">No extensions are installed.</td></tr>'
    return f'<table class="extensions-table"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def status(ext: Extension) -> str:
    if ext.error:
        state = f"error, not loaded: {ext.error}"
    elif ext.enabled:
        state = "running" if ext.loaded else "enabled; loads after a restart"
    else:
        state = "disabled; still running until a restart" if ext.loaded else "disabled"
    problems = ([ext.install_error] if ext.install_error else []) + ext.warnings
    return "; ".join([state, *problems])
