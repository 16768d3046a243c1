from __future__ import annotations

import pytest


@pytest.fixture
def storage(tmp_path):
    return f"sqlite:///{tmp_path / 'study.db'}"


@pytest.fixture
def tiny(tmp_path, storage):
    """Options for a search that takes seconds: wine, the quick space, two epochs."""
    return dict(trials=3, epochs=2, confirm_seeds=2, top_k=1, space="quick", storage=storage,
                study="tiny", out=str(tmp_path / "out"), progress=False)
