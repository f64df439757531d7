"""Part masks for DDS from a one-shot segmenter, trained in the toy world on one judge-parser label.

:func:`masks_for` gives ``y_s``, ``y_t`` of ``G_s(z)``, ``G_t(z)`` from a saved segmenter or, with none, from one
trained on the toy world's oracle: the judge parser labels one image of the generator (its mean face by
default), which is the paper's one-shot label without a person painting it.
"""
from __future__ import annotations

from typing import Any

import torch

from ..core import cli
from ..core import segmenter as seglib
from ..core.cli import UserError
from ..core.stylegan2 import Generator
from . import judges
from .segeval import train_from_oracle
from .toyworld import MASKS

__all__ = ["masks_for", "parser_masks"]


def masks_for(G_s: Generator, G_t: Generator, z: torch.Tensor, *, mask: str, segmenter_path: str | None = None,
               segmenter_on: str = "source", seed: int = 0, device: torch.device, label_truncation: float = 0.0,
               truncation: tuple[float, float] = (1.0, 1.0), segmenter: Any = None, parser: Any = None,
               progress: bool = False) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Part masks ``y_s``, ``y_t`` ``[N, 1, S, S]`` of ``G_s(z)`` and ``G_t(z)`` from a one-shot segmenter.

    The segmenter is ``segmenter`` (already loaded), the file ``segmenter_path``, or, when neither is given, one
    trained on one toy-world oracle label of ``mask`` (the judge ``parser``, default ``judge-parser-64``) drawn on
    ``G_seg(z, truncation=label_truncation)`` (0: the mean face, as in ``python -m ddsutils.segmenter evaluate``),
    ``G_seg`` being ``G_s`` or ``G_t`` (``segmenter_on``). The masks are drawn on ``G_s`` / ``G_t`` images at
    truncation ``truncation[0]`` / ``truncation[1]``; ``progress`` shows the segmenter training's tqdm bar.

    Returns:
        ``(y_s, y_t, info)`` with ``info`` saying where the segmenter came from (and how it was trained).

    Raises:
        UserError: ``segmenter_on``, ``label_truncation`` or ``mask`` is bad (checked before loading or
            training), the file is not a segmenter for ``G_seg``, or the parser reads another resolution.
    """
    cli.choice(segmenter_on, "segmenter_on", ("source", "target"))
    G_seg = G_s if segmenter_on == "source" else G_t
    if segmenter is not None or segmenter_path:
        seg = segmenter if segmenter is not None else cli.load(
            "segmenter_path", segmenter_path, lambda p: seglib.load_segmenter(p, G=G_seg))
        info: dict[str, Any] = {"segmenter": str(segmenter_path) if segmenter_path else "given"}
    else:
        label_truncation = cli.float_arg(label_truncation, "label_truncation", min=0, max=1)
        cli.choice(mask, "mask", MASKS, what="toy-world mask")
        parser = parser if parser is not None else judges.load_judge("judge-parser-64")
        if getattr(parser, "size", G_seg.size) != G_seg.size:
            raise UserError(f"the toy-world judge parser reads {parser.size} px images but the {segmenter_on} "
                            f"generator makes {G_seg.size} px; give a segmenter trained on this generator "
                            "(segmenter_path)", argument="segmenter_on", value=segmenter_on)
        cand_z = torch.randn(64, G_seg.style_dim, generator=torch.Generator().manual_seed(seed + 10_000))
        trunc = {"truncation": label_truncation,
                 "truncation_latent": G_seg.truncation_centre() if label_truncation != 1 else None}
        with torch.no_grad():
            cand_parts = judges.predict_parts(parser, G_seg(cand_z.to(device), **trunc).clamp(-1, 1))
        seg, info = train_from_oracle(G_seg, mask, cand_z=cand_z, cand_parts=cand_parts, seed=seed,
                                             device=device, progress=progress, **trunc)
        info = {"segmenter": f"trained on {segmenter_on} from one judge-parser label", **info}

    def masks(G: Generator, psi: float) -> torch.Tensor:
        centre = G.truncation_centre() if psi != 1.0 else None
        return seglib.predict_masks(seg, G, z.to(device), truncation=psi, truncation_latent=centre)

    y_s, y_t = masks(G_s, truncation[0]), masks(G_t, truncation[1])
    return y_s.float(), y_t.float(), info


def parser_masks(mask: str, *, parser: Any = None) -> Any:
    """A :data:`ddsutils.core.photo.MaskFn` from the toy world's judge parser (an oracle): the part ``mask``
    (``"eyes_nose_mouth"`` or ``"hair"``) of each image, read from the image itself.

    Raises:
        UserError: ``mask`` is not a toy-world mask (checked now, before any work).
    """
    from .toyworld import part_mask

    cli.choice(mask, "mask", MASKS, what="toy-world mask")
    parser = parser if parser is not None else judges.load_judge("judge-parser-64")

    def masks(G: Generator, w_plus: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        return part_mask(judges.predict_parts(parser, image.clamp(-1, 1)), mask).to(image.device)

    return masks
