"""The paper's experiments as functions that save their results: Table 1, Fig. 7, Fig. 8, Table 2, modes, baselines.

Every experiment takes a profile (``ci``, ``demo``, ``paper``: the ``domains:`` and ``experiments:`` sections of
``notebooks/params/<profile>.yaml``, :func:`profile_settings`) plus keyword overrides, and saves under
``runs/<profile>/results/`` ``<name>.pt`` (image tensors for figures) and then ``<name>.json`` (``{"name",
"profile", "config", "rows", "claims", "wall_s"}``: a flat dict per table line, the paper's statements checked
on this data), each atomically.

DDS runs are cached one file per configuration under ``<out>/dds/`` (key: a readable name + a hash of the
settings, the inputs and the generators' weights), so experiments resume and share runs (Table 1 and Fig. 7 use
the same optimisations). Everything is seeded: the same profile and overrides give the same numbers.

The command line writes one run folder, ``--out`` (default ``runs/<profile>/results``, what notebook 90 reads),
complete or not at all (:func:`ddsutils.core.files.run_folder`; ``--overwrite`` replaces it whole); its DDS cache
``--cache`` (default ``runs/<profile>/dds_cache``) survives ``--overwrite``. Every argument is checked, and every
generator, judge and feature weight loaded, before the first optimisation.

Distances between image sets: the Fréchet distance and KID on ImageNet VGG-16 features
(:data:`ddsutils.core.metrics.FRECHET_VGG_LABEL`, never called FID), or Inception FID through torch-fidelity
(``fd="inception"``, paper profile). ``D_s`` / ``D_t`` are ``n_ref`` samples of the source / target generator,
``{x_c}`` the crossovers of the same pairs (clamped to [-1, 1]); per-image SSIM / PSNR compare each DDS image
with its own ``x_s``, ``x_c`` or ``x_t``.

    python -m ddsutils.experiments table1 --profile demo [--out DIR] [--overwrite] [--cache DIR]
    python -m ddsutils.experiments all --profile ci

Used in: notebooks/04_ablations.ipynb, 05_metrics.ipynb, 07_baselines.ipynb, 90_paper_figures.ipynb.
"""
from __future__ import annotations

import contextlib
import difflib
import hashlib
import io
import json
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

import torch
from torch import Tensor

from ..core import cli, distributed
from ..core.cli import UserError
from ..core.files import atomic_write_bytes, run_folder
from ..core.paths import runs_dir
from ..toy.scoring import to_json as _clean
from . import notebook

__all__ = ["PROFILES", "SETTINGS", "profile_settings", "EXPERIMENTS", "Context", "table1", "fid_during_optimisation",
           "loss_weight_sweep", "backbone_ablation", "mode_comparison", "blending_baselines", "format_markdown",
           "format_table1", "main"]

_MODES = ("paper", "release", "blend", "refine")  # dds.MODES, without importing dds at module load
#: Bumped when a DDS mode's results change for the same settings, so cached runs are not reused.
DDS_CACHE_VERSION = 2

#: The settings of a profile, in this order (every one can be overridden by a keyword of the experiment
#: functions): ``generators`` from the ``domains:`` section of ``notebooks/params/<profile>.yaml``, the others
#: from its ``experiments:`` section (:func:`profile_settings`).
SETTINGS: tuple[str, ...] = ("generators", "pairs", "masks", "n", "n_ref", "num_steps", "snapshot_every", "lr", "seed",
                             "mask_source", "fd", "judges", "sweep_values", "backbones", "modes", "device")
_PROFILE_KEYS = set(SETTINGS) | {"segmenters", "out", "cache"}
_MASKS = ("eyes_nose_mouth", "hair")
_JUDGED = ("inside_source", "relative_inside", "outside_target")


def check_settings(cfg: Mapping[str, Any], *, names: Mapping[str, str] | None = None) -> None:
    """Raise :class:`~ddsutils.cli.UserError` naming the setting unless every value of a profile's settings
    ``cfg`` has the right type and range (``names`` maps settings to CLI arguments for the messages)."""
    from ..core import backbones

    nm = {k: k for k in _PROFILE_KEYS}
    nm.update(names or {})
    for key in ("num_steps", "snapshot_every"):
        cli.positive_int(cfg[key], nm[key])
    if cli.int_arg(cfg["n"], nm["n"]) < 2:
        raise UserError("must be >= 2: the set distances (KID, Fréchet) need at least two images per set",
                        argument=nm["n"], value=cfg["n"])
    cli.int_arg(cfg["n_ref"], nm["n_ref"], min=2)
    cli.non_negative_int(cfg["seed"], nm["seed"])
    cli.float_arg(cfg["lr"], nm["lr"], min=0, min_open=True)
    cli.choice(cfg["mask_source"], nm["mask_source"], ("parser", "segmenter"))
    cli.choice(cfg["fd"], nm["fd"], ("vgg", "inception"))
    if not isinstance(cfg["generators"], Mapping) or not cfg["generators"]:
        raise UserError("must map domains to generator names or files", argument=nm["generators"],
                        value=cfg["generators"])
    if not cfg["pairs"] or not cfg["masks"]:
        raise UserError("needs at least one pair and one mask", argument=nm["pairs" if not cfg["pairs"] else "masks"],
                        value=cfg["pairs"] if not cfg["pairs"] else cfg["masks"])
    for pair in cfg["pairs"]:
        if not isinstance(pair, (list, tuple)) or len(pair) != 2 or pair[0] == pair[1]:
            raise UserError("each pair must be (source, target) of two different domains", argument=nm["pairs"],
                            value=pair)
        for d in pair:
            cli.choice(d, nm["pairs"], list(cfg["generators"]), what="domain")
    for m in cfg["masks"]:
        cli.choice(m, nm["masks"], _MASKS, what="mask")
    for b in cfg["backbones"]:
        cli.choice(b, nm["backbones"], backbones.names(), what="backbone")
    for v in cfg["sweep_values"]:
        cli.float_arg(v, nm["sweep_values"], min=0)
    if not cfg["modes"]:
        raise UserError("needs at least one DDS mode", argument=nm["modes"], value=cfg["modes"])
    for mode in cfg["modes"]:
        cli.choice(mode, nm["modes"], _MODES, what="DDS mode")


