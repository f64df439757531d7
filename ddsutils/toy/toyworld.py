"""The toy world: procedural faces with per-pixel part labels in three styles.

The offline stand-in for a face GAN's data and the default data source of every notebook and test. An
:class:`Identity` (face shape, skin tone, hair, eye, eyebrow, nose and mouth geometry, head roll, position,
scale, light, background; :func:`sample_identities`) is drawn by :func:`render` in one of three *styles* that
share its geometry:

- ``"natural"``: colour, soft radial shading, mild seeded texture, muted gradient backgrounds;
- ``"sketch"``: a grey pencil drawing on off-white paper (outlines, hatching, paper grain), with exactly the
  label map of ``"natural"``;
- ``"caricature"``: exaggerated proportions (:func:`exaggerate`: bigger eyes, nose and mouth, stronger face
  shape), bold flat colours and thick outlines; its parts keep their centres but are larger.

Every render comes with a label map over :data:`PARTS`, from the same implicit fields as the image (the image
uses soft anti-aliased edges, the labels the hard sign of the field, in painter's order). Geometry is
continuous, so one identity gives the same picture at 64, 128 or 256 px. Rendering is vectorised over the
batch and deterministic: the same identity gives bit-identical tensors (texture from an integer hash of its
``seed``). The paper's masks are :data:`MASKS` (M1 eyes, nose and mouth; M2 hair); :func:`part_mask` makes one
from a label map and :func:`composite` builds dual-domain images with a per-pixel ``style_map``.

``python -m ddsutils.toy.toyworld`` writes ``figures/toyworld_renders.png``.

Used in: the toy-world notebooks, the toy StyleGAN2 training, the judges, ``benchmarks/toyworld_speed.py``.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import operator
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "PARTS",
    "STYLES",
    "MASKS",
    "HAIR_STYLES",
    "Identity",
    "sample_identities",
    "exaggerate",
    "render",
    "render_batch",
    "part_mask",
    "composite",
    "label_colours",
    "colourise_labels",
    "save_grid",
    "figure",
]

#: Part labels; the label id of a part is its index.
PARTS: tuple[str, ...] = ("background", "skin", "hair", "eyes", "eyebrows", "nose", "mouth")
#: Styles (domains); the style id used in ``style_map`` is the index.
STYLES: tuple[str, ...] = ("natural", "sketch", "caricature")
#: The paper's part masks: M1 (eyes, nose and mouth) and M2 (hair).
MASKS: dict[str, tuple[str, ...]] = {"eyes_nose_mouth": ("eyes", "nose", "mouth"), "hair": ("hair",)}
#: Hair styles; ``Identity.hair_style`` holds the index (as a float).
HAIR_STYLES: tuple[str, ...] = ("short", "long", "bob", "bald", "fringe", "afro")

_HAIR_STYLE_PROBS = (0.24, 0.23, 0.16, 0.07, 0.17, 0.13)
_FRINGE_PROB = (0.12, 0.3, 0.6, 0.0, 1.0, 0.0)  # chance of a fringe per hair style
_HIDES_EARS = (False, True, True, False, False, True)

_SKIN_ANCHORS = (
    (0.98, 0.86, 0.76),
    (0.94, 0.77, 0.64),
    (0.84, 0.63, 0.49),
    (0.68, 0.47, 0.33),
    (0.48, 0.32, 0.22),
    (0.33, 0.22, 0.15),
)
_HAIR_PALETTE = (  # colour, probability
    ((0.07, 0.06, 0.06), 0.22),
    ((0.20, 0.12, 0.07), 0.20),
    ((0.38, 0.24, 0.13), 0.16),
    ((0.60, 0.44, 0.27), 0.10),
    ((0.88, 0.74, 0.46), 0.12),
    ((0.62, 0.24, 0.10), 0.08),
    ((0.62, 0.61, 0.60), 0.07),
    ((0.88, 0.87, 0.84), 0.05),
)
_EYE_PALETTE = (
    (0.22, 0.12, 0.06),
    (0.40, 0.24, 0.11),
    (0.50, 0.42, 0.20),
    (0.28, 0.50, 0.30),
    (0.28, 0.48, 0.78),
    (0.50, 0.56, 0.62),
)


@dataclass(frozen=True)
class Identity:
    """A batch of ``N`` toy-world identities (everything a render needs, no pixels).

    All fields are tensors on one device with leading dimension ``N``: float32 ``[N]`` scalars, float32
    ``[N, 3]`` RGB colours in [0, 1], and ``seed`` (int64 ``[N]``, in [0, 2**31)) which seeds the
    per-identity texture hash. Lengths are in *face-local units*: image coordinates span [-1, 1] and
    face-local coordinates are image coordinates relative to ``(cx, cy)``, rotated by ``roll`` and
    divided by ``scale``; ``v`` points down. Build with :func:`sample_identities`; derive with
    :meth:`replace`, :meth:`__getitem__` or :func:`exaggerate`.
    """

    seed: Tensor  # int64 [N]: texture seed
    # placement
    cx: Tensor  # face centre x in image coords
    cy: Tensor  # face centre y
    scale: Tensor  # face scale (face-local unit -> image unit)
    roll: Tensor  # head roll, radians
    # face shape
    face_w: Tensor  # half-width
    face_h: Tensor  # half-height (chin at v = face_h)
    jaw: Tensor  # [0, 1] jaw taper
    chin: Tensor  # [0, 1] chin pointiness
    neck_w: Tensor  # neck width relative to face width
    ear_size: Tensor
    skin: Tensor  # [N, 3]
    # hair
    hair_style: Tensor  # index into HAIR_STYLES (float)
    hair_color: Tensor  # [N, 3]
    hair_length: Tensor  # [0, 1]
    hair_volume: Tensor  # thickness of hair around the skull
    hairline: Tensor  # [0, 1], 1 = high forehead
    hair_part: Tensor  # [-1, 1] side parting / asymmetry
    fringe: Tensor  # {0, 1}
    # eyes
    eye_size: Tensor  # half-width of one eye
    eye_open: Tensor  # eye half-height / half-width
    eye_spacing: Tensor  # half distance between eye centres
    eye_y: Tensor  # eye centre height
    eye_tilt: Tensor  # outer corners up (> 0)
    gaze: Tensor  # iris shift, fraction of eye size
    eye_color: Tensor  # [N, 3]
    # eyebrows
    brow_thickness: Tensor
    brow_tilt: Tensor  # > 0: outer end higher
    brow_gap: Tensor  # gap between eye top and brow
    brow_arch: Tensor
    brow_length: Tensor  # relative to eye size
    # nose
    nose_width: Tensor  # half-width at the nostrils
    nose_length: Tensor
    nose_y: Tensor  # centre height of the nose region
    # mouth
    mouth_width: Tensor  # half-width
    mouth_open: Tensor  # opening height (0 = closed)
    mouth_smile: Tensor  # corner lift, [-0.4, 1]
    mouth_y: Tensor
    lip_thickness: Tensor
    lip_color: Tensor  # [N, 3]
    # light, background, clothes
    light_x: Tensor  # light direction (x, y); z = sqrt(1 - x^2 - y^2)
    light_y: Tensor
    bg_color1: Tensor  # [N, 3]
    bg_color2: Tensor  # [N, 3]
    bg_angle: Tensor  # gradient direction, radians
    cloth_color: Tensor  # [N, 3]
    collar: Tensor  # neckline depth
    hatch_angle: Tensor  # pencil hatching direction for the sketch style

    def __len__(self) -> int:
        return int(self.seed.shape[0])

    def __getitem__(self, idx: int | slice | Tensor | Sequence[int]) -> Identity:
        """Select identities (an int keeps the batch dimension: ``ids[3]`` has length 1)."""
        if hasattr(idx, "__index__") and not isinstance(idx, Tensor):
            i = operator.index(idx)
            idx = slice(i, i + 1 if i != -1 else None)
        elif not isinstance(idx, slice | Tensor):
            idx = torch.as_tensor(list(idx), dtype=torch.long)
        return Identity(**{f.name: getattr(self, f.name)[idx] for f in dataclasses.fields(self)})

    def replace(self, **changes: Tensor) -> Identity:
        """A copy with some fields replaced (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)

    def to(self, device: torch.device | str) -> Identity:
        """The same identities on ``device``."""
        return Identity(**{f.name: getattr(self, f.name).to(device) for f in dataclasses.fields(self)})

    @staticmethod
    def cat(items: Sequence[Identity]) -> Identity:
        """Concatenate batches of identities."""
        return Identity(
            **{f.name: torch.cat([getattr(i, f.name) for i in items]) for f in dataclasses.fields(Identity)}
        )


