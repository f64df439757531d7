"""Neighbouring generators: the model distance and the layer swap of "I2I translation via pre-trained StyleGAN2".

Two generators of one architecture that share a latent space (a source ``G_s`` and a copy adapted to another
domain, ``G_t``) are *neighbours* when ``G_s(z)`` and ``G_t(z)`` look alike. The paper measures this with the
**model distance** (its Eq. 1): the mean LPIPS between ``G_a(z)`` and ``G_b(z)`` over seeded ``z ~ N(0, I)``
(:func:`model_distance`, :func:`model_distances` for a table), and brings ``G_t`` nearer with the **layer swap**
``S(G_t, l)``: ``G_t`` with its layers at the ``l`` lowest resolutions after 4 x 4 taken from ``G_s`` (paper
§IV-B: ``l = 1, 2, 3`` are the 8, 16 and 32 px layers; :func:`swapped_resolutions`, :func:`layer_swap`). Its
diversity score ``LPIPS_d`` is the mean LPIPS between pairs of one generator's samples (:func:`lpips_diversity`).

Layers per resolution ``r`` (rosinality layout, :class:`~ddsutils.core.stylegan2.Generator`): at 4 px the
constant ``input``, ``conv1``, ``to_rgb1`` and noise map 0; at ``r = 8 * 2**k`` the StyledConvs ``convs[2k]``
(upsampling) and ``convs[2k+1]``, ``to_rgbs[k]`` and noise maps ``2k+1``, ``2k+2``; the mapping network
``style`` belongs to no resolution.

Images are ``[N, 3, H, W]`` float32 in [-1, 1]; generators are run with their constant noise maps and ψ = 1,
and their images are clamped to [-1, 1] before LPIPS.
"""
from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from tqdm.auto import tqdm

from . import cli
from .errors import UserError
from .stylegan2 import Generator

__all__ = ["synthesis_resolutions", "resolution_prefixes", "swapped_resolutions", "layer_swap", "sample_images",
           "mean_lpips", "lpips_diversity", "model_distance", "model_distances"]

_NETS = ("alex", "vgg", "squeeze")


def synthesis_resolutions(G: Generator) -> list[int]:
    """The synthesis resolutions of ``G``: ``[4, 8, ..., G.size]``."""
    return [2 ** i for i in range(2, G.log_size + 1)]


def resolution_prefixes(G: Generator, r: int, *, to_rgb: bool = True) -> tuple[str, ...]:
    """``state_dict`` name prefixes of ``G``'s layers at resolution ``r`` (see the module docstring).

    Args:
        G: a generator.
        r: one of :func:`synthesis_resolutions`.
        to_rgb: include the resolution's ToRGB layer.

    Returns:
        e.g. ``("convs.2", "convs.3", "to_rgbs.1", "noises.noise_3", "noises.noise_4")`` for ``r = 16``.
    """
    if r not in synthesis_resolutions(G):
        raise UserError(f"is not a resolution of this {G.size} px generator; choose from {synthesis_resolutions(G)}",
                        argument="resolutions", value=r)
    if r == 4:
        return ("input", "conv1", *(("to_rgb1",) if to_rgb else ()), "noises.noise_0")
    k = r.bit_length() - 4  # 8 px -> block 0
    return (f"convs.{2 * k}", f"convs.{2 * k + 1}", *((f"to_rgbs.{k}",) if to_rgb else ()),
            f"noises.noise_{2 * k + 1}", f"noises.noise_{2 * k + 2}")


def swapped_resolutions(G: Generator, l: int) -> tuple[int, ...]:  # noqa: E741 - the paper's name
    """The resolutions the paper's ``S(G_t, l)`` takes from ``G_s``: the ``l`` lowest after 4 x 4.

    ``l = 0`` swaps nothing, ``l = 1`` the 8 px layers, ``l = 2`` the 8 and 16 px layers, ... up to
    ``l = log2(G.size) - 2`` (every resolution but 4 px).

    Returns:
        ``(8, 16, ..., 8 * 2**(l - 1))``.
    """
    top = G.log_size - 2
    cli.int_arg(l, "l", min=0, max=top)
    return tuple(8 * 2 ** k for k in range(l))


def _check_pair(G_a: Generator, G_b: Generator, name: str = "G_b") -> None:
    # one architecture: same resolution, latent width, mapping depth and channels
    same = (G_a.size, G_a.style_dim, G_a.n_mlp, G_a.channels) == (G_b.size, G_b.style_dim, G_b.n_mlp, G_b.channels)
    if not same:
        raise UserError(f"is a {G_b.size} px generator with style_dim {G_b.style_dim}, n_mlp {G_b.n_mlp} and "
                        f"channels {G_b.channels}, the other a {G_a.size} px one with {G_a.style_dim}, {G_a.n_mlp} "
                        f"and {G_a.channels}; both must have one architecture", argument=name,
                        value=f"{G_b.size} px")