def _load_profile(profile: str) -> tuple[dict[str, Any], dict[str, notebook.Domain]]:
    """``(settings, domains)`` of a profile's YAML file, checked (see :func:`profile_settings`)."""
    prof = notebook.load_profile(profile)
    exp, label = prof["experiments"], Path(profile).name if Path(profile).suffix else f"{profile}.yaml"
    names = {k: f"{label}: experiments.{k}" for k in SETTINGS} | {"generators": f"{label}: domains"}
    if "generators" in exp:
        raise UserError("the generators come from the profile's domains: section (name: {generator, style}); "
                        "remove this key", argument=f"{label}: experiments.generators")
    unknown = sorted(set(exp) - set(SETTINGS))
    if unknown:
        near = difflib.get_close_matches(unknown[0], SETTINGS, n=1)
        raise UserError(f"unknown setting(s) {unknown}{f' (did you mean {near[0]}?)' if near else ''}; settings are "
                        f"{list(SETTINGS[1:])}", argument=f"{label}: experiments")
    missing = [k for k in SETTINGS[1:] if k not in exp]
    if missing:
        raise UserError(f"missing setting(s) {missing}; every setting but generators is given here",
                        argument=f"{label}: experiments")
    cfg = {"generators": {name: d.generator for name, d in prof["domains"].items()},
           **{k: exp[k] for k in SETTINGS[1:]}}
    check_settings(cfg, names=names)
    return cfg, prof["domains"]


def profile_settings(profile: str) -> dict[str, Any]:
    """The experiment settings of a profile, read from ``notebooks/params/<profile>.yaml`` and checked.

    ``generators`` (``{domain: generator}``) comes from the file's ``domains:`` section, every other setting of
    :data:`SETTINGS` from its ``experiments:`` section, which must give each one (no defaults in the code).

    Args:
        profile: ``"ci"``, ``"demo"``, ``"paper"``, or the path of a YAML file of the same structure.

    Returns:
        A new dict with the keys of :data:`SETTINGS` in that order.

    Raises:
        UserError: a missing, unknown or bad setting, or a domain without a generator or a toy-world style.
    """
    return _load_profile(profile)[0]


class _Profiles(Mapping[str, Mapping[str, Any]]):
    """Read-only view of every profile's settings (:func:`profile_settings`), read from the YAML file on access."""

    def __getitem__(self, profile: str) -> Mapping[str, Any]:
        if profile not in notebook.PROFILES:
            raise KeyError(profile)
        return MappingProxyType(profile_settings(profile))

    def __iter__(self) -> Iterator[str]:
        return iter(notebook.PROFILES)

    def __len__(self) -> int:
        return len(notebook.PROFILES)


#: ``{profile: settings}`` for ``ci``, ``demo``, ``paper``: a read-only view of the ``domains:`` and
#: ``experiments:`` sections of ``notebooks/params/<profile>.yaml`` (edit the YAML files, not this).
PROFILES: Mapping[str, Mapping[str, Any]] = _Profiles()


def _json_default(o: Any) -> Any:
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, torch.Tensor):
        return o.tolist()
    return repr(o)


