"""Tests for ddsutils.judges: the toy-world part parser and domain segmenter (fast, CPU only)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ddsutils.toy import judges as J
from ddsutils.toy import toyworld as tw
from ddsutils.core import weights as W

MICRO = (4, 8, 16)  # a few-thousand-parameter U-Net


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def test_ids() -> tw.Identity:
    return tw.sample_identities(64, seed=J.TEST_SEED)


def test_unet_forward_shapes_and_config() -> None:
    p = J.PartParser(channels=MICRO)
    d = J.DomainSegmenter(channels=MICRO)
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    assert p(x).shape == (2, len(tw.PARTS), 64, 64) and p(x).dtype == torch.float32
    assert d(x).shape == (2, len(tw.STYLES), 64, 64)
    assert p(torch.zeros(1, 3, 32, 48)).shape == (1, 7, 32, 48)
    assert p.config == {"kind": J.KIND_PARSER, "num_classes": 7, "channels": list(MICRO), "in_channels": 3, "size": 64}
    assert d.classes == tw.STYLES and p.classes == tw.PARTS
    default = J.PartParser()
    assert 300_000 < default.n_params() < 700_000  # about 2 MB of float32 weights
    with pytest.raises(ValueError, match="divisible"):
        p(torch.zeros(1, 3, 30, 30))
    with pytest.raises(ValueError, match=r"\[N, 3, H, W\]"):
        p(torch.zeros(1, 1, 64, 64))


def test_augment_keeps_labels_exact() -> None:
    img, lab = tw.render_batch(4, style="natural", seed=3)
    g = torch.Generator().manual_seed(0)
    a, la = J.augment(img, lab, generator=g, flip=1.0, jitter=0.0, blur=0.0, noise=0.0)
    assert torch.allclose(a, img.flip(-1), atol=1e-6) and torch.equal(la, lab.flip(-1))
    a1, l1 = J.augment(img, lab, generator=torch.Generator().manual_seed(5))
    a2, l2 = J.augment(img, lab, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a1, a2) and torch.equal(l1, l2)  # seeded
    assert a1.shape == img.shape and a1.dtype == torch.float32 and a1.min() >= -1 and a1.max() <= 1
    # every label map is the original or its mirror image
    for i in range(4):
        assert torch.equal(l1[i], lab[i]) or torch.equal(l1[i], lab[i].flip(-1))


def test_composite_from_renders_matches_toyworld() -> None:
    ids = tw.sample_identities(3, seed=J.TEST_SEED + 1)
    renders = {s: tw.render(ids, style=s) for s in tw.STYLES}
    assert len(J.COMPOSITE_CONFIGS) == 12
    for inside, outside, mask in (("caricature", "natural", "eyes_nose_mouth"), ("natural", "sketch", "hair")):
        ref = tw.composite(ids, inside_style=inside, outside_style=outside, mask=mask)
        got = J.composite_from_renders(renders, inside_style=inside, outside_style=outside, mask=mask)
        for r, x in zip(ref, got, strict=True):
            assert torch.equal(r, x)


def test_training_batches_are_seeded() -> None:
    img, lab = J.parser_batch(0, 7, 6)
    img2, lab2 = J.parser_batch(0, 7, 6)
    assert img.shape == (6, 3, 64, 64) and lab.shape == (6, 64, 64) and lab.dtype == torch.int64
    assert torch.equal(img, img2) and torch.equal(lab, lab2)
    assert not torch.equal(img, J.parser_batch(0, 8, 6)[0])
    dimg, smap = J.domain_batch(1, 3, 8)
    assert dimg.shape == (8, 3, 64, 64) and smap.shape == (8, 64, 64) and smap.dtype == torch.int64
    assert int(smap.max()) < len(tw.STYLES)
    assert torch.equal(smap, J.domain_batch(1, 3, 8)[1])
    # training seeds stay below the evaluation / test seeds
    assert J._train_seed(65535, 2**22 - 1, 3) < J.TRAIN_SEED_LIMIT <= J.EVAL_SEED < J.TEST_SEED
    with pytest.raises(ValueError):
        J._train_seed(2**16, 0, 0)


def test_few_steps_reduce_loss_and_are_deterministic() -> None:
    log: list[float] = []
    model = J.train_parser(steps=12, batch=4, lr=1e-2, channels=MICRO, progress=False, log=log)
    assert len(log) == 12
    assert sum(log[-3:]) / 3 < sum(log[:3]) / 3
    assert not model.training and model.train_args["steps"] == 12
    again = J.train_parser(steps=12, batch=4, lr=1e-2, channels=MICRO, progress=False)
    for (k, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    # the domain segmenter's fresh batches vary a lot: compare on one fixed held-out batch instead
    img, smap = J.domain_batch(7, 0, 12)

    def ce(m: J.TinyUNet) -> float:
        return float(torch.nn.functional.cross_entropy(J.predict_logits(m, img), smap))

    start = J.train_domain_segmenter(steps=1, batch=4, lr=1e-2, channels=MICRO, progress=False)
    trained = J.train_domain_segmenter(steps=16, batch=4, lr=1e-2, channels=MICRO, progress=False)
    assert ce(trained) < ce(start)


def test_save_load_round_trip_and_wrong_kind(tmp_path: Path) -> None:
    p = J.PartParser(channels=MICRO)
    with torch.no_grad():
        for prm in p.parameters():
            prm.normal_(0, 0.3, generator=torch.Generator().manual_seed(1))
    p.train_args = {"steps": 1, "note": "test"}
    path = J.save_judge(p, tmp_path / "p.pt")
    raw = torch.load(path, weights_only=True)
    assert {"state_dict", "config", "classes", "train_args"} <= set(raw)
    q = J.load_judge_file(path, kind="parser")
    assert isinstance(q, J.PartParser) and q.train_args == {"steps": 1, "note": "test"}
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    assert torch.equal(J.predict_logits(p.eval(), x), J.predict_logits(q, x))
    assert isinstance(J.load_judge(str(path)), J.PartParser)
    d_path = J.save_judge(J.DomainSegmenter(channels=MICRO), tmp_path / "d.pt", train_args={})
    with pytest.raises(J.JudgeKindError, match="domain-segmenter"):
        J.load_judge_file(d_path, kind=J.KIND_PARSER)
    with pytest.raises(J.JudgeKindError, match="part-parser"):
        J.load_judge(path, kind="domain")
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "plain.pt")
    with pytest.raises(J.JudgeError, match="not a ddsutils judge file"):
        J.load_judge_file(tmp_path / "plain.pt")
    with pytest.raises(J.JudgeError, match="not found"):
        J.load_judge_file(tmp_path / "missing.pt")
    with pytest.raises(J.JudgeKindError):
        J.predict_styles(q, x)


@pytest.mark.parametrize("name", sorted(J.WEIGHT_NAMES.values()))
def test_committed_judges_resolve_through_the_manifest(name: str) -> None:
    e = W.entry(name)
    assert e.kind == "judge" and e.path == f"weights/{name}.pt" and e.sha256 is not None
    assert e.size is not None and e.size < 3_000_000
    model = J.load_judge(name)
    assert model.kind == {v: k for k, v in J.WEIGHT_NAMES.items()}[name]


def test_committed_parser_miou(test_ids: tw.Identity) -> None:
    parser = J.load_judge("judge-parser-64")
    with pytest.raises(J.JudgeKindError):
        J.load_judge(W.resolve("judge-parser-64"), kind="domain")
    for style in tw.STYLES:
        img, lab = tw.render(test_ids, style=style)
        pred = J.predict_parts(parser, img)
        assert pred.shape == lab.shape and pred.dtype == torch.int64
        miou = float(J.iou_from_confusion(J.confusion_matrix(pred, lab, len(tw.PARTS))).nanmean())
        assert miou >= 0.85, (style, miou)
    # other sizes are resized to 64 px and back
    big = torch.nn.functional.interpolate(img[:2], size=128, mode="bilinear", align_corners=False)
    assert J.predict_parts(parser, big).shape == (2, 128, 128)


def test_committed_domain_segmenter_accuracy(test_ids: tw.Identity) -> None:
    seg = J.load_judge("judge-domain-64")
    ids = test_ids[:32]
    renders = {s: tw.render(ids, style=s) for s in tw.STYLES}
    correct = total = 0
    for inside, outside, mask in J.COMPOSITE_CONFIGS:
        img, _, smap = J.composite_from_renders(renders, inside_style=inside, outside_style=outside, mask=mask)
        pred = J.predict_styles(seg, img)
        assert pred.shape == smap.shape and pred.dtype == torch.int64
        correct += int((pred == smap).sum())
        total += smap.numel()
    assert correct / total >= 0.9
    pure = J.predict_styles(seg, renders["sketch"][0])
    assert float((pure == tw.STYLES.index("sketch")).float().mean()) >= 0.9
