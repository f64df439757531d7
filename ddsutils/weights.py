"""``python -m ddsutils.weights list|fetch|verify``: the weights manifest; the code is :mod:`ddsutils.core.weights`.

``from ddsutils import weights`` gives the same public names as :mod:`ddsutils.core.weights`. ``fetch --from`` of an
unpinned generator entry checks the file with :func:`ddsutils.core.stylegan2.check_generator_file` first.
"""
from __future__ import annotations

from .core import cli
from .core.stylegan2 import check_generator_file
from .core.weights import *  # noqa: F401,F403 - the public API under the module's old name
from .core.weights import __all__  # noqa: F401
from .core.weights import _table, entry, fetch, listing, verify


@cli.command
def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m ddsutils.weights``; returns the exit status (user errors: one line, 2)."""

    ap = cli.ArgumentParser(prog="python -m ddsutils.weights", description="DDS weights manifest and cache.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="list the manifest entries and whether they are cached")
    p_fetch = sub.add_parser("fetch", help="download (or copy in with --from) and verify one entry")
    p_fetch.add_argument("name")
    p_fetch.add_argument("--from", dest="src", metavar="PATH", help="a file you downloaded yourself")
    p_fetch.add_argument("--force", action="store_true", help="download again even if cached")
    p_fetch.add_argument("--quiet", action="store_true", help="no progress output")
    p_verify = sub.add_parser("verify", help="check cached files against the manifest")
    p_verify.add_argument("name", nargs="?")
    args = ap.parse_args(argv)
    if args.cmd == "list":
        print(listing())
        return 0
    if args.name is not None:
        cli.load("name", args.name, entry)
    if args.cmd == "fetch":
        src = cli.existing_file(args.src, "--from") if args.src is not None else None
        p = cli.load("--from" if src else "name", args.src if src else args.name,
                     lambda _: fetch(args.name, src=src, progress=not args.quiet, force=args.force,
                                       check=check_generator_file))
        print(f"{args.name}: {p}")
        return 0
    rows_v = verify(args.name)
    print(_table([[n, s] for n, s in rows_v], ["name", "status"]))
    return 1 if any(s.startswith("MISMATCH") for _, s in rows_v) else 0


if __name__ == "__main__":
    raise SystemExit(main())