class Context:
    """Settings of one profile plus lazily loaded generators, judges, reference features and cached runs.

    Args:
        profile: ``"ci"``, ``"demo"``, ``"paper"`` or the path of a YAML file of the same structure (e.g. the
            paper-smoke profile, :mod:`ddsutils.lab.smoke`): its settings are :func:`profile_settings`, its
            domains (``self.domains``, ``{name: notebook.Domain}``: the judges' style of each domain) the
            ``domains:`` section of ``notebooks/params/<profile>.yaml``.
        **overrides: any key of :data:`SETTINGS` (``n``, ``num_steps``, ``pairs``, ``masks``, ``device``, ...),
            ``segmenters`` = ``{mask: segmenter file}`` for ``mask_source="segmenter"``, ``out`` = results
            folder, ``cache`` = DDS run cache.

    Attributes:
        dist: the processes that share every DDS run's latents (:func:`ddsutils.core.distributed.init`; default
            this process alone). Under torchrun set ``ctx.dist = distributed.init(ctx.device)`` and
            ``ctx.device = ctx.dist.device`` before the first run, as :func:`main` does: each process then optimises
            its block of the ``n`` latents, every process gets the whole result, and rank 0 alone writes the cache
            and the results.
    """

    def __init__(self, profile: str = "demo", **overrides: Any) -> None:
        if not (Path(profile).suffix in (".yaml", ".yml") and Path(profile).is_file()):  # a profile's file
            cli.choice(profile, "profile", sorted(PROFILES), what="profile")
        unknown = set(overrides) - _PROFILE_KEYS
        if unknown:
            near = difflib.get_close_matches(sorted(unknown)[0], sorted(_PROFILE_KEYS), n=1)
            raise UserError(f"unknown setting(s) {sorted(unknown)}{f' (did you mean {near[0]}?)' if near else ''}; "
                            f"settings are {sorted(_PROFILE_KEYS)}")
        self.profile = profile
        settings, self.domains = _load_profile(profile)
        self.cfg: dict[str, Any] = {**settings, "segmenters": {}, **overrides}
        check_settings(self.cfg)
        self.cfg["pairs"] = [tuple(p) for p in self.cfg["pairs"]]
        self.out = Path(self.cfg.get("out") or runs_dir() / Path(profile).stem / "results")
        self.cache = Path(self.cfg.get("cache") or self.out / "dds")
        dev = self.cfg["device"]
        if str(dev).startswith("cuda") and not torch.cuda.is_available():
            raise UserError(f"profile {profile!r} asks for it but CUDA is not available; pass device='cpu' (slow at "
                            "paper scale) or run on a GPU machine", argument="device", value=dev)
        self.device = cli.device(dev, "device")
        self.dist = distributed.SINGLE
        self._gens: dict[str, Any] = {}
        self._digests: dict[str, str] = {}
        self._pairs: dict[tuple[str, str, str], dict[str, Tensor]] = {}
        self._ref: dict[str, Tensor] = {}
        self._judges: tuple[Any, Any] | None = None

    # -- models ---------------------------------------------------------------------------------------
    def generator(self, domain: str):
        """The generator of a domain (``natural``, ``caricature``, ``sketch``), loaded once."""
        from ..core.stylegan2 import load_generator

        if domain not in self._gens:
            names = self.cfg["generators"]
            if domain not in names:
                raise ValueError(f"profile {self.profile!r} has no generator for domain {domain!r} "
                                 f"(has {sorted(names)})")
            self._gens[domain] = load_generator(names[domain], device=self.device).eval()
        return self._gens[domain]

    def generator_digest(self, domain: str) -> str:
        """Short sha256 of a domain generator's weights (part of the DDS cache key: retrained weights under the
        same name never reuse a stale run)."""
        from ..core.weights import state_dict_content_sha256

        if domain not in self._digests:
            self._digests[domain] = state_dict_content_sha256(self.generator(domain).state_dict())[:16]
        return self._digests[domain]

    def judges(self) -> tuple[Any, Any] | None:
        """``(parser, domain_segmenter)`` of the toy world, or ``None`` when the profile has no judges."""
        if not self.cfg["judges"]:
            return None
        if self._judges is None:
            from ..toy import judges

            self._judges = (judges.load_judge("judge-parser-64"), judges.load_judge("judge-domain-64"))
        return self._judges

    # -- inputs and references ------------------------------------------------------------------------
    def latents(self, n: int | None = None, *, offset: int = 0) -> Tensor:
        """Seeded ``z*`` ``[n, D]`` (``offset`` gives independent sets, e.g. 1 for the reference samples).

        The stream is ``1_000_000 + 1000 * seed + offset``, disjoint from the random-init streams
        ``dds.INIT_STREAM + seed + i`` of :func:`ddsutils.dds.optimise` (so ẑ never starts at z*).
        """
        n = n or self.cfg["n"]
        dim = self.generator(self.cfg["pairs"][0][0]).style_dim
        gen = torch.Generator().manual_seed(1_000_000 + 1000 * self.cfg["seed"] + offset)
        return torch.randn(n, dim, generator=gen)

    @torch.no_grad()
    def samples(self, domain: str, z: Tensor) -> Tensor:
        G = self.generator(domain)
        return torch.cat([G(c.to(self.device), noise="const").clamp(-1, 1).cpu() for c in z.split(32)])

    def pair(self, source: str, target: str, mask: str) -> dict[str, Tensor]:
        """``z*``, ``x_s``, ``x_t``, masks ``y_s``, ``y_t`` and crossover ``x_c`` of one experiment (cached)."""
        from ..core import dds

        key = (source, target, mask)
        if key not in self._pairs:
            z = self.latents()
            x_s, x_t = self.samples(source, z), self.samples(target, z)
            G_s, G_t = self.generator(source), self.generator(target)
            src = self.cfg["mask_source"]
            if src == "parser":
                from ..toy.scoring import _oracle_masks

                jd = self.judges()
                if jd is None:
                    raise ValueError("mask_source='parser' needs the toy-world judges (judges=True)")
                y_s, y_t = _oracle_masks(jd[0], x_s, x_t, mask)
            elif src == "segmenter":
                path = self._segmenter_path(mask)
                from ..toy.oracle import masks_for

                y_s, y_t, _ = masks_for(G_s, G_t, z, mask=mask, segmenter_path=path, segmenter_on="source",
                                        seed=self.cfg["seed"], device=self.device)
                y_s, y_t = y_s.cpu(), y_t.cpu()
            else:
                raise ValueError(f"mask_source must be 'parser' or 'segmenter', got {src!r}")
            self._pairs[key] = dict(z=z, x_s=x_s, x_t=x_t, y_s=y_s, y_t=y_t,
                                    x_c=dds.crossover(x_s, y_s, x_t, y_t).clamp(-1, 1))
        return self._pairs[key]

    def _segmenter_path(self, mask: str) -> str:
        path = self.cfg["segmenters"].get(mask)
        if not path or not Path(path).is_file():
            raise ValueError(f"mask_source='segmenter' needs a trained segmenter for {mask!r} (got {path!r}); "
                             f"run notebooks/02_oneshot_segmenter.ipynb with mask={mask!r} (it saves "
                             f"{self.out.parent / f'segmenter_{mask}.pt'}) and pass segmenters={{{mask!r}: path}}, "
                             "or use mask_source='parser' in the toy world")
        return str(path)

    def features(self, img: Tensor) -> Tensor:
        """Features for set distances: VGG-16 (``fd="vgg"``) or Inception pool3 (``fd="inception"``)."""
        from ..core import metrics

        if self.cfg["fd"] == "inception":
            return metrics.inception_features(img, device=self.device)
        return metrics.vgg_features(img, device=self.device)

    def reference(self, domain: str) -> Tensor:
        """Features of ``n_ref`` samples of a domain's generator (``D_s`` / ``D_t``), computed once."""
        if domain not in self._ref:
            self._ref[domain] = self.features(self.samples(domain, self.latents(self.cfg["n_ref"], offset=1)))
        return self._ref[domain]

    # -- DDS runs (cached on disk) --------------------------------------------------------------------
    def dds(self, source: str, target: str, mask: str, *, progress: bool = True, **overrides: Any) -> dict[str, Any]:
        """One cached DDS optimisation of the experiment's ``n`` pairs; returns ``DDSResult.to_dict()``.

        ``overrides`` go to :func:`ddsutils.dds.optimise` (``mode``, ``latent_space``, ``init``, ``alpha``,
        ``backbone``, ...); the profile gives ``num_steps``, ``lr``, ``snapshot_every`` and ``seed``.
        """

        settings = dict(num_steps=self.cfg["num_steps"], lr=self.cfg["lr"], snapshot_every=self.cfg["snapshot_every"],
                        seed=self.cfg["seed"], **overrides)
        p = self.pair(source, target, mask)
        inputs = hashlib.sha256(b"".join(p[k].numpy().tobytes() for k in ("z", "y_s", "y_t"))).hexdigest()[:16]
        ident = json.dumps({"gen": [self.cfg["generators"][source], self.cfg["generators"][target]],
                            "weights": [self.generator_digest(source), self.generator_digest(target)],
                            "mask": mask, "n": self.cfg["n"], "mask_source": self.cfg["mask_source"],
                            "inputs": inputs, "dds_cache_version": DDS_CACHE_VERSION, **settings},
                           sort_keys=True, default=_json_default)
        digest = hashlib.sha256(ident.encode()).hexdigest()[:10]
        tag = "_".join(f"{k}-{v}" for k, v in sorted(overrides.items()) if isinstance(v, (str, int, float)))
        path = self.cache / f"{source}-{target}_{mask}{'_' + tag if tag else ''}_{digest}.pt"

        def cached() -> dict[str, Any] | None:
            from ..core.files import NotACheckpointError, torch_load

            if path.exists():
                try:
                    return torch_load(path)
                except NotACheckpointError:  # a damaged cache entry is recomputed, not trusted
                    path.unlink(missing_ok=True)
            return None

        # a cached run: read by rank 0 and sent to every process (all of them then skip the optimisation alike)
        d = distributed.on_main(cached, self.dist)
        if d is not None:
            return d
        # the images are passed with z*: the masks belong to them (release mode would otherwise redraw x_t at ψ 0.7);
        # under several processes each optimises its block of the latents and gets the whole result back
        r = distributed.optimise(self.generator(source), self.generator(target), self.dist, z_star=p["z"],
                                 x_s=p["x_s"], x_t=p["x_t"], y_s=p["y_s"], y_t=p["y_t"], device=self.device,
                                 progress=progress, **settings)
        d = r.to_dict()
        d = {k: (v.detach().cpu() if isinstance(v, Tensor) else v) for k, v in d.items()}
        d["snapshots"] = [[s, img.detach().cpu()] for s, img in d["snapshots"]]
        d["history"] = {k: v.detach().cpu() for k, v in d["history"].items()}
        d["config"] = json.loads(json.dumps(d["config"], default=_json_default))
        if self.dist.is_main:
            buf = io.BytesIO()
            torch.save(d, buf)
            atomic_write_bytes(buf.getvalue(), path)
        return d

    # -- scores ---------------------------------------------------------------------------------------
    def set_distance(self, img: Tensor, ref_feats: Tensor) -> dict[str, float]:
        """Fréchet distance and KID (mean) between images and reference features."""
        from ..core import metrics

        f = self.features(img)
        kid_mean, _ = metrics.kid(f, ref_feats, subsets=50, subset_size=min(len(f), len(ref_feats)),
                                  seed=self.cfg["seed"])
        return {"fd": metrics.frechet_distance(f, ref_feats), "kid": kid_mean}

    def judge(self, img: Tensor, source: str, target: str, mask: str) -> dict[str, float]:
        """Toy-world judge scores of images for an experiment (empty dict without judges)."""
        from ..toy import judges, scoring, toyworld

        jd = self.judges()
        if jd is None or source not in self.domains or target not in self.domains:
            return {}
        styles = [toyworld.STYLES.index(self.domains[d].style) for d in (source, target)]
        p = self.pair(source, target, mask)
        inside, outside = scoring.regions(p["y_s"], p["y_t"])

        def fractions(x: Tensor) -> dict[str, float]:
            fr = scoring.style_fractions(judges.predict_styles(jd[1], x), inside, outside,
                                         source_style=styles[0], target_style=styles[1])
            return {k: scoring._nanmean(v) for k, v in fr.items()}

        out = fractions(img)
        paste = fractions(self.paste(source, target, mask))["inside_source"]  # the cell's ceiling
        out["relative_inside"] = out["inside_source"] / paste if paste > 0 else float("nan")
        return out

    def paste(self, source: str, target: str, mask: str) -> Tensor:
        """``x_s`` pasted into ``x_t`` under ``y_s``: the ceiling of a method that copies the source part."""
        p = self.pair(source, target, mask)
        return p["x_s"] * p["y_s"] + p["x_t"] * (1 - p["y_s"])

    def score(self, img: Tensor, source: str, target: str, mask: str) -> dict[str, float]:
        """All scores of ``n`` images of an experiment: set distances to D_s, {x_c}, D_t; SSIM / PSNR to the
        paired x_s, x_c, x_t; judge fractions."""
        from ..core import metrics

        p = self.pair(source, target, mask)
        row: dict[str, float] = {}
        refs = {"D_s": (self.reference(source), p["x_s"]), "x_c": (self.features(p["x_c"]), p["x_c"]),
                "D_t": (self.reference(target), p["x_t"])}
        for name, (feats, paired) in refs.items():
            for k, v in self.set_distance(img, feats).items():
                row[f"{k}_{name}"] = v
            row[f"ssim_{name}"] = float(metrics.ssim(img, paired).mean())
            row[f"psnr_{name}"] = float(metrics.psnr(img, paired).clamp(max=100).mean())
        row.update(self.judge(img, source, target, mask))
        return row

    def experiments(self) -> list[tuple[str, str, str]]:
        return [(s, t, m) for s, t in self.cfg["pairs"] for m in self.cfg["masks"]]


