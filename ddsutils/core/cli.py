"""The shared front end of every ``python -m ddsutils.<module>`` command line: one line per user error.

- :class:`UserError` (from :mod:`ddsutils.core.errors`, a ``ValueError``) carries the message and, when known,
  the argument and the bad value; the modules' error classes derive from it.
- :func:`command` wraps a module's ``main(argv)``: a :class:`UserError` becomes ONE line on stderr,
  ``error: <argument>: <bad value>: <what is wrong and the fix>``, and exit status 2, without a traceback
  (``--debug`` or ``DDS_DEBUG=1`` prints it too). Any other exception is a bug and keeps its traceback.
- :class:`ArgumentParser` prints argparse's own errors in the same one-line form and lists ``--debug``.
- Validators (:func:`int_arg`, :func:`positive_int`, :func:`float_arg`, :func:`existing_file`,
  :func:`output_file`, :func:`output_folder`, :func:`choice`, :func:`device`, :func:`load`) check one value,
  return it converted and raise :class:`UserError` naming the argument; :func:`argtype` makes one an argparse
  ``type=``. Commands check every argument before any heavy work.
- :func:`say` prints what a command is about to do before each long phase; :func:`no_progress` turns
  progress bars off when asked or when ``TQDM_DISABLE`` is set.

    @cli.command
    def main(argv=None):
        p = cli.ArgumentParser(prog="python -m ddsutils.x")
        p.add_argument("--n", type=cli.argtype(cli.positive_int), default=4)
        a = p.parse_args(argv)
        out = cli.output_folder(a.out, "--out", overwrite=a.overwrite)

Used in: every ``ddsutils`` command line.
"""
from __future__ import annotations

import argparse
import difflib
import functools
import math
import numbers
import os
import re
import sys
import traceback
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from .errors import UserError

__all__ = [
    "UserError", "command", "ArgumentParser", "debug_requested", "one_line", "say",
    "int_arg", "positive_int", "non_negative_int", "float_arg", "existing_file", "output_file", "output_folder",
    "choice", "device", "load", "argtype", "no_progress",
]

T = TypeVar("T")


def one_line(text: str) -> str:
    """Collapse a message onto one line (newlines and runs of spaces become one space)."""
    return re.sub(r"\s+", " ", str(text)).strip()


def debug_requested(argv: Sequence[str] | None = None) -> bool:
    """``--debug`` before any ``--`` in ``argv``, or ``DDS_DEBUG`` set to ``1``/``true``/``yes``/``on``."""
    if os.environ.get("DDS_DEBUG", "").strip().lower() in {"1", "true", "yes", "on"}:
        return True
    args = list(argv or [])
    return "--debug" in (args[: args.index("--")] if "--" in args else args)


def say(message: str, *, prog: str | None = None) -> None:
    """Tell the user what a command is about to do: one line on stderr, flushed (before each long phase)."""
    print(f"[{prog}] {message}" if prog else message, file=sys.stderr, flush=True)


def no_progress(progress: bool) -> bool:
    """``disable=`` for a ``tqdm.auto`` bar: off when ``progress`` is false or ``TQDM_DISABLE`` is set (CI, the
    notebook runner's kernels); tqdm itself lets an explicit ``disable=False`` win over the variable."""
    return not progress or os.environ.get("TQDM_DISABLE", "").strip().lower() not in ("", "0", "false", "no")


def command(main: Callable[..., int]) -> Callable[..., int]:
    """Decorate a module's ``main(argv=None, **kwargs) -> int`` with the shared error handling.

    A :class:`UserError` raised anywhere inside prints ``error: <str(error)>`` on one line to stderr and the
    wrapper returns 2; with ``--debug`` (or ``DDS_DEBUG=1``) the traceback is printed first. Ctrl-C returns 130
    with one line. ``SystemExit`` (argparse) and every other exception pass through unchanged.
    """

    @functools.wraps(main)
    def wrapper(argv: Sequence[str] | None = None, **kwargs: Any) -> int:
        args = list(sys.argv[1:] if argv is None else argv)
        try:
            return main(args, **kwargs)
        except UserError as exc:
            if debug_requested(args):
                traceback.print_exc()
            print(f"error: {one_line(str(exc))}", file=sys.stderr, flush=True)
            return 2
        except KeyboardInterrupt:
            print("error: interrupted (Ctrl-C)", file=sys.stderr, flush=True)
            return 130

    return wrapper


