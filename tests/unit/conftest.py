"""Fixtures shared by the unit tests (helpers live in repokit.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# Make ``import repokit`` work whatever pytest's import mode is.
sys.path.insert(0, str(Path(__file__).parent))

from repokit import RepoKit  # noqa: E402


@pytest.fixture
def kit(tmp_path: Path) -> RepoKit:
    return RepoKit(tmp_path)
