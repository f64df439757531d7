"""``python -m ddsutils.stylegan2 info|convert``: the StyleGAN2 generator and checkpoint tools;
the code is :mod:`ddsutils.core.stylegan2`.

``from ddsutils import stylegan2`` gives the same public names as :mod:`ddsutils.core.stylegan2`.
"""
from .core.stylegan2 import *  # noqa: F401,F403 - the public API under the module's old name
from .core.stylegan2 import __all__  # noqa: F401
from .core.stylegan2 import _main as main

if __name__ == "__main__":
    raise SystemExit(main())