# ----------------------------------------------------------------------------------------------------
# Experiments


def _finish(ctx: Context, name: str, rows: list[dict[str, Any]], claims: dict[str, Any], t0: float,
            images: Mapping[str, Tensor] | None = None) -> dict[str, Any]:
    res = {"name": name, "profile": ctx.profile,
           "config": _clean(json.loads(json.dumps(ctx.cfg, default=_json_default))),
           "rows": _clean(rows), "claims": _clean(claims), "wall_s": round(time.perf_counter() - t0, 2),
           "distance_label": "FID (Inception)" if ctx.cfg["fd"] == "inception" else
           "Fréchet distance on VGG-16 features (not FID); KID on the same features"}
    if not ctx.dist.is_main:  # every process computed the same result; rank 0 writes it
        return res
    ctx.out.mkdir(parents=True, exist_ok=True)
    if images:  # the images first, the JSON (what says the experiment is done) last
        buf = io.BytesIO()
        torch.save({k: v.detach().cpu() for k, v in images.items()}, buf)
        atomic_write_bytes(buf.getvalue(), ctx.out / f"{name}.pt")
    else:
        (ctx.out / f"{name}.pt").unlink(missing_ok=True)  # no stale images beside new numbers
    atomic_write_bytes(json.dumps(res, indent=1, allow_nan=False).encode(), ctx.out / f"{name}.json")
    return res


