"""Named model set-ups (plain data): the paper's default and the Gaussian baselines.

``PRESETS[name]`` is a dict of :func:`mamjax.hvae.build` keyword arguments.

* ``rg_structured``: Salimans (2016) default — 4 rectified-Gaussian layers of
  300, 200, 100, 50 units, structured posterior, batch norm (train with
  ``optax.adamax``). Hidden widths (one deterministic layer per stochastic
  layer and direction) are our choice: 2x the units. ``combine="precision"``
  (Ladder-VAE precision weighting) won the measured comparison in ``reproduce/hvae.py``.
* ``rg_mean_field``: the same with the mean-field posterior (ablation).
* ``vae1``: one Gaussian layer of 50 units (hidden 200), as in the 1-layer VAE
  of Burda et al. (2016), but with one hidden layer per direction instead of two.
* ``vae2``: two Gaussian layers of 100 and 50 units (hidden 200, 100), top-down
  (structured) posterior in the same code.
"""

PRESETS = {
    "rg_structured": dict(latent_sizes=(300, 200, 100, 50), hidden_sizes=(600, 400, 200, 100),
                          latent="rectified", posterior="structured", combine="precision", batch_norm=True),
    "rg_mean_field": dict(latent_sizes=(300, 200, 100, 50), hidden_sizes=(600, 400, 200, 100),
                          latent="rectified", posterior="mean_field", batch_norm=True),
    "vae1": dict(latent_sizes=(50,), hidden_sizes=(200,), latent="gaussian", posterior="structured",
                 batch_norm=True),
    "vae2": dict(latent_sizes=(100, 50), hidden_sizes=(200, 100), latent="gaussian", posterior="structured",
                 batch_norm=True),
}
