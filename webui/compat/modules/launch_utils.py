"""A1111's `modules.launch_utils`: the helpers install.py scripts use (see launch.py)."""

from launch import args, commit_hash, git, git_tag, index_url, is_installed, python, repo_dir, run, run_pip  # noqa: F401

from webui import compat


__getattr__ = compat.report_missing_names(__name__)
