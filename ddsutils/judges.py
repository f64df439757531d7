"""``python -m ddsutils.judges train|evaluate``: the toy-world judges; the code is :mod:`ddsutils.toy.judges`.

``from ddsutils import judges`` gives the same public names as :mod:`ddsutils.toy.judges`.
"""
from .toy.judges import *  # noqa: F401,F403 - the public API under the module's old name
from .toy.judges import __all__  # noqa: F401
from .toy.judges import main

if __name__ == "__main__":
    raise SystemExit(main())
