"""Config of ``examples/marginal_text8.py``: the two-stage MaM recipe on character-level text (text8 protocol).

    python examples/marginal_text8.py --config configs/marginal_text8.py:cpu --config.data_path=/data/text8
    python examples/marginal_text8.py --config configs/marginal_text8.py --config.data_path=/data/text8 \
        --num_devices 8                                                   # the paper's network (accelerators)

``get_config(arg)``: ``arg`` is a comma-separated list of variants, applied in order:

* (none) / ``paper``: the paper's text8 set-up (``ao_arm/text_main.py``, ``ao_arm/conf/config_text.yaml``,
  ``mam/config/config_text.yaml`` of the official code): chunks of 250 characters, K = 27; the non-causal
  transformer (12 layers, d = 768, 12 heads, FFN 3072) for both networks, the marginal one mean-pooled into
  an MLP 768 -> 3072 -> 3072 -> 1. Stage 1: batch 16, lr 5e-4, gradient-norm clip 0.25 (the official
  optimiser is AdamW with betas (0.9, 0.99) and weight decay 1e-3; ``experiment.arm_stage`` uses Adam, so
  the weight decay is not applied); stage 2: batch 512, lr 5e-4, clip 0.25, 4 Gibbs positions per chain
  and step. The official runs count 14,001 / 200 epochs of its own loader; here the step counts are
  stated directly (1M / 100k). Agreement: censor 50 / 100 / 150 / 200 of 250 characters, near-duplicates
  within 10 nats dropped (``mam/config/config_text.yaml``: ``mask_steps``, ``eval.threshold``).
* ``cpu``: chunks of 32 characters, transformer d = 64, 2 layers, 4 heads, 300 + 300 steps at batch 32,
  Adam 1e-3 with clip 1: a few CPU minutes on the real text8 (or any text file).
* ``quick``: 50 + 50 steps, evaluation on 16 chunks.

``data_path`` must name a local text8 file (the unzipped ``text8.zip`` of mattmahoney.net/dc; any
``[a-z ]`` text works, ``clean=True`` maps other characters to spaces); mamjax does not download it.
"""

from ml_collections import config_dict

_VARIANTS = ("paper", "cpu", "quick")


def get_config(arg: str | None = None) -> config_dict.ConfigDict:
    c = config_dict.ConfigDict()
    c.data_path = ""                # local text8 file (required)
    c.clean = False                 # map characters outside [a-z ] to spaces instead of refusing them
    c.seq_len = 250
    c.dim, c.depth, c.num_heads = 768, 12, 12  # FFN = 4 * dim = 3072; marginal head dim -> 4 dim -> 4 dim -> 1
    c.arm_steps = 1_000_000
    c.mam_steps = 100_000
    c.batch_size = 16               # stage 1 global batch (split over the data mesh)
    c.mam_batch_size = 512          # stage 2 global batch
    c.lr = 5e-4
    c.clip = 0.25
    c.chain_weight = 0.5            # share of the stage-2 loss on persistent Gibbs chains
    c.gibbs_steps = 4
    c.seed = 0
    c.save_every = 5000
    c.log_every = 500
    c.eval = config_dict.ConfigDict()
    c.eval.num_test = 1000          # test chunks of the NLL table
    c.eval.ensemble = 5             # orderings of AO-ARM-E (paper: 5)
    c.eval.agreement_chunks = 100   # test chunks of the agreement protocol
    c.eval.censor = (50, 100, 150, 200)  # of 250, scaled to seq_len
    c.eval.threshold = 10.0         # nats
    for v in [a.strip() for a in (arg or "").split(",") if a.strip()]:
        if v == "paper":
            pass
        elif v == "cpu":
            c.seq_len, c.dim, c.depth, c.num_heads = 32, 64, 2, 4
            c.arm_steps = c.mam_steps = 300
            c.batch_size = c.mam_batch_size = 32
            c.lr, c.clip, c.gibbs_steps = 1e-3, 1.0, 1
            c.save_every, c.log_every = 100, 50
            c.eval.num_test, c.eval.agreement_chunks = 200, 50
        elif v == "quick":
            c.arm_steps = c.mam_steps = 50
            c.eval.num_test, c.eval.agreement_chunks = 16, 16
        else:
            raise ValueError(f"unknown variant {v!r}; choose from {list(_VARIANTS)}")
    return c
