"""Foundation smoke tests: the packages import and the console scripts are installed."""

import importlib
import shutil
import sys
from pathlib import Path

import pytest


@pytest.mark.parametrize("package", ["chatterbox_engine", "chatterbox_server", "chatterbox_operator"])
def test_package_imports(package: str) -> None:
    assert importlib.import_module(package).__doc__


@pytest.mark.parametrize("script", ["chatterbox-server", "chatterbox-operator"])
def test_console_script_installed(script: str) -> None:
    bin_dir = Path(sys.executable).parent
    assert shutil.which(script, path=str(bin_dir)), f"{script} is not installed in {bin_dir}"


def test_engine_sample_rate() -> None:
    import chatterbox_engine

    assert chatterbox_engine.SAMPLE_RATE == 24_000
