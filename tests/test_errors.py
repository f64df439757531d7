"""Hostile and careless input: every user error is one clear early error, every run folder whole or absent.

Sections:

1. the shared mechanism (:mod:`ddsutils.cli`: ``UserError``, ``command``, validators) and run folders
   (:func:`ddsutils.files.run_folder`, SIGKILL between two files);
2. API cases, module by module;
3. CLI cases: one table (:data:`CLI_CASES`) of ``(id, module, argv, expected text)``; each runs as
   ``python -m ddsutils.<module> ...`` and must exit 2 with exactly one ``error:`` line on stderr, no
   traceback, and leave no folder behind. To add cases for another command (e.g. ``dds``), append rows to the
   table (or a table of its own in a section below, run by :func:`_run_cli_cases`). All CLI cases of one
   table run in one batch of parallel subprocesses (one interpreter start each, two at a time).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ddsutils.core import cli
from ddsutils.toy import oracle
from ddsutils.core.files import atomic_write_bytes, check_run_folder, is_partial_run_folder, run_folder

REPO = Path(__file__).resolve().parent.parent


def _env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1", "DDS_OFFLINE": "1", **extra}
    env.pop("DDS_DEBUG", None)
    return env


# ======================================================================================================
# 1. The shared mechanism


def test_user_error_text_names_argument_value_and_fix():
    e = cli.UserError("must be >= 1", argument="--n", value=0)
    assert str(e) == "--n: 0: must be >= 1" and isinstance(e, ValueError)
    assert str(cli.UserError("plain")) == "plain"
    assert str(cli.UserError("x").about("--out", "a b ")) == "--out: 'a b ': x"
    assert str(cli.UserError("x", argument="--a").about("--b", 1)) == "--a: x"  # the raiser's name wins


@pytest.mark.parametrize("call, text", [
    (lambda: cli.positive_int("0", "--n"), "--n: 0: must be >= 1"),
    (lambda: cli.positive_int("2.5", "--n"), "--n: 2.5: must be a whole number"),
    (lambda: cli.positive_int(True, "n"), "n: True: must be a whole number, not a boolean"),
    (lambda: cli.int_arg(-1, "num_steps", min=0), "num_steps: -1: must be >= 0"),
    (lambda: cli.float_arg("nan", "--alpha", min=0), "--alpha: nan: must be a finite number >= 0"),
    (lambda: cli.float_arg("inf", "--lr", min=0, min_open=True), "--lr: inf: must be a finite number > 0"),
    (lambda: cli.float_arg("1.5", "psi", min=0, max=1), "psi: 1.5: must be >= 0 and <= 1"),
    (lambda: cli.float_arg("abc", "--lr"), "--lr: abc: must be a number"),
    (lambda: cli.choice("vgg19", "--backbone", ["vgg16", "alexnet"]), "did you mean vgg16?"),
    (lambda: cli.device("gpu"), "--device: gpu: unknown device; use auto, cpu, cuda or cuda:N"),
])
def test_validators_name_the_argument_and_the_fix(call, text):
    with pytest.raises(cli.UserError) as info:
        call()
    assert text in str(info.value)


def test_validators_return_converted_values(tmp_path):
    f = tmp_path / "x.pt"
    f.write_bytes(b"1")
    assert cli.positive_int("3", "--n") == 3 and cli.float_arg("0.5", "a", min=0, max=1) == 0.5
    assert cli.existing_file(str(f), "--from") == f and cli.choice("a", "x", "ab") == "a"
    assert str(cli.device("cpu")) == "cpu" and cli.output_file(tmp_path / "new" / "o.json", "--json").name == "o.json"
    for bad, text in ((tmp_path, "is a folder"), (tmp_path / "nope.pt", "no such file")):
        with pytest.raises(cli.UserError, match=text):
            cli.existing_file(bad, "--from")
    with pytest.raises(cli.UserError, match="x.pt is a file, so no folder can be made"):
        cli.output_file(f / "o.json", "--json")


def test_command_wrapper_one_line_exit_2_and_debug(capsys, monkeypatch):
    @cli.command
    def main(argv):
        raise cli.UserError("line one\n   line two", argument="--x", value="v")

    monkeypatch.delenv("DDS_DEBUG", raising=False)
    assert main([]) == 2
    err = capsys.readouterr().err
    assert err == "error: --x: v: line one line two\n"
    assert main(["--debug"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1] == "error: --x: v: line one line two"
    monkeypatch.setenv("DDS_DEBUG", "1")
    assert main([]) == 2 and "Traceback" in capsys.readouterr().err

    @cli.command
    def bug(argv):
        raise KeyError("a bug keeps its traceback")

    with pytest.raises(KeyError):
        bug([])


def test_argument_parser_errors_are_one_line(capsys):
    p = cli.ArgumentParser(prog="python -m ddsutils.x")
    p.add_argument("--n", type=cli.argtype(cli.positive_int))
    with pytest.raises(SystemExit) as info:
        p.parse_args(["--n", "0"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and err == "error: --n: 0: must be >= 1 (see python -m ddsutils.x --help)\n"
    assert "--debug" in p.format_help()


# ------------------------------------------------------------------------------------------------------
# run folders


def test_run_folder_whole_or_nothing(tmp_path):
    out = tmp_path / "run"
    with run_folder(out) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".run.partial-") and is_partial_run_folder(tmp)
        assert not out.exists()
        atomic_write_bytes(b"1", tmp / "a.txt")
        (tmp / "sub").mkdir()
        atomic_write_bytes(b"2", tmp / "sub" / "b.txt")
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == ["a.txt", "sub", "sub/b.txt"]
    assert os.listdir(tmp_path) == ["run"]
    with pytest.raises(cli.UserError, match="already exists; pass --overwrite"):
        with run_folder(out):
            pass
    with pytest.raises(RuntimeError):
        with run_folder(out, overwrite=True) as tmp:
            atomic_write_bytes(b"3", tmp / "c.txt")
            raise RuntimeError("failed half way")
    assert sorted(os.listdir(out)) == ["a.txt", "sub"] and os.listdir(tmp_path) == ["run"]  # untouched
    with run_folder(out, overwrite=True) as tmp:
        atomic_write_bytes(b"4", tmp / "d.txt")
    assert os.listdir(out) == ["d.txt"] and os.listdir(tmp_path) == ["run"]  # replaced whole: nothing stale


def test_run_folder_refuses_files_and_partials(tmp_path):
    (tmp_path / "f").write_text("x")
    for bad, text in (("f", "is an existing file"), ("f/sub", "is a file, so the folder cannot be made"),
                      (".r.partial-abc", "temporary folder of an unfinished run"), ("", "is empty")):
        with pytest.raises(cli.UserError, match=text):
            check_run_folder(tmp_path / bad if bad else bad, overwrite=True)
    with pytest.raises(cli.UserError, match="current folder"):
        check_run_folder(".", overwrite=True)


def test_run_folder_refuses_a_second_live_run(tmp_path):
    out = tmp_path / "run"
    with run_folder(out) as tmp:
        atomic_write_bytes(b"1", tmp / "a")
        with pytest.raises(cli.UserError, match="another run is writing this folder"):
            with run_folder(out):
                pass
        assert tmp.is_dir()
    assert os.listdir(out) == ["a"]


_KILLED_WRITER = textwrap.dedent("""
    import sys
    from ddsutils.lab import viz
    from ddsutils.core.files import atomic_write_bytes, run_folder
    import torch
    with run_folder(sys.argv[1], overwrite=len(sys.argv) > 2) as tmp:
        viz.save_png(torch.zeros(3, 4, 4), tmp / "source.png")
        atomic_write_bytes(b"{}", tmp / "record.json")
