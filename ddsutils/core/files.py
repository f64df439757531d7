"""Files written whole or not at all, run folders that appear complete or not at all, and safe checkpoint loading.

- :func:`atomic_write_bytes` / :func:`atomic_torch_save`: a file is either its old self or completely new,
  never half-written (temp file in the same folder, then ``os.replace``).
- :func:`run_folder`: a context manager for a folder of results. Everything is written into a hidden
  temporary sibling, which is renamed into place only when the ``with`` block ends without an exception; an
  existing folder is refused unless ``overwrite=True``, which replaces it whole (no file of the old run
  survives). :func:`check_run_folder` is the same check on its own, for validating ``--out`` before heavy work.
- :func:`torch_load` loads a checkpoint with ``weights_only=True`` and tells a corrupt or foreign file
  (random bytes, text, a truncated download) from a pickle that asks for code (:class:`NotACheckpointError`
  vs :class:`UnsafeCheckpointError`); :func:`nonfinite_tensors` lists weights that are NaN or infinite.

Test hook: with ``DDS_TEST_KILL_AFTER_WRITES=N`` in the environment, the process SIGKILLs itself right after
its N-th :func:`atomic_write_bytes` (tests use it to kill a command between two files of a run folder).

Used by every module that saves or loads (checkpoints, segmenters, judges, figures, results, run folders).
"""
from __future__ import annotations

import contextlib
import errno
import io
import os
import pickletools
import re
import shutil
import signal
import tempfile
import time
import warnings
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from .errors import UserError

__all__ = [
    "atomic_write_bytes", "atomic_torch_save", "run_folder", "check_run_folder", "is_partial_run_folder",
    "torch_load", "NotACheckpointError", "UnsafeCheckpointError", "nonfinite_tensors",
]

_PARTIAL = ".partial-"  # hidden temporary siblings: .<name>.partial-<random> (a run being written)
_CREATING = ".creating-"  # .<name>.creating-<random>: exists only until its lock is taken
_OLD = ".replaced-"  # .<name>.replaced-<random>: the previous folder while --overwrite swaps it out
_STALE_CREATING_S = 60.0
_writes = 0


def _kill_hook() -> None:
    """SIGKILL this process after its ``$DDS_TEST_KILL_AFTER_WRITES``-th atomic write (tests only)."""
    global _writes
    limit = os.environ.get("DDS_TEST_KILL_AFTER_WRITES")
    if limit:
        _writes += 1
        if _writes >= int(limit):
            os.kill(os.getpid(), signal.SIGKILL)


def atomic_write_bytes(data: bytes, path: str | os.PathLike) -> Path:
    """Write ``data`` to ``path`` via a temp file in the same folder and ``os.replace`` (mode 0644)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _kill_hook()
    return path


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save(obj)`` written atomically (serialised in memory first)."""
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return atomic_write_bytes(buf.getvalue(), path)


# ----------------------------------------------------------------------------------------------------
# Run folders


def is_partial_run_folder(path: str | os.PathLike) -> bool:
    """Whether ``path`` is one of :func:`run_folder`'s hidden temporary siblings (never a result)."""
    name = Path(path).name
    return name.startswith(".") and any(tag in name for tag in (_PARTIAL, _CREATING, _OLD))


def _lock(fd: int, *, block: bool) -> bool:
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if block else fcntl.LOCK_NB))
        return True
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        raise


def _sweep(out: Path, *, argument: str | None, own: Path) -> None:
    """Remove stale temporary siblings of ``out`` (left by a killed run); refuse while a live run holds one."""
    parent = out.parent
    if not parent.is_dir():
        return
    for tmp in sorted(parent.glob(f".{out.name}.*")):
        name = tmp.name[len(out.name) + 1:]
        if tmp == own or not tmp.is_dir() or not name.startswith((_PARTIAL, _CREATING, _OLD)):
            continue
        if name.startswith(_CREATING):  # unlocked for a moment by design: only old ones are stale
            with contextlib.suppress(OSError):
                if time.time() - tmp.stat().st_mtime > _STALE_CREATING_S:
                    shutil.rmtree(tmp, ignore_errors=True)
            continue
        try:
            fd = os.open(tmp, os.O_RDONLY)
        except OSError:
            continue
        try:
            if not _lock(fd, block=False):
                raise UserError(f"another run is writing this folder right now (its temporary folder {tmp} is "
                                "locked); wait for it to finish or choose another folder", argument=argument,
                                value=str(out))
            shutil.rmtree(tmp, ignore_errors=True)  # ours and unlocked: its run was killed
        finally:
            os.close(fd)


