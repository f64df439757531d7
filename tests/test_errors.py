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

from ddsutils import cli
from ddsutils.files import atomic_write_bytes, check_run_folder, is_partial_run_folder, run_folder

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
    from ddsutils import viz
    from ddsutils.files import atomic_write_bytes, run_folder
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
