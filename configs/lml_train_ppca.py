"""Config of ``examples/lml_train_ppca.py``: PPCA and GP hyperparameters by exact LML / cumulative / fixed-rate MPT.

    python examples/lml_train_ppca.py                                        # the paper's 1000 epochs
    python examples/lml_train_ppca.py --config configs/lml_train_ppca.py:cpu  # 400 steps, ~2-3 min CPU
    python examples/lml_train_ppca.py --config configs/lml_train_ppca.py:quick

Default (paper exp. 3): N = 2000, D = 10, K = 2, beta = 5, Adam lr 1e-2, full batch, one mask per
size per step, 1000 epochs. Nothing may change on resume.
"""

from ml_collections import config_dict


def get_config(arg: str | None = None) -> config_dict.ConfigDict:
    c = config_dict.ConfigDict()
    c.n = 2000
    c.dim = 10
    c.latent = 2
    c.beta = 5.0            # noise precision (noise variance 1 / beta)
    c.steps = 1000
    c.lr = 1e-2
    c.masks = 1             # masks per size per step
    c.gp_steps = 300
    c.gp_draws = 50
    c.gp_lr = 5e-2
    c.seed = 0
    c.save_every = 250      # steps between checkpoints of each PPCA run
    c.gp_save_every = 150   # and of each GP run
    if arg in (None, "", "paper"):
        pass
    elif arg == "cpu":
        c.steps = 400
    elif arg == "quick":
        c.n, c.steps, c.gp_steps = 200, 40, 30
    else:
        raise ValueError(f"unknown variant {arg!r}; choose from paper, cpu, quick")
    return c
