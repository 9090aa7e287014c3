"""Config of ``examples/marginal_ising.py``: energy-based MaM on the Ising model (Liu et al. 2024, Sec. 6.3).

    python examples/marginal_ising.py --config configs/marginal_ising.py:cpu      # 10x10, CPU minutes
    python examples/marginal_ising.py                                             # the paper's 10x10 (accelerator)
    python examples/marginal_ising.py --config configs/marginal_ising.py:ising30  # 30x30: NLL only, no KL

``get_config(arg)``: ``arg`` is a comma-separated list of variants, applied in order:

* (none) / ``ising10``: the official ``config_ising_eb.yaml``: 10x10 lattice (J = 0.1 A, b = 0.2), the
  official network (``official_mlp``: two residual LeakyReLU MLPs, hidden 2048, 4 layers), batch =
  512 persistent chains, Adam lr 5e-4 without clipping, 4 Gibbs positions per step, alpha = 4,
  chains re-drawn ancestrally at every epoch (100,000 / 512 = 196 steps), 200 epochs (39,200 steps),
  f(empty) pinned at the official code's fixed LogZ = D log 2.
* ``ising30``: the same on 30x30 (D = 900); exact log Z is out of reach, so the example reports
  NLL of ground-truth Gibbs samples and says that KL is unavailable.
* ``layernorm``: today's LayerNorm/GELU residual MLP (``mlp``, width 256, depth 2) with lr 1e-3 and
  clip 1, instead of the official network.
* ``cpu``: the official network and optimiser at CPU size: hidden 256, 256 chains, 3,000 steps,
  redraw every 196 steps, a KL curve point every 250 steps.
* ``logp_mc``: the official code's ``logp_mc=True`` option: the REINFORCE term differentiates the
  conditional network's one-call estimate of log p_phi(x) / D instead of f_theta(x)
  (``energy_loss(score="conditional")``); f_theta then learns through the penalty alone.
* ``zero_z``: f(empty) pinned at 0 (a normalized f_theta) instead of the official code's target: its
  ``LogZ`` is fixed at log K^D = D log 2 for the KL objective, so by default f_theta(x_S) is
  log p_theta(x_S) + D log 2. Normalized log-densities, the KL included, are f(x) - f(empty) either
  way; the two differ in what the network must output (measured in docs/marginal.md, table 6).
* ``quick``: a 4x4 smoke run (300 steps, hidden 64).

Fields under ``eval`` may change when a run is resumed; any other change is refused.
"""

from ml_collections import config_dict

_VARIANTS = ("ising10", "paper", "ising30", "layernorm", "cpu", "logp_mc", "zero_z", "quick")


def get_config(arg: str | None = None) -> config_dict.ConfigDict:
    c = config_dict.ConfigDict()
    c.side = 10
    c.backbone = "official_mlp"     # "official_mlp", "mlp" (LayerNorm/GELU) or "transformer"
    c.width = 2048
    c.depth = 4                     # official_mlp: num_layers (input layer + 3 hidden 2048x2048 layers)
    c.num_heads = 4
    c.num_chains = 512              # persistent chains = the (global) batch of a step
    c.steps = 200 * 196             # 200 epochs of 100,000 / 512 steps
    c.redraw_every = 196            # re-draw the chains ancestrally at every epoch start (0: never)
    c.gibbs_steps = 4
    c.alpha = 4.0
    c.lr = 5e-4
    c.clip = 0.0                    # global-norm clip; 0: none (official)
    c.logp_mc = False               # True: REINFORCE through the conditional network (official option, off there)
    c.lr_decay = False              # True: cosine decay of lr to 0 over the run (not in the official code)
    c.f_empty = "official"          # target of f(empty): "official" (D log K, the official fixed LogZ) or "zero"
    c.seed = 0
    c.save_every = 1000
    c.log_every = 50
    c.eval = config_dict.ConfigDict()
    c.eval.num_eval = 2000          # ground-truth and model samples of the final evaluation
    c.eval.gt_sweeps = 1000         # checkerboard Gibbs sweeps per ground-truth chain
    c.eval.curve_every = 2000       # steps between KL-curve points (0: none)
    c.eval.curve_samples = 500      # model samples per curve point
    for v in [a.strip() for a in (arg or "").split(",") if a.strip()]:
        if v in ("ising10", "paper"):
            pass
        elif v == "ising30":
            c.side = 30
            c.eval.num_eval = 500
        elif v == "layernorm":
            c.backbone, c.width, c.depth, c.lr, c.clip = "mlp", 256, 2, 1e-3, 1.0
        elif v == "cpu":
            c.width, c.num_chains, c.steps, c.save_every = 256, 256, 3000, 500
            c.eval.num_eval, c.eval.curve_every = 1000, 250
        elif v == "logp_mc":
            c.logp_mc = True
        elif v == "zero_z":
            c.f_empty = "zero"
        elif v == "quick":
            c.side, c.width, c.num_chains, c.steps, c.save_every = 4, 64, 64, 300, 100
            c.eval.num_eval, c.eval.curve_every, c.eval.curve_samples, c.eval.gt_sweeps = 200, 100, 200, 200
        else:
            raise ValueError(f"unknown variant {v!r}; choose from {list(_VARIANTS)}")
    return c
