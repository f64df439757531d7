"""Several processes, one result: ``torchrun --nproc_per_node=2`` (gloo, CPU) against one process.

The sharded runs launch ``python -m torch.distributed.run --standalone --nproc_per_node=2`` (what users type as
``torchrun``) in the repository root, so a copy of the repository tests itself. The two runs agree up to float
summation order (the generators' batched convolutions sum in another order for another batch size): the
tolerances below are about a hundred times what was measured, and a broken seed or block order misses them by
orders of magnitude.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import make_tiny_generator
from ddsutils import dds as dds_cli
from ddsutils.core import dds, distributed
from ddsutils.core.errors import UserError

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.filterwarnings("ignore:y_[st] (is empty|covers)")]

ROOT = Path(__file__).resolve().parents[1]
S = 32


def _torchrun(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node=2 -m <args>`` in the repository root, one thread per process."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    env.pop("WORLD_SIZE", None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", *args]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


# -- shard, the single-process case, the checks ------------------------------------------------------------


@pytest.mark.parametrize("world_size", [1, 2, 3, 5])
@pytest.mark.parametrize("n", [0, 1, 2, 4, 7, 11])
def test_shard_covers_every_index_once_and_gathers_back_in_order(n, world_size):
    blocks = [distributed.shard(n, distributed.DistContext(rank=r, world_size=world_size))
              for r in range(world_size)]
    flat = [i for b in blocks for i in range(n)[b]]
    assert flat == list(range(n))  # every index once, rank order = index order
    sizes = [len(range(n)[b]) for b in blocks]
    assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)


def test_one_process_needs_no_torch_distributed(monkeypatch):
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    ctx = distributed.init("cpu")
    assert (ctx.rank, ctx.world_size, ctx.backend, ctx.device) == (0, 1, None, torch.device("cpu"))
    assert not torch.distributed.is_initialized()
    assert distributed.is_main(ctx) and distributed.gather({"a": 1}, ctx) == [{"a": 1}]
    assert distributed.broadcast(3, ctx) == 3 and distributed.on_main(lambda: 4, ctx) == 4
    assert distributed.shard(5, ctx) == slice(0, 5)
    distributed.barrier(ctx)
    distributed.cleanup(ctx)


def test_one_process_optimise_is_dds_optimise():
    G_s, G_t = make_tiny_generator(seed=0), make_tiny_generator(seed=1)
    z = torch.randn(3, 32, generator=torch.Generator().manual_seed(0))
    y = torch.zeros(3, 1, S, S)
    y[..., 8:20, 8:24] = 1
    kw = dict(z_star=z, y_s=y, y_t=y, num_steps=2, backbone="generator", seed=5, device="cpu", progress=False)
    a = dds.optimise(G_s, G_t, **kw)
    b = distributed.optimise(G_s, G_t, distributed.SINGLE, **kw)
    assert torch.equal(a.image, b.image) and torch.equal(a.latent, b.latent) and a.config == b.config


@pytest.mark.parametrize("env, argument", [({"WORLD_SIZE": "two"}, "WORLD_SIZE"),
                                           ({"WORLD_SIZE": "2", "RANK": "2"}, "RANK"),
                                           ({"WORLD_SIZE": "2"}, "RANK")])
def test_init_rejects_a_bad_torchrun_environment(monkeypatch, env, argument):
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(UserError) as info:
        distributed.init("cpu")
    assert info.value.argument == argument
    assert not torch.distributed.is_initialized()


def test_sharded_optimise_checks_batches_and_seeds_before_any_work(monkeypatch):
    def no_work(*a, **k):
        raise AssertionError("optimised before checking")

    monkeypatch.setattr(dds, "optimise", no_work)
    ctx = distributed.DistContext(rank=1, world_size=2)  # no process group: the checks come first
    z, y = torch.randn(4, 32), torch.ones(3, 1, S, S)
    with pytest.raises(UserError, match="y_s: has batch 3 but z_star has 4"):
        distributed.optimise(None, None, ctx, z_star=z, y_s=y, y_t=torch.ones(4, 1, S, S))
    with pytest.raises(UserError, match="seed: .*has 2 seeds for 4 samples"):
        distributed.optimise(None, None, ctx, z_star=z, y_s=y[:1].expand(4, -1, -1, -1),
                             y_t=y[:1].expand(4, -1, -1, -1), seed=[1, 2])


# -- two gloo processes against one --------------------------------------------------------------------------


def _max_diff(a, b, path: str = "") -> float:
    """Largest difference between two JSON values / tensors of the same structure, relative for magnitudes above 1
    (``|a - b| / max(1, |a|)``); other values must be equal."""
    if isinstance(a, dict):
        assert set(a) == set(b), path
        return max([_max_diff(a[k], b[k], f"{path}/{k}") for k in a], default=0.0)
    if isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        return max([_max_diff(x, y, f"{path}[{i}]") for i, (x, y) in enumerate(zip(a, b))], default=0.0)
    if isinstance(a, torch.Tensor):
        assert a.shape == b.shape and a.dtype == b.dtype, path
        a, b = a.double(), b.double()
        return float(((a - b).abs() / a.abs().clamp(min=1)).max()) if a.numel() else 0.0
    if isinstance(a, float) and isinstance(b, float):
        return 0.0 if (math.isnan(a) and math.isnan(b)) else abs(a - b) / max(1.0, abs(a))
    assert a == b, f"{path}: {a!r} != {b!r}"
    return 0.0


def test_evaluate_json_of_two_gloo_ranks_equals_one_process(tmp_path, capsys):
    args = ["evaluate", "--n", "4", "--steps", "2", "--modes", "blend", "paper", "--fd-n", "0", "--ceiling-n", "0",
            "--pairs", "caricature:natural", "--masks", "hair", "--quiet"]
    assert dds_cli.main([*args, "--json", str(tmp_path / "one.json")]) == 0
    proc = _torchrun("ddsutils.dds", "--", *args, "--json", str(tmp_path / "two.json"))
    assert proc.stdout.count("| caricature → natural | hair | dds-paper |") == 1  # rank 0 alone prints
    one, two = (json.loads((tmp_path / f"{k}.json").read_text()) for k in ("one", "two"))
    for res in (one, two):
        for row in res["rows"]:
            row.pop("seconds")  # wall time
    assert one["config"] == two["config"]
    assert _max_diff(one, two) < 1e-4  # measured 2.4e-7 (float summation order); a wrong seed: > 1e-2


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory):
    """Two tiny generators as checkpoints and a segmenter saved for the source one (part 'box')."""
    from ddsutils.core import segmenter

    d = tmp_path_factory.mktemp("tiny")
    gens = make_tiny_generator(seed=0), make_tiny_generator(seed=1)
    for name, G in zip(("gs", "gt"), gens):
        torch.save({"g_ema": G.state_dict()}, d / f"{name}.pt")
    label = torch.zeros(1, 1, S, S)
    label[:, :, 8:20, 8:24] = 1
    seg = segmenter.train_segmenter(gens[0], torch.randn(1, 32, generator=torch.Generator().manual_seed(0)), label,
                                    part="box", steps=5, progress=False)
    segmenter.save_segmenter(seg, d / "seg.pt")
    return d


def test_run_folder_of_two_gloo_ranks_equals_one_process(tiny_files, tmp_path):
    """Paper mode on 5 latents (blocks of 3 and 2), each from its own seeded random start."""
    d = tiny_files
    args = ["run", "--source", str(d / "gs.pt"), "--target", str(d / "gt.pt"), "--segmenter", str(d / "seg.pt"),
            "--n", "5", "--steps", "3", "--snapshot-every", "2", "--seed", "7", "--backbone", "generator",
            "--device", "cpu", "--quiet"]
    assert dds_cli.main([*args, "--out", str(tmp_path / "one")]) == 0
    _torchrun("ddsutils.dds", "--", *args, "--out", str(tmp_path / "two"))
    assert sorted(os.listdir(tmp_path)) == ["one", "two"]  # rank 1 wrote nothing beside
    assert sorted(os.listdir(tmp_path / "one")) == sorted(os.listdir(tmp_path / "two"))
    one, two = (torch.load(tmp_path / k / "result.pt", weights_only=True) for k in ("one", "two"))
    assert one["config"]["seeds"] == two["config"]["seeds"] == [7, 8, 9, 10, 11]
    assert _max_diff({k: v for k, v in one.items() if k != "timings"},
                     {k: v for k, v in two.items() if k != "timings"}) < 1e-4  # measured: see the module docstring
    for k in ("z_star", "y_s", "y_t"):  # drawn once, on rank 0
        assert torch.equal(one[k], two[k]), k


def test_table1_of_two_gloo_ranks_equals_one_process(tmp_path):
    """Table 1 (ci profile) through ``python -m ddsutils.experiments``, in release mode: its noise maps are shared
    over the batch (the first seed's), so the second block runs the first latent in front of its own.

    Adam's first steps move every latent coordinate by about ``lr`` whatever the gradient's size, so a coordinate
    whose gradient is float noise may step the other way: one image moves by 0.011 here. The losses of the first
    step, before any Adam step, tell the noise maps apart."""
    from ddsutils.lab import experiments

    args = ["table1", "--profile", "ci", "--n", "3", "--num-steps", "2", "--modes", "release", "--quiet"]
    assert experiments.main([*args, "--out", str(tmp_path / "one"), "--cache", str(tmp_path / "c1")]) == 0
    _torchrun("ddsutils.experiments", "--", *args, "--out", str(tmp_path / "two"), "--cache", str(tmp_path / "c2"))
    [c1], [c2] = (list((tmp_path / c).iterdir()) for c in ("c1", "c2"))
    assert c1.name == c2.name  # the same cache key
    r1, r2 = (torch.load(c, weights_only=True) for c in (c1, c2))
    assert r1["config"] == r2["config"]
    # the first step's losses see the noise maps before Adam: measured 6e-8 (another block's noise: 2.5e-3)
    assert _max_diff({k: v[0] for k, v in r1["history"].items()}, {k: v[0] for k, v in r2["history"].items()}) < 1e-5
    assert _max_diff(r1["image"], r2["image"]) < 0.05  # measured 0.011 (another block's noise: 0.06)
    one, two = (json.loads((tmp_path / k / "table1.json").read_text()) for k in ("one", "two"))
    assert _max_diff(one["rows"], two["rows"]) < 1e-2 and one["claims"] == two["claims"]  # measured 2.1e-4
