"""``make demo`` — the notebooks, executed with papermill at a parameter profile.

    python -m ddsutils.lab.demo --profile demo        # make demo: every notebook of the run list, CPU, toy world
    python -m ddsutils.lab.demo --profile paper       # make paper: 256 px public weights, GPU
    python -m ddsutils.lab.demo --profile paper-smoke # make paper-smoke: the paper profile, random weights, 2 steps
    python -m ddsutils.lab.demo --profile demo --only 03_dds_optimisation

Executed notebooks go to ``runs/<profile>/<name>.ipynb`` and figures to ``runs/<profile>/figures/`` (only
``make figures-commit`` writes the committed ``figures/``); the command ends with a table of wall times and the
list of figures. It is the ``run`` command of :func:`ddsutils.lab.notebook.main` (profiles and the run list:
:mod:`ddsutils.lab.notebook`).

Without ``--profile`` it prints an environment report instead (torch, the weights manifest, a random-weight
generator in the public 256 px layout, toy-world renders into ``--out``; ``tests/test_viz_demo.py``).
"""
from __future__ import annotations

import time
from pathlib import Path

import torch

from ..core import cli
from . import viz
from ..core.stylegan2 import Generator


def _weights_table() -> None:
    try:
        from ..core import weights
    except ImportError:
        return
    print("\nweights manifest (python -m ddsutils.weights list):")
    print(weights.listing())


@cli.command
def main(argv: list[str] | None = None) -> int:
    """``python -m ddsutils.demo``; user errors are one line and exit status 2 (:mod:`ddsutils.cli`)."""
    p = cli.ArgumentParser(prog="python -m ddsutils.demo", description=__doc__.splitlines()[0])
    p.add_argument("--profile", default=None,
                   help="run the notebooks at this profile (ci | demo | paper | paper-smoke: ddsutils.lab.smoke)")
    p.add_argument("--only", nargs="+", default=None, help="notebook stems (default: the run list)")
    p.add_argument("--threads", type=cli.argtype(cli.positive_int), default=None,
                   help="OMP_NUM_THREADS for the notebook kernels")
    p.add_argument("--out", default=None, help="output folder (default runs/<profile>, or runs/demo)")
    p.add_argument("--seed", type=cli.argtype(cli.non_negative_int), default=0,
                   help="seed of the foundation report (no --profile)")
    a = p.parse_args(argv)
    if a.profile == "paper-smoke":
        from . import smoke

        rows = smoke.paper_smoke(a.out, names=a.only)
        return 1 if any(r["status"] == "failed" for r in rows) else 0
    if a.profile is not None:
        from . import notebook

        args = ["run", "--profile", a.profile] + (["--only", *a.only] if a.only else [])
        args += (["--out", a.out] if a.out else []) + (["--threads", str(a.threads)] if a.threads else [])
        args += ["--debug"] if cli.debug_requested(argv) else []
        return notebook.main(args)
    out = Path(a.out or "runs/demo")
    if out.exists() and not out.is_dir():
        raise cli.UserError("is an existing file, not a folder; choose a folder for the report's images",
                            argument="--out", value=a.out)
    return _foundation_report(out, a.seed)


def _foundation_report(out: Path, seed: int) -> int:
    """The foundation-stage report (environment, manifest, a random 256 px generator, toy-world renders)."""
    print(f"torch {torch.__version__}  cuda available: {torch.cuda.is_available()}  "
          f"cpu threads: {torch.get_num_threads()}")
    _weights_table()

    torch.manual_seed(seed)
    G = Generator(256, 512, 8)
    n = sum(p.numel() for p in G.parameters())
    z = torch.randn(2, 512, generator=torch.Generator().manual_seed(seed))
    t = time.perf_counter()
    with torch.no_grad():
        img, feats = G(z, return_features=True)
    dt = time.perf_counter() - t
    print(f"\nrosinality-layout Generator(256, 512, 8): {n:,} parameters, {len(G.state_dict())} state_dict "
          f"entries; 2 images in {dt:.2f} s; {len(feats)} feature maps, {sum(f.shape[1] for f in feats)} channels")
    path = viz.save_png(img, out / "generator_random_256.png")
    print(f"  random-weight samples -> {path}")

    try:
        from ..toy import toyworld
    except ImportError:
        print("\n(toy world not available yet)")
    else:
        ident = toyworld.sample_identities(8, seed=seed)
        rows = [toyworld.render(ident, style=s, size=64)[0] for s in toyworld.STYLES]
        path = viz.save_png(torch.cat(rows), out / "toyworld_renders.png", nrow=8)
        print(f"\ntoy world: 8 identities x {len(toyworld.STYLES)} styles {toyworld.STYLES} -> {path}")
    print(f"\ndone: look in {out}/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
