"""The few git commands extensions need: read a clone's state, fetch, compare, reset, clone.

Everything goes through the `git` program (no library); git never prompts for credentials
here, so a private URL fails instead of hanging the server.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

TIMEOUT = 300  # seconds: a clone of a big extension over a slow link


class GitError(RuntimeError):
    pass


def git(*args: str, cwd: Path | None = None, timeout: float = TIMEOUT) -> str:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "echo"}
    try:
        result = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True,
                                errors="replace", timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise GitError(f"git {args[0]}: {error}") from error
    if result.returncode != 0:
        raise GitError(f"git {args[0]} failed: {(result.stderr or result.stdout).strip()}")
    return result.stdout.strip()


def is_clone(path: Path) -> bool:
    """Only a folder with its own .git counts: git would otherwise find an enclosing repository
    (the project itself, when extensions/ sits inside it) and report that one."""
    return (path / ".git").exists()


@dataclass
class GitInfo:
    remote: str | None
    branch: str | None
    commit: str | None
    commit_date: int | None  # unix time of the HEAD commit


def read_info(path: Path) -> GitInfo | None:
    if not is_clone(path):
        return None
    try:
        commit, date = git("log", "-1", "--format=%H%n%ct", cwd=path, timeout=30).split("\n")
    except (GitError, ValueError):  # an empty repository, or git refuses it (ownership)
        return GitInfo(None, None, None, None)
    branch = _quiet("rev-parse", "--abbrev-ref", "HEAD", cwd=path)
    remote = _quiet("config", "--get", "remote.origin.url", cwd=path)
    return GitInfo(remote or None, branch if branch and branch != "HEAD" else None, commit, int(date))


def upstream(path: Path) -> str:
    """The ref updates come from: the branch's tracking branch, else origin's default branch."""
    return (_quiet("rev-parse", "--abbrev-ref", "--symbolic-full-name", "@{u}", cwd=path)
            or "refs/remotes/origin/HEAD")


def commits_behind(path: Path) -> int:
    """Fetch, then count the upstream commits HEAD lacks."""
    git("fetch", "--quiet", "origin", cwd=path)
    return int(git("rev-list", "--count", f"HEAD..{upstream(path)}", cwd=path))


def update(path: Path) -> None:
    git("fetch", "--quiet", "--all", cwd=path)
    git("reset", "--hard", upstream(path), cwd=path)
    git("submodule", "update", "--init", "--recursive", cwd=path)


def clone(url: str, target: Path, branch: str | None = None, partial: bool = False) -> None:
    args = ["clone", "--quiet"]
    if branch:
        args += ["--branch", branch]
    if partial:  # blobs on demand: much less to download for repositories with big history
        args += ["--filter=blob:none"]
    git(*args, "--", url, str(target))
    git("submodule", "update", "--init", "--recursive", cwd=target)


def _quiet(*args: str, cwd: Path) -> str:
    try:
        return git(*args, cwd=cwd, timeout=30)
    except GitError:
        return ""