""")


@pytest.mark.parametrize("overwrite", [False, True])
def test_sigkill_between_two_files_leaves_no_folder(tmp_path, overwrite):
    """DDS_TEST_KILL_AFTER_WRITES=1: SIGKILL right after the first file; the folder is absent (or, with
    --overwrite, the previous complete one / none), never a half-written one; the next run cleans up."""
    out = tmp_path / "run"
    if overwrite:
        out.mkdir()
        (out / "old.txt").write_text("previous run")
    args = [sys.executable, "-c", _KILLED_WRITER, str(out), *(["overwrite"] if overwrite else [])]
    r = subprocess.run(args, env=_env(DDS_TEST_KILL_AFTER_WRITES="1"), capture_output=True, text=True, cwd=REPO)
    assert r.returncode == -signal.SIGKILL, r.stderr
    leftovers = [p for p in tmp_path.iterdir() if p.name != "run"]
    assert leftovers and all(is_partial_run_folder(p) for p in leftovers)
    assert (not out.exists()) if not overwrite else os.listdir(out) == ["old.txt"]
    r = subprocess.run([sys.executable, "-c", _KILLED_WRITER, str(out), "overwrite"], env=_env(),
                       capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
    assert os.listdir(tmp_path) == ["run"] and sorted(os.listdir(out)) == ["record.json", "source.png"]


# ======================================================================================================
# Fixtures shared by the API and CLI cases: small files a careless user might hand over


def _png_image(path: Path, arr, mode: str | None = None) -> Path:
    import numpy as np
    from PIL import Image

    im = Image.fromarray(np.asarray(arr, dtype=np.uint8), mode=mode) if mode else Image.fromarray(
        np.asarray(arr, dtype=np.uint8))
    im.save(path)
    return path


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory) -> Path:
    """A folder of hostile inputs: text, random bytes, an unsafe pickle, tiny / NaN generators, profiles..."""
    import pickle

    import torch

    from conftest import make_tiny_generator

    d = tmp_path_factory.mktemp("bad")
    (d / "notes.txt").write_text("my notes, not a checkpoint\n")
    (d / "rand.pt").write_bytes(bytes(range(256)) * 7)  # random-looking bytes, not a pickle
    (d / "empty.pt").write_bytes(b"")
    (d / "pk.pt").write_bytes(pickle.dumps({"a": os.system}))  # a pickle that would call os.system
    (d / "afile").write_text("a file where a folder is expected\n")
    (d / "existing_run").mkdir()
    (d / "existing_run" / "old.txt").write_text("a previous run\n")
    G = make_tiny_generator(size=32)
    torch.save({"g_ema": G.state_dict()}, d / "g32.pt")
    sd = {k: v.clone() for k, v in G.state_dict().items()}
    sd["convs.0.conv.weight"].view(-1)[3] = float("nan")
    torch.save({"g_ema": sd}, d / "nan.pt")
    good = {k: v.clone() for k, v in G.state_dict().items()}
    torch.save({"g_ema": good, "latent_avg": torch.full((1, 32), float("inf"))}, d / "inf_avg.pt")
    buf = (d / "g32.pt").read_bytes()
    (d / "trunc.pt").write_bytes(buf[: len(buf) // 2])
    (d / "bad_nn.yaml").write_text("shared: {profile: ci, device: cpu, seed: 0}\n"
                                   "notebooks:\n  01_load_generators: {nn: 2}\n")
    (d / "bad_type.yaml").write_text("shared: {profile: ci, device: cpu, seed: 0}\n"
                                     "notebooks:\n  01_load_generators: {n: abc}\n")
    (d / "broken.yaml").write_text("shared: [unclosed\n")
    return d


# ======================================================================================================
# 2. API cases


def _mask_ref():
    import numpy as np

    m = np.zeros((32, 32), np.uint8)
    m[8:20, 6:24] = 1
    return m


def test_issue_case_3_rgba_mask_with_alpha_outside_the_part(tmp_path):
    import numpy as np
    import torch

    from ddsutils.core.segmenter import load_mask_png

    m = _mask_ref()
    rgba = np.dstack([np.full((32, 32, 3), 255, np.uint8), m * 255])  # RGB white everywhere, alpha = the part
    got = load_mask_png(_png_image(tmp_path / "rgba.png", rgba, "RGBA"), size=32)
    assert torch.equal(got[0, 0], torch.from_numpy(m).float())  # was: all foreground (mean 1.0)


def test_issue_case_3_mask_held_only_in_alpha(tmp_path):
    import numpy as np
    import torch

    from ddsutils.core.segmenter import load_mask_png

    m = _mask_ref()
    rgba = np.dstack([np.zeros((32, 32, 3), np.uint8), m * 255])  # black everywhere, alpha = the part
    got = load_mask_png(_png_image(tmp_path / "alpha.png", rgba, "RGBA"), size=32)
    assert torch.equal(got[0, 0], torch.from_numpy(m).float())  # was: empty
    la = np.dstack([np.zeros((32, 32), np.uint8), m * 255])  # grey + alpha
    assert torch.equal(load_mask_png(_png_image(tmp_path / "la.png", la, "LA"), size=32)[0, 0],
                       torch.from_numpy(m).float())


def test_issue_case_3_red_overlay_and_a_hint_that_works(tmp_path):
    import numpy as np
    import torch

    from ddsutils.core.segmenter import SegmenterError, load_mask_png

    m = _mask_ref()
    red = np.zeros((32, 32, 3), np.uint8)
    red[..., 0] = m * 255
    got = load_mask_png(_png_image(tmp_path / "red.png", red), size=32)
    assert torch.equal(got[0, 0], torch.from_numpy(m).float())  # pure red on black: no threshold needed
    soft = red.copy()
    soft[..., 0] = m * 180
    soft[8, 6:24, 0] = 90  # an anti-aliased edge: three levels
    with pytest.raises(SegmenterError, match=r"pass threshold=(\d+)") as info:
        load_mask_png(_png_image(tmp_path / "soft.png", soft), size=32)
    t = int(__import__("re").search(r"threshold=(\d+)", str(info.value)).group(1))
    hinted = load_mask_png(tmp_path / "soft.png", size=32, threshold=t)[0, 0]
    inner = torch.from_numpy(m).bool().clone()
    inner[8] = False
    assert hinted[inner].all() and not hinted[~torch.from_numpy(m).bool()].any()  # the hint gives the part
    share = float(__import__("re").search(r": ([\d.]+)% of the pixels", str(info.value)).group(1)) / 100
    assert abs(share - float(hinted.mean())) < 1e-3


def test_mask_png_transparent_background_and_palette(tmp_path):
    import numpy as np
    import torch
    from PIL import Image

    from ddsutils.core.segmenter import load_mask_png

    m = _mask_ref()
    rgba = np.zeros((32, 32, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 255, m * 255  # red part, transparent elsewhere (RGB also red there)
    rgba[..., 1] = (1 - m) * 255  # the invisible pixels are yellow: colour varies, so value x alpha decides
    assert torch.equal(load_mask_png(_png_image(tmp_path / "t.png", rgba, "RGBA"), size=32)[0, 0],
                       torch.from_numpy(m).float())
    pal = Image.fromarray(m * 255).convert("P")
    pal.info["transparency"] = 0
    pal.save(tmp_path / "p.png", transparency=0)
    assert torch.equal(load_mask_png(tmp_path / "p.png", size=32)[0, 0], torch.from_numpy(m).float())


@pytest.mark.parametrize("kwargs, text", [({"size": 0}, "size: 0: must be >= 1"),
                                          ({"size": 32, "threshold": 0}, "threshold: 0: must be >= 1"),
                                          ({"size": 32, "threshold": 256}, "threshold: 256: must be <= 255")])
def test_mask_png_bad_arguments(tmp_path, kwargs, text):
    from ddsutils.core.segmenter import SegmenterError, load_mask_png

    path = _png_image(tmp_path / "m.png", _mask_ref() * 255)
    with pytest.raises((SegmenterError, cli.UserError), match=text):
        load_mask_png(path, **kwargs)


@pytest.mark.parametrize("name, text, trust_advice", [
    ("rand.pt", r"not a readable PyTorch checkpoint \(1792 bytes, neither a torch zip archive nor an intact pickle\)",
     False),
    ("empty.pt", r"not a readable PyTorch checkpoint \(an empty file\)", False),
    ("notes.txt", "not a readable PyTorch checkpoint", False),
    ("trunc.pt", "truncated or damaged torch zip archive", False),
    ("pk.pt", r"outside the safe allow-list \(posix.system\)", True),
    ("nan.pt", r"NaN or infinite values in 1 weight\(s\) \(convs.0.conv.weight\)", False),
    ("inf_avg.pt", r"NaN or infinite values in 1 weight\(s\) \(latent_avg\)", False),
])
def test_issue_cases_2_and_12_generator_files(bad_files, name, text, trust_advice):
    """Garbage is 'not a checkpoint / corrupt' (no --trust advice); only a real pickle of code gets the --trust
    route; NaN / inf weights are refused at load."""
    from ddsutils.core.stylegan2 import CheckpointError, load_generator

    with pytest.raises(CheckpointError, match=text) as info:
        load_generator(bad_files / name)
    assert ("--trust" in str(info.value)) == trust_advice


def test_generator_arguments_checked_before_loading(bad_files):
    from ddsutils.core.stylegan2 import CheckpointNotFoundError, convert_checkpoint, load_generator

    for kwargs, text in (({"device": "tpu"}, "device: tpu: unknown device"), ({"size": 0}, "size: 0: must be >= 1"),
                         ({"lr_mlp": -1.0}, "lr_mlp: -1.0: must be > 0")):
        with pytest.raises(cli.UserError, match=text):
            load_generator(bad_files / "g32.pt", **kwargs)
    with pytest.raises(CheckpointNotFoundError, match="neither a checkpoint file nor a weights name") as info:
        load_generator("toy-natural-46")
    assert isinstance(info.value, FileNotFoundError)
    out = bad_files.parent / "converted_nan.pt"
    with pytest.raises(cli.UserError, match="NaN"):
        convert_checkpoint(bad_files / "nan.pt", out)
    assert not out.exists()


def test_segmenter_and_judge_files_nan_and_garbage(tmp_path, bad_files):
    import torch

    from conftest import make_tiny_generator
    from ddsutils.toy import judges
    from ddsutils.core import segmenter as S

    G = make_tiny_generator(size=32)
    lab = torch.zeros(1, 1, 32, 32)
    lab[..., 8:20, 8:20] = 1
    seg = S.train_segmenter(G, torch.randn(1, 32), lab, steps=1, stats_samples=2, progress=False)
    path = S.save_segmenter(seg, tmp_path / "seg.pt")
    assert S.load_segmenter(path).n_class == 2
    obj = torch.load(path, weights_only=True)
    next(iter(obj["state_dict"].values())).view(-1)[0] = float("inf")
    torch.save(obj, tmp_path / "seg_inf.pt")
    with pytest.raises(S.SegmenterError, match="NaN or infinite values"):
        S.load_segmenter(tmp_path / "seg_inf.pt")
    with pytest.raises(S.SegmenterError, match="not a PyTorch file or corrupt"):
        S.load_segmenter(bad_files / "rand.pt")
    parser = judges.load_judge("judge-parser-64")
    judges.save_judge(parser, tmp_path / "j.pt")
    jd = torch.load(tmp_path / "j.pt", weights_only=True)
    jd["state_dict"]["head.weight" if "head.weight" in jd["state_dict"] else next(iter(jd["state_dict"]))] \
        .view(-1)[0] = float("nan")
    torch.save(jd, tmp_path / "j_nan.pt")
    with pytest.raises(judges.JudgeError, match="NaN or infinite values"):
        judges.load_judge_file(tmp_path / "j_nan.pt")
    with pytest.raises(judges.JudgeError, match="not a PyTorch file or corrupt"):
        judges.load_judge_file(bad_files / "rand.pt")
    with pytest.raises(judges.JudgeError, match="pickles code outside the weights-only allow-list"):
        judges.load_judge_file(bad_files / "pk.pt")
    with pytest.raises(judges.JudgeError, match="unknown judge kind 'nope'"):
        judges.load_judge_file(tmp_path / "j.pt", kind="nope")


def test_segmenter_entry_points_validate_inputs():
    import numpy as np
    import torch

    from conftest import make_tiny_generator
    from ddsutils.core import segmenter as S

    G = make_tiny_generator(size=32)
    lab = np.zeros((1, 1, 32, 32), np.float32)
    lab[..., 8:20, 8:20] = 1
    z = np.random.default_rng(0).standard_normal((1, 32)).astype(np.float32)
    seg = S.train_segmenter(G, z, lab, steps=1, stats_samples=2, progress=False)  # numpy in: a correct result
    assert S.predict_masks(seg, G, torch.from_numpy(z), progress=False).shape == (1, 1, 32, 32)
    bad_z = torch.from_numpy(z).clone()
    bad_z[0, 0] = float("nan")
    for kwargs, text in (({"steps": 2.5}, "steps: 2.5: must be a whole number"), ({"lr": float("inf")}, "lr: inf"),
                         ({"steps": 0}, "steps: 0: must be >= 1"), ({"size": "XL"}, "size must be one of"),
                         ({"feature_dropout": 1.0}, r"feature_dropout must be in \[0, 1\)")):
        with pytest.raises(S.SegmenterError, match=text):
            S.train_segmenter(G, z, lab, progress=False, **kwargs)
    with pytest.raises(S.SegmenterError, match="latents contain NaN or inf"):
        S.train_segmenter(G, bad_z, lab, steps=1, progress=False)
    with pytest.raises(S.SegmenterError, match="latents is a path"):
        S.train_segmenter(G, "z.pt", lab, steps=1, progress=False)
    with pytest.raises(S.SegmenterError, match="batch_size must be a whole number >= 1"):
        S.predict_masks(seg, G, z, batch_size=0)
    with pytest.raises(S.SegmenterError, match="G must be a ddsutils Generator"):
        S.train_segmenter("toy-natural-64", z, lab, steps=1, progress=False)


@pytest.mark.parametrize("params, text", [
    ({"nn": 2}, r"01_load_generators has no parameter 'nn' \(did you mean n\?\)"),
    ({"n": "abc"}, "parameter 'n' must be int like the notebook's default 8, got str"),
    ({"n": 2.5}, "parameter 'n' must be int"),
    ({"truncation": "0.7"}, "parameter 'truncation' must be float"),
    ({"generators": ["toy-natural-64", 3]}, r"item 1 \(3\) must be str"),
    ({"n": True}, "parameter 'n' must be int"),
])
def test_issue_case_4_parameter_names_and_types(params, text):
    from ddsutils.lab import notebook as NB

    with pytest.raises(cli.UserError, match=text):
        NB.check_parameters("01_load_generators", params, source="x.yaml")
    NB.check_parameters("01_load_generators", {"n": 2, "truncation": 1, "generators": ["a"]})  # int for float: fine


def test_notebook_runner_refuses_before_any_kernel(bad_files, tmp_path, monkeypatch):
    from ddsutils.lab import notebook as NB

    monkeypatch.setattr(NB, "_kernel_env", lambda *a: pytest.fail("a kernel was about to start"))
    for kwargs, text in (({"names": ["01_load_generatorz"]}, "did you mean 01_load_generators"),
                         ({"names": ["01_load_generators"], "overrides": {"nn": 1}}, "has no parameter 'nn'"),
                         ({"names": ["01_load_generators"], "threads": 0}, "--threads: 0: must be >= 1"),
                         ({"names": ["01_load_generators"], "overrides": {"device": "tpu"}}, "unknown device"),
                         ({"names": ["01_load_generators"], "out_dir": bad_files / "afile"}, "is an existing file")):
        with pytest.raises(cli.UserError, match=text):
            NB.execute("ci", **kwargs)
    with pytest.raises(cli.UserError, match="has no parameter 'nn'"):
        NB.execute(str(bad_files / "bad_nn.yaml"), names=["01_load_generators"])
    with pytest.raises(cli.UserError, match="not valid YAML"):
        NB.load_profile(str(bad_files / "broken.yaml"))


def test_notebook_runner_installs_the_executed_copy_only_on_success(tmp_path):
    """A failing notebook leaves <name>.failed.ipynb and removes the previous <name>.ipynb; nothing partial."""
    import json

    from ddsutils.lab import notebook as NB

    nb = {"cells": [{"cell_type": "code", "id": "p", "metadata": {"tags": ["parameters"]}, "execution_count": None,
                     "outputs": [], "source": 'profile: str = "demo"\nout_dir: str = ""\ndevice: str = "cpu"\n'
                                              "seed: int = 0\nfail: bool = True"},
                    {"cell_type": "code", "id": "f", "metadata": {}, "execution_count": None, "outputs": [],
                     "source": "if fail:\n    raise RuntimeError('boom')"}],
          "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
          "nbformat": 4, "nbformat_minor": 5}
    src = tmp_path / "t_fail.ipynb"
    src.write_text(json.dumps(nb))
    out = tmp_path / "out"
    out.mkdir()
    (out / "t_fail.ipynb").write_text("{}")  # a stale success from an earlier run
    (out / f".t_fail.partial-{2**22 + 12345}.ipynb").write_text("{}")  # left by a killed run (no such pid)
    rows = NB.execute("ci", names=[str(src)], out_dir=out, cell_timeout=60)
    assert [r["status"] for r in rows] == ["failed"]
    assert sorted(os.listdir(out)) == ["t_fail.failed.ipynb"]
    assert "boom" in (out / "t_fail.failed.ipynb").read_text()


@pytest.mark.parametrize("overrides, text", [
    ({"n": 1}, "n: 1: must be >= 2"), ({"pairs": [("caricature", "cartoon")]}, "pairs: cartoon: unknown domain"),
    ({"masks": ["eyes"]}, "unknown mask"), ({"lr": float("nan")}, "lr: nan: must be a finite number"),
    ({"backbones": ["vgg19"]}, "did you mean vgg16"), ({"num_steps": 0}, "num_steps: 0: must be >= 1"),
    ({"pairs": [("natural", "natural")]}, "two different domains"), ({"device": "tpu"}, "unknown device"),
    ({"steps": 3}, r"unknown setting\(s\) \['steps'\] \(did you mean num_steps\?\)"),
])
def test_experiment_settings_checked_up_front(overrides, text):
    from ddsutils.lab import experiments

    with pytest.raises(cli.UserError, match=text):
        experiments.Context("ci", **overrides)


def test_experiment_pt_and_json_written_as_a_pair(tmp_path):
    import json

    import torch

    from ddsutils.lab import experiments

    ctx = experiments.Context("ci", out=str(tmp_path))
    (tmp_path / "x.pt").write_bytes(b"stale images of an earlier run")
    experiments._finish(ctx, "x", [{"a": 1.0}], {}, 0.0)
    assert sorted(os.listdir(tmp_path)) == ["x.json"]  # no stale images beside new numbers
    experiments._finish(ctx, "x", [{"a": 1.0}], {}, 0.0, images={"i": torch.zeros(1)})
    assert sorted(os.listdir(tmp_path)) == ["x.json", "x.pt"] and json.loads((tmp_path / "x.json").read_text())


def test_zoo_arguments_checked_before_training(tmp_path):
    from ddsutils.toy import zoo

    for kwargs, text in (({"kl_wt": float("nan")}, "kl_wt: nan"), ({"targets": ("cartoon",)}, "unknown target style"),
                         ({"batch": 0}, "batch: 0"), ({"preset": "huge"}, "unknown preset"),
                         ({"threads": 0}, "threads: 0")):
        with pytest.raises(cli.UserError, match=text):
            zoo.train_zoo(out=tmp_path / "w", runs=tmp_path / "runs", figures=tmp_path / "f", device="cpu",
                          progress=False, **kwargs)
    with pytest.raises(cli.UserError, match="n: 0: must be >= 1"):
        zoo.evaluate_zoo(generators={}, n=0)
    assert os.listdir(tmp_path) == []


# ======================================================================================================
# 3. CLI cases: python -m ddsutils.<module> ARGV must exit 2 with ONE `error:` line naming EXPECT, no
#    traceback, and leave no file behind. {d}: the bad_files folder (read only); {tmp}: an empty folder of the
#    case (its cwd). ENV: extra environment ({tmp} / {d} expanded). The cases run in one subprocess (runpy, as
#    `python -m` does); _TRUE_SUBPROCESS reruns a few as real `python -m` processes to check the wiring.

CLI_CASES: list[tuple[str, str, list[str], str, dict[str, str]]] = [
    # --- stylegan2 (issue cases 9, 12, 2)
    ("sg2-random-bytes", "stylegan2", ["info", "{d}/rand.pt"], "not a readable PyTorch checkpoint (1792 bytes", {}),
    ("sg2-text", "stylegan2", ["info", "{d}/notes.txt"], "not a readable PyTorch checkpoint", {}),
    ("sg2-unsafe-pickle", "stylegan2", ["info", "{d}/pk.pt"], "outside the safe allow-list (posix.system)", {}),
    ("sg2-nan", "stylegan2", ["info", "{d}/nan.pt"], "NaN or infinite values in 1 weight", {}),
    ("sg2-unknown-name", "stylegan2", ["info", "toy-natural-46"], "neither a checkpoint file nor a weights name", {}),
    ("sg2-convert-onto-source", "stylegan2", ["convert", "{d}/g32.pt", "{d}/g32.pt"],
     "dst: {d}/g32.pt: is the source", {}),
    ("sg2-convert-missing", "stylegan2", ["convert", "{d}/missing.pt", "{tmp}/o.pt"],
     "src: {d}/missing.pt: no such", {}),
    ("sg2-convert-under-file", "stylegan2", ["convert", "{d}/g32.pt", "{d}/afile/o.pt"], "afile is a file", {}),
    ("sg2-trust-garbage", "stylegan2", ["convert", "{d}/rand.pt", "{tmp}/o.pt", "--trust"],
     "not a readable PyTorch checkpoint even without the allow-list", {}),
    ("sg2-missing-arg", "stylegan2", ["info"], "the following arguments are required: src", {}),
    ("sg2-bad-subcommand", "stylegan2", ["frobnicate"], "invalid choice: 'frobnicate'", {}),
    # --- weights (issue cases 1, 12)
    ("w-from-text", "weights", ["fetch", "ffhq-256", "--from", "{d}/notes.txt"],
     "is not a StyleGAN2 generator checkpoint for ffhq-256", {"DDS_WEIGHTS_DIR": "{tmp}/cache"}),
    ("w-from-wrong-arch", "weights", ["fetch", "ffhq-256", "--from", "{d}/g32.pt"],
     "another architecture than ffhq-256: size 32 (expected 256)", {"DDS_WEIGHTS_DIR": "{tmp}/cache"}),
    ("w-from-random", "weights", ["fetch", "fewshot-sketch-256", "--from", "{d}/rand.pt"],
     "not a PyTorch checkpoint: 1792 bytes", {"DDS_WEIGHTS_DIR": "{tmp}/cache"}),
    ("w-from-nan", "weights", ["fetch", "fewshot-caricature-256", "--from", "{d}/nan.pt"], "NaN or infinite",
     {"DDS_WEIGHTS_DIR": "{tmp}/cache"}),
    ("w-typo-name", "weights", ["fetch", "ffhq-257"], "(did you mean ffhq-256?)", {}),
    ("w-from-missing", "weights", ["fetch", "ffhq-256", "--from", "{d}/missing.pt"],
     "--from: {d}/missing.pt: no such", {}),
    ("w-from-folder", "weights", ["fetch", "ffhq-256", "--from", "{d}"], "is a folder, not a file", {}),
    ("w-verify-unknown", "weights", ["verify", "nope"], "unknown weights 'nope'", {}),
    ("w-offline", "weights", ["fetch", "resnet18-imagenet"], "Offline mode is on (DDS_OFFLINE=1)",
     {"DDS_WEIGHTS_DIR": "{tmp}/cache"}),
    ("w-committed-from", "weights", ["fetch", "toy-natural-64", "--from", "{d}/g32.pt"], "nothing to copy", {}),
    # --- segmenter (issue case 9)
    ("seg-n-zero", "segmenter", ["evaluate", "--json", "{tmp}/e.json", "--n", "0"], "--n: 0: must be >= 1", {}),
    ("seg-json-folder", "segmenter", ["evaluate", "--json", "{d}", "--n", "2"], "--json: {d}: is a folder", {}),
    ("seg-mask-typo", "segmenter", ["evaluate", "--json", "{tmp}/e.json", "--masks", "hairr"],
     "(did you mean hair?)", {}),
    ("seg-generator-garbage", "segmenter", ["evaluate", "--json", "{tmp}/e.json", "--generator", "{d}/rand.pt"],
     "--generator: {d}/rand.pt: is not a readable PyTorch checkpoint", {}),
    ("seg-generator-nan", "segmenter", ["evaluate", "--json", "{tmp}/e.json", "--generator", "{d}/nan.pt"],
     "NaN or infinite", {}),
    ("seg-target-other-arch", "segmenter", ["evaluate", "--json", "{tmp}/e.json", "--targets", "{d}/g32.pt"],
     "--targets: {d}/g32.pt: is a 32 px", {}),
    ("seg-truncation-nan", "segmenter", ["evaluate", "--json", "{tmp}/e.json", "--label-truncation", "nan"],
     "--label-truncation: nan: must be a finite number >= 0 and <= 1", {}),
    ("seg-n-labels-mean-face", "segmenter", ["evaluate", "--json", "{tmp}/e.json", "--n-labels", "3"],
     "needs --label-truncation > 0", {}),
    ("seg-device", "segmenter", ["evaluate", "--json", "{tmp}/e.json", "--device", "tpu"],
     "--device: tpu: unknown device", {}),
    ("seg-judge-wrong-kind", "segmenter", ["evaluate", "--json", "{tmp}/e.json", "--judge", "judge-domain-64"],
     "holds a 'domain-segmenter' judge", {}),
    ("seg-dropout-one", "segmenter", ["evaluate", "--json", "{tmp}/e.json", "--feature-dropout", "1"],
     "must be >= 0 and < 1", {}),
    ("seg-balance-negative", "segmenter", ["evaluate", "--json", "{tmp}/e.json", "--class-balance", "-0.5"],
     "--class-balance: -0.5: must be >= 0", {}),
    ("seg-same-generator-twice", "segmenter", ["evaluate", "--json", "{tmp}/e.json", "--targets", "toy-natural-64"],
     "names the same generator twice", {}),
    ("seg-steps-float", "segmenter", ["evaluate", "--json", "{tmp}/e.json", "--steps", "2.5"],
     "--steps: 2.5: must be a whole number", {}),
    # --- judges
    ("judge-garbage", "judges", ["evaluate", "--parser", "{d}/rand.pt"], "not a PyTorch file or corrupt", {}),
    ("judge-wrong-kind", "judges", ["evaluate", "--domain", "judge-parser-64"], "holds a 'part-parser' judge", {}),
    ("judge-json-folder", "judges", ["evaluate", "--json", "{d}"], "--json: {d}: is a folder", {}),
    ("judge-channels", "judges", ["train", "--channels", "16,x"], "must be comma-separated whole numbers", {}),
    ("judge-out-file", "judges", ["train", "--out", "{d}/afile"], "--out: {d}/afile: is an existing file", {}),
    ("judge-nothing", "judges", ["evaluate", "--parser", "", "--domain", ""], "nothing to evaluate", {}),
    ("judge-lr-zero", "judges", ["train", "--lr", "0"], "--lr: 0: must be > 0", {}),
    # --- zoo
    ("zoo-iters-zero", "zoo", ["train", "--iters-natural", "0"], "--iters-natural: 0: must be >= 1", {}),
    ("zoo-iters-adapt", "zoo", ["train", "--iters-adapt", "sketch=0"], "--iters-adapt wants N or STYLE=N", {}),
    ("zoo-out-file", "zoo", ["train", "--out", "{d}/afile"], "--out: {d}/afile: is an existing file", {}),
    ("zoo-manifest-outside", "zoo", ["train", "--update-manifest", "--out", "{tmp}/w"], "inside the repository", {}),
    ("zoo-freeze-typo", "zoo", ["train", "--freeze", "convz"], "--freeze: convz: freeze prefixes ['convz']", {}),
    ("zoo-kl-inf", "zoo", ["train", "--kl-wt", "inf"], "--kl-wt: inf: must be a finite number", {}),
    ("zoo-device", "zoo", ["train", "--device", "tpu"], "--device: tpu: unknown device", {}),
    ("zoo-eval-garbage", "zoo", ["evaluate", "--generator", "sketch={d}/rand.pt"], "is not a readable PyTorch", {}),
    ("zoo-eval-style", "zoo", ["evaluate", "--generator", "cartoon=x.pt"], "--generator wants STYLE=PATH", {}),
    ("zoo-eval-n", "zoo", ["evaluate", "--n", "0"], "--n: 0: must be >= 1", {}),
    # --- experiments (run folders)
    ("exp-out-file", "experiments", ["table1", "--profile", "ci", "--out", "{d}/afile"], "is an existing file", {}),
    ("exp-out-exists", "experiments", ["table1", "--profile", "ci", "--out", "{d}/existing_run"],
     "already exists; pass --overwrite", {}),
    ("exp-out-partial", "experiments", ["table1", "--profile", "ci", "--out", "{d}/.r.partial-abc"],
     "temporary folder of an unfinished run", {}),
    ("exp-n-one", "experiments", ["table1", "--profile", "ci", "--n", "1", "--out", "{tmp}/r"],
     "--n: 1: must be >= 2", {}),
    ("exp-cache-inside", "experiments", ["table1", "--profile", "ci", "--out", "{tmp}/r", "--cache", "{tmp}/r/c"],
     "is inside --out", {}),
    ("exp-name", "experiments", ["table2", "--profile", "ci"], "invalid choice: 'table2'", {}),
    ("exp-device", "experiments", ["table1", "--profile", "ci", "--device", "tpu", "--out", "{tmp}/r"],
     "--device: tpu: unknown device", {}),
    ("exp-steps-zero", "experiments", ["table1", "--profile", "ci", "--num-steps", "0", "--out", "{tmp}/r"],
     "--num-steps: 0: must be >= 1", {}),
    # --- notebook runner (issue cases 4, 5)
    ("nb-only-typo", "notebook", ["run", "--profile", "ci", "--only", "01_load_generatorz"],
     "(did you mean 01_load_generators?); choose one of: 00_setup_and_weights", {}),
    ("nb-profile-unknown-key", "notebook", ["run", "--profile", "{d}/bad_nn.yaml", "--only", "01_load_generators"],
     "01_load_generators has no parameter 'nn' (did you mean n?)", {}),
    ("nb-profile-wrong-type", "notebook", ["run", "--profile", "{d}/bad_type.yaml", "--only", "01_load_generators"],
     "parameter 'n' must be int like the notebook's default 8, got str", {}),
    ("nb-profile-missing", "notebook", ["run", "--profile", "cx"], "unknown parameter profile", {}),
    ("nb-profile-broken", "notebook", ["run", "--profile", "{d}/broken.yaml"], "is not valid YAML", {}),
    ("nb-set-type", "notebook", ["run", "--profile", "ci", "--only", "01_load_generators", "--set", "n=abc"],
     "--set: n: 'abc': 01_load_generators parameter 'n' must be int", {}),
    ("nb-set-form", "notebook", ["run", "--profile", "ci", "--set", "fig"], "--set: fig: wants NAME=VALUE", {}),
    ("nb-threads", "notebook", ["run", "--profile", "ci", "--threads", "0"], "--threads: 0: must be >= 1", {}),
    ("nb-out-file", "notebook", ["run", "--profile", "ci", "--only", "01_load_generators", "--out", "{d}/afile"],
     "--out: {d}/afile: is an existing file", {}),
    ("nb-device", "notebook", ["run", "--profile", "ci", "--only", "01_load_generators", "--set", "device=tpu"],
     "device: tpu: unknown device", {}),
    ("nb-params-name", "notebook", ["params", "ci", "03_dds"], "name: 03_dds: unknown notebook", {}),
    ("nb-prepare-into-file", "notebook", ["prepare", "--profile", "ci", "--into", "{d}/afile"],
     "is an existing file", {}),
    # --- demo runner
    ("demo-only", "demo", ["--profile", "ci", "--only", "nope"], "--only: nope: unknown notebook", {}),
    ("demo-threads", "demo", ["--threads", "0"], "--threads: 0: must be >= 1", {}),
    ("demo-out-file", "demo", ["--out", "{d}/afile"], "--out: {d}/afile: is an existing file", {}),
]

#: Cases also run as real ``python -m`` processes (one per command line): same exit status and error line.
_TRUE_SUBPROCESS = ("sg2-random-bytes", "w-from-text", "seg-generator-garbage", "judge-garbage", "zoo-eval-n",
                    "exp-out-exists", "nb-only-typo", "demo-only")

_DRIVER = textwrap.dedent(r"""
    import contextlib, io, json, os, runpy, sys, time, traceback, warnings
    warnings.filterwarnings("ignore", category=RuntimeWarning, message=".*found in sys.modules")
    import torch  # noqa: F401  (imported once, as every command line does)
    cases, results = json.load(sys.stdin), {}
    real_stdout, base_env, base_cwd = sys.stdout, dict(os.environ), os.getcwd()
    for case in cases:
        os.environ.clear(); os.environ.update({**base_env, **case["env"]}); os.chdir(case["cwd"])
        out, err, rc = io.StringIO(), io.StringIO(), None
        sys.argv = [case["module"], *case["argv"]]
        t = time.perf_counter()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                runpy.run_module("ddsutils." + case["module"], run_name="__main__", alter_sys=True)
                rc = 0
            except SystemExit as exc:
                rc = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            except BaseException:
                traceback.print_exc()
                rc = 1
        results[case["id"]] = {"rc": rc, "stdout": out.getvalue(), "stderr": err.getvalue(),
                               "seconds": time.perf_counter() - t}
        os.chdir(base_cwd)
    real_stdout.write(json.dumps(results))
