"""The Extensions tab's actions (webui/extensions/manager.py) on real git repositories made in
temporary folders: install from a local git URL, check for updates, update, enable/disable,
uninstall, and the refusal when the server listens on the LAN."""

import json
import subprocess
from pathlib import Path

import pytest

from webui.extensions import manager
from webui.extensions.installer import stamp_file
from webui.extensions.loader import discover
from webui.flags import parse_flags
from webui.options import Options
from webui.state import SharedState

INSTALL_PY = """\
import launch  # the project's launch.py is importable, as in A1111
from pathlib import Path
runs = Path("install-runs.txt")
runs.write_text(runs.read_text() + "ran\\n" if runs.exists() else "ran\\n")
print("installing the requirements of the test extension")
"""


def run_git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args], cwd=cwd,
                          check=True, capture_output=True, text=True).stdout.strip()


def make_repo(path: Path, files: dict[str, str]) -> Path:
    path.mkdir(parents=True)
    run_git("init", "-q", "-b", "main", cwd=path)
    commit(path, files, "first")
    return path


def commit(repo: Path, files: dict[str, str], message: str) -> str:
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    run_git("add", "-A", cwd=repo)
    run_git("commit", "-q", "-m", message, cwd=repo)
    return run_git("rev-parse", "HEAD", cwd=repo)


def make_state(data: Path, *flags: str) -> SharedState:
    parsed = parse_flags(["--data-dir", str(data), *flags])
    return SharedState(parsed, Options(data / "config.json"), None)


def user_extensions(state):
    return [ext for ext in manager.listing(state) if not ext.builtin]


@pytest.fixture
def origin(tmp_path):
    return make_repo(tmp_path / "origin" / "sd-webui-myext", {
        "scripts/myext.py": "# a script\n", "install.py": INSTALL_PY, "javascript/myext.js": "// js\n",
    })


def test_install_check_update_disable_and_uninstall(tmp_path, origin):
    state = make_state(tmp_path / "data")
    ext = manager.install(state, str(origin))
    target = tmp_path / "data" / "extensions" / "sd-webui-myext"
    assert ext.path == target and (target / "scripts" / "myext.py").is_file()
    assert ext.install_error is None and (target / "install-runs.txt").read_text() == "ran\n"
    assert "sd-webui-myext" in json.loads(stamp_file(state.flags).read_text())  # install.py is not run again
    assert not list((tmp_path / "data" / "extensions").glob(".installing-*"))

    [listed] = user_extensions(state)
    assert listed.remote == str(origin) and listed.branch == "main" and listed.enabled and not listed.loaded
    [entry] = manager.extension_entries(state)
    assert entry["name"] == "sd-webui-myext" and entry["commit_hash"] == run_git("rev-parse", "HEAD", cwd=origin)
    assert entry["version"] == entry["commit_hash"][:8] and entry["enabled"] is True and int(entry["commit_date"]) > 0

    # The same remote again, or into a folder that exists, is refused.
    with pytest.raises(manager.ManagerError, match="already installed"):
        manager.install(state, str(origin) + ".git/", dirname="other")
    with pytest.raises(manager.ManagerError, match="already exists"):
        manager.install(state, str(tmp_path / "elsewhere"), dirname="sd-webui-myext")

    assert manager.check_for_updates(state, ["sd-webui-myext"]) == {"sd-webui-myext": "latest"}
    new_head = commit(origin, {"scripts/myext.py": "# version 2\n"}, "second")
    assert manager.check_for_updates(state, ["sd-webui-myext"]) == {"sd-webui-myext": "1 new commit"}
    manager.update(state, "sd-webui-myext")
    assert (target / "scripts" / "myext.py").read_text() == "# version 2\n"
    assert manager.find(state, "sd-webui-myext").commit == new_head
    assert manager.check_for_updates(state, ["sd-webui-myext"]) == {"sd-webui-myext": "latest"}

    builtins = [ext.name for ext in manager.listing(state) if ext.builtin]
    manager.save_enabled(state, enabled=builtins, disable_all="none")
    assert json.loads((tmp_path / "data" / "config.json").read_text())["disabled_extensions"] == ["sd-webui-myext"]
    assert not [e for e in discover(state) if e.name == "sd-webui-myext"][0].enabled
    assert manager.restart(state) is False  # no app.main here to restart

    manager.uninstall(state, "sd-webui-myext")
    assert not target.exists() and user_extensions(state) == []


