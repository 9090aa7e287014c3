"""Config of ``examples/attention_mnist.py``: WS-RAM (Ba et al., 2015) against REINFORCE RAM (Mnih et al., 2014).

    python examples/attention_mnist.py --config configs/attention_mnist.py:quick               # CPU minutes
    python examples/attention_mnist.py --config configs/attention_mnist.py:cluttered,quick
    python examples/attention_mnist.py                                   # translated 60x60, full training set

``get_config(arg)``: ``arg`` is a comma-separated list of variants, applied in order:

* (none) / ``translated``: 60x60 translated MNIST (each 28x28 digit at a uniformly random position), 6 glimpses
  of a 3-scale sensor with 12x12 patches, a 6x6 grid of glimpse locations, 128 hidden units, batch 64,
  Adam 1e-3, all 60,000 training digits, 20,000 updates (our choice), test error with the predictive
  averaged over M = 5 prior trajectories on all 10,000 test images.
* ``cluttered``: the RAM paper's 60x60 cluttered translated MNIST: 4 pieces of 8x8 clutter cut from other
  digits (``mamjax.attention.data.cluttered``).
* ``cluttered100``: 100x100 canvas with 8 pieces of 8x8 clutter (the larger cluttered setting; the number of
  pieces is our choice), glimpse sensor and grid unchanged, the proposal's whole-image view 10x10.
* ``gaussian``, ``lstm``: Gaussian (continuous, RAM) glimpse locations; LSTM core.
* ``quick`` / ``cpu``: 800 updates on the first 10,000 training digits, 1,000 test images, evaluation every 200.

``runs`` is a comma list of ``method:K`` (method ``wsram`` or ``reinforce``, K trajectories per image). Fields
under ``eval`` may change when a run is resumed; any other change is refused.
"""

from ml_collections import config_dict


def get_config(arg: str | None = None) -> config_dict.ConfigDict:
    c = config_dict.ConfigDict()
    c.dataset = "translated"        # "translated" or "cluttered"
    c.size = 60                     # canvas side
    c.num_clutter = 4               # cluttered only: pieces per image
    c.clutter_size = 8              # cluttered only: side of a piece
    c.runs = "wsram:5,reinforce:1"
    c.steps = 20000
    c.batch_size = 64               # global batch (split over the data mesh)
    c.lr = 1e-3                     # Adam
    c.num_train = 60000
    c.seed = 0
    c.save_every = 1000
    c.log_every = 200
    c.model = config_dict.ConfigDict(dict(patch=12, num_scales=3, grid_size=6, num_glimpses=6, hidden=128,
                                          proposal_view=12, locations="grid", core="relu"))
    c.wsram = config_dict.ConfigDict(dict(control_variates=True, proposal_update="wake", estimator="rws",
                                          prior_baseline=False))
    c.reinforce = config_dict.ConfigDict(dict(reward="accuracy"))  # or "log_likelihood"
    c.eval = config_dict.ConfigDict(dict(num_test=10000, samples=5, every=1000))
    for variant in [v.strip() for v in (arg or "").split(",") if v.strip()]:
        if variant == "translated":
            c.dataset = "translated"
        elif variant == "cluttered":
            c.dataset, c.size, c.num_clutter = "cluttered", 60, 4
        elif variant == "cluttered100":
            c.dataset, c.size, c.num_clutter = "cluttered", 100, 8
            c.model.proposal_view = 10  # the proposal's low-resolution view must divide the canvas side
        elif variant == "gaussian":
            c.model.locations = "gaussian"
        elif variant == "lstm":
            c.model.core = "lstm"
        elif variant in ("quick", "cpu"):
            c.steps, c.num_train, c.save_every, c.log_every = 800, 10000, 200, 200
            c.eval.num_test, c.eval.every = 1000, 200
        else:
            raise ValueError(f"unknown variant {variant!r}; choose from translated, cluttered, cluttered100, gaussian, "
                             "lstm, quick, cpu (comma-separated).")
    return c
