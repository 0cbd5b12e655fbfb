"""The extension loader (webui/extensions/loader.py) on extensions written into temporary folders:
discovery and enabled state, metadata.ini load order, preload.py flags, install.py, a broken
extension that must not take the others down, and an app_started route and the page files over
real HTTP."""

import json
from contextlib import contextmanager

import httpx
import pytest

from extension_files import broken_extensions, good_extension, write
from live_server import LiveServer
from webui.app import create_app, load_flags
from webui.extensions import installer, loader
from webui.extensions.metadata import ScriptFile, order_scripts, parse_names
from webui.flags import parse_flags
from webui.options import Options
from webui.state import SharedState


def user_names(extensions):
    return [ext.name for ext in extensions if not ext.builtin]


def test_discovery_order_and_enabled_state(tmp_path):
    extensions = tmp_path / "extensions"
    for name in ("b-ext", "a-ext", ".hidden", "__pycache__"):
        (extensions / name).mkdir(parents=True)
    (extensions / "not-a-folder.txt").write_text("")
    flags = parse_flags(["--data-dir", str(tmp_path)])
    found = loader.discover(flags)
    assert user_names(found) == ["a-ext", "b-ext"]
    builtins = [ext for ext in found if ext.builtin]
    assert builtins and found[:len(builtins)] == builtins  # built-in ones first

    (tmp_path / "config.json").write_text(json.dumps({"disabled_extensions": ["a-ext"]}))
    assert [(e.name, e.enabled) for e in loader.discover(flags) if not e.builtin] == [("a-ext", False), ("b-ext", True)]
    state = SharedState(flags, Options(tmp_path / "config.json"), None)
    state.options.update({"disable_all_extensions": "extra"})
    assert all(e.enabled == e.builtin for e in loader.discover(state))
    everything_off = parse_flags(["--data-dir", str(tmp_path), "--disable-all-extensions"])
    assert not any(e.enabled for e in loader.discover(everything_off))


def test_metadata_load_order_and_requirements(tmp_path):
    root = tmp_path / "extensions"
    write(root / "aaa", {"scripts/first.py": "", "scripts/second.py": "", "metadata.ini":
                         "[scripts/first.py]\nAfter = zzz/last.py\n[scripts/second.py]\nBefore = mmm\n"})
    write(root / "mmm", {"scripts/m.py": "", "metadata.ini": "[Extension]\nRequires = nothere | aaa, missing-ext\n"})
    write(root / "zzz", {"scripts/last.py": "", "metadata.ini": "[scripts]\nRequires = gone/x.py\n"})
    extensions = [ext for ext in loader.discover(parse_flags(["--data-dir", str(tmp_path)])) if not ext.builtin]
    files = [ScriptFile(ext, path) for ext in extensions for path in ext.scripts]
    assert [f.path.name for f in order_scripts(files)] == ["second.py", "m.py", "last.py", "first.py"]
    assert extensions[2].warnings == ["last.py requires gone/x.py, which is not loaded"]
    assert extensions[1].warnings == ["requires missing-ext, which is not installed or not enabled"]
    assert parse_names("a, b | c  d") == [["a"], ["b", "c"], ["d"]]

    # A cycle is reported; the files in it keep discovery order.
    write(root / "zzz", {"metadata.ini": "[scripts/last.py]\nAfter = aaa/first.py\n"})
    extensions[2] = loader.read_extension(root / "zzz", builtin=False)
    files = [ScriptFile(ext, path) for ext in extensions for path in ext.scripts]
    assert [f.path.name for f in order_scripts(files)] == ["second.py", "m.py", "first.py", "last.py"]
    assert any("cycle" in warning for warning in extensions[0].warnings)


INSTALL_PY = """\
import launch
from pathlib import Path
assert not launch.is_installed("no_such_package_for_webui_tests")
runs = Path("runs.txt")
runs.write_text((runs.read_text() if runs.exists() else "") + "ran\\n")
print("pretending to pip install no_such_package_for_webui_tests")
"""