# ----------------------------------------------------------------------------------------------------
# sampling


def _hsv_to_rgb(h: Tensor, s: Tensor, v: Tensor) -> Tensor:
    """HSV (each ``[...]``, in [0, 1]) to RGB ``[..., 3]`` in [0, 1]."""

    def f(n: float) -> Tensor:
        k = torch.remainder(n + h * 6.0, 6.0)
        return v - v * s * torch.clamp(torch.minimum(k, 4.0 - k), 0.0, 1.0)

    return torch.stack([f(5.0), f(3.0), f(1.0)], dim=-1)


def _rgb_to_hsv(rgb: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """RGB ``[..., 3]`` in [0, 1] to (h, s, v), each ``[...]`` in [0, 1]."""
    r, g, b = rgb.unbind(-1)
    mx, _ = rgb.max(-1)
    mn, _ = rgb.min(-1)
    c = mx - mn
    safe = torch.where(c > 1e-8, c, torch.ones_like(c))
    h = torch.where(
        mx == r, torch.remainder((g - b) / safe, 6.0), torch.where(mx == g, (b - r) / safe + 2.0, (r - g) / safe + 4.0)
    )
    h = torch.where(c > 1e-8, h / 6.0, torch.zeros_like(h))
    s = torch.where(mx > 1e-8, c / torch.where(mx > 1e-8, mx, torch.ones_like(mx)), torch.zeros_like(mx))
    return h, s, mx


def sample_identities(n: int, *, seed: int | None = None, generator: torch.Generator | None = None) -> Identity:
    """Draw ``n`` random identities.

    Args:
        n: number of identities (>= 1).
        seed: seeds a fresh CPU ``torch.Generator`` (ignored when ``generator`` is given). With neither,
            a seed is drawn from torch's global RNG (so ``torch.manual_seed`` makes it reproducible).
        generator: a CPU ``torch.Generator`` to draw from (advanced by the call).

    Returns:
        An :class:`Identity` of ``n`` identities on the CPU. The same seed gives identical identities and
        therefore bit-identical renders.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if generator is None:
        if seed is None:
            seed = int(torch.randint(0, 2**62, (1,)).item())
        generator = torch.Generator().manual_seed(int(seed))
    g = generator

    def uni(lo: float, hi: float) -> Tensor:
        return lo + (hi - lo) * torch.rand(n, generator=g)

    def gauss(std: float, lim: float) -> Tensor:
        return (torch.randn(n, generator=g) * std).clamp(-lim, lim)

    def choice(probs: Sequence[float]) -> Tensor:
        return torch.multinomial(torch.tensor(probs, dtype=torch.float64), n, replacement=True, generator=g)

    seed_t = torch.randint(0, 2**31 - 1, (n,), generator=g, dtype=torch.int64)
    cx = gauss(0.035, 0.08)
    cy = uni(-0.02, 0.06)
    scale = uni(0.9, 1.1)
    roll = gauss(0.09, 0.24)

    face_w = uni(0.43, 0.55)
    face_h = face_w * uni(1.16, 1.36)
    jaw = uni(0.0, 1.0)
    chin = uni(0.0, 1.0)
    neck_w = uni(0.85, 1.12)
    ear_size = uni(0.8, 1.2)
    anchors = torch.tensor(_SKIN_ANCHORS)
    t = uni(0.0, 1.0) * (len(_SKIN_ANCHORS) - 1)
    i0 = t.floor().long().clamp(max=len(_SKIN_ANCHORS) - 2)
    fr = (t - i0.float())[:, None]
    skin = anchors[i0] * (1 - fr) + anchors[i0 + 1] * fr
    skin = (skin + (torch.rand(n, 3, generator=g) - 0.5) * 0.05).clamp(0.05, 1.0)

    hair_style = choice(_HAIR_STYLE_PROBS)
    hair_pal = torch.tensor([c for c, _ in _HAIR_PALETTE])
    hair_color = hair_pal[choice([p for _, p in _HAIR_PALETTE])]
    hair_color = (hair_color * uni(0.85, 1.15)[:, None] + (torch.rand(n, 3, generator=g) - 0.5) * 0.06).clamp(0.02, 1)
    hair_length = uni(0.0, 1.0)
    hair_volume = uni(0.03, 0.13)
    hairline = uni(0.0, 1.0)
    hair_part = uni(-1.0, 1.0)
    fringe_p = torch.tensor(_FRINGE_PROB)[hair_style]
    fringe = (torch.rand(n, generator=g) < fringe_p).float()

    eye_size = uni(0.075, 0.1)
    eye_open = uni(0.42, 0.64)
    eye_spacing = uni(0.175, 0.225)
    eye_y = uni(-0.07, 0.0)
    eye_tilt = gauss(0.12, 0.25)
    gaze = gauss(0.15, 0.3)
    eye_color = torch.tensor(_EYE_PALETTE)[torch.randint(0, len(_EYE_PALETTE), (n,), generator=g)]
    eye_color = (eye_color * uni(0.85, 1.15)[:, None]).clamp(0, 1)

    brow_thickness = uni(0.014, 0.03)
    brow_tilt = gauss(0.25, 0.5)
    brow_gap = uni(0.03, 0.065)
    brow_arch = uni(0.0, 1.0)
    brow_length = uni(0.95, 1.35)

    nose_width = uni(0.055, 0.08)
    nose_length = uni(0.14, 0.21)
    nose_y = eye_y + uni(0.16, 0.21)

    mouth_width = uni(0.11, 0.17)
    mouth_open = torch.where(torch.rand(n, generator=g) < 0.35, uni(0.015, 0.06), torch.zeros(n))
    mouth_smile = uni(-0.4, 1.0)
    lip_thickness = uni(0.018, 0.032)
    mouth_y = nose_y + nose_length / 2 + uni(0.07, 0.11)
    lip_tint = torch.tensor([0.80, 0.30, 0.33])
    mix = uni(0.3, 0.65)[:, None]
    lip_color = (skin * (1 - mix) + lip_tint * mix) * 0.85

    light_ang = uni(-2.4, -0.7)  # mostly from above
    light_r = uni(0.35, 0.75)
    light_x = light_r * torch.cos(light_ang)
    light_y = light_r * torch.sin(light_ang)

    h1 = uni(0.0, 1.0)
    bg_color1 = _hsv_to_rgb(h1, uni(0.08, 0.5), uni(0.35, 0.92))
    bg_color2 = _hsv_to_rgb(torch.remainder(h1 + gauss(0.08, 0.2), 1.0), uni(0.05, 0.5), uni(0.25, 0.95))
    bg_angle = uni(0.0, 2 * math.pi)
    cloth_color = _hsv_to_rgb(uni(0.0, 1.0), uni(0.1, 0.8), uni(0.15, 0.85))
    collar = uni(0.4, 1.6)
    hatch_angle = uni(0.5, 1.1)

    return Identity(
        seed=seed_t, cx=cx, cy=cy, scale=scale, roll=roll,
        face_w=face_w, face_h=face_h, jaw=jaw, chin=chin, neck_w=neck_w, ear_size=ear_size, skin=skin,
        hair_style=hair_style.float(), hair_color=hair_color, hair_length=hair_length, hair_volume=hair_volume,
        hairline=hairline, hair_part=hair_part, fringe=fringe,
        eye_size=eye_size, eye_open=eye_open, eye_spacing=eye_spacing, eye_y=eye_y, eye_tilt=eye_tilt,
        gaze=gaze, eye_color=eye_color,
        brow_thickness=brow_thickness, brow_tilt=brow_tilt, brow_gap=brow_gap, brow_arch=brow_arch,
        brow_length=brow_length,
        nose_width=nose_width, nose_length=nose_length, nose_y=nose_y,
        mouth_width=mouth_width, mouth_open=mouth_open, mouth_smile=mouth_smile, mouth_y=mouth_y,
        lip_thickness=lip_thickness, lip_color=lip_color,
        light_x=light_x, light_y=light_y, bg_color1=bg_color1, bg_color2=bg_color2, bg_angle=bg_angle,
        cloth_color=cloth_color, collar=collar, hatch_angle=hatch_angle,
    )  # fmt: skip


def exaggerate(identity: Identity, *, factor: float = 1.5) -> Identity:
    """Caricature proportions of the same identities.

    Eyes, nose and mouth grow about their (unchanged) centres: eyes by ``factor`` (clamped so the two
    eyes never touch), nose width by ``factor`` and length by ``sqrt(factor)``, mouth width by
    ``factor ** 0.7`` and lips / opening by ``factor``; brows thicken. The face shape moves away from
    the average face by ``factor`` (width, height, jaw, chin), and hair gets a little more volume.

    Args:
        identity: identities to exaggerate.
        factor: >= 1; 1 returns an identical copy.

    Returns:
        A new :class:`Identity` (same length and device).
    """
    if factor < 1.0:
        raise ValueError(f"exaggeration factor must be >= 1, got {factor}")
    e = float(factor)
    i = identity

    def push(x: Tensor, mean: float, lo: float, hi: float) -> Tensor:
        return (mean + e * (x - mean)).clamp(lo, hi)

    face_w = push(i.face_w, 0.49, 0.38, 0.6)
    face_h = face_w * push(i.face_h / i.face_w, 1.3, 1.1, 1.55)
    eye_size = torch.minimum(i.eye_size * e, i.eye_spacing - 0.03)
    nose_length = i.nose_length * math.sqrt(e)
    return i.replace(
        face_w=face_w,
        face_h=face_h,
        jaw=push(i.jaw, 0.5, 0.0, 1.0),
        chin=push(i.chin, 0.5, 0.0, 1.0),
        eye_size=eye_size,
        eye_open=(i.eye_open * e**0.25).clamp(max=0.8),
        brow_thickness=i.brow_thickness * e**0.8,
        nose_width=i.nose_width * e,
        nose_length=nose_length,
        mouth_width=i.mouth_width * e**0.7,
        mouth_open=i.mouth_open * e,
        lip_thickness=i.lip_thickness * e,
        mouth_smile=(i.mouth_smile * e).clamp(-0.6, 1.4),
        hair_volume=i.hair_volume * e**0.5,
    )


# ----------------------------------------------------------------------------------------------------
# fields and texture helpers


def _p(t: Tensor) -> Tensor:
    """``[N]`` -> ``[N, 1, 1]`` for broadcasting against ``[N, H, W]`` fields."""
    return t.view(-1, 1, 1)


def _c(t: Tensor) -> Tensor:
    """``[N, 3]`` colour -> ``[N, 3, 1, 1]``."""
    return t.view(-1, 3, 1, 1)


def _sq(x: Tensor) -> Tensor:
    return x * x


def _cos2pi(x: Tensor) -> Tensor:
    """A cheap stand-in for ``cos(2 pi x)``: a periodic piecewise parabola (1 at integers, -1 halfway)."""
    t = x - torch.floor(x) - 0.5
    return 8.0 * t * t - 1.0


def _ell(x: Tensor, y: Tensor, a: Tensor | float, b: Tensor | float) -> Tensor:
    """Approximately signed distance to an axis-aligned ellipse (negative inside), local units."""
    xa = x * (1.0 / a)
    yb = y * (1.0 / b)
    r = torch.sqrt(xa * xa + yb * yb + 1e-12)
    return (r - 1.0) * (0.5 * (a + b - abs(a - b)))  # min(a, b) for floats and tensors


def _pxdist(f: Tensor, px: Tensor) -> Tensor:
    """Signed distance in pixels to the zero set of a field ``f`` ``[N, H, W]`` in local units.

    First order estimate ``f / |grad f|`` (gradient by finite differences on the pixel grid), which is
    accurate near the zero set; far from it, where a strongly anisotropic field would make it collapse,
    ``|f| / px`` (``px``: local units per pixel, ``[N, 1, 1]``) is a lower bound since all fields here
    grow no faster than the distance.
    """
    gy, gx = torch.gradient(f, dim=(-2, -1))
    # f / min(|grad f|, px): the larger of the two estimates
    return f * torch.rsqrt(torch.minimum(gx * gx + gy * gy + 1e-12, px * px))


def _fill(d: Tensor) -> Tensor:
    """Anti-aliased coverage ``[N, 1, H, W]`` of the inside of a pixel-distance field ``[N, H, W]``."""
    return (0.5 - d).clamp(0.0, 1.0).unsqueeze(1)


def _line(d: Tensor, width_px: Tensor | float) -> Tensor:
    """Anti-aliased coverage ``[N, 1, H, W]`` of a line of ``width_px`` along the zero set."""
    return (0.5 * width_px + 0.5 - d.abs()).clamp(0.0, 1.0).unsqueeze(1)


def _rgb(values: Sequence[float], like: Tensor) -> Tensor:
    """A constant colour ``[1, 3, 1, 1]`` on the device of ``like``."""
    return torch.tensor(values, dtype=torch.float32, device=like.device).view(1, 3, 1, 1)


def _over(img: Tensor, alpha: Tensor, colour: Tensor) -> Tensor:
    """Paint ``colour`` (``[N, 3, H, W]`` or ``[N, 3, 1, 1]``) over ``img`` with coverage ``alpha``."""
    return torch.lerp(img, colour, alpha)


def _hash01(ix: Tensor, iy: Tensor, seed: Tensor) -> Tensor:
    """Integer hash of lattice points and a seed (int64, broadcastable) to float32 in [0, 1)."""
    m = 0xFFFFFFFF
    h = (ix * 374761393 + iy * 668265263 + seed * 1442695041) & m
    h = ((h ^ (h >> 13)) * 1274126177) & m
    h = ((h ^ (h >> 16)) * 668265261) & m
    h = h ^ (h >> 15)
    return h.to(torch.float32) * (1.0 / 4294967296.0)


def _lattice_noise(gx: Tensor, gy: Tensor, seed: Tensor, nx: int, ny: int) -> Tensor:
    """Value noise ``[N, 1, H, W]`` in [0, 1]: hashed values on an ``ny`` x ``nx`` lattice spanning
    [-1, 1]^2 of the (continuous, resolution independent) coordinates ``gx``, ``gy`` (``[N, H, W]``),
    bilinearly interpolated (``grid_sample``, border padding)."""
    n = seed.shape[0]
    dev = seed.device
    ix = torch.arange(nx, device=dev).view(1, 1, nx)
    iy = torch.arange(ny, device=dev).view(1, ny, 1)
    lat = _hash01(ix, iy, seed.view(n, 1, 1)).unsqueeze(1)
    grid = torch.stack(torch.broadcast_tensors(gx, gy), dim=-1)
    return F.grid_sample(lat, grid, mode="bilinear", padding_mode="border", align_corners=True)


def _bump(q: Tensor) -> Tensor:
    """A cheap Gaussian-like bump of a squared radius ``q`` (1 at 0, 0 from 3 on)."""
    t = (1.0 - q * (1.0 / 3.0)).clamp(min=0.0)
    return t * t * t


def _smooth(e0: float, e1: float, x: Tensor) -> Tensor:
    t = ((x - e0) / (e1 - e0)).clamp(0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


# ----------------------------------------------------------------------------------------------------
# geometry shared by all styles


_HAIR_CENTRE = -0.04  # centre height of the hair shell around the skull


def _hair_silhouette(kind: int, u: Tensor, v: Tensor, idt: Identity) -> Tensor:
    """Field ``[n, H, W]`` (negative inside) of the back hair of hair style ``kind`` for ``n`` identities."""
    fw, fh = _p(idt.face_w), _p(idt.face_h)
    vol, length = _p(idt.hair_volume), _p(idt.hair_length)
    ey = _p(idt.eye_y)
    au = u.abs()
    hc = _HAIR_CENTRE
    shell_a = fw * 1.04 + vol
    shell_b = fh + vol
    side = shell_a + 0.015
    vpos = v.clamp(min=0.0)
    name = HAIR_STYLES[kind]
    if name == "short":  # skull cap down to the temples
        return torch.maximum(_ell(u, v - hc, shell_a, shell_b), v - (ey + 0.02))
    if name == "long":  # cap plus curtains falling past the chin onto the shoulders
        w = side + 0.03 + 0.12 * vpos * (0.5 + length)
        v_end = fh * (0.6 + 0.8 * length)
        drape = torch.maximum(torch.maximum(au - w, v - v_end + 0.06 * _sq(au / w)), hc - v)
        return torch.minimum(_ell(u, v - hc, shell_a, shell_b), drape)
    if name == "bob":  # flared, ends straight at jaw height
        w = side + 0.05 + 0.16 * vpos
        drape = torch.maximum(torch.maximum(au - w, v - fh * (0.5 + 0.3 * length)), hc - v)
        return torch.minimum(_ell(u, v - hc, shell_a + 0.02, shell_b + 0.02), drape)
    if name == "bald":  # thin bands above the ears only
        band = torch.maximum(_ell(u, v - hc, fw * 1.04 + 0.4 * vol, shell_b), v - (ey + 0.12))
        return torch.maximum(band, torch.maximum(-0.3 * fh - v, fw * 0.7 - au))
    if name == "fringe":  # medium length sides (the fringe itself is front hair)
        w = side + 0.01 + 0.05 * vpos
        drape = torch.maximum(torch.maximum(au - w, v - fh * (0.2 + 0.4 * length)), hc - v)
        return torch.minimum(_ell(u, v - hc, shell_a, shell_b), drape)
    # afro: a big bumpy disc around the head
    ac = -0.25 * fh
    ra = torch.sqrt(u * u + _sq(v - ac) + 1e-12)
    th = torch.atan2(v - ac, u)
    rad = fw * 1.22 + 0.08 + 1.4 * vol
    bump = 1.0 + 0.04 * torch.sin(9.0 * th + 3.0 * _p(idt.hair_part))
    return torch.maximum(ra - rad * bump, v - 0.5 * fh)


def _geometry(idt: Identity, size: int) -> dict[str, Tensor]:
    """All implicit fields of a batch of identities on a ``size`` x ``size`` grid.

    Returns a dict of ``[N, H, W]`` float32 fields (negative inside) in face-local units, the
    coordinates ``u``, ``v``, pixel-distance fields ``d_*`` for the parts, and ``px`` (local units per
    pixel, ``[N, 1, 1]``).
    """
    dev = idt.cx.device
    lin = (torch.arange(size, device=dev, dtype=torch.float32) + 0.5) * (2.0 / size) - 1.0
    y = lin.view(1, size, 1)
    x = lin.view(1, 1, size)
    sc = _p(idt.scale)
    cr, sr = _p(torch.cos(idt.roll)), _p(torch.sin(idt.roll))
    dx = x - _p(idt.cx)
    dy = y - _p(idt.cy)
    isc = 1.0 / sc
    u = (cr * isc) * dx + (sr * isc) * dy
    v = (cr * isc) * dy - (sr * isc) * dx
    au = u.abs()
    sgn = torch.where(u >= 0, 1.0, -1.0)
    g: dict[str, Tensor] = {"u": u, "v": v, "px": 2.0 / size / sc, "x": x.expand_as(u), "y": y.expand_as(u)}

    fw, fh = _p(idt.face_w), _p(idt.face_h)
    jaw, chin = _p(idt.jaw), _p(idt.chin)
    ey, es = _p(idt.eye_y), _p(idt.eye_spacing)
    ew = _p(idt.eye_size)
    eh = ew * _p(idt.eye_open)

    # face: an ellipse whose width tapers below the centre (jaw) and near the chin (chin)
    ifh = 1.0 / fh
    t = (v * ifh).clamp(0.0, 1.0)
    t2 = t * t
    wv = fw * (1.0 - 0.2 * jaw * t2) * (1.0 - (0.12 + 0.3 * chin) * t2 * t2)
    f_face = _ell(u, v, wv, fh)
    g["face"] = f_face
    g["face_nx"] = u / wv
    g["face_ny"] = v * ifh

    # clothes and neck (labelled background and skin)
    sh_y = fh * 1.1 + 0.05
    f_cloth = _ell(u, v - (sh_y + 0.95), 1.15, 0.95)
    nw = 0.5 * fw * _p(idt.neck_w)
    f_neckline = _ell(u, v - sh_y, nw * 1.35, 0.06 + 0.08 * _p(idt.collar))
    f_col = torch.maximum(au - nw, 0.25 * fh - v)
    g["cloth"] = f_cloth
    g["neck"] = torch.maximum(f_col, torch.minimum(-f_cloth, f_neckline))

    # ears (hidden under long hair)
    style = idt.hair_style.round().long()
    hides = torch.tensor(_HIDES_EARS, device=dev)[style]
    es_ = _p(idt.ear_size)
    f_ears = _ell(au - fw * 0.97, v - (ey + 0.07), 0.055 * es_, 0.11 * es_)
    g["ears"] = torch.where(_p(hides), torch.ones_like(f_ears), f_ears)

    # hair: back (silhouette), one shape per hair style, each evaluated on its identities only
    vol = _p(idt.hair_volume)
    hc = _HAIR_CENTRE
    shell_a = fw * 1.04 + vol
    shell_b = fh + vol
    hair_back = torch.empty_like(u)
    for k in range(len(HAIR_STYLES)):
        sel = (style == k).nonzero().squeeze(1)
        if sel.numel() == 0:
            continue
        if sel.numel() == len(idt):
            hair_back = _hair_silhouette(k, u, v, idt)
        else:
            hair_back[sel] = _hair_silhouette(k, u[sel], v[sel], idt[sel])
    g["hair_back"] = hair_back
    g["hair_shell_nx"] = u * (1.0 / shell_a)
    g["hair_shell_ny"] = (v - hc) * (1.0 / shell_b)

    # eyebrows (mirrored): an ellipse in curved, sheared coordinates above each eye
    bt = _p(idt.brow_thickness)
    bl = ew * _p(idt.brow_length)
    by = ey - eh - _p(idt.brow_gap) - bt
    ab = (au - es - 0.01) * (1.0 / bl)
    cb = by - 0.045 * _p(idt.brow_tilt) * ab + 0.035 * _p(idt.brow_arch) * (ab * ab - 0.3)
    tb = bt * (1.0 - 0.35 * ab).clamp(min=0.3)
    f_brow = _ell(ab, (v - cb) / tb, 1.0, 1.0) * torch.minimum(bl, tb)
    g["brows"] = f_brow

    # front hair: the part of the face above the hairline
    ufw = u * (1.0 / fw)
    curve = (0.3 * fh) * _sq(ufw) + (0.07 * _p(idt.hair_part)) * ufw
    v_hl = -fh * (0.6 + 0.25 * _p(idt.hairline)) + curve
    brow_top = ey - eh - _p(idt.brow_gap) - 2.5 * bt - 0.035
    ph = u * (55.0 / math.pi) + _p(idt.hair_part)
    jag = 0.024 * (ph - torch.floor(ph) - 0.5).abs()  # saw-tooth fringe edge
    v_fr = brow_top - jag + 0.06 * _sq(ufw) + (0.05 * _p(idt.hair_part)) * ufw
    v_hl = torch.where(_p(idt.fringe) > 0.5, torch.maximum(v_fr, v_hl), v_hl)
    v_hl = torch.where(_p(style == HAIR_STYLES.index("bald")), torch.full_like(v_hl, -10.0), v_hl)  # no front hair
    g["hair_front"] = torch.maximum(f_face, v - v_hl)
    # for painting only: grown by one pixel past the face edge, so that no skin-coloured seam shows
    # where the face's and the front hair's anti-aliased edges coincide (those pixels are hair anyway)
    g["hair_front_paint"] = torch.maximum(f_face - g["px"], v - v_hl)

    # eyes (mirrored): tilted ellipses; iris and pupil discs
    du = au - es
    dv = v - ey + _p(idt.eye_tilt) * du
    g["eyes"] = _ell(du, dv, ew, eh)
    g["eye_du"] = du
    g["eye_dv"] = dv
    ri = eh * 1.05
    di = du - sgn * _p(idt.gaze) * ew * 0.45
    r_iris = torch.sqrt(di * di + dv * dv + 1e-12)
    g["iris"] = r_iris - ri
    g["pupil"] = r_iris - 0.45 * ri

    # nose: a bridge that widens downwards, a rounded tip, two nostrils
    nwid, nlen = _p(idt.nose_width), _p(idt.nose_length)
    ncy = _p(idt.nose_y)
    ntop, nbot = ncy - nlen / 2, ncy + nlen / 2
    tn = ((v - ntop) * (1.0 / nlen)).clamp(0.0, 1.0)
    f_bridge = torch.maximum(au - nwid * (0.28 + 0.55 * tn * tn), torch.maximum(ntop - v, v - nbot))
    tip_y = nbot - 0.45 * nwid
    f_tip = _ell(u, v - tip_y, nwid, 0.5 * nwid)
    g["nose"] = torch.minimum(f_bridge, f_tip)
    g["nose_bridge"] = f_bridge
    g["nose_tip"] = f_tip
    g["nose_tip_dv"] = v - tip_y
    g["nostrils"] = _ell(au - 0.48 * nwid, v - (nbot - 0.22 * nwid), 0.27 * nwid, 0.15 * nwid)
    g["nose_t"] = tn

    # mouth: lips around a curved centre line; inner opening; teeth
    mw, mo = _p(idt.mouth_width), _p(idt.mouth_open)
    lt = _p(idt.lip_thickness)
    um = u * (1.0 / mw)
    vc = _p(idt.mouth_y) - 0.05 * _p(idt.mouth_smile) * (um * um - 0.3)
    dm = v - vc
    ext = torch.where(dm < 0, 0.5 * mo + 0.85 * lt, 0.5 * mo + 1.1 * lt)
    # (the radius is rescaled by a constant, not by ``ext``, to keep the field continuous at dm = 0)
    g["mouth"] = (torch.sqrt(um * um + _sq(dm / ext) + 1e-12) - 1.0) * (0.5 * mo + lt)
    g["mouth_dv"] = dm
    is_open = _p(idt.mouth_open) > 1e-3
    g["mouth_inner"] = torch.where(is_open, _ell(u, dm, 0.86 * mw, 0.5 * mo + 1e-4), torch.ones_like(dm))
    g["teeth"] = torch.maximum(g["mouth_inner"], dm + 0.05 * mo - 0.004)
    g["lip_line"] = dm
    return g


#: painter's order: (field name, label id)
_LAYERS = (
    ("cloth", 0),
    ("hair_back", 2),
    ("neck", 1),
    ("ears", 1),
    ("face", 1),
    ("hair_front", 2),
    ("brows", 4),
    ("eyes", 3),
    ("nose", 5),
    ("mouth", 6),
)


def _labels(g: dict[str, Tensor]) -> Tensor:
    lab = torch.zeros(g["u"].shape, dtype=torch.int64, device=g["u"].device)
    for name, pid in _LAYERS:
        lab = torch.where(g[name] < 0, pid, lab)
    return lab


def _dists(g: dict[str, Tensor]) -> dict[str, Tensor]:
    extra = ["hair_front_paint", "iris", "pupil", "nose_tip", "nose_bridge", "nostrils", "mouth_inner", "teeth"]
    names = [n for n, _ in _LAYERS] + extra
    return {n: _pxdist(g[n], g["px"]) for n in names}


def _lambert(nx: Tensor, ny: Tensor, idt: Identity) -> Tensor:
    lx, ly = _p(idt.light_x), _p(idt.light_y)
    lz = torch.sqrt((1.0 - lx * lx - ly * ly).clamp(min=0.0))
    nz = torch.sqrt((1.0 - nx * nx - ny * ny).clamp(min=0.0))
    return (nx * lx + ny * ly + nz * lz).clamp(min=0.0)


def _grain(size: int, idt: Identity, salt: int) -> Tensor:
    """Per-pixel hash noise ``[N, 1, H, W]`` in [-0.5, 0.5) (depends on the resolution)."""
    dev = idt.seed.device
    ar = torch.arange(size, device=dev)
    return (_hash01(ar.view(1, 1, -1), ar.view(1, -1, 1), _p(idt.seed) + salt) - 0.5).unsqueeze(1)


# ----------------------------------------------------------------------------------------------------
# painters


def _paint_natural(idt: Identity, g: dict[str, Tensor], d: dict[str, Tensor], size: int) -> Tensor:
    u, v, x, y = g["u"], g["v"], g["x"], g["y"]
    # background: two-colour gradient plus a soft low-frequency mottle and a vignette
    ca, sa = _p(torch.cos(idt.bg_angle)), _p(torch.sin(idt.bg_angle))
    mottle = _lattice_noise(x, y, idt.seed, 5, 5)[:, 0] - 0.5
    tg = (0.5 + 0.35 * (x * ca + y * sa) + 0.25 * mottle).clamp(0, 1).unsqueeze(1)
    img = _c(idt.bg_color1) * (1 - tg) + _c(idt.bg_color2) * tg
    img = img * (1.0 - 0.18 * (x * x + y * y)).unsqueeze(1)

    tex = _lattice_noise(u * 0.5, v * 0.5, idt.seed + 11, 37, 37) - 0.5
    # clothes
    cl = (0.75 + 0.25 * (1 - _sq(u * (1 / 1.1))).clamp(0, 1)).unsqueeze(1) * (1 + 0.12 * tex)
    img = _over(img, _fill(d["cloth"]), _c(idt.cloth_color) * cl)

    # hair (back): shaded like a shell around the skull, radial strands, a sheen band
    hc = _c(idt.hair_color)
    lam_h = _lambert(g["hair_shell_nx"].clamp(-1, 1), g["hair_shell_ny"].clamp(-1, 1), idt).unsqueeze(1)
    crown = torch.atan2(u, v + _p(idt.face_h) * 0.95)
    strands = _lattice_noise(crown * (1 / math.pi), g["hair_shell_ny"] * (1 / 3), idt.seed + 3, 41, 15) - 0.5
    sheen = _bump(_sq((g["hair_shell_ny"] + 0.55) * (1 / 0.12))).unsqueeze(1) * (0.2 + 0.8 * lam_h)
    hair_col = hc * (0.5 + 0.55 * lam_h) * (1 + 0.3 * strands) + 0.12 * sheen * (0.4 + hc)
    img = _over(img, _fill(d["hair_back"]), hair_col)

    # skin: face, ears, neck
    skin = _c(idt.skin)
    lam = _lambert(g["face_nx"].clamp(-1, 1), g["face_ny"].clamp(-1, 1), idt).unsqueeze(1)
    shade = 0.62 + 0.45 * lam
    neck_shade = (0.62 - 0.25 * _bump(_sq((v - _p(idt.face_h)) * (1 / 0.12))).unsqueeze(1)) * (1 + 0.06 * tex)
    img = _over(img, _fill(d["neck"]), skin * neck_shade)
    img = _over(img, _fill(d["ears"]), skin * 0.82 * (1 + 0.05 * tex))
    es, ey = _p(idt.eye_spacing), _p(idt.eye_y)
    blush = _bump((_sq(u.abs() - es - 0.02) + _sq(v - ey - 0.19)) * (1 / 0.006)).unsqueeze(1)
    face_col = skin * shade * (1 + 0.06 * tex) + 0.09 * blush * (_rgb((0.9, 0.2, 0.2), u) - skin)
    img = _over(img, _fill(d["face"]), face_col)
    img = _over(img, _fill(d["hair_front_paint"]), hair_col)

    # eyebrows
    img = _over(img, _fill(d["brows"]) * 0.9, hc * 0.55 + 0.02)

    # eyes: sclera, iris, pupil, upper lid line
    a_eye = _fill(d["eyes"])
    img = _over(img, a_eye, (_rgb((0.93, 0.9, 0.88), u) * (0.75 + 0.2 * lam)))
    iris_grad = (g["eye_dv"] * (1.0 / (_p(idt.eye_size) * 0.6))).clamp(-1, 1).unsqueeze(1)
    iris_col = _c(idt.eye_color) * (0.85 + 0.3 * iris_grad)
    img = _over(img, a_eye * _fill(d["iris"]), iris_col)
    img = _over(img, a_eye * _fill(d["pupil"]), _rgb((0.04, 0.04, 0.04), u))
    lid = _line(d["eyes"], 1.0 + 0.02 / g["px"]) * (g["eye_dv"] < 0.25 * _p(idt.eye_size * idt.eye_open)).unsqueeze(1)
    img = _over(img, lid * 0.85, skin * 0.18)

    # nose: darker side away from the light, shadow under the tip, nostrils
    a_nose = _fill(d["nose"])
    inw = 1.0 / _p(idt.nose_width)
    side = (u * (-inw * _p(idt.light_x).sign())).clamp(0, 1).unsqueeze(1)
    under = _smooth(-0.2, 1.0, g["nose_tip_dv"] * (2.0 * inw)).unsqueeze(1)
    tn = g["nose_t"].unsqueeze(1)
    nose_col = face_col * (1.0 - 0.22 * side * _smooth(0.1, 0.5, tn) - 0.1 * under)
    tip_hi = _bump(_sq(u * inw) + _sq(g["nose_tip_dv"] * (inw * 2.5))).unsqueeze(1)
    nose_col = nose_col + 0.12 * tip_hi * (1.0 - nose_col)
    img = _over(img, a_nose, nose_col)
    ridge = _line(d["nose_bridge"], 1.0 + 0.012 / g["px"]) * (g["nose_tip"] > 0).unsqueeze(1) * _smooth(0.2, 0.6, tn)
    img = _over(img, ridge * side.clamp(min=0.5) * 0.3, skin * 0.5)
    img = _over(img, _line(d["nose_tip"], 1.0 + 0.015 / g["px"]) * under * 0.55, skin * 0.4)
    img = _over(img, _fill(d["nostrils"]) * 0.85, skin * 0.22)

    # mouth: lips, open interior with teeth, lip line
    a_m = _fill(d["mouth"])
    lipc = _c(idt.lip_color) * (0.8 + 0.25 * lam) * torch.where(g["mouth_dv"] < 0, 0.88, 1.05).unsqueeze(1)
    img = _over(img, a_m, lipc)
    img = _over(img, a_m * _fill(d["mouth_inner"]), _rgb((0.22, 0.05, 0.06), u))
    img = _over(img, a_m * _fill(d["teeth"]) * 0.9, _rgb((0.86, 0.86, 0.86), u))
    closed = (_p(idt.mouth_open) <= 1e-3).unsqueeze(1).float()
    img = _over(img, a_m * _line(_pxdist(g["lip_line"], g["px"]), 1.0) * closed * 0.8, _c(idt.lip_color) * 0.35)

    img = img + 0.012 * _grain(size, idt, 101)
    return img


_INK = 0.21  # graphite brightness


def _paint_sketch(idt: Identity, g: dict[str, Tensor], d: dict[str, Tensor], size: int) -> Tensor:
    u, v, x, y = g["u"], g["v"], g["x"], g["y"]
    px = g["px"]
    # painted in one brightness channel ([N, 1, H, W]); the paper tint colours it at the end
    ink = torch.full((1, 1, 1, 1), _INK, device=u.device)
    # paper: off-white, mottled, per-pixel grain
    paper = 0.94 + 0.04 * (_lattice_noise(x, y, idt.seed + 21, 17, 17) - 0.5) + 0.035 * _grain(size, idt, 202)
    pressure = (0.75 + 0.5 * _lattice_noise(u * 0.5, v * 0.5, idt.seed + 31, 25, 25)).clamp(0, 1)
    lw = 0.03 / px  # standard pencil line width in pixels

    ha = _p(idt.hatch_angle)
    proj = u * torch.cos(ha) + v * torch.sin(ha)
    proj2 = u * torch.cos(ha + 1.3) + v * torch.sin(ha + 1.3)
    wobble = 0.5 * (_lattice_noise(u * 0.5, v * 0.5, idt.seed + 41, 21, 21)[:, 0] - 0.5)
    hatch1 = (0.5 + 0.5 * _cos2pi(proj * (1 / 0.085) + wobble)).unsqueeze(1)
    hatch2 = (0.5 + 0.5 * _cos2pi(proj2 * (1 / 0.085) + wobble)).unsqueeze(1)

    def stroke(img: Tensor, alpha: Tensor, strength: float = 1.0) -> Tensor:
        return _over(img, (alpha * pressure * strength).clamp(0, 1), ink)

    img = paper
    # clothes: outline and a little hatching
    a = _fill(d["cloth"])
    img = _over(img, a, paper)
    img = stroke(img, _line(d["cloth"], lw), 0.8)
    img = stroke(img, a * hatch2 * 0.25)

    # hair: outline, hatching whose density follows the hair darkness, strands
    lum = (idt.hair_color * _rgb((0.3, 0.59, 0.11), u).view(1, 3)).sum(-1)
    dens = _p(0.2 + 0.75 * (1 - lum)).unsqueeze(1)
    crown = torch.atan2(u, v + _p(idt.face_h) * 0.95)
    jitter = _lattice_noise(u * 0.5, v * 0.5, idt.seed + 7, 17, 17)[:, 0]
    strands = _sq(_sq(0.5 + 0.5 * _cos2pi(crown * (40.0 / (2 * math.pi)) + 0.5 * jitter))).unsqueeze(1)
    strands = strands * _smooth(0.15, 0.45, g["hair_shell_ny"] + _p(idt.face_h) * 0.95).unsqueeze(1)

    def hair(img: Tensor, key: str) -> Tensor:
        a = _fill(d[key])
        img = _over(img, a, paper)
        img = stroke(img, a * (dens * hatch1 + (dens - 0.55).clamp(min=0) * 1.6 * hatch2 + 0.35 * strands))
        return stroke(img, _line(d[key], lw * 1.2))

    img = hair(img, "hair_back")
    # skin parts: outlines and shadow hatching away from the light
    lam = _lambert(g["face_nx"].clamp(-1, 1), g["face_ny"].clamp(-1, 1), idt).unsqueeze(1)
    shadow = (0.55 - lam).clamp(min=0) * 1.1
    for key, extra in (("neck", 0.35), ("ears", 0.1), ("face", 0.0)):
        a = _fill(d[key])
        img = _over(img, a, paper)
        img = stroke(img, a * (shadow + extra) * hatch1)
        img = stroke(img, _line(d[key], lw))
    img = hair(img, "hair_front_paint")

    # brows: dense strokes
    a = _fill(d["brows"])
    img = stroke(img, a * (0.55 + 0.35 * hatch2))
    img = stroke(img, _line(d["brows"], lw * 0.8), 0.7)

    # eyes: outline (heavier upper lid), iris shaded by eye darkness, dark pupil
    a_eye = _fill(d["eyes"])
    img = _over(img, a_eye, paper)
    upper = (g["eye_dv"] < 0).float()
    img = stroke(img, _line(d["eyes"], lw * (1.0 + 0.8 * upper)))
    elum = (idt.eye_color * _rgb((0.3, 0.59, 0.11), u).view(1, 3)).sum(-1)
    img = stroke(img, a_eye * _fill(d["iris"]) * _p(0.3 + 0.5 * (1 - elum)).unsqueeze(1))
    img = stroke(img, a_eye * _fill(d["pupil"]), 1.0)
    img = stroke(img, a_eye * _line(d["iris"], lw * 0.7), 0.8)

    # nose: one side line, the bottom curve of the tip, nostrils
    a_nose = _fill(d["nose"])
    img = _over(img, a_nose, paper)
    lx = _p(idt.light_x)
    shadow_side = ((u * torch.where(lx >= 0, -1.0, 1.0)) > 0).unsqueeze(1).float()
    tn = g["nose_t"].unsqueeze(1)
    above_tip = (g["nose_tip"] > 0).unsqueeze(1)
    img = stroke(img, _line(d["nose_bridge"], lw * 0.9) * shadow_side * _smooth(0.25, 0.6, tn) * above_tip, 0.85)
    low = (g["nose_tip_dv"] > 0).unsqueeze(1).float()
    img = stroke(img, _line(d["nose_tip"], lw) * low, 0.9)
    img = stroke(img, a_nose * shadow_side * hatch1 * 0.35)
    img = stroke(img, _fill(d["nostrils"]), 0.85)

    # mouth: light lip outline, strong centre line or dark opening, hatched lower lip
    a_m = _fill(d["mouth"])
    img = _over(img, a_m, paper)
    img = stroke(img, _line(d["mouth"], lw * 0.8), 0.6)
    closed = (_p(idt.mouth_open) <= 1e-3).unsqueeze(1).float()
    img = stroke(img, a_m * _line(_pxdist(g["lip_line"], g["px"]), lw * 1.3) * closed)
    img = stroke(img, a_m * _fill(d["mouth_inner"]) * 0.85)
    img = _over(img, a_m * _fill(d["teeth"]), paper)
    img = stroke(img, a_m * _line(d["teeth"], lw * 0.7) * (1 - closed), 0.7)
    lower = (g["mouth_dv"] > 0).unsqueeze(1).float()
    img = stroke(img, a_m * lower * hatch2 * 0.45)
    # warm (or slightly cool) paper tint per identity; graphite takes a little of it
    t = _hash01(idt.seed, torch.zeros_like(idt.seed), torch.full_like(idt.seed, 5)) - 0.5
    tint = torch.stack([1.0 + 0.02 * t, 0.985 + 0.0 * t, 0.945 - 0.03 * t], dim=1)
    return img * _c(tint)


_OUTLINE = (0.07, 0.05, 0.09)


def _saturate(rgb: Tensor, *, s_mul: float, s_add: float, v_mul: float, v_add: float, v_min: float = 0.0) -> Tensor:
    h, s, v = _rgb_to_hsv(rgb)
    s = (s * s_mul + s_add).clamp(0.0, 1.0)
    v = (v * v_mul + v_add).clamp(v_min, 1.0)
    return _hsv_to_rgb(h, s, v)


def _paint_caricature(idt: Identity, g: dict[str, Tensor], d: dict[str, Tensor], size: int) -> Tensor:
    del size  # flat colours, no per-pixel grain
    u = g["u"]
    px = g["px"]
    ol = _rgb(_OUTLINE, u)
    lw = 0.055 / px  # thick outline in pixels
    n = len(idt)

    def outline(img: Tensor, key: str, width: Tensor | float = 1.0) -> Tensor:
        return _over(img, _line(d[key], lw * width), ol)

    h1, _, _ = _rgb_to_hsv(idt.bg_color1)
    bg = _hsv_to_rgb(h1, torch.full_like(h1, 0.75), torch.full_like(h1, 0.98))
    img = _c(bg).expand(n, 3, u.shape[1], u.shape[2]).clone()

    cloth = _saturate(idt.cloth_color, s_mul=1.2, s_add=0.4, v_mul=0.8, v_add=0.25, v_min=0.3)
    img = _over(img, _fill(d["cloth"]), _c(cloth))
    img = outline(img, "cloth")

    # cel shading: one darker tone on the side away from the light
    lam = _lambert(g["face_nx"].clamp(-1, 1), g["face_ny"].clamp(-1, 1), idt).unsqueeze(1)
    cel = torch.where(lam < 0.35, 0.8, 1.0)
    hair = _saturate(idt.hair_color, s_mul=1.5, s_add=0.25, v_mul=1.0, v_add=0.08, v_min=0.16)
    lam_h = _lambert(g["hair_shell_nx"].clamp(-1, 1), g["hair_shell_ny"].clamp(-1, 1), idt).unsqueeze(1)
    band = ((g["hair_shell_ny"] + 0.55).abs() < 0.06).unsqueeze(1).float() * (lam_h > 0.3).float()
    hair_col = _c(hair) * torch.where(lam_h < 0.3, 0.75, 1.0) + 0.25 * band * (1 - _c(hair))
    img = _over(img, _fill(d["hair_back"]), hair_col)
    img = outline(img, "hair_back")

    skin = _c(_saturate(idt.skin, s_mul=1.35, s_add=0.12, v_mul=1.0, v_add=0.1))
    img = _over(img, _fill(d["neck"]), skin * 0.8)
    img = outline(img, "neck")
    img = _over(img, _fill(d["ears"]), skin)
    img = outline(img, "ears")
    img = _over(img, _fill(d["face"]), skin * cel)
    img = outline(img, "face")
    img = _over(img, _fill(d["hair_front_paint"]), hair_col)
    img = outline(img, "hair_front_paint")

    img = _over(img, _fill(d["brows"]), ol)

    a_eye = _fill(d["eyes"])
    img = _over(img, a_eye, _rgb((1.0, 1.0, 1.0), u))
    iris = _c(_saturate(idt.eye_color, s_mul=1.6, s_add=0.35, v_mul=1.0, v_add=0.2))
    img = _over(img, a_eye * _fill(d["iris"]), iris)
    img = _over(img, a_eye * _fill(d["pupil"]), ol)
    ew = idt.eye_size
    eh = _p(ew * idt.eye_open)
    glint = _ell(g["eye_du"] + 0.25 * eh, g["eye_dv"] + 0.3 * eh, 0.22 * eh, 0.22 * eh)
    img = _over(img, a_eye * _fill(_pxdist(glint, g["px"])), _rgb((1.0, 1.0, 1.0), u))
    img = outline(img, "eyes", 0.5)

    a_nose = _fill(d["nose"])
    img = _over(img, a_nose, skin * cel * 0.9)
    low = (g["nose_tip_dv"] > 0).unsqueeze(1).float()
    img = _over(img, _line(d["nose_tip"], lw * 0.45) * low, ol)
    img = _over(img, _fill(d["nostrils"]), skin * 0.45)
    shadow_side = ((u * torch.where(_p(idt.light_x) >= 0, -1.0, 1.0)) > 0).unsqueeze(1).float()
    ridge = _line(d["nose_bridge"], lw * 0.4) * _smooth(0.3, 0.6, g["nose_t"].unsqueeze(1))
    img = _over(img, ridge * shadow_side * (g["nose_tip"] > 0).unsqueeze(1), ol)

    red = torch.tensor([0.92, 0.12, 0.22], device=idt.lip_color.device)
    lips = _c(_saturate(0.4 * idt.lip_color + 0.6 * red, s_mul=1.2, s_add=0.2, v_mul=1.0, v_add=0.15))
    a_m = _fill(d["mouth"])
    img = _over(img, a_m, lips * torch.where(g["mouth_dv"] < 0, 0.9, 1.0).unsqueeze(1))
    img = _over(img, a_m * _fill(d["mouth_inner"]), _rgb((0.35, 0.02, 0.08), u))
    img = _over(img, a_m * _fill(d["teeth"]), _rgb((1.0, 1.0, 1.0), u))
    closed = (_p(idt.mouth_open) <= 1e-3).unsqueeze(1).float()
    img = _over(img, a_m * _line(_pxdist(g["lip_line"], g["px"]), lw * 0.25) * closed, ol)
    img = outline(img, "mouth", 0.35)
    return img


_PAINTERS = {"natural": _paint_natural, "sketch": _paint_sketch, "caricature": _paint_caricature}


# ----------------------------------------------------------------------------------------------------
# public rendering API


def render(
    identity: Identity, *, style: str, size: int = 64, exaggeration: float = 1.5
) -> tuple[Tensor, Tensor]:
    """Render identities in one style.

    Args:
        identity: ``N`` identities (from :func:`sample_identities`).
        style: one of :data:`STYLES`.
        size: output height = width in pixels (>= 16; 64, 128 and 256 are the supported sizes; the same
            identity gives the same picture at every size).
        exaggeration: caricature factor (see :func:`exaggerate`); used only for ``"caricature"``.

    Returns:
        ``(img, labels)``: ``img`` float32 ``[N, 3, size, size]`` in [-1, 1] and ``labels`` int64
        ``[N, size, size]`` with ids indexing :data:`PARTS`. ``"natural"`` and ``"sketch"`` share the label
        map exactly; ``"caricature"`` has the same part centres but larger parts.
    """
    if style not in STYLES:
        raise ValueError(f"unknown style {style!r}; expected one of {STYLES}")
    if size < 16:
        raise ValueError(f"size must be >= 16, got {size}")
    idt = exaggerate(identity, factor=exaggeration) if style == "caricature" else identity
    g = _geometry(idt, size)
    labels = _labels(g)
    img = _PAINTERS[style](idt, g, _dists(g), size)
    img = (img.clamp(0.0, 1.0) * 2.0 - 1.0).to(torch.float32).contiguous()
    return img, labels


def render_batch(n: int, *, style: str, size: int = 64, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Sample ``n`` identities with ``seed`` and render them (``render(sample_identities(n, seed=seed), ...)``).

    Returns:
        ``(img, labels)`` as in :func:`render`: float32 ``[n, 3, size, size]`` in [-1, 1], int64 ``[n, size, size]``.
    """
    return render(sample_identities(n, seed=seed), style=style, size=size)


def _part_ids(parts: str | int | Iterable[str | int]) -> list[int]:
    if isinstance(parts, str):
        parts = MASKS.get(parts, (parts,))
    elif isinstance(parts, int):
        parts = (parts,)
    ids = []
    for p in parts:
        if isinstance(p, str):
            if p not in PARTS:
                raise ValueError(f"unknown part or mask {p!r}; parts are {PARTS}, masks {tuple(MASKS)}")
            ids.append(PARTS.index(p))
        else:
            if not 0 <= int(p) < len(PARTS):
                raise ValueError(f"part id {p} out of range")
            ids.append(int(p))
    return ids


def part_mask(labels: Tensor, mask_name_or_parts: str | int | Iterable[str | int]) -> Tensor:
    """Binary mask of some parts.

    Args:
        labels: int64 ``[N, H, W]`` (or ``[H, W]``) label map over :data:`PARTS`.
        mask_name_or_parts: a key of :data:`MASKS` (``"eyes_nose_mouth"``, ``"hair"``), a part name, a
            part id, or an iterable of part names / ids.

    Returns:
        float32 ``[N, 1, H, W]`` with values in {0, 1} (``[1, 1, H, W]`` for a single ``[H, W]`` map).
    """
    if labels.dim() == 2:
        labels = labels.unsqueeze(0)
    ids = torch.tensor(_part_ids(mask_name_or_parts), device=labels.device)
    return torch.isin(labels, ids).unsqueeze(1).to(torch.float32)


def composite(
    identity: Identity,
    *,
    inside_style: str,
    outside_style: str,
    mask: str | Iterable[str | int] = "eyes_nose_mouth",
    size: int = 64,
    exaggeration: float = 1.5,
) -> tuple[Tensor, Tensor, Tensor]:
    """A dual-domain render: parts from one style pasted into a face of another.

    The mask is taken from the **inside style's** label map: pixels where the inside render shows one of
    the mask's parts come from the inside render (image and labels), all others from the outside render.
    So caricature eyes/nose/mouth pasted into a natural face keep their full (larger) caricature shape,
    the DDS use case; natural parts inside a caricature face leave a ring of caricature part pixels
    around them, which ``labels`` and ``style_map`` record faithfully. Edges are hard so that
    ``style_map`` is exact.

    Args:
        identity: ``N`` identities.
        inside_style: style of the pixels inside the mask (one of :data:`STYLES`).
        outside_style: style of all other pixels.
        mask: a key of :data:`MASKS` or parts, as in :func:`part_mask`.
        size: height = width in pixels.
        exaggeration: caricature factor.

    Returns:
        ``(img, labels, style_map)``: float32 ``[N, 3, size, size]`` in [-1, 1]; int64 ``[N, size, size]``
        part ids (from whichever render supplied the pixel); int64 ``[N, size, size]`` :data:`STYLES` index
        of each pixel.
    """
    for s in (inside_style, outside_style):
        if s not in STYLES:
            raise ValueError(f"unknown style {s!r}; expected one of {STYLES}")
    img_in, lab_in = render(identity, style=inside_style, size=size, exaggeration=exaggeration)
    img_out, lab_out = render(identity, style=outside_style, size=size, exaggeration=exaggeration)
    m = part_mask(lab_in, mask) > 0.5
    img = torch.where(m, img_in, img_out)
    labels = torch.where(m[:, 0], lab_in, lab_out)
    style_map = torch.where(m[:, 0], STYLES.index(inside_style), STYLES.index(outside_style)).to(torch.int64)
    return img, labels, style_map


# ----------------------------------------------------------------------------------------------------
# visualisation


def label_colours() -> Tensor:
    """Palette for label maps: float32 ``[len(PARTS), 3]`` RGB in [0, 1] (row = part id)."""
    return torch.tensor(
        [
            [0.12, 0.12, 0.14],  # background
            [0.93, 0.75, 0.60],  # skin
            [0.45, 0.25, 0.10],  # hair
            [0.15, 0.55, 0.95],  # eyes
            [0.60, 0.20, 0.75],  # eyebrows
            [0.20, 0.80, 0.30],  # nose
            [0.95, 0.15, 0.20],  # mouth
        ],
        dtype=torch.float32,
    )


def colourise_labels(labels: Tensor) -> Tensor:
    """Label map int64 ``[N, H, W]`` -> float32 image ``[N, 3, H, W]`` in [-1, 1] (:func:`label_colours`)."""
    pal = label_colours().to(labels.device)
    return (pal[labels].permute(0, 3, 1, 2) * 2.0 - 1.0).contiguous()


def save_grid(img: Tensor, path: str | os.PathLike[str], *, nrow: int = 8, pad: int = 2, scale: int = 1) -> Path:
    """Write images as a PNG grid, atomically and without timestamp metadata.

    Args:
        img: float ``[N, 3, H, W]`` (or ``[N, 1, H, W]``) in [-1, 1].
        path: output ``.png``; parent folders are created.
        nrow: images per row.
        pad: white padding between images, in source pixels.
        scale: integer nearest-neighbour upscaling of the whole grid.

    Returns:
        The written path.
    """
    from ..core import imageio as viz

    if img.dim() != 4 or img.shape[1] not in (1, 3):
        raise ValueError(f"expected [N, 3|1, H, W], got {tuple(img.shape)}")
    return viz.save_png(img, path, nrow=nrow, pad=pad, scale=scale)


def figure(
    path: str | os.PathLike[str] | None = None, *, n: int = 8, size: int = 64, seed: int = 2, scale: int = 2
) -> Path:
    """Write the toy-world overview figure.

    Rows: the same ``n`` identities in natural, sketch and caricature, then the natural/sketch label
    map and the caricature label map (coloured with :func:`label_colours`).

    Args:
        path: output PNG (default ``<fig_dir>/toyworld_renders.png``).
        n: identities (columns).
        size: render size.
        seed: identity seed (the default, 2, draws a batch of 8 in which all six hair styles occur).
        scale: nearest-neighbour upscaling of the grid.

    Returns:
        The written path.
    """
    from ..core.paths import fig_dir

    ids = sample_identities(n, seed=seed)
    rows = []
    labs = {}
    for s in STYLES:
        im, lab = render(ids, style=s, size=size)
        rows.append(im)
        labs[s] = lab
    rows += [colourise_labels(labs["natural"]), colourise_labels(labs["caricature"])]
    out = Path(path) if path is not None else fig_dir() / "toyworld_renders.png"
    return save_grid(torch.cat(rows), out, nrow=n, scale=scale)


def _main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Write the toy-world overview figure.")
    ap.add_argument("--out", default=None, help="output PNG (default figures/toyworld_renders.png)")
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--seed", type=int, default=2)
    ap.add_argument("--scale", type=int, default=2)
    a = ap.parse_args(argv)
    print(figure(a.out, n=a.n, size=a.size, seed=a.seed, scale=a.scale))


if __name__ == "__main__":
    _main()