def check_run_folder(out: str | os.PathLike, *, overwrite: bool = False, argument: str | None = "--out") -> Path:
    """Check that :func:`run_folder` may write ``out``; returns it as a ``Path``.

    Raises:
        UserError (naming ``argument``): ``out`` is empty, a file, a hidden temporary folder of a run, inside a
            file, in a folder that cannot be written, or it exists and ``overwrite`` is false (the message names
            ``--overwrite``).
    """
    text = os.fspath(out) if isinstance(out, os.PathLike) else str(out)
    if not text.strip():
        raise UserError("is empty; give a folder for the results", argument=argument, value=text)
    p = Path(text).expanduser()
    if p.name in ("", ".", ".."):
        p = p.resolve()
    if is_partial_run_folder(p):
        raise UserError("is the temporary folder of an unfinished run, not a result; choose another folder",
                        argument=argument, value=text)
    if p.exists() or p.is_symlink():
        if not p.is_dir():
            raise UserError("is an existing file, not a folder; choose a folder name for the results",
                            argument=argument, value=text)
        if not overwrite:
            raise UserError("already exists; pass --overwrite to replace it whole, or choose another folder",
                            argument=argument, value=text)
        if p.resolve() in (Path.cwd().resolve(), *Path.cwd().resolve().parents, Path.home().resolve()):
            raise UserError("is the current folder, one above it or the home folder; --overwrite would delete it "
                            "whole: choose a dedicated results folder", argument=argument, value=text)
    for parent in p.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UserError(f"{parent} is a file, so the folder cannot be made; choose another path",
                                argument=argument, value=text)
            if not os.access(parent, os.W_OK | os.X_OK):
                raise UserError(f"cannot write into {parent} (permission denied); choose another path",
                                argument=argument, value=text)
            break
    return p


@contextlib.contextmanager
def run_folder(out: str | os.PathLike, *, overwrite: bool = False, argument: str | None = "--out") -> Iterator[Path]:
    """Write a folder of results whole or not at all.

    Yields a new empty hidden sibling ``<parent>/.<name>.partial-<random>`` (same file system, so the final
    rename is atomic) to write everything into, with any writer (:func:`atomic_write_bytes`,
    ``viz.save_png``, ``torch.save``, sub-folders). When the block ends normally it is renamed to ``out``;
    when it raises (or Ctrl-C), it is deleted and ``out`` is untouched. A SIGKILL or power loss leaves only
    the hidden sibling, whose name never looks like a result (:func:`is_partial_run_folder`); the next
    ``run_folder`` for the same ``out`` deletes it. The temporary folder is ``flock``-ed while in use, so a
    second run for the same ``out`` is refused at once instead of overwriting the first (and a lock left by
    a killed process is released by the kernel).

    Args:
        out: the final folder.
        overwrite: replace an existing ``out`` whole (the old folder is swapped out and deleted only after the
            new one is in place; files of the old run never mix with the new ones). Without it an existing
            ``out`` is an error naming ``--overwrite``.
        argument: the command-line argument ``out`` came from (named in errors).

    Raises:
        UserError: see :func:`check_run_folder`; also when another run holds ``out``, or when ``out`` appeared
            while this run was writing (then this run's results are discarded).

    Example::

        with run_folder(a.out, overwrite=a.overwrite) as tmp:
            viz.save_png(img, tmp / "source.png")
            atomic_write_bytes(record, tmp / "record.json")
    """
    out = check_run_folder(out, overwrite=overwrite, argument=argument)
    out.parent.mkdir(parents=True, exist_ok=True)
    creating = Path(tempfile.mkdtemp(prefix=f".{out.name}{_CREATING}", dir=out.parent))
    fd = os.open(creating, os.O_RDONLY)
    try:
        _lock(fd, block=True)
        tmp = creating.with_name(f".{out.name}{_PARTIAL}{creating.name.rsplit('-', 1)[-1]}")
        os.rename(creating, tmp)  # appears under the swept name only once locked
        os.chmod(tmp, 0o755)  # mkdtemp creates 0700
        try:
            _sweep(out, argument=argument, own=tmp)
            yield tmp
            _install(tmp, out, overwrite=overwrite, argument=argument)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    finally:
        os.close(fd)


def _install(tmp: Path, out: Path, *, overwrite: bool, argument: str | None) -> None:
    """Rename ``tmp`` to ``out``; with ``overwrite`` swap an existing ``out`` out first and delete it after."""
    old = None
    if out.exists() or out.is_symlink():
        if not overwrite or not out.is_dir():
            raise UserError("appeared while this run was writing (another program wrote it); this run's results "
                            "were discarded: rerun with --overwrite to replace it, or choose another folder",
                            argument=argument, value=str(out))
        old = out.with_name(f".{out.name}{_OLD}{tmp.name.rsplit('-', 1)[-1]}")
        os.rename(out, old)
    try:
        os.rename(tmp, out)
    except OSError as exc:
        if old is not None and not out.exists():
            os.rename(old, out)  # put the previous results back
        if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
            raise UserError("appeared while this run was writing; this run's results were discarded",
                            argument=argument, value=str(out)) from None
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# ----------------------------------------------------------------------------------------------------
# Safe checkpoint loading


