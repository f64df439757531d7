"""Shared fixtures and marker handling for the ddsutils test-suite."""
from __future__ import annotations

import pytest
import torch

from ddsutils.core.stylegan2 import Generator


def make_tiny_generator(*, size: int = 32, seed: int = 0, style_dim: int = 32, n_mlp: int = 2,
                        channel_max: int = 16) -> Generator:
    """A few-thousand-parameter generator with seeded weights (and non-zero noise strengths)."""
    torch.manual_seed(seed)
    G = Generator(size, style_dim, n_mlp, channel_max=channel_max)
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith("noise.weight") or name.endswith("activate.bias") or name.endswith("rgb1.bias"):
                p.normal_(0, 0.1)  # exercise the noise / bias paths that start at zero
    return G.eval()


@pytest.fixture(scope="module")
def one_thread():
    """Single-threaded torch for a module (opt in with ``pytestmark = pytest.mark.usefixtures("one_thread")``):
    tiny models gain nothing from intra-op threads, and on a shared 2-core machine threads waiting for a
    descheduled sibling make each small op many times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def tiny_g() -> Generator:
    return make_tiny_generator()


def pytest_collection_modifyitems(config, items):
    if not torch.cuda.is_available():
        skip = pytest.mark.skip(reason="needs CUDA (torch.cuda.is_available() is False)")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)
