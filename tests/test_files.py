"""Atomic writes and strict JSON for everything expunge writes."""
import json

import numpy as np
import pytest

from expunge.files import atomic_write, json_text


def test_json_text_is_strict():
    text = json_text({"a": float("nan"), "b": [np.float32(1.5), float("inf")], "c": np.arange(2)})
    assert json.loads(text) == {"a": None, "b": [1.5, None], "c": [0, 1]}
    assert "NaN" not in text and "Infinity" not in text


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path):
    target = tmp_path / "out.txt"
    atomic_write(target, lambda tmp: tmp.write_text("good"))

    def half_written(tmp):
        tmp.write_text("partial")
        raise OSError("disk full")

    with pytest.raises(OSError):
        atomic_write(target, half_written)
    assert target.read_text() == "good"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]