class NotACheckpointError(UserError):
    """The file is not a PyTorch checkpoint at all, or it is damaged (empty, truncated, random bytes, text);
    ``detail`` says what it looks like (e.g. ``"1000 bytes, neither a torch zip archive nor an intact pickle"``)."""

    def __init__(self, message: str, *, detail: str = "", **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.detail = detail or message


class UnsafeCheckpointError(UserError):
    """The file is a pickle that names code outside the ``weights_only`` allow-list (``globals`` lists it)."""

    def __init__(self, message: str, *, globals_: Sequence[str] = (), **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.globals = list(globals_)


_SAFE_MODULES = ("torch", "collections", "_codecs", "builtins", "argparse", "numpy")


def _pickle_globals(data: bytes) -> list[str]:
    """The ``module.name`` globals a pickle would import, found without executing it.

    Raises ``ValueError`` (or another exception of ``pickletools``) when ``data`` is not a complete pickle.
    """
    found: list[str] = []
    strings: list[str] = []
    stop = False
    for op, arg, _ in pickletools.genops(io.BytesIO(data)):
        if op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8", "SHORT_BINSTRING",
                       "BINSTRING", "STRING"):
            strings.append(str(arg))
        elif op.name in ("GLOBAL", "INST"):
            found.append(str(arg).replace(" ", "."))
        elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
            found.append(f"{strings[-2]}.{strings[-1]}")
        elif op.name == "STOP":
            stop = True
    if not stop:
        raise ValueError("no STOP opcode")
    return found


def _classify(path: Path, exc: BaseException) -> UserError:
    """Why ``torch.load(path, weights_only=True)`` failed: a foreign / damaged file or an unsafe pickle."""
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    size = path.stat().st_size
    if size == 0:
        return NotACheckpointError(f"{path} is empty (0 bytes): not a checkpoint; download or save it again",
                                   detail="an empty file")
    data: bytes | None
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as zf:
                pkl = [n for n in zf.namelist() if n.endswith("data.pkl")]
                data = zf.read(pkl[0]) if pkl else None
        except (zipfile.BadZipFile, OSError, EOFError, KeyError, RuntimeError):
            data = None
    else:
        data = path.read_bytes() if size < (256 << 20) else None
    globs: list[str] = []
    parsed = False
    if data is not None:
        try:
            globs = _pickle_globals(data)
            parsed = True
        except Exception:  # noqa: BLE001 - anything pickletools cannot walk is not an intact pickle
            parsed = False
    unsafe = sorted({g for g in globs if g.split(".")[0] not in _SAFE_MODULES})
    if "Unsupported global" in str(exc) or (parsed and unsafe):
        named = unsafe or re.findall(r"GLOBAL ([\w.]+)", str(exc))[:3]
        return UnsafeCheckpointError(
            f"{path} is a pickle that asks to import code outside the weights-only allow-list "
            f"({', '.join(named) or reason}); it was not loaded", globals_=named)
    with open(path, "rb") as f:
        zip_magic = f.read(4) == b"PK\x03\x04"
    if zip_magic:
        what = "a truncated or damaged torch zip archive"
    elif not parsed:
        what = "neither a torch zip archive nor an intact pickle"
    else:
        what = reason
    return NotACheckpointError(f"{path} is not a PyTorch checkpoint or is corrupt ({size} bytes, {what}); it may be "
                               "truncated, another format or the wrong file: download or save it again",
                               detail=f"{size} bytes, {what}")


def torch_load(path: str | os.PathLike, *, safe_globals: Sequence[Any] = ()) -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)`` with clear errors.

    Args:
        path: the file.
        safe_globals: extra classes to allow (e.g. ``argparse.Namespace`` for rosinality checkpoints).

    Raises:
        FileNotFoundError: no file at ``path``.
        NotACheckpointError: empty, truncated, random bytes, text, another format.
        UnsafeCheckpointError: a pickle naming code outside the allow-list (nothing of it was run).
    """
    import torch

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no file at {p}")
    try:
        with torch.serialization.safe_globals(list(safe_globals)), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch's safe unpickler raises many types on foreign input
        raise _classify(p, exc) from exc


def nonfinite_tensors(state: Mapping[str, Any], *, prefix: str = "") -> list[str]:
    """Keys of floating-point tensors in a (nested) state dict that hold a NaN or an infinity."""
    import torch

    bad: list[str] = []
    for k, v in state.items():
        key = f"{prefix}{k}"
        if isinstance(v, torch.Tensor):
            if (v.is_floating_point() or v.is_complex()) and v.numel() and not bool(torch.isfinite(v).all()):
                bad.append(key)
        elif isinstance(v, Mapping):
            bad += nonfinite_tensors(v, prefix=f"{key}.")
    return bad
