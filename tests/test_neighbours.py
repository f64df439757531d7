"""Model distance and layer swap (``ddsutils.core.neighbours``) on tiny generators (conftest)."""
from __future__ import annotations

import pytest
import torch

from conftest import make_tiny_generator
from ddsutils.core import neighbours as nb
from ddsutils.core.errors import UserError

pytestmark = pytest.mark.usefixtures("one_thread")


def _z(n: int = 4, dim: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed))


# -- layer swap ---------------------------------------------------------------------------------------

def test_layer_swap_all_and_none_are_the_two_generators():
    G_s, G_t = make_tiny_generator(seed=0), make_tiny_generator(seed=1)
    z = _z()
    with torch.no_grad():
        x_s, x_t = G_s(z), G_t(z)
        assert not torch.equal(x_s, x_t)
        every = nb.layer_swap(G_s, G_t, resolutions=nb.synthesis_resolutions(G_t), mapping=True)
        assert torch.equal(every(z), x_s)  # bit-identical
        assert torch.equal(nb.layer_swap(G_s, G_t, resolutions=())(z), x_t)
        # without the mapping network the images are not G_s's (the two mappings differ)
        assert not torch.equal(nb.layer_swap(G_s, G_t, resolutions=nb.synthesis_resolutions(G_t))(z), x_s)
        assert torch.equal(G_t(z), x_t)  # G_t itself untouched


def test_layer_swap_copies_only_the_named_layers():
    G_s, G_t = make_tiny_generator(seed=0), make_tiny_generator(seed=1)
    S = nb.layer_swap(G_s, G_t, resolutions=(16,))
    sd, sd_s, sd_t = S.state_dict(), G_s.state_dict(), G_t.state_dict()
    swapped = {k for k in sd if k.split(".")[0] + "." + k.split(".")[1] in
               ("convs.2", "convs.3", "to_rgbs.1", "noises.noise_3", "noises.noise_4")}
    assert len(swapped) > 5
    for k, v in sd.items():
        want = sd_s[k] if k in swapped else sd_t[k]
        assert torch.equal(v, want), k
    # StyledConvs only: the 16 px ToRGB stays G_t's
    S2 = nb.layer_swap(G_s, G_t, resolutions=(16,), to_rgb=False)
    assert torch.equal(S2.to_rgbs[1].conv.weight, G_t.to_rgbs[1].conv.weight)
    assert torch.equal(S2.convs[3].conv.weight, G_s.convs[3].conv.weight)
    assert torch.equal(S.style[1].weight, G_t.style[1].weight)  # the mapping network stays G_t's


def test_swapped_resolutions_follow_the_paper():
    G = make_tiny_generator(size=32)
    assert nb.synthesis_resolutions(G) == [4, 8, 16, 32]
    assert [nb.swapped_resolutions(G, v) for v in range(4)] == [(), (8,), (8, 16), (8, 16, 32)]
    with pytest.raises(UserError, match="l: 4"):
        nb.swapped_resolutions(G, 4)
    with pytest.raises(UserError, match="resolutions: 64"):
        nb.layer_swap(G, G, resolutions=(64,))
    with pytest.raises(UserError, match="one architecture"):
        nb.layer_swap(G, make_tiny_generator(size=16), resolutions=(8,))


# -- model distance -----------------------------------------------------------------------------------

def test_model_distance_zero_symmetric_seeded():
    G_a, G_b = make_tiny_generator(seed=0), make_tiny_generator(seed=1)
    kw = dict(n=6, batch_size=4, progress=False)
    assert nb.model_distance(G_a, G_a, **kw) == 0.0
    d_ab = nb.model_distance(G_a, G_b, **kw)
    assert d_ab > 0.01 and d_ab == nb.model_distance(G_b, G_a, **kw) == nb.model_distance(G_a, G_b, **kw)
    assert nb.model_distance(G_a, G_b, seed=1, **kw) != d_ab
    # the table: the same numbers, symmetric, zero diagonal, diversity of each generator
    res = nb.model_distances({"a": G_a, "b": G_b}, **kw)
    assert res["distance"]["a"] == {"a": 0.0, "b": d_ab} and res["distance"]["b"]["a"] == d_ab
    assert res["diversity"]["a"] > 0
    imgs = nb.sample_images(G_a, _z(4))
    assert nb.lpips_diversity(torch.cat([imgs[:1]] * 4)) == 0.0
    for bad, arg in (({"n": 0}, "n"), ({"net": "resnet"}, "net"), ({"seed": -1}, "seed")):
        with pytest.raises(UserError, match=f"^{arg}:"):
            nb.model_distance(G_a, G_b, **{**kw, **bad})
    with pytest.raises(UserError, match="G_b"):
        nb.model_distance(G_a, make_tiny_generator(size=16), **kw)
