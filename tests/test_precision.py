"""Precision of the optimisers (core.precision): bf16 autocast changes the forward passes but not the latent's
dtype, stays close to fp32 on a tiny problem, and a bad or unavailable precision is refused before any work.
Its effect on toy-world results and speed is measured in docs/speed.md, not here."""
from __future__ import annotations

import pytest
import torch
from conftest import make_tiny_generator
from test_dds_modes import S, _TinyNet, _two_masks

from ddsutils.core import dds
from ddsutils.core.errors import UserError
from ddsutils.core.precision import check_precision, precision_context

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def gens():
    return make_tiny_generator(size=S, seed=0), make_tiny_generator(size=S, seed=1)


def _paper(gens, precision, steps=5):
    y_s, y_t = _two_masks(2)
    z = torch.randn(2, gens[0].style_dim, generator=torch.Generator().manual_seed(4))
    return dds.optimise(*gens, z_star=z, y_s=y_s, y_t=y_t, mode="paper", backbone=_TinyNet(), num_steps=steps,
                        lr=0.05, snapshot_every=None, precision=precision, device="cpu", progress=False)


def test_bf16_runs_the_forward_passes_in_bfloat16_and_keeps_the_latent_fp32(gens):
    seen = []
    hook = gens[1].convs[0].conv.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    try:
        fp32, bf16 = _paper(gens, "fp32"), _paper(gens, "bf16")
    finally:
        hook.remove()
    assert torch.float32 in seen and torch.bfloat16 in seen
    assert bf16.latent.dtype == torch.float32 and bf16.history["total"].dtype == torch.float32
    assert not torch.equal(fp32.latent, bf16.latent)  # the setting does something
    rel = (fp32.latent - bf16.latent).norm() / fp32.latent.norm()
    assert rel < 0.05, rel
    assert bf16.config["precision"] == "bf16" and fp32.config["precision"] == "fp32"


def test_fp32_is_unchanged_by_the_context(gens):
    a, b = _paper(gens, "fp32"), _paper(gens, "fp32")
    assert torch.equal(a.latent, b.latent) and torch.equal(a.image, b.image)


@pytest.mark.parametrize("precision, match", [("fp16", "must be one of fp32, bf16, tf32"),
                                              ("tf32", "TF32 is a CUDA math mode")])
def test_bad_precision_is_refused_before_work(gens, precision, match):
    with pytest.raises(UserError, match=match):
        _paper(gens, precision)
    with pytest.raises(UserError, match=match):
        check_precision(precision, torch.device("cpu"))


def test_context_restores_tf32_flags():
    before = torch.backends.cuda.matmul.allow_tf32
    with precision_context("fp32", torch.device("cpu")):
        pass
    assert torch.backends.cuda.matmul.allow_tf32 == before


# -- torch.compile (precision.compiled, optimise(compile=True)) -------------------------------------------


def _graph_breaks(fn, *args) -> int:
    import torch._dynamo

    torch._dynamo.reset()
    return torch._dynamo.explain(fn)(*args).graph_break_count


def test_the_generator_traces_without_a_host_sync_when_the_check_is_off(gens):
    G = gens[0]
    w = torch.randn(2, G.n_latent, G.style_dim, generator=torch.Generator().manual_seed(0))
    # the finiteness check reads the latent on the host: a graph break for torch.compile, a sync per step eagerly
    assert _graph_breaks(lambda x: G(x, input_space="w+", check_finite=True), w) == 1
    assert _graph_breaks(lambda x: G(x, input_space="w+", check_finite=False), w) == 0
    assert torch.equal(G(w, input_space="w+"), G(w, input_space="w+", check_finite=False))


@pytest.mark.parametrize("mode", ["paper", "release"])
def test_compile_runs_every_step_through_one_graph(gens, mode, monkeypatch):
    import torch._dynamo
    from torch._dynamo.utils import counters

    # the "eager" backend traces like Inductor (same graph breaks) without building kernels: fast enough for make test
    real = torch.compile
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: real(fn, backend="eager", **kw))
    torch._dynamo.reset()
    counters.clear()
    y_s, y_t = _two_masks(2)
    z = torch.randn(2, gens[0].style_dim, generator=torch.Generator().manual_seed(4))
    kw = dict(z_star=z, y_s=y_s, y_t=y_t, mode=mode, backbone=_TinyNet(), num_steps=3, lr=0.05,
              snapshot_every=None, device="cpu", progress=False, n_mean_latent=64)
    eager, comp = dds.optimise(*gens, **kw), dds.optimise(*gens, compile=True, **kw)
    assert counters["stats"]["unique_graphs"] >= 1  # the step was traced
    assert sum(counters["graph_break"].values()) == 0, dict(counters["graph_break"])
    assert comp.config["compile"] is True and eager.config["compile"] is False
    assert torch.allclose(comp.latent, eager.latent, atol=1e-5), (comp.latent - eager.latent).abs().max()
    torch._dynamo.reset()


@pytest.mark.parametrize("value, env, match", [("yes", None, "must be True or False"),
                                               (True, "no-such-compiler-xyz", "needs a C\\+\\+ compiler")])
def test_bad_compile_is_refused_before_work(gens, value, env, match, monkeypatch):
    if env is not None:
        monkeypatch.setenv("CXX", env)
    called = []
    monkeypatch.setattr(torch, "compile", lambda *a, **k: called.append(1))
    y_s, y_t = _two_masks(2)
    z = torch.randn(2, gens[0].style_dim)
    with pytest.raises(UserError, match=match):
        dds.optimise(*gens, z_star=z, y_s=y_s, y_t=y_t, backbone=_TinyNet(), num_steps=2, compile=value,
                     device="cpu", progress=False)
    assert not called


@pytest.mark.slow
def test_inductor_compile_matches_eager(gens):
    import torch._dynamo

    torch._dynamo.reset()
    y_s, y_t = _two_masks(2)
    z = torch.randn(2, gens[0].style_dim, generator=torch.Generator().manual_seed(4))
    kw = dict(z_star=z, y_s=y_s, y_t=y_t, mode="release", backbone=_TinyNet(), num_steps=5, lr=0.05,
              snapshot_every=None, device="cpu", progress=False, n_mean_latent=64)
    eager, comp = dds.optimise(*gens, **kw), dds.optimise(*gens, compile=True, **kw)
    assert torch.allclose(comp.latent, eager.latent, atol=1e-4), (comp.latent - eager.latent).abs().max()
    assert torch.allclose(comp.image, eager.image, atol=1e-3)
