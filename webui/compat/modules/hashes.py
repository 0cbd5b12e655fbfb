"""A1111's `modules.hashes`: file hashes, cached in the data folder's cache.json."""

from __future__ import annotations

from pathlib import Path

from webui import compat
from webui.models import hashes as ours


def _cache_path():
    return Path(compat.state().flags.data_dir) / "cache.json" if compat.bound() else None


def calculate_sha256(filename) -> str:
    return ours.sha256_file(filename)


def sha256_from_cache(filename, title=None, use_addnet_hash=False) -> str | None:
    """The cached hash, or None when the file was never hashed (or changed since)."""
    return ours.cached_sha256(filename, _cache_path())


def sha256(filename, title=None, use_addnet_hash=False) -> str:
    return ours.sha256(filename, _cache_path())


__getattr__ = compat.report_missing_names(__name__)
