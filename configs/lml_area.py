"""Config of ``examples/lml_area.py``: the area under the MPT-vs-mask-rate curve is the LML (paper exp. 2).

    python examples/lml_area.py                                    # ~1 min CPU
    python examples/lml_area.py --config configs/lml_area.py:quick

Default (paper): PPCA N = 100, D = 200, K = 2, beta = 5, 4 masks per size, 5 seeds.
"""

from ml_collections import config_dict


def get_config(arg: str | None = None) -> config_dict.ConfigDict:
    c = config_dict.ConfigDict()
    c.n = 100
    c.dim = 200
    c.latent = 2
    c.beta = 5.0
    c.masks = 4             # masks per size
    c.seeds = 5
    if arg in (None, "", "paper"):
        pass
    elif arg == "quick":
        c.n, c.dim, c.seeds = 20, 30, 2
    else:
        raise ValueError(f"unknown variant {arg!r}; choose from paper, quick")
    return c