def _ctx(profile: str | Context, overrides: Mapping[str, Any]) -> Context:
    if isinstance(profile, Context):
        if overrides:
            raise UserError("pass settings either in the Context or as keywords, not both")
        return profile
    return Context(profile, **overrides)


def table1(profile: str | Context = "demo", *, progress: bool = True, **overrides: Any) -> dict[str, Any]:
    """Table 1: every DDS mode's outputs (and the paste) against D_s, {x_c} and D_t for every experiment.

    Rows: one per experiment × method (``dds-<mode>`` for each of the profile's ``modes``, and ``paste``:
    ``x_s`` pasted into ``x_t`` under ``y_s``) × reference set, with ``fd`` / ``kid`` (set distances), ``ssim`` /
    ``psnr`` (to the paired images) and the judges' ``inside_source`` / ``relative_inside`` (÷ the paste's) /
    ``outside_target``. Claims: for each experiment and method, whether it is closer to D_t than to D_s on
    every metric (paper §5.1, which reports paper mode).

    Used in: notebooks/05_metrics.ipynb.
    """
    t0, ctx = time.perf_counter(), _ctx(profile, overrides)
    rows, claims, images = [], {}, {}
    for s, t, m in ctx.experiments():
        exp = f"{s}->{t}/{m}"
        p = ctx.pair(s, t, m)
        images.update({f"{exp}/x_s": p["x_s"], f"{exp}/x_t": p["x_t"], f"{exp}/x_c": p["x_c"]})
        methods = {f"dds-{mode}": ctx.dds(s, t, m, progress=progress, **({} if mode == "paper" else {"mode": mode}))
                   ["image"] for mode in ctx.cfg["modes"]}
        methods["paste"] = ctx.paste(s, t, m)
        for method, img in methods.items():
            sc = ctx.score(img, s, t, m)
            for ref in ("D_s", "x_c", "D_t"):
                rows.append({"experiment": exp, "method": method, "reference": ref,
                             **{k: sc[f"{k}_{ref}"] for k in ("fd", "kid", "ssim", "psnr")},
                             **{k: sc[k] for k in _JUDGED if k in sc}})
            c = {"fd": sc["fd_D_t"] < sc["fd_D_s"], "kid": sc["kid_D_t"] < sc["kid_D_s"],
                 "ssim": sc["ssim_D_t"] > sc["ssim_D_s"], "psnr": sc["psnr_D_t"] > sc["psnr_D_s"]}
            claims[f"{exp}/{method}"] = {**c, "all": all(c.values())}
            images[f"{exp}/{'dds' if method == 'dds-paper' else method}"] = img
    for method in [f"dds-{mode}" for mode in ctx.cfg["modes"]] + ["paste"]:
        claims[f"closer_to_D_t_on_every_metric/{method}"] = all(
            c["all"] for k, c in claims.items() if k.endswith(f"/{method}") and k.count("/") == 2)
    return _finish(ctx, "table1", rows, claims, t0, images)


