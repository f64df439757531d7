"""Where things live: the repository root, the weights cache, runs and figures.

Every location can be overridden by an environment variable so that notebooks, papermill, pytest and
CI resolve the same files whatever the working directory:

- ``DDS_WEIGHTS_DIR``: downloaded / converted weights (default ``~/.cache/ddsutils/weights``, or
  ``$XDG_CACHE_HOME/ddsutils/weights``);
- ``DDS_RUNS_DIR``: run outputs (default ``<repo>/runs``);
- ``DDS_FIG_DIR``: figures (default ``<repo>/figures``).

Used in: every notebook (via ``ddsutils.weights`` and ``ddsutils.runs``).
"""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["repo_root", "weights_dir", "committed_weights_dir", "runs_dir", "fig_dir"]


def repo_root() -> Path:
    """The repository root (the folder holding ``pyproject.toml`` next to ``ddsutils/``)."""
    return Path(__file__).resolve().parents[2]


def committed_weights_dir() -> Path:
    """``<repo>/weights``: the manifest and the small weights this project trains itself."""
    return repo_root() / "weights"


def weights_dir() -> Path:
    """The cache for downloaded or converted weights (``$DDS_WEIGHTS_DIR`` overrides)."""
    env = os.environ.get("DDS_WEIGHTS_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "ddsutils" / "weights"


def runs_dir() -> Path:
    """Run outputs (``$DDS_RUNS_DIR`` overrides ``<repo>/runs``)."""
    env = os.environ.get("DDS_RUNS_DIR")
    return Path(env).expanduser() if env else repo_root() / "runs"


def fig_dir() -> Path:
    """Figures (``$DDS_FIG_DIR`` overrides ``<repo>/figures``)."""
    env = os.environ.get("DDS_FIG_DIR")
    return Path(env).expanduser() if env else repo_root() / "figures"
