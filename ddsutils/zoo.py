"""``python -m ddsutils.zoo train|evaluate``: the toy zoo; the code is :mod:`ddsutils.toy.zoo`.

``from ddsutils import zoo`` gives the same public names as :mod:`ddsutils.toy.zoo`.
"""
from .toy.zoo import *  # noqa: F401,F403 - the public API under the module's old name
from .toy.zoo import __all__  # noqa: F401
from .toy.zoo import main

if __name__ == "__main__":
    raise SystemExit(main())