def test_install_copies_a_plain_folder_and_checks_names(tmp_path):
    plain = tmp_path / "plain-ext"
    (plain / "scripts").mkdir(parents=True)
    (plain / "scripts" / "a.py").write_text("# a\n")
    state = make_state(tmp_path / "data")
    ext = manager.install(state, str(plain), dirname="copied")
    assert (ext.path / "scripts" / "a.py").is_file() and ext.remote is None
    assert manager.extension_entries(state) == []  # A1111 lists only git clones with a remote
    with pytest.raises(manager.ManagerError, match="not a git clone"):
        manager.update(state, "copied")
    # Applying a page that listed only some extensions leaves the others as they are.
    manager.save_enabled(state, enabled=[], shown=["copied"])
    assert state.options.as_dict()["disabled_extensions"] == ["copied"]
    assert all(ext.enabled for ext in manager.listing(state) if ext.builtin)

    for url in ("ext::sh -c touch% /tmp/pwned", "--upload-pack=touch /tmp/pwned", ""):
        with pytest.raises(manager.ManagerError):
            manager.install(state, url)
    for name in ("../outside", ".hidden", "a/b"):
        with pytest.raises(manager.ManagerError):
            manager.install(state, str(plain), dirname=name)
        with pytest.raises(manager.ManagerError):
            manager.uninstall(state, name)
    with pytest.raises(manager.ManagerError, match="not an installed extension"):
        manager.uninstall(state, "missing")
    with pytest.raises(manager.ManagerError, match="failed"):
        manager.install(state, str(tmp_path / "no-such-repo"))
    assert [e.name for e in user_extensions(state)] == ["copied"]


def test_a_failing_install_py_is_reported_and_run_again_next_time(tmp_path):
    source = make_repo(tmp_path / "broken-install", {"install.py": "import sys\nprint('no network')\nsys.exit(3)\n"})
    state = make_state(tmp_path / "data")
    ext = manager.install(state, str(source))
    assert ext.path.is_dir()  # installed anyway; the error is shown in the tab
    assert ext.install_error == "install.py failed (exit code 3): no network"
    assert "no network" in ext.install_output
    assert "broken-install" not in json.loads(stamp_file(state.flags).read_text())


@pytest.mark.parametrize("flags", [["--listen"], ["--server-name", "192.168.1.5"]])
def test_changes_are_refused_when_serving_the_lan(tmp_path, origin, flags):
    state = make_state(tmp_path / "data", *flags)
    assert not manager.access_allowed(state)
    for action in (lambda: manager.install(state, str(origin)), lambda: manager.uninstall(state, "x"),
                   lambda: manager.update(state, "x"), lambda: manager.check_for_updates(state, ["x"]),
                   lambda: manager.save_enabled(state, []), lambda: manager.restart(state)):
        with pytest.raises(manager.ManagerError, match="--enable-insecure-extension-access"):
            action()
    assert not (tmp_path / "data" / "extensions").exists()

    allowed = make_state(tmp_path / "data2", *flags, "--enable-insecure-extension-access")
    assert manager.access_allowed(allowed)
    assert manager.install(allowed, str(origin)).path.is_dir()


def test_loopback_server_name_stays_local(tmp_path):
    assert manager.access_allowed(make_state(tmp_path, "--server-name", "127.0.0.1"))
    assert manager.access_allowed(make_state(tmp_path, "--server-name", "localhost"))
    assert parse_flags(["--listen"]).webui_is_non_local
