"""SHA-256 of model files, cached on disk so that a multi-gigabyte checkpoint is read once.

A1111 shows a checkpoint's "Model hash" as the first 10 hex digits of the file's SHA-256; we do the same.
A1111 has no hash for a diffusers folder; ours is the SHA-256 of a listing of the folder's files (relative
path and SHA-256 of each), leaving out our own metadata and notes (`webui.json`, `*.md`), which do not change
what the model draws. So a copied or moved folder keeps its hash, and infotexts from it name it exactly.
The cache is a JSON file (for example `<data_dir>/cache.json`) that other caches may share: we only touch
our own section. An entry is trusted while the file's size and modification time are unchanged.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path

SECTION = "sha256"  # our key in the shared cache file
SHORT_HASH_LENGTH = 10  # A1111's short form
_CHUNK = 1 << 20

_lock = threading.Lock()  # one writer at a time within this process


def sha256_file(path: str | os.PathLike) -> str:
    """Full hex SHA-256 of a file, read in 1 MiB chunks so memory stays flat."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def short_hash(sha256: str) -> str:
    return sha256[:SHORT_HASH_LENGTH]


def _fingerprint(path: Path) -> dict:
    stat = path.stat()
    return {"mtime": stat.st_mtime, "size": stat.st_size}


def _read_cache(cache_path: Path) -> dict:
    try:
        data = json.loads(cache_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # missing or damaged: start again rather than fail a generation over a cache
    return data if isinstance(data, dict) else {}


def _write_cache(cache_path: Path, data: dict) -> None:
    # Write a sibling file and rename it over the old one, so a crash never leaves half a JSON file.
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    temporary = cache_path.with_name(f"{cache_path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(temporary, cache_path)


FOLDER_SKIPPED = ("webui.json",)  # our metadata beside a diffusers folder's weights
FOLDER_SKIPPED_SUFFIXES = (".md",)


def folder_files(folder: Path) -> list[Path]:
    """The files whose contents make a folder's hash, sorted by relative path; hidden ones are left out."""
    files = []
    for path in folder.rglob("*"):
        relative = path.relative_to(folder)
        if (path.is_file() and not any(part.startswith(".") for part in relative.parts)
                and path.name not in FOLDER_SKIPPED and path.suffix.lower() not in FOLDER_SKIPPED_SUFFIXES):
            files.append(path)
    return sorted(files, key=lambda path: path.relative_to(folder).as_posix())


def _folder_digest(folder: Path, files: list[Path], file_hashes: list[str]) -> str:
    listing = "".join(f"{path.relative_to(folder).as_posix()}\0{digest}\n" for path, digest in zip(files, file_hashes))
    return hashlib.sha256(listing.encode()).hexdigest()


def cached_sha256(path: str | os.PathLike, cache_path: str | os.PathLike | None) -> str | None:
    """The cached hash of `path` if it is unchanged since it was hashed; never reads the file. A folder's
    is known when each of its files' is."""
    if cache_path is None:
        return None
    path = Path(path).resolve()
    with _lock:
        section = _read_cache(Path(cache_path)).get(SECTION, {})  # read once, also for a folder's many files
    if path.is_dir():
        files = folder_files(path)
        known = [_unchanged(file, section) for file in files]
        return None if not known or None in known else _folder_digest(path, files, known)
    return _unchanged(path, section)


def _unchanged(path: Path, section: dict) -> str | None:
    """The hash `section` (the cache's) holds for `path`, if the file's size and mtime still match."""
    entry = section.get(str(path.resolve())) if isinstance(section, dict) else None
    if not isinstance(entry, dict) or entry.get("sha256") is None:
        return None
    try:
        if {"mtime": entry.get("mtime"), "size": entry.get("size")} != _fingerprint(path):
            return None
    except OSError:
        return None
    return entry["sha256"]


def sha256(path: str | os.PathLike, cache_path: str | os.PathLike | None = None) -> str:
    """Full hex SHA-256 of `path`, from the cache when the file is unchanged, else computed and stored.
    For a folder (a diffusers model): the hash of its file listing, see the module's docstring."""
    path = Path(path).resolve()
    if path.is_dir():
        files = folder_files(path)
        return _folder_digest(path, files, [sha256(file, cache_path) for file in files])
    known = cached_sha256(path, cache_path)
    if known is not None:
        return known
    fingerprint = _fingerprint(path)
    digest = sha256_file(path)
    if cache_path is not None:
        cache_path = Path(cache_path)
        with _lock:  # re-read under the lock so entries written meanwhile are kept
            data = _read_cache(cache_path)
            section = data.get(SECTION)
            if not isinstance(section, dict):
                section = data[SECTION] = {}
            section[str(path)] = {**fingerprint, "sha256": digest}
            _write_cache(cache_path, data)
    return digest
