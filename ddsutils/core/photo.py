"""Your own image through DDS: load a photo, invert it, pair it across domains, blend, paste back.

``translate_photo(photo, G_photo, G_other, masks=...)`` inverts the photo into the generator of its domain
(:func:`ddsutils.core.projector.project`), takes its pair in the other domain through the shared latent
(few-shot adapted generators share their latent space), draws the part masks, puts the other domain's part in
with DDS blend mode (:func:`ddsutils.core.layerblend.blend_synthesis`) and pastes the changed region back into
the photo at the photo's own resolution (a feathered alpha blend, so the seam has no hard edge).
Faces must be aligned as the generator's training images were (for FFHQ models: the FFHQ alignment).
"""
from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from .errors import UserError
from .projector import ProjectionResult, project
from .stylegan2 import Generator

__all__ = ["Photo", "PhotoResult", "load_photo", "segmenter_masks", "region_masks", "paste_back",
           "translate_photo"]

#: ``masks(G, w_plus, image) -> [N, 1, H, W]`` in {0, 1}: the part in ``G``'s image of ``w_plus``.
MaskFn = Callable[[Generator, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class Photo:
    """A loaded photo.

    Attributes:
        image: ``[1, 3, size, size]`` float32 in [-1, 1], the generator's input.
        original: ``[1, 3, S, S]`` float32 in [-1, 1], the square crop at its own resolution (for pasting back).
        notes: what was done to the file (cropped, resized, alpha dropped), one line each.
        source: where it came from.
    """

    image: torch.Tensor
    original: torch.Tensor
    notes: list[str] = field(default_factory=list)
    source: str = ""


def _as_photo_tensor(img: torch.Tensor) -> torch.Tensor:
    if img.ndim == 3:
        img = img[None]
    if img.ndim != 4 or img.shape[:2] != (1, 3):
        raise UserError(f"must be an image tensor [1, 3, H, W] or [3, H, W] in [-1, 1], got {list(img.shape)}",
                        argument="photo")
    img = img.float()
    if not torch.isfinite(img).all() or float(img.min()) < -1.05 or float(img.max()) > 1.05:
        raise UserError("values must be finite and in [-1, 1]", argument="photo")
    return img.clamp(-1, 1)


def load_photo(photo: str | os.PathLike | torch.Tensor, *, size: int) -> Photo:
    """Load an image file (or take a tensor) as a square photo for a ``size`` px generator.

    A non-square image is centre-cropped to a square and any other size resized (antialiased) to ``size``,
    each with a note; an alpha channel is dropped (composited on white) with a note.

    Args:
        photo: a path to any image Pillow reads, or a tensor ``[1, 3, H, W]`` / ``[3, H, W]`` in [-1, 1].
        size: the generator's resolution.

    Returns:
        :class:`Photo`.

    Raises:
        UserError: the file is missing or not an image, the tensor has the wrong shape or range.
    """
    notes: list[str] = []
    if isinstance(photo, torch.Tensor):
        img, source = _as_photo_tensor(photo), "tensor"
    else:
        import numpy as np
        from PIL import Image, UnidentifiedImageError

        path = Path(photo)
        if not path.is_file():
            raise UserError("no such file; give the path of an image (PNG, JPEG, ...)", argument="photo",
                            value=str(photo))
        try:
            with Image.open(path) as im:
                im.load()
                if im.mode in ("RGBA", "LA") or (im.mode == "P" and "transparency" in im.info):
                    notes.append("dropped the alpha channel (transparent pixels shown on white)")
                    rgba = im.convert("RGBA")
                    bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                    im = Image.alpha_composite(bg, rgba)
                arr = np.asarray(im.convert("RGB"), dtype=np.float32)
        except (UnidentifiedImageError, OSError) as exc:
            raise UserError(f"is not an image Pillow can read ({type(exc).__name__}); give a PNG or JPEG",
                            argument="photo", value=str(photo)) from None
        img = torch.from_numpy(arr).permute(2, 0, 1)[None] / 127.5 - 1
        source = str(path)
    h, w = img.shape[-2:]
    if h != w:  # centre crop to a square
        s = min(h, w)
        top, left = (h - s) // 2, (w - s) // 2
        img = img[..., top:top + s, left:left + s]
        notes.append(f"centre-cropped {w}x{h} px to {s}x{s} px (the face should be centred and aligned)")
    original = img.contiguous()
    if original.shape[-1] != size:
        img = F.interpolate(original, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        notes.append(f"resized {original.shape[-1]} px to the generator's {size} px")
    return Photo(img.clamp(-1, 1), original, notes, source)


def segmenter_masks(segmenter: Any, *, part_class: int | str = 1) -> MaskFn:
    """Masks from a one-shot segmenter (:mod:`ddsutils.core.segmenter`) that reads the generator's features."""
    from . import segmenter as seglib

    def masks(G: Generator, w_plus: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        return seglib.predict_masks(segmenter, G, w_plus, input_space="w+", part_class=part_class).float()

    return masks


def region_masks(region: torch.Tensor) -> MaskFn:
    """The same region (e.g. painted on the photo, or a PNG) for both images: ``[1, 1, H, W]`` in {0, 1}."""
    def masks(G: Generator, w_plus: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        if tuple(region.shape[-2:]) != tuple(image.shape[-2:]):
            raise UserError(f"is {region.shape[-1]} px but the generator makes {image.shape[-1]} px images",
                            argument="mask")
        return region.float().to(image.device).expand(image.shape[0], 1, -1, -1)

    return masks


def paste_back(original: torch.Tensor, image: torch.Tensor, region: torch.Tensor, *, dilation: int = 1,
               feather: float | None = None) -> torch.Tensor:
    """Put ``image`` into ``original`` inside ``region``, at ``original``'s resolution, with a soft seam.

    Args:
        original: ``[1, 3, S, S]`` in [-1, 1], the photo.
        image: ``[1, 3, s, s]`` in [-1, 1], the generator's result (upsampled to ``S``).
        region: ``[1, 1, s, s]`` in {0, 1}: where the result replaces the photo (grown by ``dilation`` px at ``s``).
        feather: the seam's Gaussian sigma in px of ``S`` (:func:`ddsutils.core.blending.alpha_blend`); default
            half a generator pixel (``S / s / 2``), so the region's inside is the result and the photo is
            untouched a few generator pixels outside it.

    Returns:
        ``[1, 3, S, S]`` in [-1, 1].
    """
    from .blending import alpha_blend
    from .layerblend import prepare_mask

    size = original.shape[-1]
    m = prepare_mask(region, dilation=dilation)
    up = F.interpolate(image, size=(size, size), mode="bilinear", align_corners=False).clamp(-1, 1)
    m = (F.interpolate(m, size=(size, size), mode="nearest") > 0.5).to(original.dtype)
    sigma = size / image.shape[-1] / 2 if feather is None else feather
    return alpha_blend(up, original, m, feather=sigma)


@dataclass
class PhotoResult:
    """What :func:`translate_photo` returns (images ``[1, 3, s, s]`` in [-1, 1] at the generator's size ``s``).

    Attributes:
        photo: the loaded photo. reconstruction: ``G_photo(w)``. pair: ``G_other(w)``, the photo in the other
            domain. mask_photo, mask_pair: ``[1, 1, s, s]`` in {0, 1}, the part in each. dds: the blend of the
            pair's part into the reconstruction. result: ``[1, 3, S, S]`` at the photo's resolution, the DDS
            region pasted back into the photo. projection: the inversion. config: the settings.
    """

    photo: Photo
    reconstruction: torch.Tensor
    pair: torch.Tensor
    mask_photo: torch.Tensor
    mask_pair: torch.Tensor
    dds: torch.Tensor
    result: torch.Tensor
    projection: ProjectionResult
    config: dict[str, Any] = field(default_factory=dict)


def translate_photo(
    photo: str | os.PathLike | torch.Tensor | Photo,
    G_photo: Generator,
    G_other: Generator,
    *,
    masks: MaskFn | torch.Tensor,
    num_steps: int = 300,
    lr: float = 0.05,
    init: str = "mean",
    blend_start: int | None = None,
    dilation: int = 1,
    feather: float = 0.0,
    min_area: int = 0,
    paste_dilation: int = 1,
    lpips_net: str | torch.nn.Module = "alex",
    seed: int = 0,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> PhotoResult:
    """Put the part of ``G_other``'s domain into a photo of ``G_photo``'s domain (DDS blend mode on an inversion).

    Args:
        photo: a file path, a tensor in [-1, 1], or a :class:`Photo` from :func:`load_photo`.
        G_photo: the generator of the photo's domain; G_other: the other domain's generator (same architecture,
            same latent space, e.g. few-shot adapted from ``G_photo``).
        masks: a :data:`MaskFn` (:func:`segmenter_masks`, a toy-world parser) or a region ``[1, 1, s, s]``
            in {0, 1} drawn on the photo (used for both images).
        num_steps, lr, init, lpips_net: the inversion (:func:`ddsutils.core.projector.project`, ``w+``,
            LPIPS-alex + MSE).
        blend_start, dilation, feather, min_area: blend mode (:func:`ddsutils.core.dds.optimise` ``mode="blend"``).
        paste_dilation: grow the pasted region (the union of both masks) by this many px before pasting back.
        seed: seeds the inversion. device: default ``G_photo``'s. progress: ``tqdm.auto`` bar of the inversion.

    Returns:
        :class:`PhotoResult`.

    Raises:
        UserError: a bad photo, mask or setting (before the inversion), or masks that find no part.
    """
    from . import cli
    from .dds import default_blend_start
    from .layerblend import blend_synthesis, prepare_mask

    # 1. check the inputs before any work
    if G_photo.size != G_other.size or G_photo.style_dim != G_other.style_dim or \
            G_photo.n_latent != G_other.n_latent:
        raise UserError(f"G_other makes {G_other.size} px images from a {G_other.style_dim}-d latent, G_photo "
                        f"{G_photo.size} px from {G_photo.style_dim}-d: the pair needs one shared latent space",
                        argument="G_other")
    start = default_blend_start(G_photo) if blend_start is None else cli.int_arg(blend_start, "blend_start", min=0,
                                                                                  max=G_photo.num_layers)
    for name, value in (("dilation", dilation), ("min_area", min_area), ("paste_dilation", paste_dilation)):
        cli.non_negative_int(value, name)
    cli.float_arg(feather, "feather", min=0)
    p = photo if isinstance(photo, Photo) else load_photo(photo, size=G_photo.size)
    mask_fn = masks if callable(masks) else region_masks(_check_region(masks, G_photo.size))

    # 2. invert the photo into its domain's generator
    dev = torch.device(device) if device is not None else G_photo.input.input.device
    proj = project(G_photo, p.image, num_steps=num_steps, lr=lr, init=init, lpips_net=lpips_net, seed=seed,
                   device=dev, progress=progress)
    w = proj.w_plus.to(dev)
    noise = proj.noise if isinstance(proj.noise, str) else [m.to(dev) for m in proj.noise]

    # 3. its pair in the other domain, and the part in each image
    with torch.no_grad():
        G_other = G_other.to(dev).eval()
        rec = proj.image.to(dev)
        pair = G_other.synthesis(w, noise=noise).clamp(-1, 1)
        y_photo = mask_fn(G_photo, w, rec).float()
        y_pair = mask_fn(G_other, w, pair).float()
    if float(y_pair.sum()) == 0:
        raise UserError("found no part in the other domain's image; check the segmenter's part or paint a region",
                        argument="masks")

    # 4. DDS blend: the other generator draws under the pair's part mask, the photo's generator elsewhere
    with torch.no_grad():
        m = prepare_mask(y_pair, min_area=min_area, dilation=dilation, feather=feather)
        dds = blend_synthesis(G_other, G_photo, w, w, m, start=start, noise_s=noise, noise_t=noise).clamp(-1, 1)

    # 5. paste the changed region (both parts) back into the photo at its own resolution
    region = ((y_pair + y_photo) > 0).float()
    result = paste_back(p.original.to(dev), dds, region, dilation=paste_dilation)
    config = dict(proj.config, blend_start=start, dilation=dilation, feather=feather, min_area=min_area,
                  paste_dilation=paste_dilation, photo_notes=p.notes, photo_source=p.source)
    return PhotoResult(p, rec.cpu(), pair.cpu(), y_photo.cpu(), y_pair.cpu(), dds.cpu(), result.cpu(), proj, config)


def _check_region(region: Any, size: int) -> torch.Tensor:
    if not isinstance(region, torch.Tensor) or region.ndim != 4 or tuple(region.shape[:2]) != (1, 1):
        got = list(region.shape) if isinstance(region, torch.Tensor) else type(region).__name__
        raise UserError(f"must be a mask function or a region tensor [1, 1, {size}, {size}] in {{0, 1}}, got {got}",
                        argument="masks")
    if tuple(region.shape[-2:]) != (size, size):
        raise UserError(f"is {region.shape[-1]} px; draw it at the generator's {size} px", argument="masks")
    if float(region.sum()) == 0:
        raise UserError("is empty: paint the part to translate", argument="masks")
    return region.float()
