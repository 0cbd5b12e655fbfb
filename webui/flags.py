"""A1111's command-line flags, so that users' launch scripts keep working."""

from __future__ import annotations

import argparse
from pathlib import Path

# Flags A1111 users commonly pass that change nothing here; they are accepted (and reported) rather
# than refused, so old launch scripts still start. (The memory, attention and --compile flags work:
# webui/runtime.py.)
ACCEPTED_WITHOUT_EFFECT = ("--upcast-sampling", "--no-gradio-queue", "--disable-safe-unpickle")


def build_parser(add_help: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python launch.py", description="Stable Diffusion WebUI", add_help=add_help)
    add = parser.add_argument
    # server and LAN sharing
    add("--listen", action="store_true", help="serve on 0.0.0.0 (the LAN) instead of 127.0.0.1")
    add("--port", type=int, default=None, help="port (default 7860, or 7861 with --nowebui)")
    add("--server-name", default=None, help="address or host name to bind to")
    add("--api", action="store_true", help="serve the /sdapi/v1 REST API beside the UI")
    add("--nowebui", action="store_true", help="serve the API only")
    add("--api-log", action="store_true", help="log every API request")
    add("--gradio-auth", default=None, help='UI login "user:password[,user2:password2]"')
    add("--gradio-auth-path", default=None, help="file with user:password entries (lines or commas)")
    add("--api-auth", default=None, help='HTTP Basic auth for the API "user:password[,...]"')
    add("--admin-users", default=None,
        help="with a login: the users (comma-separated) who may manage extensions, restart the server and "
             "change server-wide settings; nobody may without it")
    add("--cors-allow-origins", default=None, help="comma-separated origins allowed by CORS")
    add("--cors-allow-origins-regex", default=None)
    add("--tls-keyfile", default=None)
    add("--tls-certfile", default=None)
    add("--subpath", default=None, help="serve under this URL prefix (behind a reverse proxy)")
    add("--enable-insecure-extension-access", action="store_true",
        help="allow installing extensions even when serving beyond this machine")
    add("--autolaunch", action="store_true", help="open the UI in the system browser")
    add("--theme", choices=["light", "dark"], default=None)
    add("--timeout-keep-alive", type=int, default=30)
    # folders
    add("--data-dir", default=".", help="where models/, outputs/, config.json and styles.csv live")
    add("--models-dir", default=None, help="models folder (default DATA_DIR/models)")
    add("--ckpt-dir", default=None, help="another folder of checkpoints")
    add("--ckpt", default=None, help="checkpoint to load at start")
    add("--vae-dir", default=None)
    add("--lora-dir", default=None)
    add("--embeddings-dir", default=None)
    add("--ui-settings-file", default=None, help="settings file (default DATA_DIR/config.json)")
    add("--styles-file", default=None, help="styles file (default DATA_DIR/styles.csv)")
    add("--freeze-settings", action="store_true", help="settings cannot be changed from the UI or API")
    add("--hide-ui-dir-config", action="store_true", help="output folders cannot be changed from the UI or API")
    # extensions (<data-dir>/extensions, as in A1111)
    add("--disable-all-extensions", action="store_true", help="load no extensions, not even the built-in ones")
    add("--disable-extra-extensions", action="store_true", help="load only the built-in extensions")
    add("--skip-install", action="store_true", help="install nothing: neither dependencies nor extensions' install.py")
    # device
    add("--use-cpu", nargs="*", default=[], help="'all' runs everything on the CPU")
    add("--precision", choices=["full", "autocast", "half"], default="autocast")
    add("--no-half", action="store_true", help="fp32 weights on the GPU")
    add("--no-half-vae", action="store_true", help="fp32 VAE on the GPU")
    add("--disable-nan-check", action="store_true", help="keep (black) images whose UNet or VAE output held NaNs")
    from .runtime import add_speed_flags

    add_speed_flags(parser.add_argument_group("speed and memory (webui/runtime.py)"))
    # several GPUs or machines (webui/workers): generation workers on Ray, behind the one fair queue
    add("--ray", action="store_true", help="run jobs on Ray workers: a local Ray instance, one worker per GPU")
    add("--workers", type=_positive, default=None, metavar="N", help="N Ray workers (on the CPU when there is no GPU)")
    add("--ray-address", default=None, metavar="ADDR", help="join this Ray cluster (e.g. 10.0.0.5:6379) instead")
    add_limit_flags(parser)
    for flag in ACCEPTED_WITHOUT_EFFECT:
        add(flag, action="store_true", help=argparse.SUPPRESS)
    return parser


def add_limit_flags(parser) -> None:
    """--max-prompt-length, --max-pixels, ...: how much work one request may ask for (generation/params.Limits;
    defaults: A1111's UI maxima). Flags, not settings, so that only whoever starts the server can raise them."""
    from .generation.params import LIMIT_FLAGS, Limits

    group = parser.add_argument_group("limits per request (raise them for a trusted, powerful server)")
    for name, what in LIMIT_FLAGS.items():
        group.add_argument(f"--max-{name.replace('_', '-')}", type=_positive, default=getattr(Limits(), name),
                           metavar="N", help=f"{what} (default %(default)s)")


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of 1 or more, not {text}")
    return value


def parse_flags(argv: list[str], parser: argparse.ArgumentParser | None = None,
                known_only: bool = False) -> argparse.Namespace:
    """The flags of `argv`. `parser` is one that extensions' preload.py added flags to;
    `known_only` skips flags this parser does not know (the early pass made before preloads)."""
    parser = parser or build_parser(add_help=not known_only)
    flags = parser.parse_known_args(argv)[0] if known_only else parser.parse_args(argv)
    flags.data_dir = Path(flags.data_dir).resolve()
    flags.models_dir = Path(flags.models_dir).resolve() if flags.models_dir else flags.data_dir / "models"
    flags.ignored = [f for f in ACCEPTED_WITHOUT_EFFECT if getattr(flags, f.lstrip("-").replace("-", "_"))]
    from .runtime import refusals

    for problem in refusals(flags):
        parser.error(problem)
    # A1111's derived fields, read by extensions as shared.cmd_opts.<name>
    flags.webui_is_non_local = is_shared_beyond_this_machine(flags)
    flags.disable_extension_access = flags.webui_is_non_local and not flags.enable_insecure_extension_access
    return flags


LOOPBACK_NAMES = ("localhost", "::1")


def is_shared_beyond_this_machine(flags: argparse.Namespace) -> bool:
    """A1111's "non-local" rule: extension installs are off then unless explicitly allowed.
    Unlike A1111, a --server-name that is a loopback address (127.x, ::1, localhost) stays local."""
    name = (flags.server_name or "").strip().lower()
    loopback = name in LOOPBACK_NAMES or name.startswith("127.")
    return bool(flags.listen or getattr(flags, "share", False) or getattr(flags, "ngrok", None)
                or (name and not loopback))


def parse_credentials(text: str | None, path: str | None = None) -> dict[str, str]:
    """`user:password` pairs from a flag and/or a file (comma- or line-separated).

    Only the first colon separates user from password, so passwords may contain colons.
    """
    entries = []
    if text:
        entries += text.split(",")
    if path:
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            entries += line.split(",")
    credentials = {}
    for entry in (e.strip() for e in entries):
        if entry:
            user, _, password = entry.partition(":")
            credentials[user] = password
    return credentials


# Flag values that are secrets: never shown by /sdapi/v1/cmd-flags or logged.
SECRET_FLAGS = ("gradio_auth", "api_auth", "gradio_auth_path", "tls_keyfile")
