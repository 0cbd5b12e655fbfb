"""What an API error may tell a client: no absolute paths of the server's disk.

Error texts come from everywhere (model loading, image saving, OSError's own wording) and often
name files by their full path, which tells a client the server's user name and layout. Every
error text the API answers (HTTP errors and unexpected ones; api/routes.py) goes through
`hide_paths`: a path inside the data folder becomes relative to it
("models/Stable-diffusion/x.safetensors"), any other absolute path just its file name. Text that only looks like a path (an API route, "/sdapi/v1/txt2img") is kept:
a path counts when its first folder exists at the root of this machine's file system.
"""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath, PureWindowsPath

# An absolute POSIX path ("/a/b") not inside a word, URL or relative path, or a Windows one ("C:\\a").
_ABSOLUTE = re.compile(r"(?<![\w.:/\\~-])(?:/|[A-Za-z]:[\\/])[^\s'\"<>|*?,;()\[\]{}]*")


def hide_paths(text: str, data_dir: Path | None = None) -> str:
    """`text` with each absolute server path made relative to `data_dir` (when inside it) or cut to its name."""
    root = str(data_dir).rstrip("/\\") if data_dir is not None else None

    def replace(match: re.Match) -> str:
        path = match.group()
        if root and (path == root or path.startswith(root + os.sep)):
            return path[len(root) + 1:] or "."
        if path[0] == "/":
            first = PurePosixPath(path).parts[1:2]
            if not first or not os.path.isdir("/" + first[0]):
                return path  # "/sdapi/v1/...": not a path on this machine
            return PurePosixPath(path).name or "/"
        return PureWindowsPath(path).name or path[:2]

    return _ABSOLUTE.sub(replace, text)
