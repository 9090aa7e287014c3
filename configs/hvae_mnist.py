"""Config of ``examples/hvae_mnist.py``: the rectified-Gaussian hierarchy of Salimans (2016) on binarized MNIST.

    python examples/hvae_mnist.py                                   # the paper's model (default variant)
    python examples/hvae_mnist.py --config configs/hvae_mnist.py:quick            # CPU minutes
    python examples/hvae_mnist.py --config configs/hvae_mnist.py:mean_field,quick --config.steps=1000

``get_config(arg)``: ``arg`` is a comma-separated list of variants, applied in order:

* (none) / ``paper``: Salimans (2016, arXiv:1602.08734) MNIST model as we read it: 4 rectified-Gaussian
  layers of 300-200-100-50 units, structured posterior, batch norm, Adamax 1e-3, batch 100; evaluation
  by the importance-sampled bound with K = 500 on all 10,000 test images (the protocol of the official
  IAF/VAE code, ``openai/iaf`` ``train.py``: ``est_marglik`` independent ELBO samples per image, combined
  by log-mean-exp). Hidden widths (2x the units), 20,000 steps and the KL warm-up are our choices.
* ``mean_field``, ``vae1``, ``vae2``: the ablation and the Gaussian baselines of ``mamjax.hvae.PRESETS``.
* ``conv``: convolutional first feature and decoder (28x28).
* ``quick`` / ``cpu``: 600 steps, evaluation on 500 test images with K = 50 (a few CPU minutes).

Fields under ``eval`` may change when a run is resumed; any other change is refused.
"""

import importlib.util
import os

from ml_collections import config_dict

_MODELS = ("rg_structured", "rg_mean_field", "vae1", "vae2")


def _presets() -> dict:
    """``mamjax.hvae.PRESETS`` read from its plain-data file (importing ``mamjax.hvae`` imports jax and flax,
    and ``--help`` must answer at once)."""
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "mamjax", "hvae", "configs.py")
    spec = importlib.util.spec_from_file_location("_mamjax_hvae_presets", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.PRESETS


def _model(preset: str) -> config_dict.ConfigDict:
    p = dict(_presets()[preset])
    return config_dict.ConfigDict(dict(
        latent_sizes=tuple(p["latent_sizes"]), hidden_sizes=tuple(p["hidden_sizes"]), latent=p["latent"],
        posterior=p["posterior"], combine=p.get("combine", "precision"), num_dense=p.get("num_dense", 1),
        learned_prior=p.get("learned_prior", False), conv=p.get("conv", False), batch_norm=p["batch_norm"]))


def get_config(arg: str | None = None) -> config_dict.ConfigDict:
    c = config_dict.ConfigDict()
    c.preset = "rg_structured"
    c.model = _model(c.preset)
    c.binarization = "dynamic"      # "dynamic" (fresh Bernoulli draws per batch) or "static"
    c.steps = 20000
    c.batch_size = 100              # global batch (split over the data mesh)
    c.lr = 1e-3                     # Adamax
    c.kl_warmup_fraction = 0.2      # linear KL warm-up over this fraction of the steps (at most 10,000)
    c.free_bits = 0.0               # nats per stochastic layer
    c.train_iwae_k = 1              # > 1: train on the IWAE bound
    c.seed = 0
    c.save_every = 2000
    c.log_every = 100
    c.eval = config_dict.ConfigDict(dict(iwae_k=500, num_test=10000, every=2000, batch_size=20,
                                         num_val=200))
    for variant in [v.strip() for v in (arg or "").split(",") if v.strip()]:
        if variant == "paper":
            continue
        if variant in ("mean_field", "vae1", "vae2"):
            c.preset = "rg_mean_field" if variant == "mean_field" else variant
            c.model = _model(c.preset)
        elif variant == "conv":
            c.model.conv = True
        elif variant in ("quick", "cpu"):
            c.steps = 600
            c.save_every = 100
            c.eval.iwae_k, c.eval.num_test, c.eval.every, c.eval.batch_size = 50, 500, 300, 40
        else:
            raise ValueError(f"unknown variant {variant!r}; choose from paper, mean_field, vae1, vae2, conv, "
                             "quick, cpu (comma-separated).")
    return c
