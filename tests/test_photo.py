"""Inversion (core.projector.project) and the own-image path (core.photo, ``python -m ddsutils.dds photo``):
the loss goes down, runs are seeded and per-image independent, masks limit the loss, bad inputs fail early, and a
real photograph (matplotlib's sample ``grace_hopper.jpg``) goes end to end through a random-weight 256 px pair of
generators into a complete run folder. Quality is measured in docs/inversion.md, not here."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import make_tiny_generator

from ddsutils.core import photo as photolib
from ddsutils.core.errors import UserError
from ddsutils.core.projector import noise_regularisation, project

pytestmark = pytest.mark.usefixtures("one_thread")

lpips = pytest.importorskip("lpips")


@pytest.fixture(scope="module")
def rand_lpips():
    """LPIPS with a seeded random AlexNet trunk and heads (no weights, no download)."""
    import warnings

    torch.manual_seed(0)
    with warnings.catch_warnings():  # torchvision's notes about lpips' `pretrained=False` call
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torchvision\..*")
        model = lpips.LPIPS(pretrained=False, net="alex", pnet_rand=True, verbose=False)
    for lin in model.lins:
        lin.model[-1].weight.data.uniform_(0.1, 1.0)
    return model.eval().requires_grad_(False)


@pytest.fixture(scope="module")
def G():
    return make_tiny_generator(size=32, seed=3)


def _target(G, seed=1, n=2):
    with torch.no_grad():
        return G(torch.randn(n, G.style_dim, generator=torch.Generator().manual_seed(seed))).clamp(-1, 1)


def test_project_reduces_the_loss_and_is_seeded(G, rand_lpips):
    x = _target(G)
    r = project(G, x, num_steps=30, lr=0.05, lpips_net=rand_lpips, progress=False)
    assert r.latent.shape == (2, G.n_latent, G.style_dim) and r.image.shape == x.shape
    assert r.history["total"].shape == (30, 2)
    assert (r.history["total"][-1] < 0.5 * r.history["total"][0]).all()
    again = project(G, x, num_steps=30, lr=0.05, lpips_net=rand_lpips, progress=False)
    assert torch.equal(r.latent, again.latent) and torch.equal(r.image, again.image)
    torch.testing.assert_close(r.image, G.synthesis(r.w_plus).clamp(-1, 1))


def test_project_images_are_independent_of_the_batch(G, rand_lpips):
    x = _target(G, n=3)
    both = project(G, x, num_steps=10, lpips_net=rand_lpips, progress=False)
    one = project(G, x[1:2], num_steps=10, lpips_net=rand_lpips, progress=False)
    torch.testing.assert_close(both.latent[1:2], one.latent, rtol=1e-4, atol=1e-5)


def test_project_w_space_and_given_start(G, rand_lpips):
    x = _target(G)
    r = project(G, x, num_steps=3, latent_space="w", lpips_net=rand_lpips, progress=False)
    assert r.latent.shape == (2, G.style_dim)
    assert torch.equal(r.w_plus, r.latent[:, None].expand(-1, G.n_latent, -1))
    start = torch.randn(2, G.n_latent, G.style_dim)
    r0 = project(G, x, num_steps=0, init=start, lpips_net=rand_lpips, progress=False)
    assert torch.equal(r0.latent, start) and r0.history["total"].shape == (0, 2)


def test_best_of_start_is_the_best_candidate(G, rand_lpips):
    x = _target(G, n=1)
    r = project(G, x, num_steps=0, init="best_of", init_samples=6, seed=3, lpips_net=rand_lpips, progress=False)
    z = torch.randn(6, G.style_dim, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        cands = G.synthesis(G.mapping(z)[:, None].expand(-1, G.n_latent, -1))
        d = rand_lpips(cands, x.expand(6, -1, -1, -1)).flatten()
    assert int(d.argmin()) not in (0, 5)  # neither the first nor the last candidate: the choice is tested
    picked = G.mapping(z)[int(d.argmin())]
    torch.testing.assert_close(r.latent[0, 0], picked)


def test_mask_limits_the_loss_to_the_region(G, rand_lpips):
    x = _target(G, n=1)
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., 8:24, 8:24] = 1
    y = x.clone()
    y[..., :4, :] = -1.0  # changed only outside the region
    a = project(G, x, num_steps=5, mask=mask, lpips_net=rand_lpips, progress=False)
    b = project(G, y, num_steps=5, mask=mask, lpips_net=rand_lpips, progress=False)
    assert torch.equal(a.latent, b.latent)
    c = project(G, y, num_steps=5, lpips_net=rand_lpips, progress=False)
    assert not torch.equal(a.latent, c.latent)


def test_noise_optimisation_keeps_maps_standardised(G, rand_lpips):
    r = project(G, _target(G), num_steps=3, optimise_noise=True, lpips_net=rand_lpips, progress=False)
    assert "noise_reg" in r.history and len(r.noise) == G.num_layers
    for m in r.noise:
        torch.testing.assert_close(m.mean(dim=(1, 2, 3)), torch.zeros(2), atol=1e-5, rtol=0)
        torch.testing.assert_close(m.square().mean(dim=(1, 2, 3)), torch.ones(2), atol=1e-4, rtol=0)
    white = [torch.randn(1, 1, 16, 16, generator=torch.Generator().manual_seed(0))]
    smooth = [torch.ones(1, 1, 16, 16)]
    assert float(noise_regularisation(smooth)) > 100 * float(noise_regularisation(white))


@pytest.mark.parametrize("kwargs, match", [
    (dict(target=torch.zeros(1, 3, 16, 16)), "is 16x16 px but the generator makes 32 px"),
    (dict(target=torch.full((1, 3, 32, 32), 200.0)), "looks like 0..255"),
    (dict(target=torch.full((1, 3, 32, 32), float("nan"))), "NaN"),
    (dict(target="img.png"), "must be a torch.Tensor"),
    (dict(mask=torch.zeros(1, 1, 32, 32)), "is empty"),
    (dict(mask=torch.ones(1, 1, 16, 16)), "mask"),
    (dict(latent_space="z"), "must be one of"),
    (dict(init="zeros"), "must be one of"),
    (dict(init=torch.zeros(2, 5)), "starting latent"),
    (dict(num_steps=-1), "num_steps"),
    (dict(lr=0), "lr"),
])
def test_project_bad_inputs_fail_before_work(G, kwargs, match, monkeypatch):
    import ddsutils.core.backbones as B

    monkeypatch.setattr(B, "lpips_model", lambda *a, **k: pytest.fail("built LPIPS before checking the inputs"))
    args = dict(target=torch.zeros(1, 3, 32, 32), num_steps=2, progress=False)
    args.update(kwargs)
    with pytest.raises(UserError, match=match):
        project(G, **args)


# -- photos --------------------------------------------------------------------------------------------------


def _hopper() -> Path:
    import matplotlib.cbook

    return Path(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))


def test_load_photo_crops_resizes_and_says_so(tmp_path):
    p = photolib.load_photo(_hopper(), size=64)
    assert p.image.shape == (1, 3, 64, 64) and p.original.shape == (1, 3, 512, 512)
    assert any("centre-cropped 512x600" in n for n in p.notes) and any("resized 512 px" in n for n in p.notes)
    assert -1 <= float(p.image.min()) and float(p.image.max()) <= 1
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(UserError, match="is not an image"):
        photolib.load_photo(tmp_path / "notes.txt", size=64)
    with pytest.raises(UserError, match="no such file"):
        photolib.load_photo(tmp_path / "missing.png", size=64)
    from PIL import Image

    Image.new("RGBA", (40, 40), (255, 0, 0, 0)).save(tmp_path / "clear.png")
    q = photolib.load_photo(tmp_path / "clear.png", size=40)
    assert q.notes == ["dropped the alpha channel (transparent pixels shown on white)"]
    assert torch.equal(q.image, torch.ones(1, 3, 40, 40))


def test_paste_back_changes_only_the_region():
    original = torch.rand(1, 3, 128, 128) * 2 - 1
    image = torch.full((1, 3, 32, 32), 0.5)
    region = torch.zeros(1, 1, 32, 32)
    region[..., 12:20, 12:20] = 1
    out = photolib.paste_back(original, image, region, dilation=0)
    assert out.shape == original.shape
    assert torch.allclose(out[..., 56:72, 56:72], torch.full((1, 3, 16, 16), 0.5), atol=0.02)
    assert torch.equal(out[..., :20, :], original[..., :20, :])  # far from the region: untouched
    assert torch.equal(photolib.paste_back(original, image, torch.zeros(1, 1, 32, 32)), original)


def test_translate_photo_blends_the_other_domain_under_the_mask(rand_lpips):
    G_a, G_b = make_tiny_generator(size=32, seed=3), make_tiny_generator(size=32, seed=4)
    x = _target(G_a, n=1)
    region = torch.zeros(1, 1, 32, 32)
    region[..., 10:22, 10:22] = 1
    r = photolib.translate_photo(x, G_a, G_b, masks=region, num_steps=3, dilation=0, lpips_net=rand_lpips,
                                 progress=False)
    assert torch.equal(r.pair, G_b.synthesis(r.projection.w_plus).clamp(-1, 1))
    assert torch.equal(r.mask_photo, region) and torch.equal(r.mask_pair, region)
    # outside the (blurred-by-upsampling) region the blend is the reconstruction, not the pair
    assert torch.allclose(r.dds[..., :4, :], r.reconstruction[..., :4, :], atol=1e-5)
    assert not torch.allclose(r.dds[..., 14:18, 14:18], r.reconstruction[..., 14:18, 14:18], atol=1e-3)
    with pytest.raises(UserError, match="is empty"):
        photolib.translate_photo(x, G_a, G_b, masks=torch.zeros(1, 1, 32, 32), num_steps=1, progress=False)
    with pytest.raises(UserError, match="one shared latent space"):
        photolib.translate_photo(x, G_a, make_tiny_generator(size=64), masks=region, num_steps=1, progress=False)


# -- the CLI, end to end on a real photograph with random-weight 256 px generators ---------------------------


@pytest.fixture(scope="module")
def gens256(tmp_path_factory):
    d = tmp_path_factory.mktemp("g256")
    for name, seed in (("a", 1), ("b", 2)):
        torch.save({"g_ema": make_tiny_generator(size=256, seed=seed, channel_max=8).state_dict()}, d / f"{name}.pt")
    return d


def _photo_cli(argv, monkeypatch, rand_lpips):
    import ddsutils.core.backbones as B
    from ddsutils import dds

    monkeypatch.setattr(B, "lpips_model", lambda *a, **k: rand_lpips)
    return dds.main(argv)


def test_photo_cli_real_photograph_end_to_end(gens256, tmp_path, monkeypatch, rand_lpips, capsys):
    from PIL import Image

    mask = Image.new("L", (256, 256), 0)
    mask.paste(255, (96, 96, 160, 160))
    mask.save(tmp_path / "mask.png")
    out = tmp_path / "run"
    rc = _photo_cli(["photo", "--image", str(_hopper()), "--domain", str(gens256 / "a.pt"), "--other",
                     str(gens256 / "b.pt"), "--mask-png", str(tmp_path / "mask.png"), "--steps", "2", "--out",
                     str(out), "--device", "cpu"], monkeypatch, rand_lpips)
    assert rc == 0
    files = {"input.png", "photo.png", "reconstruction.png", "pair.png", "mask_photo.png", "mask_pair.png",
             "dds.png", "result.png", "strip.png", "result.pt", "record.json"}
    assert {p.name for p in out.iterdir()} == files
    assert Image.open(out / "result.png").size == (512, 512) and Image.open(out / "photo.png").size == (256, 256)
    record = json.loads((out / "record.json").read_text())
    assert any("centre-cropped" in n for n in record["photo"]["notes"])
    err = capsys.readouterr().err
    assert "centre-cropped 512x600" in err and "inverting the photo" in err
    assert torch.load(out / "result.pt", weights_only=True)["w_plus"].shape[1:] == (14, 32)


def _photo_args(tmp_path, gens, *extra):
    return ["photo", "--domain", str(gens / "a.pt"), "--other", str(gens / "b.pt"), "--out", str(tmp_path / "o"),
            "--steps", "1", *extra]


@pytest.mark.parametrize("extra, match", [
    (["--image", "{tmp}/notes.txt", "--mask-png", "{tmp}/m.png"], "is not an image"),
    (["--image", "{tmp}/none.png", "--mask-png", "{tmp}/m.png"], "no such file"),
    (["--image", "{hopper}"], "give exactly one mask source"),
    (["--image", "{hopper}", "--mask", "hair", "--mask-png", "{tmp}/m.png"], "give exactly one mask source"),
    (["--image", "{hopper}", "--mask", "ears"], "toy-world mask"),
    (["--image", "{hopper}", "--mask-png", "{tmp}/blank.png"], "is empty"),
    (["--render", "3", "--mask", "hair"], "must be a toy style"),
])
def test_photo_cli_bad_inputs(extra, match, gens256, tmp_path, capsys):
    from PIL import Image

    from ddsutils import dds

    (tmp_path / "notes.txt").write_text("hello")
    Image.new("L", (256, 256), 255).save(tmp_path / "m.png")
    Image.new("L", (256, 256), 0).save(tmp_path / "blank.png")
    args = [a.format(tmp=tmp_path, hopper=_hopper()) for a in extra]
    assert dds.main(_photo_args(tmp_path, gens256, *args)) == 2
    assert match in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_photo_cli_same_domain_twice(gens256, tmp_path, capsys):
    from ddsutils import dds

    argv = ["photo", "--render", "1", "--domain", "natural", "--other", "natural", "--mask", "hair", "--out",
            str(tmp_path / "o")]
    assert dds.main(argv) == 2
    assert "is the photo's own domain" in capsys.readouterr().err


def test_photo_cli_toy_render_writes_the_true_pair(tmp_path, monkeypatch, rand_lpips):
    from PIL import Image

    from ddsutils.toy import toyworld as tw

    out = tmp_path / "run"
    argv = ["photo", "--render", "7", "--domain", "natural", "--other", "caricature", "--mask", "hair", "--steps",
            "1", "--out", str(out), "--device", "cpu", "--quiet"]
    assert _photo_cli(argv, monkeypatch, rand_lpips) == 0
    assert (out / "truth.png").is_file() and Image.open(out / "result.png").size == (64, 64)
    truth = tw.render(tw.sample_identities(1, seed=7), style="caricature", size=64)[0]
    got = torch.tensor(__import__("numpy").array(Image.open(out / "truth.png"))).permute(2, 0, 1).float()
    assert (got - (truth[0] + 1) * 127.5).abs().max() <= 1.0  # the same identity in the other style
    record = json.loads((out / "record.json").read_text())
    assert record["generators"] == ["toy-natural-64", "toy-caricature-64"]
    assert record["photo"]["source"] == "toy render: identity seed 7, style natural"
