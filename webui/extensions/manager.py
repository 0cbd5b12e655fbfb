"""What the Extensions tab does: list, enable and disable, check for updates and update (git),
install from a git URL or a local folder, uninstall, apply and restart.

Extensions are code that runs with the server's rights, so everything that changes them (and
the restart) is refused:
- when the server is reachable from other machines (--listen, a non-loopback --server-name),
  unless --enable-insecure-extension-access is given, as in A1111;
- with a login (--gradio-auth, --api-auth), to everyone but the --admin-users;
- without a login, to requests that came through a reverse proxy (it makes remote users look
  local), unless --enable-insecure-extension-access is given.
Every action takes the `Caller` (auth.py) it acts for; none: the server itself (tests, scripts).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import stat
import tempfile
from pathlib import Path

from ..auth import Caller
from . import git
from .installer import run_installers, stamp_file
from .loader import DISABLE_ALL_CHOICES, Extension, discover, extensions_dir, read_extension

log = logging.getLogger(__name__)

ACCESS_DENIED = ("Extension access is disabled because the WebUI listens beyond this machine (--listen or "
                 "--server-name). Start it with --enable-insecure-extension-access to install, update, enable "
                 "or remove extensions from here.")
PROXIED = ("Extension access is disabled for requests through a reverse proxy when the WebUI has no login: "
           "start it with --gradio-auth and --admin-users (or --enable-insecure-extension-access).")
ACTION = "manage extensions or restart the WebUI"


class ManagerError(Exception):
    """An action was refused or failed; the message says why, for the user."""


def access_refusal(state, caller: Caller | None = None) -> str | None:
    """Why `caller` may not change extensions, or None when they may."""
    flags = state.flags
    if getattr(flags, "disable_extension_access", False):
        return ACCESS_DENIED
    if caller is None:
        return None
    access = state.access
    if access.login_required:
        return access.refusal(caller, ACTION)
    if caller.proxied and not getattr(flags, "enable_insecure_extension_access", False):
        return PROXIED
    return None


def access_allowed(state, caller: Caller | None = None) -> bool:
    return access_refusal(state, caller) is None


def _require_access(state, caller: Caller | None) -> None:
    refusal = access_refusal(state, caller)
    if refusal is not None:
        raise ManagerError(refusal)


def listing(state) -> list[Extension]:
    """The folders as they are now, with what startup found out about those that were loaded
    (errors, install output) and `loaded` telling whether their code is running."""
    started = {ext.name: ext for ext in state.extensions}
    current = discover(state)
    for ext in current:
        before = started.get(ext.name)
        ext.loaded = before is not None and before.loaded
        if before is not None:
            ext.error = ext.error or before.error
            ext.install_error, ext.install_output = before.install_error, before.install_output
            # What running it showed (diagnostics.py: names it lacks, page-script errors), after today's checks.
            ext.warnings += [note for note in before.warnings if note not in ext.warnings]
    return current


def find(state, name: str) -> Extension:
    for ext in discover(state):
        if ext.name == name:
            return ext
    raise ManagerError(f"there is no extension named {name!r}")


def check_for_updates(state, names: list[str], caller: Caller | None = None) -> dict[str, str]:
    """name -> "N new commits" / "latest" / why it cannot be checked."""
    _require_access(state, caller)
    found = {}
    for name in names:
        ext = find(state, name)
        if not ext.remote:
            found[name] = "not a git clone with a remote"
            continue
        try:
            behind = git.commits_behind(ext.path)
            found[name] = f"{behind} new commit{'s' * (behind != 1)}" if behind else "latest"
        except git.GitError as error:
            found[name] = f"unknown: {error}"
    return found


def update(state, name: str, caller: Caller | None = None) -> None:
    _require_access(state, caller)
    ext = find(state, name)
    if not ext.remote:
        raise ManagerError(f"{name} is not a git clone with a remote; it cannot be updated")
    try:
        git.update(ext.path)
    except git.GitError as error:
        raise ManagerError(f"updating {name} failed: {error}") from error
    log.info("extension %s updated", name)


def install(state, url: str, branch: str = "", dirname: str = "", caller: Caller | None = None) -> Extension:
    """Clone (or copy a plain local folder) into a hidden temporary folder beside the others,
    then move it into place and run its install.py. Nothing is left behind on failure."""
    _require_access(state, caller)
    url, branch, dirname = url.strip(), branch.strip(), dirname.strip()
    if not url:
        raise ManagerError("enter the extension's git URL or a local folder")
    if url.startswith("-") or re.match(r"^[A-Za-z][\w+.-]*::", url):
        raise ManagerError(f"not a URL git may clone from: {url}")  # options, remote helpers (ext::)
    name = dirname or re.sub(r"\.git$", "", url.rstrip("/\\").replace("\\", "/").rsplit("/", 1)[-1].rsplit(":", 1)[-1])
    _check_folder_name(name)
    root = extensions_dir(state.flags)
    target = root / name
    if target.exists() or target.is_symlink():
        raise ManagerError(f"the folder {target} already exists")
    for ext in discover(state):
        if ext.remote and _same_remote(ext.remote, url):
            raise ManagerError(f"{url} is already installed as {ext.name}")
    local = Path(url).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(prefix=".installing-", dir=root))
    try:
        if local.is_dir() and not git.is_clone(local):
            if branch:
                raise ManagerError("a branch needs a git repository; this folder is not one")
            shutil.copytree(local, temporary / name, symlinks=True)
        else:
            source = str(local.resolve()) if local.is_dir() else url
            git.clone(source, temporary / name, branch or None, partial=not local.is_dir() and "://" in url
                      and not url.startswith("file:"))
        os.replace(temporary / name, target)
    except (git.GitError, OSError) as error:
        raise ManagerError(f"installing {url} failed: {error}") from error
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    ext = read_extension(target, builtin=False)
    run_installers([ext], stamp_file(state.flags))
    log.info("extension %s installed from %s", name, url)
    return ext


def uninstall(state, name: str, caller: Caller | None = None) -> None:
    """Delete a user extension's folder (a symlinked one: only the link)."""
    _require_access(state, caller)
    _check_folder_name(name)
    root = extensions_dir(state.flags)
    path = root / name
    if path.is_symlink():
        path.unlink()
    elif path.is_dir() and path.resolve().parent == root.resolve():
        shutil.rmtree(path, onerror=_make_writable_and_retry)
    else:
        raise ManagerError(f"{name} is not an installed extension (built-in ones cannot be removed)")
    log.info("extension %s removed", name)


