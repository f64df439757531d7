"""``python -m ddsutils.experiments NAME|all``: the paper's experiments; the code is :mod:`ddsutils.lab.experiments`.

``from ddsutils import experiments`` gives the same public names as :mod:`ddsutils.lab.experiments`.
"""
from .lab.experiments import *  # noqa: F401,F403 - the public API under the module's old name
from .lab.experiments import __all__  # noqa: F401
from .lab.experiments import main

if __name__ == "__main__":
    raise SystemExit(main())