def layer_swap(G_s: Generator, G_t: Generator, *, resolutions: Sequence[int], mapping: bool = False,
               to_rgb: bool = True) -> Generator:
    """A deep copy of ``G_t`` whose layers at ``resolutions`` are copied from ``G_s`` (the paper's layer swap).

    Args:
        G_s: the generator the swapped layers come from (the source domain's).
        G_t: the generator copied (the adapted one); it is not changed.
        resolutions: synthesis resolutions to swap, e.g. ``swapped_resolutions(G_t, 3)`` = ``(8, 16, 32)``;
            4 is allowed (the constant input, ``conv1``, ``to_rgb1``). Empty: an unchanged copy of ``G_t``.
        mapping: also copy ``G_s``'s mapping network ``style`` (and its ``latent_avg``); the paper keeps the
            adapted one.
        to_rgb: swap the resolutions' ToRGB layers with their StyledConvs (default); ``False``: StyledConvs only.

    Returns:
        A new :class:`Generator` on ``G_t``'s device, in ``G_t``'s train / eval and ``requires_grad`` state.
        With every resolution and ``mapping=True`` its images equal ``G_s``'s; with none, ``G_t``'s.

    Raises:
        UserError: two architectures, or a resolution the generator does not have (before any copy).
    """
    _check_pair(G_s, G_t, "G_t")
    chosen = sorted({int(cli.int_arg(r, "resolutions")) for r in resolutions})
    # the state_dict names under the chosen resolutions' prefixes (and the mapping network's)
    prefixes = [p for r in chosen for p in resolution_prefixes(G_t, r, to_rgb=to_rgb)] + (["style"] if mapping else [])
    out = copy.deepcopy(G_t)
    src = G_s.state_dict()
    # copy the tensors in place (state_dict tensors share storage with the parameters and buffers)
    with torch.no_grad():
        for name, t in out.state_dict().items():
            if any(name == p or name.startswith(p + ".") for p in prefixes):
                t.copy_(src[name].to(t.device, t.dtype))
    if mapping:
        out.latent_avg = G_s.latent_avg.detach().clone() if G_s.latent_avg is not None else None
    return out


@torch.no_grad()
def sample_images(G: Generator, z: torch.Tensor, *, batch_size: int = 100, progress: bool = False,
                  desc: str = "sample") -> torch.Tensor:
    """``G(z)`` with the constant noise maps, ψ = 1, in batches, clamped to [-1, 1].

    Args:
        G: a generator.
        z: ``[N, D]`` latents (any device).
        batch_size: images per forward pass.
        progress: show a ``tqdm.auto`` bar.

    Returns:
        float32 ``[N, 3, G.size, G.size]`` in [-1, 1] on the CPU.
    """
    dev = G.input.input.device
    chunks = list(z.split(batch_size))
    out = [G(c.to(dev), noise="const").clamp(-1, 1).float().cpu()
           for c in tqdm(chunks, desc=desc, disable=cli.no_progress(progress), leave=False)]
    return torch.cat(out) if out else torch.empty(0, 3, G.size, G.size)


@torch.no_grad()
def mean_lpips(img_a: torch.Tensor, img_b: torch.Tensor, *, net: str = "alex", batch_size: int = 100) -> float:
    """Mean LPIPS between two image batches, pair by pair (:func:`ddsutils.core.backbones.distance`).

    Args:
        img_a, img_b: ``[N, 3, H, W]`` float in [-1, 1], same shape, ``N >= 1``.
        net: LPIPS trunk: ``"alex"`` (the published metric), ``"vgg"`` or ``"squeeze"``.
        batch_size: pairs per forward pass.

    Returns:
        The mean distance over the ``N`` pairs (float >= 0; 0 for identical images).
    """
    from .backbones import distance

    if img_a.shape != img_b.shape or img_a.ndim != 4 or img_a.shape[0] < 1:
        raise UserError(f"must be two [N, 3, H, W] batches of one shape with N >= 1, got {list(img_a.shape)} and "
                        f"{list(img_b.shape)}", argument="img_b")
    total = 0.0
    for a, b in zip(img_a.split(batch_size), img_b.split(batch_size)):
        total += float(distance(a, b.to(a.device), net=net).double().sum())
    return total / img_a.shape[0]


