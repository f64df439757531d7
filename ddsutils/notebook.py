"""``python -m ddsutils.notebook run|prepare|params``: the notebook runner; the code is :mod:`ddsutils.lab.notebook`.

``from ddsutils import notebook`` gives the same public names as :mod:`ddsutils.lab.notebook`.
"""
from .lab.notebook import *  # noqa: F401,F403 - the public API under the module's old name
from .lab.notebook import __all__  # noqa: F401
from .lab.notebook import main

if __name__ == "__main__":
    raise SystemExit(main())
