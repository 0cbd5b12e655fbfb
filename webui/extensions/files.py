"""A1111's `file=` route (Gradio 3's file URL), which extensions' page scripts fetch their own files through:
`GET /file=extensions/<ext>/tags/x.csv`, `/file=/abs/path/outputs/...png`.

Only what A1111 serves is served: files inside an active extension's folder, the outputs folder, the output
folders the settings name now (outdir_*: they may lie outside the data dir, and only who may change the
settings sets them) and the data dir's tmp folder (opts.temp_dir). A relative path is read from the data dir,
where A1111's own root would be; every path is resolved (links followed, `..` applied) before it is checked,
so no spelling of a path reaches outside those folders. With a login the route is behind it like our other
routes (auth.py).
"""

from __future__ import annotations

import mimetypes
from pathlib import Path

from fastapi import FastAPI, HTTPException
from fastapi.responses import FileResponse

from ..options import output_folders


def allowed_roots(state) -> list[Path]:
    data = Path(state.flags.data_dir)
    roots = [data / "outputs", data / "tmp", *output_folders(state.options, data)]
    roots += [Path(ext.path) for ext in state.extensions if getattr(ext, "active", True)]
    return [root.resolve() for root in roots]


def resolve_file(state, requested: str) -> Path | None:
    """The file `requested` names, when it is one the route may serve; else None."""
    if not requested or "\x00" in requested:
        return None
    path = Path(requested)
    if not path.is_absolute():
        path = Path(state.flags.data_dir) / path
    try:
        path = path.resolve()
    except (OSError, RuntimeError):  # a link loop
        return None
    if not path.is_file():
        return None
    return path if any(path.is_relative_to(root) for root in allowed_roots(state)) else None


def register_file_route(app: FastAPI, state, prefix: str = "") -> None:
    @app.get(f"{prefix}/file={{requested:path}}", include_in_schema=False)
    def file_route(requested: str):
        path = resolve_file(state, requested)
        if path is None:  # the same answer for "missing" and "not allowed": nothing to learn about the disk
            raise HTTPException(404, "no such file")
        media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return FileResponse(path, media_type=media_type)
