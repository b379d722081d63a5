"""Secrets come from NAME or from the file NAME_FILE names (Secret Manager volumes on GKE)."""

from pathlib import Path

import pytest

from coursebridge.config import secret_env


def test_env_value_wins_then_file_then_none(tmp_path: Path) -> None:
    secret = tmp_path / "hottok"
    secret.write_text("from-file\n")
    assert secret_env("X", {"X": "from-env", "X_FILE": str(secret)}) == "from-env"
    assert secret_env("X", {"X_FILE": str(secret)}) == "from-file"
    assert secret_env("X", {}) is None


def test_unreadable_file_is_an_error_that_names_the_variable_not_the_value(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="X_FILE=") as raised:
        secret_env("X", {"X_FILE": str(tmp_path / "missing")})
    assert "missing" in str(raised.value)