class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` with one-line errors (``error: --n: invalid int value: 'x' (see ... --help)``,
    exit 2) and a documented ``--debug`` flag (read by :func:`command`; subcommand parsers get it too)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                          help="on an error, also print the traceback (or set DDS_DEBUG=1)")

    def error(self, message: str) -> None:  # type: ignore[override]
        m = re.match(r"argument ([^:]+): (.*)$", message, flags=re.S)
        if m:  # "argument -n/--n: invalid int value: 'x'" -> "--n: invalid int value: 'x'"
            message = f"{m.group(1).split('/')[-1]}: {m.group(2)}"
        print(f"error: {one_line(message)} (see {self.prog} --help)", file=sys.stderr, flush=True)
        sys.exit(2)


# ----------------------------------------------------------------------------------------------------
# Validators: check one value, return it converted, raise UserError naming the argument.


def int_arg(value: Any, name: str | None = None, *, min: int | None = None, max: int | None = None) -> int:  # noqa: A002
    """A whole number (``int`` or its text; not ``bool``, not ``2.5``) in ``[min, max]``."""
    err = functools.partial(UserError, argument=name, value=value)
    if isinstance(value, bool):
        raise err("must be a whole number, not a boolean")
    if isinstance(value, str):
        try:
            out = int(value.strip())
        except ValueError:
            raise err("must be a whole number (e.g. 4)") from None
    elif isinstance(value, numbers.Integral):
        out = int(value)
    elif isinstance(value, numbers.Real) and math.isfinite(value) and float(value).is_integer():
        out = int(value)
    else:
        raise err("must be a whole number (e.g. 4)")
    if min is not None and out < min:
        raise err(f"must be >= {min}" + (f" and <= {max}" if max is not None else ""))
    if max is not None and out > max:
        raise err(f"must be <= {max}" + (f" and >= {min}" if min is not None else ""))
    return out


def positive_int(value: Any, name: str | None = None) -> int:
    """A whole number >= 1."""
    return int_arg(value, name, min=1)


def non_negative_int(value: Any, name: str | None = None) -> int:
    """A whole number >= 0."""
    return int_arg(value, name, min=0)


def float_arg(value: Any, name: str | None = None, *, min: float | None = None, max: float | None = None,  # noqa: A002
              min_open: bool = False, max_open: bool = False) -> float:
    """A finite real number (or its text) in the range ``[min, max]`` (``(`` / ``)`` with ``*_open``)."""
    err = functools.partial(UserError, argument=name, value=value)
    if isinstance(value, bool):
        raise err("must be a number, not a boolean")
    try:
        out = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        raise err("must be a number (e.g. 0.5)") from None
    lo = "" if min is None else f"{'>' if min_open else '>='} {min:g}"
    hi = "" if max is None else f"{'<' if max_open else '<='} {max:g}"
    rng = " and ".join(x for x in (lo, hi) if x)
    if not math.isfinite(out):
        raise err("must be a finite number" + (f" {rng}" if rng else ""))
    if (min is not None and (out < min or (min_open and out == min))) or \
            (max is not None and (out > max or (max_open and out == max))):
        raise err(f"must be {rng}")
    return out


def existing_file(value: Any, name: str | None = None, *, what: str = "file") -> Path:
    """A path that exists and is a regular file (``what`` names it in the message: ``"checkpoint"``...)."""
    p = Path(os.fspath(value)).expanduser()
    if p.is_dir():
        raise UserError(f"is a folder, not a {what}; give the {what} itself", argument=name, value=value)
    if not p.is_file():
        where = p.parent if str(p.parent) not in ("", ".") else Path.cwd()
        raise UserError(f"no such {what} (looked in {where}); check the path", argument=name, value=value)
    return p


def output_file(value: Any, name: str | None = None) -> Path:
    """A path a file can be written to: not a folder, and no file where its parent folders must go."""
    p = Path(os.fspath(value)).expanduser()
    if str(value).strip() == "":
        raise UserError("is empty; give a file name", argument=name, value=value)
    if p.is_dir():
        raise UserError("is a folder; give a file name (e.g. out.json)", argument=name, value=value)
    for parent in p.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UserError(f"{parent} is a file, so no folder can be made there; choose another path",
                                argument=name, value=value)
            if not os.access(parent, os.W_OK | os.X_OK):
                raise UserError(f"cannot write into {parent} (permission denied); choose another path",
                                argument=name, value=value)
            break
    return p


def output_folder(value: Any, name: str | None = None, *, overwrite: bool = False) -> Path:
    """A run folder that :func:`ddsutils.files.run_folder` may create: see :func:`ddsutils.files.check_run_folder`."""
    from .files import check_run_folder

    return check_run_folder(value, overwrite=overwrite, argument=name)


def choice(value: Any, name: str | None, choices: Iterable[Any], *, what: str = "value") -> Any:
    """``value`` if it is one of ``choices``; otherwise the error lists them (and the nearest one)."""
    options = list(choices)
    if value in options:
        return value
    near = difflib.get_close_matches(str(value), [str(c) for c in options], n=1)
    hint = f" (did you mean {near[0]}?)" if near else ""
    listed = ", ".join(str(c) for c in options)
    raise UserError(f"unknown {what}{hint}; choose one of: {listed}", argument=name, value=value)


def device(value: Any, name: str | None = "--device") -> Any:
    """``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` as a ``torch.device``;
    CUDA must exist."""
    import torch

    text = str(value).strip()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not re.fullmatch(r"cpu|cuda(:\d+)?|mps", text):
        raise UserError("unknown device; use auto, cpu, cuda or cuda:N", argument=name, value=value)
    if text.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError("CUDA is not available on this machine; use cpu (or auto)",
                            argument=name, value=value)
        idx = int(text.split(":")[1]) if ":" in text else 0
        if idx >= torch.cuda.device_count():
            raise UserError(f"this machine has {torch.cuda.device_count()} CUDA device(s); use cuda:0 ... "
                            f"cuda:{torch.cuda.device_count() - 1}", argument=name, value=value)
    if text == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UserError("MPS is not available on this machine; use cpu (or auto)", argument=name, value=value)
    return torch.device(text)


def load(name: str | None, value: Any, loader: Callable[[Any], T]) -> T:
    """``loader(value)`` with its failures reported as a :class:`UserError` about argument ``name``.

    A :class:`UserError` from the loader gets the argument and value added; ``FileNotFoundError``,
    ``IsADirectoryError`` and ``PermissionError`` become one. Other exceptions pass through.
    """
    try:
        return loader(value)
    except UserError as exc:
        raise exc.about(name, value) if name else exc
    except IsADirectoryError:
        raise UserError("is a folder, not a file", argument=name, value=value) from None
    except FileNotFoundError as exc:
        raise UserError(f"not found ({one_line(str(exc))}); check the path or name", argument=name,
                        value=value) from None
    except PermissionError as exc:
        raise UserError(f"cannot be read ({one_line(str(exc))})", argument=name, value=value) from None


def argtype(validator: Callable[..., T], **kwargs: Any) -> Callable[[str], T]:
    """An argparse ``type=`` from a validator: ``type=cli.argtype(cli.float_arg, min=0, max=1)``.

    argparse then reports a bad value as ``error: --x: <value>: <message>`` (via :class:`ArgumentParser`).
    """

    def convert(text: str) -> T:
        try:
            return validator(text, None, **kwargs)
        except UserError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = getattr(validator, "__name__", "value")
    return convert