def lpips_diversity(img: torch.Tensor, *, net: str = "alex", batch_size: int = 100) -> float:
    """The paper's ``LPIPS_d``: mean LPIPS between the pairs ``(img[2i], img[2i + 1])`` of one generator's samples.

    Args:
        img: ``[N, 3, H, W]`` in [-1, 1], ``N >= 2`` (an odd last image is left out); independent samples.

    Returns:
        float >= 0 (0: every pair identical, i.e. mode collapse).
    """
    if img.ndim != 4 or img.shape[0] < 2:
        raise UserError(f"needs at least two images [N, 3, H, W], got {list(img.shape)}", argument="img")
    m = img.shape[0] // 2
    return mean_lpips(img[0:2 * m:2], img[1:2 * m:2], net=net, batch_size=batch_size)


def _check_counts(n: int, batch_size: int, seed: int, net: str) -> None:
    cli.positive_int(n, "n")
    cli.positive_int(batch_size, "batch_size")
    cli.non_negative_int(seed, "seed")
    cli.choice(net, "net", _NETS, what="LPIPS network")


def model_distance(G_a: Generator, G_b: Generator, *, n: int = 2000, batch_size: int = 100, seed: int = 0,
                   net: str = "alex", progress: bool = True) -> float:
    """The paper's model distance (Eq. 1): mean LPIPS between ``G_a(z)`` and ``G_b(z)`` over ``n`` seeded ``z``.

    Args:
        G_a, G_b: generators of one resolution and latent width (any devices).
        n: number of latents (2000 in the paper).
        batch_size: images per forward pass.
        seed: seed of ``z ~ N(0, I)`` (``torch.Generator``; the same ``z`` for both generators).
        net: LPIPS trunk (``"alex"``, ``"vgg"``, ``"squeeze"``).
        progress: ``tqdm.auto`` bars while sampling.

    Returns:
        float >= 0; 0 for a generator and itself, symmetric in ``G_a`` and ``G_b``.
    """
    _check_counts(n, batch_size, seed, net)
    if (G_a.size, G_a.style_dim) != (G_b.size, G_b.style_dim):
        raise UserError(f"draws {G_b.size} px images from {G_b.style_dim}-d latents, G_a {G_a.size} px from "
                        f"{G_a.style_dim}-d; the model distance needs both alike", argument="G_b")
    z = torch.randn(n, G_a.style_dim, generator=torch.Generator().manual_seed(seed))
    # the same z through both generators, then LPIPS pair by pair
    a = sample_images(G_a, z, batch_size=batch_size, progress=progress, desc="model distance: G_a")
    b = sample_images(G_b, z, batch_size=batch_size, progress=progress, desc="model distance: G_b")
    return mean_lpips(a, b, net=net, batch_size=batch_size)


def model_distances(generators: Mapping[str, Generator], *, n: int = 2000, batch_size: int = 100, seed: int = 0,
                    net: str = "alex", progress: bool = True) -> dict[str, dict[str, Any]]:
    """Model distances between every pair of ``generators``, each sampled once on the same ``n`` latents.

    Args:
        generators: ``{name: Generator}``, at least one, all of one resolution and latent width.
        n, batch_size, seed, net, progress: as in :func:`model_distance`.

    Returns:
        ``{"distance": {name_a: {name_b: d}}, "diversity": {name: LPIPS_d}}``: the model distance of every ordered
        pair (symmetric, 0 on the diagonal) and each generator's :func:`lpips_diversity` over its ``n`` samples
        (``n >= 2``; NaN otherwise): the distance of unpaired images, the scale a model distance is read against.
    """
    _check_counts(n, batch_size, seed, net)
    names = list(generators)
    if not names:
        raise UserError("is empty; give at least one generator", argument="generators", value={})
    first = generators[names[0]]
    for name in names[1:]:
        G = generators[name]
        if (G.size, G.style_dim) != (first.size, first.style_dim):
            raise UserError(f"is a {G.size} px / {G.style_dim}-d generator, {names[0]} a {first.size} px / "
                            f"{first.style_dim}-d one", argument="generators", value=name)
    z = torch.randn(n, first.style_dim, generator=torch.Generator().manual_seed(seed))
    # each generator's images once, then LPIPS for every unordered pair
    imgs = {k: sample_images(G, z, batch_size=batch_size, progress=progress, desc=f"sample {k}")
            for k, G in generators.items()}
    dist: dict[str, dict[str, float]] = {k: {k: 0.0} for k in names}
    pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]
    for a, b in tqdm(pairs, desc="model distances", disable=cli.no_progress(progress), leave=False):
        dist[a][b] = dist[b][a] = mean_lpips(imgs[a], imgs[b], net=net, batch_size=batch_size)
    # every row in the generators' order
    dist = {a: {b: dist[a][b] for b in names} for a in names}
    div = {k: lpips_diversity(imgs[k], net=net, batch_size=batch_size) if n >= 2 else float("nan") for k in names}
    return {"distance": dist, "diversity": div}