""")


def _expand(text: str, d: Path, tmp: Path) -> str:
    return text.replace("{d}", str(d)).replace("{tmp}", str(tmp))


def _run_cli_cases(cases, d: Path, root: Path) -> dict[str, dict]:
    """Run CLI cases in one subprocess; returns ``{id: {"rc", "stdout", "stderr", "seconds", "tmp"}}``."""
    import json

    payload = []
    for cid, module, argv, _, env in cases:
        tmp = root / cid
        tmp.mkdir()
        payload.append({"id": cid, "module": module, "argv": [_expand(a, d, tmp) for a in argv],
                        "env": {k: _expand(v, d, tmp) for k, v in env.items()}, "cwd": str(tmp)})
    r = subprocess.run([sys.executable, "-c", _DRIVER], input=json.dumps(payload), capture_output=True, text=True,
                       env=_env(), cwd=REPO, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout)
    for cid, *_ in cases:
        res[cid]["tmp"] = root / cid
    return res


def _check_cli_result(case, res, d: Path) -> None:
    cid, module, argv, expect, _ = case
    err = res["stderr"]
    lines = [ln for ln in err.splitlines() if ln.strip()]
    error_lines = [ln for ln in lines if ln.startswith("error:")]
    assert res["rc"] == 2, f"{cid}: exit {res['rc']}\n{err}"
    assert "Traceback" not in err, f"{cid}: traceback\n{err}"
    assert len(error_lines) == 1 and lines[-1] == error_lines[0], f"{cid}: not one error line at the end\n{err}"
    assert all(ln.startswith(("error:", "[ddsutils.")) for ln in lines), f"{cid}: stray stderr output\n{err}"
    assert _expand(expect, d, res["tmp"]) in error_lines[0], f"{cid}: {error_lines[0]!r} lacks {expect!r}"
    left = [p for p in res["tmp"].rglob("*") if p.is_file() or is_partial_run_folder(p)]
    assert not left, f"{cid}: left {left}"


@pytest.fixture(scope="module")
def cli_results(bad_files, tmp_path_factory):
    before = sorted(str(p.relative_to(bad_files)) for p in bad_files.rglob("*"))
    res = _run_cli_cases(CLI_CASES, bad_files, tmp_path_factory.mktemp("cli"))
    after = sorted(str(p.relative_to(bad_files)) for p in bad_files.rglob("*"))
    assert after == before, "a CLI case changed the fixture folder (e.g. wrote into an existing run)"
    slowest = max(res, key=lambda k: res[k]["seconds"])
    print(f"\nslowest CLI case (in-process part): {slowest} {res[slowest]['seconds']:.2f} s")
    return res


@pytest.mark.parametrize("case", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_cli_case(case, cli_results, bad_files):
    _check_cli_result(case, cli_results[case[0]], bad_files)


def test_cli_cases_as_real_processes(cli_results, bad_files, tmp_path):
    """The same exit status and error line from `python -m ddsutils.X` (two processes at a time)."""
    cases = [c for c in CLI_CASES if c[0] in _TRUE_SUBPROCESS]
    assert len(cases) == len(_TRUE_SUBPROCESS) and {c[1] for c in cases} >= {"stylegan2", "weights", "segmenter",
                                                                             "judges", "zoo", "experiments",
                                                                             "notebook", "demo"}
    running: list[tuple[tuple, subprocess.Popen, Path]] = []
    done = []
    for case in cases:
        tmp = tmp_path / case[0]
        tmp.mkdir()
        cmd = [sys.executable, "-m", f"ddsutils.{case[1]}", *[_expand(a, bad_files, tmp) for a in case[2]]]
        env = _env(**{k: _expand(v, bad_files, tmp) for k, v in case[4].items()})
        running.append((case, subprocess.Popen(cmd, cwd=tmp, env=env, stdout=subprocess.PIPE,
                                               stderr=subprocess.PIPE, text=True), tmp))
        if len(running) == 2 or case is cases[-1]:
            for c, proc, t in running:
                out, err = proc.communicate(timeout=120)
                done.append((c, {"rc": proc.returncode, "stdout": out, "stderr": err, "tmp": t}))
            running = []
    for case, res in done:
        _check_cli_result(case, res, bad_files)
        mine = [ln for ln in res["stderr"].splitlines() if ln.startswith("error:")][0]
        theirs = [ln for ln in cli_results[case[0]]["stderr"].splitlines() if ln.startswith("error:")][0]
        assert mine == _expand(theirs, bad_files, res["tmp"]).replace(str(cli_results[case[0]]["tmp"]), str(res["tmp"]))


def test_debug_flag_shows_the_traceback(bad_files, tmp_path):
    r = subprocess.run([sys.executable, "-m", "ddsutils.stylegan2", "info", str(bad_files / "rand.pt"), "--debug"],
                       capture_output=True, text=True, env=_env(), cwd=tmp_path, timeout=120)
    assert r.returncode == 2 and "Traceback" in r.stderr and r.stderr.strip().splitlines()[-1].startswith("error:")


# ======================================================================================================
# 4. dds run / dds evaluate (DDS_CLI_CASES, run like CLI_CASES with _run_cli_cases / _check_cli_result), dds run
#    killed with SIGKILL between two files, and dds.optimise's API cases (settings, then data), each refused
#    before any work.


@pytest.fixture(scope="module")
def dds_files(tmp_path_factory) -> Path:
    """The dds cases' folder ({d}): tiny 32 px generators g32.pt / g32b.pt, a segmenter saved for g32.pt
    (seg32.pt, part 'box'), and hostile inputs (afile, existing_run/, rand.pt)."""
    import torch

    from conftest import make_tiny_generator
    from ddsutils.core import segmenter as S

    d = tmp_path_factory.mktemp("dds_bad")
    (d / "afile").write_text("a file where a folder is expected\n")
    (d / "existing_run").mkdir()
    (d / "existing_run" / "old.txt").write_text("a previous run\n")
    (d / "rand.pt").write_bytes(bytes(range(256)) * 7)
    G = make_tiny_generator(size=32)
    torch.save({"g_ema": G.state_dict()}, d / "g32.pt")
    torch.save({"g_ema": make_tiny_generator(size=32, seed=1).state_dict()}, d / "g32b.pt")
    label = torch.zeros(1, 1, 32, 32)
    label[..., 8:20, 8:24] = 1
    seg = S.train_segmenter(G, torch.randn(1, 32, generator=torch.Generator().manual_seed(0)), label, part="box",
                            steps=2, stats_samples=2, progress=False)
    S.save_segmenter(seg, d / "seg32.pt")
    return d


_TOY = ["run", "--source", "toy-caricature-64", "--target", "toy-natural-64", "--out", "{tmp}/out", "--device", "cpu",
        "--n", "1", "--steps", "1", "--quiet"]
_TINY = ["run", "--source", "{d}/g32.pt", "--target", "{d}/g32b.pt", "--segmenter", "{d}/seg32.pt",
         "--out", "{tmp}/out", "--device", "cpu", "--n", "1", "--steps", "1", "--quiet"]
#: --out cases: with a --source that cannot be loaded, so that they show --out is checked before any loading.
_OUT = [*_TINY[:2], "{d}/rand.pt", *_TINY[3:7], *_TINY[9:]]
_EVAL = ["evaluate", "--pairs", "caricature:natural", "--n", "2", "--json", "{tmp}/e.json", "--steps", "1", "--fd-n",
         "0", "--ceiling-n", "0", "--modes", "blend", "--masks", "hair", "--quiet"]

#: ``python -m ddsutils.dds`` cases, in the format of :data:`CLI_CASES` ({d}: :func:`dds_files`). Every one must
#: fail before any segmenter training, optimisation or rendering (the error line, exit 2, nothing written). The
#: bases are tiny runs (one pair, one step), so that a guard that stops working fails its case quickly.
DDS_CLI_CASES: list[tuple[str, str, list[str], str, dict[str, str]]] = [
    # --- dds run: one argument (issue cases 9, 10, 11)
    ("dds-n-zero", "dds", [*_TINY, "--n", "0"], "--n: 0: must be >= 1", {}),
    ("dds-steps-negative", "dds", [*_TINY, "--steps", "-1"], "--steps: -1: must be >= 0", {}),
    ("dds-steps-float", "dds", [*_TINY, "--steps", "2.5"], "--steps: 2.5: must be a whole number", {}),
    ("dds-alpha-nan", "dds", [*_TINY, "--alpha", "nan"], "--alpha: nan: must be a finite number >= 0", {}),
    ("dds-gamma-negative", "dds", [*_TINY, "--gamma=-0.5"], "--gamma: -0.5: must be >= 0", {}),
    ("dds-lr-inf", "dds", [*_TINY, "--lr", "inf"], "--lr: inf: must be a finite number > 0", {}),
    ("dds-lr-zero", "dds", [*_TINY, "--lr", "0"], "--lr: 0: must be > 0", {}),
    ("dds-lr-negative", "dds", [*_TINY, "--lr=-0.01"], "--lr: -0.01: must be > 0", {}),
    ("dds-backbone-vgg19", "dds", [*_TINY, "--backbone", "vgg19"],
     "--backbone: vgg19: unknown backbone (did you mean vgg16?); choose one of: vgg16, alexnet, squeezenet1_1, "
     "resnet18, lpips-alex, lpips-vgg, generator", {}),
    ("dds-out-file", "dds", [*_OUT, "--out", "{d}/afile"], "--out: {d}/afile: is an existing file", {}),
    ("dds-out-exists", "dds", [*_OUT, "--out", "{d}/existing_run"],
     "--out: {d}/existing_run: already exists; pass --overwrite", {}),
    ("dds-out-partial", "dds", [*_OUT, "--out", "{d}/.r.partial-abc"], "temporary folder of an unfinished run", {}),
    ("dds-mask-ears", "dds", [*_TOY, "--mask", "ears"], "--mask: ears: unknown toy-world mask", {}),
    ("dds-segmenter-missing", "dds", [*_TOY, "--segmenter", "{tmp}/missing.pt"],
     "--segmenter: {tmp}/missing.pt: no such segmenter file", {}),
    ("dds-label-truncation", "dds", [*_TOY, "--label-truncation", "2"],
     "--label-truncation: 2: must be >= 0 and <= 1", {}),
    ("dds-dilation-negative", "dds", [*_TINY, "--dilation", "-1"], "--dilation: -1: must be >= 0", {}),
    ("dds-min-area-negative", "dds", [*_TINY, "--min-area", "-1"], "--min-area: -1: must be >= 0", {}),
    ("dds-feather-nan", "dds", [*_TINY, "--feather", "nan"], "--feather: nan: must be a finite number >= 0", {}),
    ("dds-snapshot-zero", "dds", [*_TINY, "--snapshot-every", "0"], "--snapshot-every: 0: must be >= 1", {}),
    ("dds-snapshot-negative", "dds", [*_TINY, "--snapshot-every", "-5"], "--snapshot-every: -5: must be >= 1", {}),
    ("dds-seed-negative", "dds", [*_TINY, "--seed", "-1"], "--seed: -1: must be >= 0", {}),
    ("dds-device-tpu", "dds", [*_OUT, "--out", "{tmp}/out", "--device", "tpu"], "--device: tpu: unknown device", {}),
    ("dds-mode-typo", "dds", [*_TINY, "--mode", "papr"], "--mode: invalid choice: 'papr'", {}),
    # --- dds run: found once the files are loaded, still before segmenter training (issue case 10)
    ("dds-resolutions", "dds", [*_TOY[:2], "{d}/g32.pt", *_TOY[3:]],
     "--target: toy-natural-64: the generators make different resolutions (source 32 px, target 64 px)", {}),
    ("dds-parser-resolution", "dds", [*_TINY[:5], *_TINY[7:]],
     "--source: {d}/g32.pt: makes 32 px images, but without --segmenter the part masks come from", {}),
    ("dds-source-garbage", "dds", [*_TOY[:2], "{d}/rand.pt", *_TOY[3:]],
     "--source: {d}/rand.pt: is not a readable PyTorch checkpoint", {}),
    ("dds-offline-vgg", "dds", _TINY,
     "--backbone: vgg16: weights 'vgg16-imagenet' are not available", {"DDS_WEIGHTS_DIR": "{tmp}/empty"}),
    ("dds-offline-lpips", "dds", [*_TINY, "--mode", "refine"], "--backbone: lpips-alex: weights 'alexnet-imagenet'",
     {"DDS_WEIGHTS_DIR": "{tmp}/empty"}),
    ("dds-segmenter-garbage", "dds", [*_TINY[:6], "{d}/rand.pt", *_TINY[7:]],
     "--segmenter: {d}/rand.pt: is not a readable segmenter file", {}),
    ("dds-segmenter-other-arch", "dds", [*_TOY, "--segmenter", "{d}/seg32.pt"],
     "--segmenter: {d}/seg32.pt: segmenter for part 'box' was trained on a generator with 32 px", {}),
    ("dds-mask-not-the-segmenters", "dds", [*_TINY, "--mask", "hair"],
     "--mask: hair: the segmenter {d}/seg32.pt shows the part 'box'", {}),
    ("dds-blend-start-99", "dds", [*_TINY, "--mode", "blend", "--blend-start", "99"],
     "--blend-start: 99: start must be a StyledConv index in 0..", {}),
    ("dds-generator-backbone-release", "dds", [*_TINY, "--mode", "release", "--backbone", "generator"],
     "--backbone: generator: works in the paper mode only", {}),
    # --- dds evaluate
    ("dds-eval-pairs-style", "dds", [*_EVAL[:1], "--pairs", "anime:natural", *_EVAL[3:]],
     "--pairs: anime: unknown toy style; choose one of: natural, sketch, caricature", {}),
    ("dds-eval-pairs-form", "dds", [*_EVAL[:1], "--pairs", "a-b", *_EVAL[3:]],
     "--pairs: a-b: wants source:target items", {}),
    ("dds-eval-pairs-same", "dds", [*_EVAL[:1], "--pairs", "natural:natural", *_EVAL[3:]],
     "--pairs: natural:natural: names one style twice", {}),
    ("dds-eval-masks", "dds", [*_EVAL, "--masks", "ears"], "--masks: ears: unknown toy-world mask", {}),
    ("dds-eval-modes", "dds", [*_EVAL, "--modes", "paper", "fast"], "--modes: invalid choice: 'fast'", {}),
    ("dds-eval-set-num-steps", "dds", [*_EVAL, "--set", "num_steps=3"],
     "--set: num_steps=3: num_steps is set with --steps", {}),
    ("dds-eval-set-abc", "dds", [*_EVAL, "--set", "alpha=abc"], "--set alpha: abc: must be a number", {}),
    ("dds-eval-set-typo", "dds", [*_EVAL, "--set", "alhpa=1"],
     "--set: alhpa: unknown optimise keyword (did you mean alpha?)", {}),
    ("dds-eval-set-form", "dds", [*_EVAL, "--set", "alpha"], "--set: alpha: wants KEY=VALUE", {}),
    ("dds-eval-set-compile", "dds", [*_EVAL, "--set", "compile=maybe"],
     "--set compile: maybe: wants true or false", {}),
    ("dds-eval-set-negative", "dds", [*_EVAL, "--set", "alpha=-1"], "--set alpha: -1: must be >= 0", {}),
    ("dds-eval-set-blend-start", "dds", [*_EVAL, "--set", "blend_start=99"],
     "--set blend_start: 99: start must be", {}),
    ("dds-eval-set-backbone", "dds", [*_EVAL, "--set", "backbone=vgg19"],
     "--set backbone: vgg19: unknown backbone", {}),
    ("dds-eval-lr-twice", "dds", [*_EVAL, "--lr", "0.1", "--set", "lr=0.2"], "--set lr: 0.2: is given twice", {}),
    ("dds-eval-fd-n", "dds", [*_EVAL, "--fd-n", "-1"], "--fd-n: -1: must be >= 0", {}),
    ("dds-eval-fd-n-one", "dds", [*_EVAL, "--fd-n", "1"], "--fd-n: 1: must be 0 (no Fréchet distance) or >= 2", {}),
    ("dds-eval-n-one", "dds", [*_EVAL, "--n", "1", "--fd-n", "2"], "--n: 1: the Fréchet distance needs at least 2", {}),
    ("dds-eval-ceiling-n", "dds", [*_EVAL, "--ceiling-n", "-1"], "--ceiling-n: -1: must be >= 0", {}),
    ("dds-eval-steps", "dds", [*_EVAL, "--steps", "-2"], "--steps: -2: must be >= 0", {}),
    ("dds-eval-json-folder", "dds", [*_EVAL, "--json", "{d}"], "--json: {d}: is a folder", {}),
    ("dds-eval-figures-file", "dds", [*_EVAL, "--figures", "{d}/afile"],
     "--figures: {d}/afile: is an existing file", {}),
    ("dds-eval-figures-under-file", "dds", [*_EVAL, "--figures", "{d}/afile/figs"], "afile is a file", {}),
    ("dds-eval-device", "dds", [*_EVAL, "--device", "tpu"], "--device: tpu: unknown device", {}),
    ("dds-eval-offline", "dds", [*_EVAL, "--modes", "blend", "refine"], "--modes: refine: weights 'alexnet-imagenet'",
     {"DDS_WEIGHTS_DIR": "{tmp}/empty"}),
]

#: dds cases that need the generators (segmenter, judge, weights) loaded to find the error; every other case must
#: fail before the command loads anything (no "[ddsutils.dds ...] loading" line).
_DDS_AFTER_LOADING = ("dds-resolutions", "dds-parser-resolution", "dds-source-garbage", "dds-offline-vgg",
                      "dds-offline-lpips", "dds-segmenter-garbage", "dds-segmenter-other-arch",
                      "dds-mask-not-the-segmenters", "dds-blend-start-99", "dds-generator-backbone-release",
                      "dds-eval-set-negative", "dds-eval-set-blend-start", "dds-eval-set-backbone", "dds-eval-offline")

#: dds cases also run as real ``python -m ddsutils.dds`` processes.
_DDS_TRUE_SUBPROCESS = ("dds-n-zero", "dds-resolutions", "dds-eval-set-abc")


@pytest.fixture(scope="module")
def dds_cli_results(dds_files, tmp_path_factory):
    before = sorted(str(p.relative_to(dds_files)) for p in dds_files.rglob("*"))
    res = _run_cli_cases(DDS_CLI_CASES, dds_files, tmp_path_factory.mktemp("dds_cli"))
    after = sorted(str(p.relative_to(dds_files)) for p in dds_files.rglob("*"))
    assert after == before, "a dds case changed the fixture folder (e.g. wrote into an existing run)"
    slowest = max(res, key=lambda k: res[k]["seconds"])
    print(f"\nslowest dds case (in-process part): {slowest} {res[slowest]['seconds']:.2f} s")
    return res


@pytest.mark.parametrize("case", DDS_CLI_CASES, ids=[c[0] for c in DDS_CLI_CASES])
def test_dds_cli_case(case, dds_cli_results, dds_files):
    _check_cli_result(case, dds_cli_results[case[0]], dds_files)
    if case[0] not in _DDS_AFTER_LOADING:  # refused from the arguments alone, before any file is loaded
        assert "[ddsutils.dds" not in dds_cli_results[case[0]]["stderr"], dds_cli_results[case[0]]["stderr"]


def test_dds_cli_cases_as_real_processes(dds_cli_results, dds_files, tmp_path):
    """`python -m ddsutils.dds` gives the same exit status and error line as the in-process run."""
    for case in [c for c in DDS_CLI_CASES if c[0] in _DDS_TRUE_SUBPROCESS]:
        tmp = tmp_path / case[0]
        tmp.mkdir()
        r = subprocess.run([sys.executable, "-m", "ddsutils.dds", *[_expand(a, dds_files, tmp) for a in case[2]]],
                           cwd=tmp, env=_env(), capture_output=True, text=True, timeout=120)
        res = {"rc": r.returncode, "stdout": r.stdout, "stderr": r.stderr, "tmp": tmp}
        _check_cli_result(case, res, dds_files)
        mine = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")][0]
        theirs = [ln for ln in dds_cli_results[case[0]]["stderr"].splitlines() if ln.startswith("error:")][0]
        assert mine == theirs.replace(str(dds_cli_results[case[0]]["tmp"]), str(tmp))


def test_dds_run_debug_shows_the_traceback(dds_files, tmp_path):
    r = subprocess.run([sys.executable, "-m", "ddsutils.dds", *[_expand(a, dds_files, tmp_path) for a in _TOY],
                        "--source", str(dds_files / "g32.pt"), "--debug"],
                       capture_output=True, text=True, env=_env(), cwd=tmp_path, timeout=120)
    assert r.returncode == 2 and "Traceback" in r.stderr and "different resolutions" in r.stderr.splitlines()[-1]


# ------------------------------------------------------------------------------------------------------
# dds run killed with SIGKILL between two files: --out is absent (or the previous complete run), never partial


def _dds_tiny_run(d: Path, out: Path, *extra: str, kill_after: int | None = None) -> subprocess.CompletedProcess:
    env = _env(**({"DDS_TEST_KILL_AFTER_WRITES": str(kill_after)} if kill_after else {}))
    cmd = [sys.executable, "-m", "ddsutils.dds", "run", "--source", str(d / "g32.pt"), "--target", str(d / "g32b.pt"),
           "--segmenter", str(d / "seg32.pt"), "--n", "1", "--steps", "1", "--backbone", "generator", "--device", "cpu",
           "--quiet", "--out", str(out), *extra]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=out.parent, timeout=300)


def _assert_complete(out: Path) -> dict:
    import json

    rec = json.loads((out / "record.json").read_text())
    assert sorted(os.listdir(out)) == sorted([*rec["files"], "record.json"]), os.listdir(out)
    return rec


def test_dds_run_sigkill_leaves_no_partial_folder(dds_files, tmp_path):
    """DDS_TEST_KILL_AFTER_WRITES=k kills `dds run` right after its k-th file (a paper run writes 10: 9 files listed
    in record.json, then record.json): --out never appears; a later run sweeps the leftovers and completes."""
    out = tmp_path / "run"
    for k in (1, 4, 9, 10):
        r = _dds_tiny_run(dds_files, out, kill_after=k)
        assert r.returncode == -signal.SIGKILL, (k, r.stderr[-2000:])
        assert not out.exists(), k
        partial = [p for p in tmp_path.iterdir() if p.name != "run"]
        assert partial and all(is_partial_run_folder(p) for p in partial), partial
        assert sum(len(os.listdir(p)) for p in partial) >= k  # killed in the write phase, files had been written
    r = _dds_tiny_run(dds_files, out)
    assert r.returncode == 0, r.stderr[-2000:]
    rec = _assert_complete(out)
    assert len(rec["files"]) == 9 and os.listdir(tmp_path) == ["run"]  # leftovers swept


def test_dds_run_sigkill_during_overwrite_keeps_the_previous_run(dds_files, tmp_path):
    """A killed --overwrite rerun leaves the previous complete run as it was, byte for byte."""
    out = tmp_path / "run"
    r = _dds_tiny_run(dds_files, out, "--seed", "1")
    assert r.returncode == 0, r.stderr[-2000:]
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    r = _dds_tiny_run(dds_files, out, "--overwrite", kill_after=5)
    assert r.returncode == -signal.SIGKILL, r.stderr[-2000:]
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    _assert_complete(out)


# ------------------------------------------------------------------------------------------------------
# dds.optimise: every setting and input checked before any work


@pytest.fixture(scope="module")
def dds_pair():
    from conftest import make_tiny_generator

    return make_tiny_generator(size=32, seed=0), make_tiny_generator(size=32, seed=1)


def _dds_inputs(n: int = 2):
    import torch

    z = torch.randn(n, 32, generator=torch.Generator().manual_seed(0))
    y = torch.zeros(n, 1, 32, 32)
    y[..., 8:20, 8:24] = 1
    return z, y


@pytest.fixture
def no_dds_work(monkeypatch):
    """Fail the test if optimise gets as far as building a feature extractor, an initial latent or a blend."""
    from ddsutils.core import dds

    def fail(*a, **k):
        raise AssertionError("optimise started working before refusing its input")

    for name in ("make_feature_extractor", "_initial_latent", "_blend_image"):
        monkeypatch.setattr(dds, name, fail)


_NAN, _INF = float("nan"), float("inf")

#: (keywords of dds.optimise, text of the UserError): settings, refused before the references are made.
DDS_API_SETTING_CASES = [
    ({"num_steps": -1}, "num_steps: -1: must be >= 0"),
    ({"num_steps": 2.5}, "num_steps: 2.5: must be a whole number"),
    ({"lr": _INF}, "lr: inf: must be a finite number > 0"),
    ({"lr": 0.0}, "lr: 0.0: must be > 0"),
    ({"lr": -0.01}, "lr: -0.01: must be > 0"),
    ({"lr": _NAN}, "lr: nan: must be a finite number > 0"),
    ({"alpha": _NAN}, "alpha: nan: must be a finite number >= 0"),
    ({"beta": _INF}, "beta: inf: must be a finite number >= 0"),
    ({"gamma": -1.0}, "gamma: -1.0: must be >= 0"),
    ({"inside_weight": _NAN, "mode": "refine"}, "inside_weight: nan: must be a finite number >= 0"),
    ({"mse_weight": -1.0, "mode": "refine"}, "mse_weight: -1.0: must be >= 0"),
    ({"dilation": -1, "mode": "blend"}, "dilation: -1: dilation and feather must be >= 0"),
    ({"min_area": -1, "mode": "blend"}, "min_area: -1: must be >= 0 (0 leaves the mask as it is)"),
    ({"min_area": 2.5, "mode": "refine"}, "min_area: 2.5: must be a whole number"),
    ({"dilation": 1.5, "mode": "blend"}, "dilation: 1.5: must be a whole number"),
    ({"feather": -1.0, "mode": "blend"}, "feather: -1.0: dilation and feather must be >= 0"),
    ({"feather": _NAN, "mode": "blend"}, "feather: nan: must be a finite number"),
    ({"blend_start": 99, "mode": "blend"}, "blend_start: 99: start must be a StyledConv index in 0.."),
    ({"blend_start": -1, "mode": "blend"}, "blend_start: -1: start must be a StyledConv index in 0.."),
    ({"blend_start": 2.5, "mode": "blend"}, "blend_start: 2.5: must be a whole number"),
    ({"snapshot_every": 0}, "snapshot_every: 0: must be >= 1"),
    ({"snapshot_every": -3}, "snapshot_every: -3: must be >= 1"),
    ({"backbone": "vgg19"}, "backbone: vgg19: unknown backbone (did you mean vgg16?)"),
    ({"backbone": "generator", "mode": "release"}, "backbone: generator: works in the paper mode only"),
    ({"mode": "papr"}, "mode: papr: unknown mode (did you mean paper?)"),
    ({"latent_space": "w++"}, "latent_space: w++: unknown value"),
    ({"init": "best"}, "init: best: unknown value"),
    ({"seed": "abc"}, "seed: abc: must be a whole number"),
    ({"seed": 1.5}, "seed: 1.5: must be a whole number"),
    ({"device": "tpu"}, "device: tpu: unknown device"),
    ({"ref_truncation": 1.5}, "ref_truncation: 1.5: must be a truncation"),
    ({"n_mean_latent": 0, "mode": "release"}, "n_mean_latent: 0: must be >= 1"),
    ({"resize": 0}, "resize: 0: must be >= 1"),
    ({"callback": 3}, "callback: must be a function"),
    ({"release_domain1": "both", "mode": "release"},
     "release_domain1: both: unknown value; choose one of: target, source"),
    ({"composite": "mix", "mode": "refine"}, "composite: mix: unknown value; choose one of: blend, paste"),
    ({"norm": "l1"}, "norm: l1: unknown value; choose one of: mse, paper"),
    ({"mask_resize": "cubic"}, "mask_resize: cubic: unknown value"),
    ({"normalize": "zscore"}, "normalize: zscore: unknown value"),
    ({"backbone_weights": "/nonexistent/vgg.pth"}, "backbone_weights: /nonexistent/vgg.pth: no such state-dict file"),
]


@pytest.mark.parametrize("kwargs, text", DDS_API_SETTING_CASES, ids=[str(c[0]) for c in DDS_API_SETTING_CASES])
def test_dds_optimise_refuses_a_bad_setting_first(dds_pair, no_dds_work, monkeypatch, kwargs, text):
    from ddsutils.core import dds

    monkeypatch.setattr(dds, "_reference", lambda *a, **k: pytest.fail("references made before the check"))
    z, y = _dds_inputs()
    with pytest.raises(cli.UserError) as info:
        dds.optimise(*dds_pair, z_star=z, y_s=y, y_t=y, **{"device": "cpu", "progress": False, **kwargs})
    assert text in str(info.value)


def test_dds_optimise_refuses_bad_generators(dds_pair, no_dds_work):
    from conftest import make_tiny_generator
    from ddsutils.core import dds

    z, y = _dds_inputs()
    with pytest.raises(cli.UserError, match="G_s: must be a ddsutils Generator, got a str 'toy-natural-64'"):
        dds.optimise("toy-natural-64", dds_pair[1], z_star=z, y_s=y, y_t=y, device="cpu")
    with pytest.raises(cli.UserError, match=r"G_t: the generators make different resolutions \(source 32 px, target "
                                            r"16 px\)"):
        dds.optimise(dds_pair[0], make_tiny_generator(size=16), z_star=z, y_s=y, y_t=y, device="cpu")
    with pytest.raises(cli.UserError, match=r"G_t: the generators have different latent widths \(source 32, target "
                                            r"16\)"):
        dds.optimise(dds_pair[0], make_tiny_generator(size=32, style_dim=16), z_star=z, y_s=y, y_t=y, device="cpu")


def _meta_mask():
    import torch

    return torch.zeros(2, 1, 32, 32, device="meta")


#: (keywords replacing the inputs of a 2-pair call, text): data, refused before any extractor / latent / blend;
#: the first group (latents, seeds, a missing mask) before the references G(z*) are made.
_EARLY = 7
DDS_API_DATA_CASES = [
    ({"z_star": "zeros(0, 32)"}, "z_star: is empty (N = 0)"),
    ({"z_star": "full((2, 32), nan)"}, "z_star: contains NaN or inf"),
    ({"z_star": "zeros(2, 16)"}, "z_star: must be a tensor [N, 32], got shape [2, 16]"),
    ({"z_star": [[0.0] * 32] * 2}, "z_star: must be a tensor [N, 32], got list"),
    ({"seed": [1, 2, 3]}, "seed: [1, 2, 3]: has 3 seeds for 2 samples"),
    ({"seed": [1, "x"]}, "seed: x: must be a whole number"),
    ({"y_t": None}, "y_t: is missing: masks y_s and y_t are required"),
    ({"z_star": None, "x_s": "zeros(0, 3, 32, 32)", "x_t": "zeros(0, 3, 32, 32)"}, "x_s: is empty (N = 0)"),
    ({"x_s": "zeros(3, 3, 32, 32)", "x_t": "zeros(3, 3, 32, 32)"}, "z_star: has 2 latents but the images have batch 3"),
    ({"y_s": "meta"}, "y_s: is a tensor on the meta device"),
    ({"y_t": [[0, 1]]}, "y_t: must be a tensor [N, 1, H, W] in {0, 1}, got list"),
    ({"y_s": "ones(2, 3, 32, 32)"}, "y_s: must be [N, 1, H, W] (or [N, H, W]), got shape [2, 3, 32, 32]"),
    ({"y_s": "ones(2, 1, 32, 32) * 0.5"}, "y_s: must be binary {0, 1}"),
    ({"y_s": "ones(3, 1, 32, 32)"}, "y_s: has batch 3, expected 2"),
    ({"z_star": None, "x_s": "zeros(2, 3, 32, 32)", "x_t": "full((2, 3, 32, 32), 2.0)"}, "x_t: has values in"),
    ({"z_star": None, "x_s": "zeros(2, 3, 32, 32)", "x_t": None}, "z_star: give either z_star"),
    ({"z_star": None, "x_s": "zeros(2, 3, 32, 32)", "x_t": "zeros(2, 3, 32, 32)", "mode": "refine"},
     "composite: blend: refine with composite='blend' needs z_star"),
    ({"z_star": None, "x_s": "zeros(2, 3, 32, 32)", "x_t": "zeros(2, 3, 32, 32)", "backbone": "generator"},
     "backbone: generator: backbone='generator' works in paper mode with z_star"),
]


@pytest.mark.parametrize("i", range(len(DDS_API_DATA_CASES)),
                         ids=[__import__("re").sub(r"\W+", "_", c[1])[:60] for c in DDS_API_DATA_CASES])
def test_dds_optimise_refuses_bad_data_first(dds_pair, no_dds_work, monkeypatch, i):
    import torch

    from ddsutils.core import dds

    kwargs, text = DDS_API_DATA_CASES[i]
    if i < _EARLY:
        monkeypatch.setattr(dds, "_reference", lambda *a, **k: pytest.fail("references made before the check"))
    z, y = _dds_inputs()
    call = {"z_star": z, "y_s": y, "y_t": y.clone()}
    for k, v in kwargs.items():
        if v == "meta":
            v = _meta_mask()
        elif isinstance(v, str) and k not in ("mode", "backbone"):
            v = eval(v, {"zeros": torch.zeros, "ones": torch.ones, "full": torch.full, "nan": float("nan")})
        call[k] = v
    with pytest.raises(cli.UserError) as info:
        dds.optimise(*dds_pair, device="cpu", progress=False, **call)
    assert text in str(info.value)


def test_dds_masks_for_checks_before_loading_or_training(dds_pair, monkeypatch):
    """_masks_for (dds run's masks): a bad segmenter_on, label_truncation or mask, or a generator the judge parser
    cannot label (32 px vs 64 px), is refused before the parser labels anything or a segmenter is trained."""
    import torch

    from ddsutils.toy import judges

    monkeypatch.setattr(oracle, "train_from_oracle", lambda *a, **k: pytest.fail("a segmenter was trained"))
    monkeypatch.setattr(judges, "predict_parts", lambda *a, **k: pytest.fail("the parser labelled images"))
    z = torch.randn(1, 32)
    base = dict(mask="hair", segmenter_path=None, segmenter_on="source", seed=0, device=torch.device("cpu"))
    for kw, text in (({"segmenter_on": "both"}, "segmenter_on: both: unknown value; choose one of: source, target"),
                     ({"label_truncation": float("nan")}, "label_truncation: nan: must be a finite number >= 0"),
                     ({"mask": "ears"}, "mask: ears: unknown toy-world mask"),
                     ({}, "the toy-world judge parser reads 64 px images but the source generator makes 32 px")):
        with pytest.raises(cli.UserError) as info:
            oracle.masks_for(*dds_pair, z, **{**base, **kw})
        assert text in str(info.value)


@pytest.mark.filterwarnings("ignore:y_[st] (is empty|covers)")
def test_dds_optimise_takes_numpy_masks_and_zero_steps(dds_pair):
    """A numpy mask (bool, uint8 or float) gives the result of the same tensor mask; num_steps=0 and
    snapshot_every=None are valid (the initial latent's image, no snapshots)."""
    import torch

    from ddsutils.core import dds

    z, y = _dds_inputs()
    kw = dict(z_star=z, backbone="generator", num_steps=2, device="cpu", progress=False)
    ref = dds.optimise(*dds_pair, y_s=y, y_t=y, **kw)
    for arr in (y.numpy(), y.numpy().astype("uint8"), y.numpy().astype(bool), y[:, 0].numpy()):
        got = dds.optimise(*dds_pair, y_s=arr, y_t=y.numpy(), **kw)
        assert torch.equal(got.image, ref.image) and torch.equal(got.y_s, ref.y_s)
    r = dds.optimise(*dds_pair, y_s=y, y_t=y, **{**kw, "num_steps": 0, "snapshot_every": None})
    assert r.snapshots == [] and r.history["total"].shape == (0, 2) and r.config["num_steps"] == 0


@pytest.mark.gpu
def test_dds_optimise_masks_on_another_device(dds_pair):
    """Masks on the GPU with a CPU run (and the reverse) give the all-CPU result."""
    import torch

    from ddsutils.core import dds

    z, y = _dds_inputs()
    kw = dict(z_star=z, backbone="generator", num_steps=2, progress=False)
    ref = dds.optimise(*dds_pair, y_s=y, y_t=y, device="cpu", **kw)
    got = dds.optimise(*dds_pair, y_s=y.cuda(), y_t=y.cuda(), device="cpu", **kw)
    assert torch.equal(got.image, ref.image)
    gpu = dds.optimise(*dds_pair, y_s=y, y_t=y, device="cuda", **kw)
    assert gpu.image.device.type == "cpu" and torch.allclose(gpu.image, ref.image, atol=1e-3)


def test_progress_bars_follow_tqdm_disable(monkeypatch):
    """tqdm lets an explicit disable=False win over TQDM_DISABLE; cli.no_progress makes the variable count."""
    from ddsutils.core import cli

    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    assert cli.no_progress(True) is False and cli.no_progress(False) is True
    for value in ("1", "true", "True"):
        monkeypatch.setenv("TQDM_DISABLE", value)
        assert cli.no_progress(True) is True
    monkeypatch.setenv("TQDM_DISABLE", "0")
    assert cli.no_progress(True) is False