def test_install_py_runs_once_per_change_and_failures_are_reported(tmp_path, capfd):
    root = tmp_path / "extensions"
    write(root / "needs-pkg", {"install.py": INSTALL_PY})
    write(root / "fails", {"install.py": "raise SystemExit('no network here')\n", "scripts/ok.py": ""})
    flags = parse_flags(["--data-dir", str(tmp_path)])
    extensions = [ext for ext in loader.discover(flags) if not ext.builtin]
    installer.run_installers(extensions, installer.stamp_file(flags))
    assert "[needs-pkg] pretending to pip install" in capfd.readouterr().out  # the output is shown
    assert (root / "needs-pkg" / "runs.txt").read_text() == "ran\n"
    fails = extensions[0]
    assert fails.install_error == "install.py failed (exit code 1): no network here"

    installer.run_installers(loader.discover(flags), installer.stamp_file(flags))
    assert (root / "needs-pkg" / "runs.txt").read_text() == "ran\n"  # not again: nothing changed
    (root / "needs-pkg" / "install.py").write_text(INSTALL_PY + "# a new requirement\n")
    installer.run_installers(loader.discover(flags), installer.stamp_file(flags))
    assert (root / "needs-pkg" / "runs.txt").read_text() == "ran\nran\n"
    installer.run_installers(loader.discover(flags))  # without stamps: every time, as A1111
    assert (root / "needs-pkg" / "runs.txt").read_text() == "ran\nran\nran\n"


@contextmanager
def serving(app):
    with LiveServer(app) as live, httpx.Client(base_url=live.url, timeout=60) as client:
        yield client


