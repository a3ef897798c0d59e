"""Shared engine fixtures: a tiny random engine, and checkpoints written once per session."""

from __future__ import annotations

import contextlib
import gc
import importlib
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import chatterbox_engine as ce
import pytest
import torch
from chatterbox_engine.loading import random_models


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """The calling thread's intra-op threads set to count for the block, then restored."""
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@pytest.fixture(scope="package", autouse=True)
def single_torch_thread():
    """One intra-op thread: on a shared 2-core CI machine, more threads mostly spin against each other
    (tiny models run 10x slower with 2 threads under load)."""
    with torch_threads(1):
        yield


def built_on_one_thread(build: Callable[[], ce.Engine]) -> ce.Engine:
    """An engine's loop takes the intra-op thread count of the thread that builds it, and float results
    depend on that count. Session engines are built before `single_torch_thread` applies (pytest sets up
    wider scopes first), so they set the same one thread themselves: their audio then equals what a test
    computes directly, or gets from an engine it builds."""
    with torch_threads(1):
        return build()


@pytest.fixture(scope="session")
def tiny_engine() -> ce.Engine:
    return built_on_one_thread(lambda: ce.load("random:tiny", watermark=False))


@pytest.fixture(scope="session")
def bf16_engine() -> ce.Engine:
    return built_on_one_thread(lambda: ce.load("random:tiny", watermark=False, dtype="bfloat16"))


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, tiny_engine):
    folder = tmp_path_factory.mktemp("tiny_checkpoint")
    tiny_engine.save_checkpoint(folder)
    return folder


def random_checkpoint(tmp_path_factory, source: str) -> Iterator[Path]:
    """Random weights (`random:full...`) written in the official layout, with the engine's default voice;
    removed when the fixture ends (each full-size checkpoint is 2-4 GB, and CI disks are small)."""
    folder = tmp_path_factory.mktemp(source.replace(":", "_"))
    engine = ce.Engine(
        random_models(source), source=source, device="cpu", dtype=torch.float32, watermark=False
    )
    engine.save_checkpoint(folder)
    del engine
    gc.collect()
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def loaded_then_freed(folder: Path):
    """Yields our engine loaded from folder, and frees its memory after (full-size weights are large)."""
    engine = ce.load(str(folder), watermark=False)
    yield engine
    del engine
    gc.collect()


@pytest.fixture(scope="session")
def full_checkpoint(tmp_path_factory):
    """`random:full` written in the official layout (~3 GB): shared by every full-size test."""
    yield from random_checkpoint(tmp_path_factory, "random:full")


@pytest.fixture(scope="session")
def full_engine(full_checkpoint) -> ce.Engine:
    """Our engine loaded strictly from the full-size random checkpoint."""
    return built_on_one_thread(lambda: ce.load(str(full_checkpoint), watermark=False))


@pytest.fixture(scope="session")
def checkpoint_table():
    """Read an official key table (`checkpoint_keys/<name>.tsv`) as {key: shape}."""

    def read(name: str) -> dict[str, tuple[int, ...]]:
        table = {}
        for line in (Path(__file__).parent / "checkpoint_keys" / f"{name}.tsv").read_text().splitlines():
            key, shape, _dtype = line.split("\t")
            table[key] = tuple(int(d) for d in shape.strip("()").split(",") if d.strip())
        return table

    return read


# Upstream main (commit 5de7a54: Nano, Multilingual V3) beside the repository as `shared/upstream/`. Its
# package metadata still says chatterbox-tts 0.1.7, so it cannot be installed beside the PyPI release:
# its source is imported under another package name (all its imports are relative).
UPSTREAM_MAIN_SRC = Path(
    os.environ.get(
        "CHATTERBOX_UPSTREAM_MAIN",
        Path(__file__).resolve().parents[2].parent / "shared/upstream/chatterbox-5de7a54/src/chatterbox",
    )
)
UPSTREAM_MAIN_PACKAGE = "chatterbox_upstream_main"


@pytest.fixture(scope="session")
def upstream_main(tmp_path_factory):
    """Upstream main's `chatterbox` package imported as `chatterbox_upstream_main` (skips without it)."""
    if not (UPSTREAM_MAIN_SRC / "tts_turbo.py").exists():
        pytest.skip(f"upstream main source not found at {UPSTREAM_MAIN_SRC} (set CHATTERBOX_UPSTREAM_MAIN)")
    root = tmp_path_factory.mktemp("upstream_main")
    shutil.copytree(
        UPSTREAM_MAIN_SRC, root / UPSTREAM_MAIN_PACKAGE, ignore=shutil.ignore_patterns("__pycache__")
    )
    sys.path.insert(0, str(root))
    try:
        yield importlib.import_module(UPSTREAM_MAIN_PACKAGE)
    finally:
        sys.path.remove(str(root))