def fid_during_optimisation(profile: str | Context = "demo", *, progress: bool = True,
                            **overrides: Any) -> dict[str, Any]:
    """Fig. 7: set distance of the snapshots ``G_t(ẑ_i)`` to D_s and to D_t along the optimisation.

    Claim: the distance to D_t falls faster than the distance to D_s (relative drop from the first snapshot).

    Used in: notebooks/05_metrics.ipynb.
    """
    t0, ctx = time.perf_counter(), _ctx(profile, overrides)
    rows, claims = [], {}
    for s, t, m in ctx.experiments():
        r = ctx.dds(s, t, m, progress=progress)
        snaps = list(r["snapshots"])
        if not snaps or int(snaps[-1][0]) != ctx.cfg["num_steps"]:
            snaps.append([ctx.cfg["num_steps"], r["image"]])
        exp = f"{s}->{t}/{m}"
        curve = []
        for step, img in snaps:
            d_s = ctx.set_distance(img, ctx.reference(s))["fd"]
            d_t = ctx.set_distance(img, ctx.reference(t))["fd"]
            curve.append((int(step), d_s, d_t))
            rows.append({"experiment": exp, "step": int(step), "fd_D_s": d_s, "fd_D_t": d_t})
        (_, s0, t0_), (_, s1, t1) = curve[0], curve[-1]
        claims[exp] = {"drop_D_s": (s0 - s1) / s0 if s0 else 0.0, "drop_D_t": (t0_ - t1) / t0_ if t0_ else 0.0}
        claims[exp]["D_t_falls_faster"] = claims[exp]["drop_D_t"] > claims[exp]["drop_D_s"]
    return _finish(ctx, "fid_during_optimisation", rows, claims, t0)


def loss_weight_sweep(profile: str | Context = "demo", *, progress: bool = True, **overrides: Any) -> dict[str, Any]:
    """Fig. 8: vary α, β, γ one at a time over ``sweep_values`` plus the paper's value (others at 0.9 / 1 / 0.5);
    distance to D_t. The paper's values share one run (the base run of Table 1).

    Runs on the first experiment of the profile (pass ``masks=["hair"]`` for the paper's Fig. 8 setting, as
    notebook 04 does). Claim: the weight whose sweep changes the distance to D_t
    most (range over the grid); the paper says β.

    Used in: notebooks/04_ablations.ipynb.
    """
    from ..core.dds import PAPER_WEIGHTS

    t0, ctx = time.perf_counter(), _ctx(profile, overrides)
    s, t, m = ctx.experiments()[0]
    rows, spread = [], {}
    for w in ("alpha", "beta", "gamma"):
        vals = []
        for v in sorted({float(x) for x in ctx.cfg["sweep_values"]} | {PAPER_WEIGHTS[w]}):  # + the paper's value
            kw = {} if float(v) == PAPER_WEIGHTS[w] else {w: float(v)}  # the default value shares the base run
            r = ctx.dds(s, t, m, progress=progress, **kw)
            d = ctx.set_distance(r["image"], ctx.reference(t))
            vals.append(d["fd"])
            rows.append({"experiment": f"{s}->{t}/{m}", "weight": w, "value": float(v),
                         "fd_D_t": d["fd"], "kid_D_t": d["kid"]})
        spread[w] = max(vals) - min(vals)
    claims = {"spread_fd_D_t": spread, "most_sensitive": max(spread, key=spread.get),
              "paper_says": "beta", "agrees": max(spread, key=spread.get) == "beta"}
    return _finish(ctx, "loss_weight_sweep", rows, claims, t0)


def backbone_ablation(profile: str | Context = "demo", *, progress: bool = True, **overrides: Any) -> dict[str, Any]:
    """Table 2: DDS with each perceptual backbone in ``backbones``; scores as Table 1 (to D_s and D_t).

    A backbone whose ImageNet weights are not available here (SqueezeNet / ResNet-18 offline) is reported as
    skipped with the reason, never silently replaced by random weights.

    Used in: notebooks/04_ablations.ipynb.
    """
    from ..core.weights import WeightsError

    t0, ctx = time.perf_counter(), _ctx(profile, overrides)
    s, t, m = ctx.experiments()[0]
    rows, skipped = [], {}
    for bb in ctx.cfg["backbones"]:
        try:
            r = ctx.dds(s, t, m, progress=progress, **({} if bb == "vgg16" else {"backbone": bb}))
        except (WeightsError, OSError, ImportError) as exc:
            # the first clause only: the full message names local cache paths (not for committed tables)
            skipped[bb] = f"{type(exc).__name__}: {re.split(r'[:(]', str(exc).splitlines()[0])[0].strip()}"
            rows.append({"backbone": bb, "skipped": skipped[bb]})
            continue
        sc = ctx.score(r["image"], s, t, m)
        rows.append({"backbone": bb,
                     **{k: sc[k] for k in ("fd_D_s", "fd_D_t", "ssim_D_s", "ssim_D_t", "psnr_D_s", "psnr_D_t")},
                     **{k: sc[k] for k in _JUDGED if k in sc},
                     "seconds": r["timings"]["total_s"]})
    return _finish(ctx, "backbone_ablation", rows, {"skipped": skipped}, t0)