def save_enabled(state, enabled: list[str], disable_all: str = "none", shown: list[str] | None = None,
                 caller: Caller | None = None) -> None:
    """Store which extensions are off (config.json: disabled_extensions, disable_all_extensions).
    Only the extensions in `shown` (default: all) change: one installed since the page showed
    its list keeps its state."""
    _require_access(state, caller)
    if disable_all not in DISABLE_ALL_CHOICES:
        raise ManagerError(f"disable all extensions: expected one of {', '.join(DISABLE_ALL_CHOICES)}")
    names = set(ext.name for ext in discover(state)) if shown is None else set(shown)
    disabled = sorted(set(state.options.as_dict().get("disabled_extensions") or ()) - names
                      | {name for name in names if name not in enabled})
    state.options.update({"disabled_extensions": disabled, "disable_all_extensions": disable_all})


def restart(state, caller: Caller | None = None) -> bool:
    """Restart the server process (app.main sets `state.restart`); False when this server
    cannot restart itself (started by other code, as tests do)."""
    _require_access(state, caller)
    if getattr(state, "restart", None) is None:
        return False
    state.restart()
    return True


def _check_folder_name(name: str) -> None:
    if not name or name in (".", "..") or name.startswith(".") or Path(name).name != name or "\\" in name:
        raise ManagerError(f"{name!r} cannot be an extension folder name")


def _same_remote(a: str, b: str) -> bool:
    def normal(url: str) -> str:
        return re.sub(r"(\.git)?/*$", "", url.strip()).lower()

    return normal(a) == normal(b)


def _make_writable_and_retry(function, path, _info) -> None:
    os.chmod(path, stat.S_IWRITE)  # git's object files are read-only (Windows refuses to delete them)
    function(path)


def extension_entries(state) -> list[dict]:
    """/sdapi/v1/extensions, A1111's shape: the extensions that are git clones with a remote
    (commit_date is the unix time as a string, as A1111's model declares it)."""
    return [{"name": ext.name, "remote": ext.remote, "branch": ext.branch or "", "commit_hash": ext.commit or "",
             "version": ext.version, "commit_date": str(ext.commit_date or ""), "enabled": ext.enabled}
            for ext in discover(state) if ext.remote]