def start(data, *flags):
    flags, extensions = load_flags(["--data-dir", str(data), "--use-cpu", "all", *flags])
    state = SharedState.create(flags)
    loader.start_extensions(state, extensions)
    return state, create_app(state)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A whole app (UI + API) with a good extension and two broken ones, over real HTTP."""
    data = tmp_path_factory.mktemp("data")
    good_extension(data / "extensions")
    broken_extensions(data / "extensions")
    state, app = start(data, "--api", "--goodext-flag", "yes")
    with serving(app) as client:
        yield client, state, app, data
    state.queue.stop()


def test_preload_flag_and_scripts_load_while_broken_extensions_are_disabled(server):
    client, state, app, data = server
    import modules.shared

    assert state.flags.goodext_flag == "yes" and modules.shared.cmd_opts.goodext_flag == "yes"
    assert modules.shared.cmd_opts.goodext_dir == str(data / "models" / "goodext")
    by_name = {ext.name: ext for ext in state.extensions}
    assert by_name["goodext"].active and by_name["goodext"].loaded and by_name["goodext"].error is None
    assert "SyntaxError" in by_name["broken-syntax"].error and "b_bad.py" in by_name["broken-syntax"].error
    assert by_name["raises"].error == "scripts/r.py: RuntimeError: boom at import (scripts/r.py, line 1)"
    assert not by_name["raises"].loaded
    loaded = {entry.extension for entry in state.scripts.classes}
    assert "goodext" in loaded and not loaded & {"broken-syntax", "raises"}
    assert [s.title() for s in state.runners["txt2img"].alwayson_scripts if s.title() == "Good script"]
    assert not hasattr(app.state, "broken")  # the broken extension's callback was dropped with it


def test_app_started_route_and_page_files_over_http(server):
    client, state, app, data = server
    reply = client.get("/goodext/hello")  # added by the extension, not swallowed by the UI at "/"
    assert reply.status_code == 200, reply.text
    assert reply.json() == {"value": "from the extension folder", "flag": "yes",
                            "basedir": str(data / "extensions" / "goodext"), "has_demo": True}

    head = client.get("/config").json()["head"]
    urls = [part.split('"')[0] for part in head.split('src="')[1:]] + [head.split('href="')[1].split('"')[0]]
    assert "webui.js" in urls[0] and "good.js" in urls[1] and urls[-1].split("?")[0].endswith("style.css")
    assert "broken.js" not in head  # a disabled extension's files are not in the page
    assert "onUiLoaded" in client.get(urls[0].replace("&amp;", "&")).text
    script = client.get(urls[1].replace("&amp;", "&"))
    assert script.status_code == 200 and "goodext" in script.text and "javascript" in script.headers["content-type"]
    assert "7px solid" in client.get(urls[-1].replace("&amp;", "&")).text
    # Only those files: the extension's Python and the broken extension's script are not served.
    for path in (data / "extensions" / "goodext" / "scripts" / "good.py",
                 data / "extensions" / "broken-syntax" / "javascript" / "broken.js",
                 data / "extensions" / "goodext" / "javascript" / ".." / "preload.py"):
        assert client.get(f"/gradio_api/file={path}").status_code in (403, 404)

    entries = client.get("/sdapi/v1/extensions").json()
    assert [e for e in entries if e["name"] == "goodext"] == [{
        "name": "goodext", "remote": "https://example.com/goodext.git", "branch": "main",
        "commit_hash": by_commit(state), "version": by_commit(state)[:8],
        "commit_date": entries[0]["commit_date"], "enabled": True}]


def by_commit(state) -> str:
    return next(ext.commit for ext in state.extensions if ext.name == "goodext")


def test_page_files_need_the_ui_login(tmp_path):
    good_extension(tmp_path / "extensions")
    state, app = start(tmp_path, "--gradio-auth", "ann:secret")
    script = tmp_path / "extensions" / "goodext" / "javascript" / "good.js"
    with serving(app) as client:
        assert client.get(f"/gradio_api/file={script}").status_code == 401
        assert client.post("/login", data={"username": "ann", "password": "secret"}).status_code == 200
        assert "goodext" in client.get(f"/gradio_api/file={script}").text
    state.queue.stop()


def test_app_started_without_the_ui(tmp_path):
    good_extension(tmp_path / "extensions")
    state, app = start(tmp_path, "--nowebui")
    with serving(app) as client:
        assert client.get("/goodext/hello").json()["has_demo"] is False  # A1111 passes demo=None too
        assert client.get("/sdapi/v1/extensions").json()[0]["name"] == "goodext"
    state.queue.stop()


def test_imported_script_classes_count_once_and_script_modules_are_in_sys_modules(tmp_path):
    # sd-dynamic-prompts' pattern: the script file only imports its Script class from the extension's own
    # package; sd-webui-ar's: a Gradio component subclassed in the script file (Gradio calls inspect.getfile).
    import sys

    folder = write(tmp_path / "extensions" / "pkg-ext", {
        "pkg_ext_lib/__init__.py": "",
        "pkg_ext_lib/script.py": (
            "from modules import scripts\n\n"
            "class Helper(scripts.Script):  # a base class of the extension's: no title of its own\n"
            "    def show(self, is_img2img):\n        return scripts.AlwaysVisible\n\n"
            "class PkgScript(Helper):\n    def title(self):\n        return 'Imported script'\n"),
        "scripts/entry.py": (
            "import inspect\nimport gradio as gr\nfrom modules.scripts import Script\n"
            "from pkg_ext_lib.script import Helper, PkgScript\n\n"
            "class FancyButton(gr.Button):\n    pass\n\nWHERE = inspect.getfile(FancyButton)\n"),
        "scripts/again.py": "from pkg_ext_lib.script import PkgScript  # a second script file imports it too\n",
    })
    state = SharedState.create(parse_flags(["--data-dir", str(tmp_path)]))
    loader.start_extensions(state)
    ours = [entry for entry in state.scripts.classes if entry.extension == "pkg-ext"]
    assert [entry.cls.__name__ for entry in ours] == ["PkgScript"]
    assert [script.title() for script in state.runners["txt2img"].alwayson_scripts if script.title() == "Imported script"]
    module = sys.modules[loader.script_module_name("pkg-ext", folder / "scripts" / "entry.py")]
    assert module.WHERE == str(folder / "scripts" / "entry.py")
    assert loader.script_module_name("pkg-ext", folder / "scripts" / "entry.py") != \
        loader.script_module_name("other", folder / "scripts" / "entry.py")


def test_install_py_cannot_change_the_packages_the_webui_needs(tmp_path):
    # sd-dynamic-prompts' install.py once downgraded transformers and no model loaded afterwards. Here an
    # install.py asks pip for another gradio (a dry run, offline): pip refuses, the WebUI's gradio stays.
    import importlib.metadata

    before = importlib.metadata.version("gradio")
    write(tmp_path / "extensions" / "downgrader", {
        "install.py": "import launch\nlaunch.run_pip('install --dry-run --no-index \"gradio==0.0.1\"', 'an old gradio')\n",
        "scripts/ok.py": "",
    })
    flags = parse_flags(["--data-dir", str(tmp_path)])
    (ext,) = [ext for ext in loader.discover(flags) if not ext.builtin]
    installer.run_installers([ext], installer.stamp_file(flags))
    assert ext.install_error.startswith("install.py asked for other versions of gradio, which the WebUI needs")
    assert "gradio==0.0.1" in ext.install_output
    assert importlib.metadata.version("gradio") == before
    assert installer.protected_versions()["transformers"] == importlib.metadata.version("transformers")
    # pip's other way of saying it (sd-dynamic-prompts' magicprompt extra wants transformers<5): only ours count.
    assert installer._refused_packages(
        'ERROR: Could not find a version that satisfies the requirement transformers[torch]<5; extra == "magic"\n'
        "ERROR: No matching distribution found for send2trash\n") == {"transformers"}


def _wheel(folder, name: str, version: str, extras: dict[str, list[str]]):
    """A pure-Python wheel with optional extras, written by hand (pip installs it offline)."""
    import base64
    import hashlib
    import zipfile

    info = f"{name}-{version}.dist-info"
    metadata = [f"Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    for extra, requirements in extras.items():
        metadata += [f"Provides-Extra: {extra}", *(f'Requires-Dist: {r}; extra == "{extra}"' for r in requirements)]
    files = {f"{name}/__init__.py": f"VERSION = {version!r}\n", f"{info}/METADATA": "\n".join(metadata) + "\n",
             f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = []
    with zipfile.ZipFile(folder / f"{name}-{version}-py3-none-any.whl", "w") as wheel:
        for path, text in files.items():
            wheel.writestr(path, text)
            digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
            record.append(f"{path},sha256={digest},{len(text.encode())}")
        wheel.writestr(f"{info}/RECORD", "\n".join([*record, f"{info}/RECORD,,"]) + "\n")


def test_an_extra_that_wants_a_protected_package_changed_is_left_out(tmp_path, monkeypatch):
    # sd-dynamic-prompts asks for dynamicprompts[magicprompt], whose extra wants transformers<5: the package is
    # installed without that extra, install.py runs again and passes, and the extension's row says what was left out.
    # Offline: a local wheel whose extra wants gradio<1; pip installs into a target folder, not this environment.
    wheels, target = tmp_path / "wheels", tmp_path / "target"
    wheels.mkdir()
    _wheel(wheels, "webui_extra_test", "1.2", {"fancy": ["gradio<1"], "plain": []})
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheels))
    monkeypatch.setenv("PIP_TARGET", str(target))
    write(tmp_path / "extensions" / "wants-extra", {
        "install.py": "import os, subprocess, sys\n"
                      "if not os.path.isdir(os.path.join(os.environ['PIP_TARGET'], 'webui_extra_test')):\n"
                      "    subprocess.check_call([sys.executable, '-m', 'pip', 'install', 'webui_extra_test[fancy,plain]~=1.0'])\n",
        "scripts/ok.py": "",
    })
    flags = parse_flags(["--data-dir", str(tmp_path)])
    (ext,) = [ext for ext in loader.discover(flags) if not ext.builtin]
    installer.run_installers([ext], installer.stamp_file(flags))
    assert ext.install_error is None, ext.install_output
    assert (target / "webui_extra_test" / "__init__.py").read_text() == "VERSION = '1.2'\n"
    assert ext.warnings == ["installed webui-extra-test without its extra fancy: it needs another version of gradio, "
                            "which the WebUI needs as installed"]
    assert json.loads(installer.stamp_file(flags).read_text())["wants-extra"]  # a success: not run again
    # Both of pip's wordings name the extra and the project behind it.
    drops = installer._extras_to_drop(
        'ERROR: Could not find a version that satisfies the requirement transformers[torch]<5; extra == "magicprompt" '
        "(from dynamicprompts[attentiongrabber,magicprompt]) (from versions: 4.0.0, 5.25.0)\n", {"transformers"})
    assert [(d.requirement, d.extras, d.extra, d.package) for d in drops] == [
        ("dynamicprompts", ("attentiongrabber", "magicprompt"), "magicprompt", "transformers")]
    assert installer._specifier("dynamicprompts", drops, "Collecting dynamicprompts[a,b]~=0.31.0\n") == "~=0.31.0"


def test_an_extra_that_cannot_be_left_out_still_fails_clearly(tmp_path, monkeypatch):
    # The requirement itself (not an extra) wants another gradio: nothing is installed, the refusal is reported.
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_TARGET", str(tmp_path / "target"))
    write(tmp_path / "extensions" / "wants-gradio", {
        "install.py": "import subprocess, sys\nsubprocess.check_call([sys.executable, '-m', 'pip', 'install', 'gradio<1'])\n",
    })
    flags = parse_flags(["--data-dir", str(tmp_path)])
    (ext,) = [ext for ext in loader.discover(flags) if not ext.builtin]
    installer.run_installers([ext], installer.stamp_file(flags))
    assert ext.install_error.startswith("install.py asked for other versions of gradio")
    assert ext.warnings == [] and not (tmp_path / "target").exists()


def test_the_packages_a1111_extensions_assume_are_there(tmp_path):
    # A1111 always has OpenCV and einops; popular extensions import them at the top of their scripts.
    write(tmp_path / "extensions" / "uses-cv2", {
        "scripts/s.py": "import cv2\nimport einops\nimport numpy as np\n"
                        "GREY = cv2.cvtColor(np.zeros((2, 2, 3), np.uint8), cv2.COLOR_RGB2GRAY).shape\n"
                        "FLAT = einops.rearrange(np.zeros((2, 3)), 'a b -> (a b)').shape\n",
    })
    state = SharedState.create(parse_flags(["--data-dir", str(tmp_path)]))
    loader.start_extensions(state)
    (ext,) = [ext for ext in state.extensions if ext.name == "uses-cv2"]
    assert ext.error is None and ext.loaded
    import sys

    module = sys.modules[loader.script_module_name("uses-cv2", ext.path / "scripts" / "s.py")]
    assert module.GREY == (2, 2) and module.FLAT == (6,)


def test_a1111_file_route_serves_extension_and_output_files_only(tmp_path):
    # Extensions' page scripts fetch their own files as A1111's page serves them: /file=<path>.
    import os as _os
    import urllib.parse

    ext = good_extension(tmp_path / "extensions")
    (tmp_path / "outputs" / "txt2img-images").mkdir(parents=True)
    (tmp_path / "outputs" / "txt2img-images" / "00000-1.png").write_bytes(b"png bytes")
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "secret.txt").write_text("not for the page")
    _os.symlink(tmp_path / "secret.txt", ext / "leak.txt")  # a link out of the extension folder
    state, app = start(tmp_path)
    with serving(app) as client:
        assert client.get("/file=extensions/goodext/style.css").text.startswith("#goodext_text")
        assert client.get(f"/file={ext / 'style.css'}").status_code == 200
        assert client.get("/file=outputs/txt2img-images/00000-1.png").content == b"png bytes"
        for bad in ("extensions/goodext/../../config.json", "config.json", "secret.txt", str(tmp_path / "secret.txt"),
                    "/etc/passwd", "extensions/goodext/leak.txt", "extensions/goodext/%2e%2e/%2e%2e/secret.txt",
                    urllib.parse.quote("extensions/goodext/../../secret.txt", safe=""), "extensions/nothere/x.js"):
            response = client.get(f"/file={bad}")
            assert response.status_code == 404 and "not for the page" not in response.text, bad
    state.queue.stop()
    # Behind the login when there is one.
    state, app = start(tmp_path, "--gradio-auth", "ann:secret-pw")
    with serving(app) as client:
        assert client.get("/file=extensions/goodext/style.css").status_code == 401
        assert client.get("/file=extensions/goodext/style.css", auth=("ann", "secret-pw")).status_code == 200
    state.queue.stop()


def test_files_an_extension_writes_under_script_path_land_in_the_data_dir(tmp_path):
    # tagcomplete writes <script_path>/tmp/tagAutocompletePath.txt at import and its page script reads it back
    # as file=tmp/tagAutocompletePath.txt: A1111's root is the data dir here, so both meet there and
    # nothing is written into the project folder.
    from pathlib import Path

    project_tmp = Path(loader.__file__).resolve().parents[2] / "tmp" / "writes-tmp.txt"
    write(tmp_path / "extensions" / "writes-tmp", {
        "scripts/s.py": "from pathlib import Path\nfrom modules import extensions, paths, paths_internal\n"
                        "TMP = Path(paths.script_path) / 'tmp'\nTMP.mkdir(exist_ok=True)\n"
                        "(TMP / 'writes-tmp.txt').write_text(Path(paths_internal.script_path).as_posix())\n"
                        "BUILTIN = extensions.extensions_builtin_dir\nEXTENSIONS = extensions.extensions_dir\n",
    })
    state, app = start(tmp_path)
    (ext,) = [ext for ext in state.extensions if ext.name == "writes-tmp"]
    assert ext.error is None and ext.warnings == []
    assert not project_tmp.exists()
    import sys

    module = sys.modules[loader.script_module_name("writes-tmp", ext.path / "scripts" / "s.py")]
    assert Path(module.BUILTIN).is_dir() and Path(module.EXTENSIONS) == tmp_path / "extensions"
    with serving(app) as client:
        assert client.get("/file=tmp/writes-tmp.txt").text == tmp_path.as_posix()
    state.queue.stop()