#: Variants of :func:`mode_comparison` (name → optimise keywords).
MODE_VARIANTS: dict[str, dict[str, Any]] = {
    "paper z random": {},
    "paper w random": {"latent_space": "w"},
    "paper w+ random": {"latent_space": "w+"},
    "paper z z_star": {"init": "z_star"},
    "paper z mean": {"init": "mean"},
    "release (w+ mean)": {"mode": "release"},
    "blend": {"mode": "blend"},
    "refine (w+ from w(z*))": {"mode": "refine"},
}


def mode_comparison(profile: str | Context = "demo", *, progress: bool = True, **overrides: Any) -> dict[str, Any]:
    """Paper vs release, blend and refine mode; latent spaces z / w / w+, inits random / z* / mean
    (:data:`MODE_VARIANTS`).

    Claim checked: the paper's footnote 3, starting from z* is worse (higher distance to D_t) than random init.

    Used in: notebooks/04_ablations.ipynb.
    """
    t0, ctx = time.perf_counter(), _ctx(profile, overrides)
    s, t, m = ctx.experiments()[0]
    rows, by = [], {}
    for name, kw in MODE_VARIANTS.items():
        r = ctx.dds(s, t, m, progress=progress, **kw)
        sc = ctx.score(r["image"], s, t, m)
        by[name] = sc
        rows.append({"variant": name, **{k: sc[k] for k in ("fd_D_s", "fd_D_t", "ssim_D_t", "psnr_D_t")},
                     **{k: sc[k] for k in _JUDGED if k in sc},
                     "final_loss": float(r["history"]["total"][-1].mean()) if len(r["history"]["total"]) else None})
    claims = {"z_star_worse_than_random": by["paper z z_star"]["fd_D_t"] > by["paper z random"]["fd_D_t"]}
    return _finish(ctx, "mode_comparison", rows, claims, t0)


def blending_baselines(profile: str | Context = "demo", *, progress: bool = True, **overrides: Any) -> dict[str, Any]:
    """Appendix B: crossover, Laplacian pyramid, Poisson (OpenCV seamlessClone) and alpha blending of x_s into
    x_t along y_s, scored like DDS (paper mode, and blend mode) on every experiment.

    Used in: notebooks/07_baselines.ipynb.
    """
    from ..core import blending

    t0, ctx = time.perf_counter(), _ctx(profile, overrides)
    rows, images = [], {}
    for s, t, m in ctx.experiments():
        p = ctx.pair(s, t, m)
        methods: dict[str, Tensor] = {"crossover": p["x_c"]}
        for b in blending.BASELINES:
            methods[b] = blending.blend(b, p["x_s"], p["x_t"], p["y_s"])
        methods["dds"] = ctx.dds(s, t, m, progress=progress)["image"]
        methods["dds-blend"] = ctx.dds(s, t, m, progress=progress, mode="blend")["image"]
        for name, img in methods.items():
            sc = ctx.score(img, s, t, m)
            rows.append({"experiment": f"{s}->{t}/{m}", "method": name,
                         **{k: sc[k] for k in ("fd_D_s", "fd_D_t", "ssim_D_s", "ssim_D_t", "psnr_D_t")},
                         **{k: sc[k] for k in _JUDGED if k in sc}})
            images[f"{s}->{t}/{m}/{name}"] = img
    return _finish(ctx, "blending_baselines", rows, {}, t0, images)


EXPERIMENTS: dict[str, Callable[..., dict[str, Any]]] = {
    "table1": table1,
    "fid_during_optimisation": fid_during_optimisation,
    "loss_weight_sweep": loss_weight_sweep,
    "backbone_ablation": backbone_ablation,
    "mode_comparison": mode_comparison,
    "blending_baselines": blending_baselines,
}


def format_table1(result: Mapping[str, Any], *, digits: int = 3) -> str:
    """Table 1 in the paper's layout, one block per method: rows = method × mask × reference (D_s, {x_c}, D_t),
    columns = experiment × metric (distance ↓, SSIM ↑, PSNR ↑). ``result`` is what :func:`table1` returns."""
    exps = list(dict.fromkeys(r["experiment"] for r in result["rows"]))
    pairs = list(dict.fromkeys(e.split("/")[0] for e in exps))
    masks = list(dict.fromkeys(e.split("/")[1] for e in exps))
    methods = list(dict.fromkeys(r.get("method", "dds-paper") for r in result["rows"]))
    by = {(r["experiment"], r.get("method", "dds-paper"), r["reference"]): r for r in result["rows"]}
    dist = "FID" if "Inception" in result.get("distance_label", "") else "FD-VGG"
    head = ["method", "mask", "reference"] + [f"{p.replace('->', '→')} {m}" for p in pairs
                                              for m in (f"{dist} ↓", "SSIM ↑", "PSNR ↑")]
    lines = ["| " + " | ".join(head) + " |", "|---|---|---|" + "---:|" * (len(head) - 3)]
    for method in methods:
        for mask in masks:
            for ref in ("D_s", "x_c", "D_t"):
                cells = [method, mask, {"x_c": "{x_c}"}.get(ref, ref)]
                for p in pairs:
                    r = by.get((f"{p}/{mask}", method, ref))
                    cells += [f"{r[k]:.{digits}f}" if r else "" for k in ("fd", "ssim", "psnr")]
                lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_markdown(result: Mapping[str, Any], *, digits: int = 3) -> str:
    """A Markdown table of an experiment's rows (columns = union of the row keys), then its claims.

    For ``table1`` the paper's layout (:func:`format_table1`) comes first, then the long table (with KID and the
    toy-world judges)."""
    rows = result["rows"]
    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols]

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.{digits}f}"
        return "" if v is None else str(v)

    lines = [f"### {result['name']} ({result['profile']} profile, {result['wall_s']:.0f} s)",
             f"Distances: {result.get('distance_label', '')}", ""]
    if result.get("name") == "table1" and rows:
        lines += [format_table1(result, digits=digits), "", "All scores:", ""]
    lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(cell(r.get(c)) for c in cols) + " |" for r in rows]
    if result.get("claims"):
        lines += ["", "Claims: " + json.dumps(result["claims"], default=str)]
    return "\n".join(lines)


