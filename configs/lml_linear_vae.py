"""Config of ``examples/lml_linear_vae.py``: the Bernoulli linear latent model on binarized MNIST (paper exp. 5).

    python examples/lml_linear_vae.py                                        # the paper's 800 full-batch epochs
    python examples/lml_linear_vae.py --config configs/lml_linear_vae.py:cpu  # 300 steps, ~3 min CPU
    python examples/lml_linear_vae.py --config configs/lml_linear_vae.py:quick

Default: N = 1000 images, K = 2, 20 x 20 grid on [-5, 5]^2, Adam lr 1e-2, full batch, 800 steps;
objectives fixed-rate MPT at 15% (conditioned on the observed pixels), the ELBO, the grid LML.
``objectives`` is a comma-separated list (see :func:`mamjax.lml.objectives.linear_vae_loss`: also
``uniform`` and ``joint:0.15``, the paper code's objective).
"""

from ml_collections import config_dict


def get_config(arg: str | None = None) -> config_dict.ConfigDict:
    c = config_dict.ConfigDict()
    c.n = 1000
    c.steps = 800
    c.lr = 1e-2
    c.bins = 20
    c.masks = 1             # masks per step
    c.objectives = "0.15,elbo,lml"
    c.seed = 0
    c.save_every = 250      # steps between checkpoints of each objective's run
    if arg in (None, "", "paper"):
        pass
    elif arg == "cpu":
        c.steps = 300
    elif arg == "quick":
        c.n, c.steps, c.bins = 96, 20, 10
    else:
        raise ValueError(f"unknown variant {arg!r}; choose from paper, cpu, quick")
    return c
