"""Config of ``examples/lml_convergence.py``: convergence of the cumulative MPT to the LML (paper exp. 1).

    python examples/lml_convergence.py                                         # ~1-2 min CPU
    python examples/lml_convergence.py --config configs/lml_convergence.py:quick

Default (paper): PPCA N = 100, D = 10, K = 2, beta = 5, 1..256 masks per size, 5 seeds.
"""

from ml_collections import config_dict


def get_config(arg: str | None = None) -> config_dict.ConfigDict:
    c = config_dict.ConfigDict()
    c.n = 100
    c.dim = 10
    c.latent = 2
    c.beta = 5.0
    c.masks = "1,2,4,8,16,32,64,128,256"   # masks per size, comma-separated
    c.seeds = 5
    if arg in (None, "", "paper"):
        pass
    elif arg == "quick":
        c.n, c.masks, c.seeds = 20, "1,4,16", 2
    else:
        raise ValueError(f"unknown variant {arg!r}; choose from paper, quick")
    return c
