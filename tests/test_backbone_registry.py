"""The backbone registry (ddsutils.core.backbones.register_backbone): the built-ins are registered through it, a
backbone added with one call runs DDS in paper and release mode, and every check reads the registry."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import make_tiny_generator
from ddsutils.core import backbones, cli, dds

pytestmark = pytest.mark.usefixtures("one_thread")
S = 32
BUILTINS = ("vgg16", "alexnet", "squeezenet1_1", "resnet18", "lpips-alex", "lpips-vgg", "generator")


class TinyFeatures(nn.Module):
    """A seeded two-layer conv net returning a dict of features, counting its calls."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(11)
        self.c1 = nn.Conv2d(3, 4, 3, padding=1)
        self.c2 = nn.Conv2d(4, 6, 3, stride=2, padding=1)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
        self.requires_grad_(False)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        self.calls += 1
        a = F.relu(self.c1(x))
        return {"a": a, "b": F.relu(self.c2(a))}


@pytest.fixture
def dummy():
    """``"dummy"`` registered for one test: ``(the network, the keywords each build got)``."""
    net, built = TinyFeatures(), []

    def build(**kw):
        built.append(kw)
        return net

    backbones.register_backbone("dummy", build=build, layers={"paper": ("a", "b"), "release": ("a", "b")},
                                description="a tiny test network")
    yield net, built
    backbones.unregister_backbone("dummy")
    assert "dummy" not in backbones.names()


@pytest.fixture(scope="module")
def gens():
    return make_tiny_generator(size=S, seed=0), make_tiny_generator(size=S, seed=1)


def _inputs(n: int = 2):
    z = torch.randn(n, 32, generator=torch.Generator().manual_seed(4))
    y_s, y_t = torch.zeros(n, 1, S, S), torch.zeros(n, 1, S, S)
    y_s[..., 6:20, 8:22] = 1
    y_t[..., 10:26, 4:18] = 1
    return dict(z_star=z, y_s=y_s, y_t=y_t)


def _run(gens, **kw):
    return dds.optimise(*gens, **_inputs(), num_steps=3, snapshot_every=None, n_mean_latent=64, device="cpu",
                        progress=False, **kw)


def test_builtins_are_registered_through_the_registry():
    assert backbones.names() == BUILTINS
    specs = {n: backbones.get_backbone(n) for n in BUILTINS}
    assert all(isinstance(s, backbones.BackboneSpec) for s in specs.values())
    assert [n for n, s in specs.items() if s.uses_generator_features] == ["generator"]
    assert specs["vgg16"].weights == ("vgg16-imagenet",) and specs["vgg16"].default_layers == "release"
    assert specs["lpips-alex"].weights == ("alexnet-imagenet", "lpips-alex-v0.1")
    assert not specs["lpips-alex"].weights_option and specs["resnet18"].weights_option
    assert dds.make_feature_extractor("generator") is None
    # the earlier module constants are views of the registry
    assert backbones.BACKBONES == {"vgg16": "vgg16-imagenet", "alexnet": "alexnet-imagenet",
                                   "squeezenet1_1": "squeezenet1_1-imagenet", "resnet18": "resnet18-imagenet"}
    assert backbones.LAYER_SETS["vgg16"]["paper"] == ("conv1_1", "conv1_2", "conv2_2", "conv3_3")
    assert dds.BACKBONE_NAMES == BUILTINS


@pytest.mark.parametrize("mode", ["paper", "release"])
def test_a_registered_backbone_runs_dds(gens, dummy, mode):
    net, built = dummy
    r = _run(gens, mode=mode, backbone="dummy")
    assert r.config["backbone"] == "dummy" and r.config["mode"] == mode
    assert net.calls > 0
    layers, normalize = ("paper", "imagenet") if mode == "paper" else ("release", "none")
    assert built == [dict(layers=layers, weights="imagenet", normalize=normalize, resize=None,
                          device=torch.device("cpu"))]
    assert torch.isfinite(r.history["total"]).all() and r.history["total"].shape == (3, 2)
    # the registry's network is the one in the loss: the same run with the module itself is identical
    same = _run(gens, mode=mode, backbone=net)
    for k, v in r.history.items():
        assert torch.equal(v, same.history[k]), k
    assert torch.equal(r.image, same.image)
    assert dds._backbone_weight_files("dummy") == []  # no manifest weights to resolve


def test_unknown_backbone_error_lists_the_registered_names(gens, dummy, tmp_path, capsys):
    listed = "choose one of: " + ", ".join([*BUILTINS, "dummy"])
    for call in (lambda: _run(gens, backbone="dumy"), lambda: backbones.get_backbone("dumy"),
                 lambda: dds.make_feature_extractor("dumy")):
        with pytest.raises(cli.UserError) as info:
            call()
        assert "backbone: dumy: unknown backbone (did you mean dummy?)" in str(info.value)
        assert listed in str(info.value)
    from ddsutils import dds as dds_cli
    from ddsutils.lab import experiments

    with pytest.raises(cli.UserError, match=r"did you mean dummy\?\); " + listed):
        experiments.Context("ci", backbones=["dumy"])
    with pytest.raises(SystemExit):
        dds_cli.main(["run", "--source", "a", "--target", "b", "--out", str(tmp_path / "o"), "--backbone", "dumy"])
    assert listed in capsys.readouterr().err


def test_registered_backbone_is_checked_like_the_builtins(gens, dummy):
    with pytest.raises(cli.UserError, match="backbone_weights: /nonexistent.pth: no such state-dict file"):
        _run(gens, backbone="dummy", backbone_weights="/nonexistent.pth")
    backbones.register_backbone("own-features", build=None)  # a second "use the generators' features" entry
    try:
        with pytest.raises(cli.UserError, match="backbone: own-features: works in the paper mode only"):
            _run(gens, mode="release", backbone="own-features")
    finally:
        backbones.unregister_backbone("own-features")


def test_register_backbone_refuses_bad_specs(dummy):
    with pytest.raises(ValueError, match="already registered"):
        backbones.register_backbone("dummy", build=lambda **kw: None)
    with pytest.raises(ValueError, match="default_layers 'x' is not one of the layer sets"):
        backbones.register_backbone("d2", build=lambda **kw: None, layers={"paper": ("a",)}, default_layers="x")
    with pytest.raises(ValueError, match=r"layer set 'paper' is empty or names unknown layers \['relu9'\]"):
        backbones.register_backbone("d3", build=lambda **kw: None, layers={"paper": ("relu9",)}, taps={"relu1": 1})
    with pytest.raises(ValueError, match="build must be callable"):
        backbones.register_backbone("d4", build="vgg16")
    assert backbones.names() == (*BUILTINS, "dummy")  # nothing half-registered
    spec = backbones.register_backbone("dummy", build=lambda **kw: None, replace=True)
    assert backbones.get_backbone("dummy") is spec
