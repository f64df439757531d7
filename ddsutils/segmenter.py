"""``python -m ddsutils.segmenter evaluate``: the one-shot segmenter in the toy world; the code is
:mod:`ddsutils.core.segmenter` (train, predict, load) and :mod:`ddsutils.toy.segeval` (oracle labels, evaluation).

``from ddsutils import segmenter`` gives the public names of both.
"""
from .core.segmenter import *  # noqa: F401,F403 - the public API under the module's old name
from .core.segmenter import __all__ as _core_all
from .toy.segeval import *  # noqa: F401,F403
from .toy.segeval import __all__ as _toy_all
from .toy.segeval import main

__all__ = [*_core_all, *_toy_all]

if __name__ == "__main__":
    raise SystemExit(main())
