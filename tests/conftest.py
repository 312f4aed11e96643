"""Shared fixtures: small synthetic datasets made on the fly, and caches isolated per test session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support.data import ISOLATED_ENV


@pytest.fixture(scope="session", autouse=True)
def _isolated_caches(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Never read or write the user's ~/.cache or torch hub from a test.

    Session-scoped and autouse, so it is set up before every module- and session-scoped fixture (pytest
    instantiates autouse fixtures first within a scope, and wider scopes first): a module fixture that trains a
    model or loads weights sees the isolated folders too. A test may still point a variable elsewhere with
    ``monkeypatch.setenv``; monkeypatch restores the session's value afterwards.
    """
    root = tmp_path_factory.getbasetemp()
    with pytest.MonkeyPatch.context() as patch:
        for name, folder in ISOLATED_ENV.items():
            patch.setenv(name, str(root / folder))
        yield


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """96 synthetic faces (12 per class) at 64 px in AffectNet layout."""
    from affectlab.data.demo import generate_demo_dataset

    return generate_demo_dataset(tmp_path_factory.mktemp("demo") / "faces", n_per_class=12, image_size=64, seed=0)


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Path:
    """A scratch folder shared by one test module."""
    return tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])


@pytest.fixture(scope="module")
def run(work: Path) -> Path:
    """A run folder with an untrained multitask MobileNetV2 at 64 px, for the inference tests."""
    from support.models import make_run

    return make_run(work)


@pytest.fixture
def ctrl_c_delivered() -> Iterator[None]:
    """SIGINT raises KeyboardInterrupt during the test, as in a terminal, whatever the runner inherited.

    A process started in the background by a non-interactive shell (as a CI job can be) begins with SIGINT ignored,
    and Python then never installs its handler: a test that sends itself a real Ctrl-C would see nothing happen.
    """
    import signal

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """Shuffled (pytest-randomly), but the same shuffle every run unless --randomly-seed says otherwise: CI must not
    pass or fail by the luck of the order. Runs before pytest-randomly reads the option."""
    if getattr(config.option, "randomly_seed", None) == "default":
        config.option.randomly_seed = 1


def pytest_report_header(config: pytest.Config) -> str:
    """int8 results can differ between ONNX Runtime's CPU kernels, so every run names the one this CPU gets."""
    from affectlab.export.int8 import int8_kernel

    return f"onnxruntime int8 kernel: {int8_kernel()}"
