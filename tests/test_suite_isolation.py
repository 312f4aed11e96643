"""The suite's own guarantees: fixtures of every scope see the isolated cache folders."""

from __future__ import annotations

import os

import pytest
from support.data import ISOLATED_ENV


@pytest.fixture(scope="module")
def env_seen_by_a_module_fixture() -> dict[str, str | None]:
    """What a module-scoped fixture (one that trains a model or loads weights, say) finds in the environment."""
    return {name: os.environ.get(name) for name in ISOLATED_ENV}


def test_module_fixtures_see_the_isolated_caches(
    env_seen_by_a_module_fixture: dict[str, str | None], tmp_path_factory: pytest.TempPathFactory
) -> None:
    root = tmp_path_factory.getbasetemp()
    expected = {name: str(root / folder) for name, folder in ISOLATED_ENV.items()}
    assert env_seen_by_a_module_fixture == expected
    assert {name: os.environ.get(name) for name in ISOLATED_ENV} == expected
