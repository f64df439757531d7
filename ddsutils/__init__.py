"""ddsutils — the work behind the DDS notebooks.

Dual-Domain Image Synthesis using Segmentation-Guided GAN (Bazazian, Calway, Damen, CVPR-W 2022), re-implemented
in pure PyTorch, in three parts that import in one direction only (``lab`` → ``toy`` → ``core``):

- :mod:`ddsutils.core` — what real-checkpoint users need: ``stylegan2`` (generator, loaders), ``weights``
  (manifest, sha256-verified downloads), ``segmenter`` (one-shot part segmenter), ``dds`` (the DDS modes),
  ``losses``, ``layerblend``, ``backbones`` (perceptual networks, registry, LPIPS), ``metrics``, ``blending``,
  ``files`` / ``imageio`` (atomic writes, run folders, safe loading, PNGs), ``cli``, ``paths``;
- :mod:`ddsutils.toy` — the offline toy world: ``toyworld`` (renderer), ``judges``, ``train`` / ``fewshot`` /
  ``zoo`` (the toy zoo), ``scoring`` and ``segeval`` (the toy evaluations), ``oracle`` (oracle masks);
- :mod:`ddsutils.lab` — the notebooks' machinery: ``notebook`` (runner), ``experiments``, ``figures``, ``viz``,
  ``widgets``, ``demo``.

The command lines keep their names: ``python -m ddsutils.dds``, ``.segmenter``, ``.stylegan2``, ``.weights``,
``.zoo``, ``.judges``, ``.experiments``, ``.notebook`` (thin entry modules). The modules' old flat names
(``ddsutils.perceptual``, ``ddsutils.toyworld``, ...) still import: they are the moved modules themselves.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

__version__ = "0.1.0"

#: Flat module names of earlier versions → where the module lives now (``import ddsutils.toyworld`` works).
MOVED = {
    "ddsutils.perceptual": "ddsutils.core.backbones",
    "ddsutils.files": "ddsutils.core.files",
    "ddsutils.paths": "ddsutils.core.paths",
    "ddsutils.cli": "ddsutils.core.cli",
    "ddsutils.layerblend": "ddsutils.core.layerblend",
    "ddsutils.metrics": "ddsutils.core.metrics",
    "ddsutils.blending": "ddsutils.core.blending",
    "ddsutils.toyworld": "ddsutils.toy.toyworld",
    "ddsutils.train": "ddsutils.toy.train",
    "ddsutils.discriminator": "ddsutils.toy.discriminator",
    "ddsutils.fewshot": "ddsutils.toy.fewshot",
    "ddsutils.scoring": "ddsutils.toy.scoring",
    "ddsutils.viz": "ddsutils.lab.viz",
    "ddsutils.widgets": "ddsutils.lab.widgets",
    "ddsutils.demo": "ddsutils.lab.demo",
}


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Import an old flat name as the module that now holds its code (the same object, not a copy)."""

    def find_spec(self, fullname, path=None, target=None):  # noqa: ANN001 - importlib's signature
        if fullname in MOVED:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):  # noqa: ANN001
        return importlib.import_module(MOVED[spec.name])

    def exec_module(self, module) -> None:  # noqa: ANN001 - the target module ran when it was imported
        pass

    def get_code(self, fullname: str):
        """``python -m ddsutils.<old name>`` runs the moved module as ``__main__``."""
        return compile(f"import runpy\nrunpy.run_module({MOVED[fullname]!r}, run_name='__main__', alter_sys=True)\n",
                       f"<{fullname}, moved to {MOVED[fullname]}>", "exec")


if not any(isinstance(f, _MovedModules) for f in sys.meta_path):
    sys.meta_path.append(_MovedModules())


def __getattr__(name: str):
    """``from ddsutils import toyworld`` for the moved modules (``ddsutils.toyworld`` is imported on demand)."""
    if f"ddsutils.{name}" in MOVED:
        return importlib.import_module(f"ddsutils.{name}")
    raise AttributeError(f"module 'ddsutils' has no attribute {name!r}")
