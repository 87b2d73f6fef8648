"""Tokens saved by ``fleetscope login``: one per server URL, in the user's config directory.

The file (``tokens.json``) is created with mode 0600 in a directory of mode 0700, and is
rewritten whole through a temporary file, so a token is never readable by others, not even
for an instant, and a crash never leaves half a file.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from platformdirs import user_config_dir

CONFIG_ENV = "FLEETSCOPE_CONFIG_DIR"  # another directory (tests, several identities)


def _path() -> Path:
    return Path(os.environ.get(CONFIG_ENV) or user_config_dir("fleetscope")) / "tokens.json"


def _key(url: str) -> str:
    return url.rstrip("/")


def _load() -> dict[str, str]:
    try:
        data = json.loads(_path().read_text())
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str)} \
        if isinstance(data, dict) else {}


def _save(tokens: dict[str, str]) -> Path:
    path = _path()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tokens.")  # mode 0600
    with os.fdopen(fd, "w") as f:
        json.dump(tokens, f, indent=2, sort_keys=True)
    os.replace(tmp, path)
    return path


def saved_token(url: str) -> str | None:
    return _load().get(_key(url))


def save_token(url: str, token: str) -> Path:
    """Remember ``token`` for ``url``; the file it went to."""
    return _save({**_load(), _key(url): token})


def forget_token(url: str) -> bool:
    tokens = _load()
    if tokens.pop(_key(url), None) is None:
        return False
    _save(tokens)
    return True
