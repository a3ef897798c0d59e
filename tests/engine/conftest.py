"""Shared engine fixtures: a tiny random engine, and checkpoints written once per session."""

from __future__ import annotations

import gc
from pathlib import Path

import chatterbox_engine as ce
import pytest
import torch
from chatterbox_engine.loading import random_models


@pytest.fixture(scope="package", autouse=True)
def single_torch_thread():
    """One intra-op thread: on a shared 2-core CI machine, more threads mostly spin against each other
    (tiny models run 10x slower with 2 threads under load)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def tiny_engine() -> ce.Engine:
    return ce.load("random:tiny", watermark=False)


@pytest.fixture(scope="session")
def bf16_engine() -> ce.Engine:
    return ce.load("random:tiny", watermark=False, dtype="bfloat16")


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, tiny_engine):
    folder = tmp_path_factory.mktemp("tiny_checkpoint")
    tiny_engine.save_checkpoint(folder)
    return folder


def write_random_checkpoint(tmp_path_factory, source: str) -> Path:
    """Random weights (`random:full...`) written in the official layout, with the engine's default voice."""
    folder = tmp_path_factory.mktemp(source.replace(":", "_"))
    engine = ce.Engine(
        random_models(source), source=source, device="cpu", dtype=torch.float32, watermark=False
    )
    engine.save_checkpoint(folder)
    del engine
    gc.collect()
    return folder


def loaded_then_freed(folder: Path):
    """Yields our engine loaded from folder, and frees its memory after (full-size weights are large)."""
    engine = ce.load(str(folder), watermark=False)
    yield engine
    del engine
    gc.collect()


@pytest.fixture(scope="session")
def full_checkpoint(tmp_path_factory):
    """`random:full` written in the official layout (~3 GB): shared by every full-size test."""
    return write_random_checkpoint(tmp_path_factory, "random:full")


@pytest.fixture(scope="session")
def full_engine(full_checkpoint) -> ce.Engine:
    """Our engine loaded strictly from the full-size random checkpoint."""
    return ce.load(str(full_checkpoint), watermark=False)


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
