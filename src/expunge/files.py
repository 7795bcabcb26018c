"""Writing files safely: atomic replacement and strict JSON.

Every file expunge writes (checkpoints, sidecars, reports) goes through
:func:`atomic_write`: the content is written to a temporary file in the same folder and
renamed over the target, so a crash never leaves a partial file over a good one.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def atomic_write(path: Path, write: Callable[[Path], None], mode: int = 0o644) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, mode)  # mkstemp creates 0600; results are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _strict(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(v) for v in value]
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
        return _strict(value.item())  # numpy / torch scalars
    if hasattr(value, "tolist") and callable(value.tolist):
        return _strict(value.tolist())
    return value


def json_text(data: Any, **options: Any) -> str:
    """Strict JSON (NaN and infinities become ``null``; arrays become lists)."""
    return json.dumps(_strict(data), allow_nan=False, default=str, **options)