def _preflight(ctx: Context) -> None:
    """Load what the experiments need before the first optimisation: generators, judges, feature weights."""
    from ..core import weights

    for domain in {d for pair in ctx.cfg["pairs"] for d in pair}:
        cli.load("--profile", ctx.cfg["generators"][domain], lambda _: ctx.generator(domain))
    if ctx.cfg["mask_source"] == "parser" or ctx.cfg["judges"]:
        if ctx.judges() is None:
            raise UserError("mask_source='parser' needs the toy-world judges (judges=True)", argument="--profile",
                            value=ctx.profile)
    if ctx.cfg["mask_source"] == "segmenter":
        for m in ctx.cfg["masks"]:
            ctx._segmenter_path(m)
    cli.load("--profile", "vgg16-imagenet", weights.resolve)  # DDS's default perceptual backbone, and fd="vgg"
    if ctx.cfg["fd"] == "inception":
        from ..core import metrics

        cli.load("--profile", None, lambda _: metrics.inception_weights_path())


@cli.command
def main(argv: Sequence[str] | None = None) -> int:
    """``python -m ddsutils.experiments NAME|all --profile ci|demo|paper [--n N] [--num-steps N] [--device D]
    [--out DIR] [--overwrite] [--cache DIR]``; user errors are one line and exit status 2."""
    pos = cli.argtype(cli.positive_int)
    p = cli.ArgumentParser(prog="python -m ddsutils.experiments", description=__doc__.splitlines()[0])
    p.add_argument("name", choices=[*EXPERIMENTS, "all"])
    p.add_argument("--profile", choices=sorted(PROFILES), default="demo")
    p.add_argument("--n", type=pos, default=None, help="pairs per experiment (profile default)")
    p.add_argument("--num-steps", type=pos, default=None, help="DDS iterations (profile default)")
    p.add_argument("--masks", nargs="+", default=None, choices=list(_MASKS),
                   help="masks (profile default); the ablations use the first experiment, e.g. --masks hair")
    p.add_argument("--modes", nargs="+", default=None, choices=list(_MODES),
                   help="DDS modes of Table 1 (profile default: all)")
    p.add_argument("--device", default=None, help="cpu | cuda | auto (profile default)")
    p.add_argument("--out", default=None, help="results folder, written whole (default runs/<profile>/results)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out whole")
    p.add_argument("--cache", default=None, help="DDS run cache (default runs/<profile>/dds_cache)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    a = p.parse_args(argv)
    prog = "ddsutils.experiments"
    out = cli.output_folder(a.out or runs_dir() / a.profile / "results", "--out", overwrite=a.overwrite)
    cache = Path(a.cache) if a.cache else runs_dir() / a.profile / "dds_cache"
    if cache.exists() and not cache.is_dir():
        raise UserError("is an existing file, not a folder", argument="--cache", value=str(cache))
    if cache.resolve().is_relative_to(out.resolve()):
        raise UserError("is inside --out, which is replaced whole; put the cache outside it", argument="--cache",
                        value=str(cache))
    if a.device is not None:
        cli.device(a.device, "--device")
    over = {k: v for k, v in (("n", a.n), ("num_steps", a.num_steps), ("masks", a.masks), ("modes", a.modes),
                              ("device", a.device)) if v is not None}
    try:
        ctx = Context(a.profile, out=str(out), cache=str(cache), **over)
    except UserError as exc:  # name the command-line argument a setting came from
        flags = {"n": "--n", "num_steps": "--num-steps", "masks": "--masks", "modes": "--modes", "device": "--device"}
        if exc.argument in flags and exc.argument in over:
            exc.argument = flags[exc.argument]
        raise
    names = list(EXPERIMENTS) if a.name == "all" else [a.name]
    # torchrun: each process optimises its block of every run's latents on its device; rank 0 speaks and writes
    ctx.dist = distributed.init(ctx.device, argument="--device")
    ctx.device, main_rank = ctx.dist.device, ctx.dist.is_main
    if main_rank:
        cli.say(f"loading the generators, judges and VGG-16 weights of profile {a.profile!r}", prog=prog)
    _preflight(ctx)
    with run_folder(out, overwrite=a.overwrite) if main_rank else contextlib.nullcontext(out) as tmp:
        ctx.out = tmp  # written here, renamed to --out when every experiment is done (cfg keeps the final path)
        for i, name in enumerate(names, 1):
            if main_rank:
                cli.say(f"[{i}/{len(names)}] {name}: {len(ctx.experiments())} experiment(s), n={ctx.cfg['n']}, "
                        f"{ctx.cfg['num_steps']} DDS steps (cached runs in {cache} are reused)", prog=prog)
            res = EXPERIMENTS[name](ctx, progress=not a.quiet)
            if main_rank:
                print(format_markdown(res) + "\n")
    if main_rank:
        print(f"results in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
