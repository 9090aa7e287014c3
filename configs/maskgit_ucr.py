"""Config of ``examples/maskgit_ucr.py``: TimeVQVAE tokenizer + MaskGIT priors, naive decoding vs ESS, on UCR.

    python examples/maskgit_ucr.py                                          # CPU default (minutes)
    python examples/maskgit_ucr.py --config configs/maskgit_ucr.py:quick    # smoke run
    python examples/maskgit_ucr.py --config configs/maskgit_ucr.py:official # official GunPoint sizes (accelerator)
    python examples/maskgit_ucr.py --config.dataset=Trace --config.prior.steps=1000

``get_config(arg)``: ``arg`` is a comma-separated list of variants, applied in order:

* (none) / ``cpu``: today's CPU default: per band ~10 / ~20 tokens (``code_dim`` 16, 32 codes), Hann
  STFT with zero padding (n_fft 8, hop 2), 64-wide 2-layer priors with 4 heads trained on the hidden
  tokens (the MaskGIT loss); 1,000 tokenizer and 2,000 prior steps at batch 32; naive vs ESS keeping
  the kept tokens (``eval.methods``: any of naive, ess, ess_redraw).
* ``official``: the official TimeVQVAE / ESS sizes for GunPoint (``configs/config.yaml`` of
  ML4ITS/TimeVQVAE at a9a3f82): rectangular-window STFT with reflect padding, n_fft 8, hop 2; 5 tokens
  per latent step (the frequency axis the official 2-D encoder keeps), floor downsampling
  ``76 -> 38 -> 19 -> 9`` frames for the low band (45 tokens) and ``76 -> 38`` for the high band
  (190 tokens), 64-wide encoders, codebook dimension 64, 32 codes per band, EMA codebook updates
  (decay 0.8); priors 256 wide, 4 layers, 2 heads, class dropout 0.2, the loss on every token
  (``prior.loss_positions = "all"``); ESS as the official code (``ess_redraw``: critical resampling
  redraws every token); T = 10, temperature 4;
  batch 128 (stage 1) / 256 (stage 2). Step counts are ours (the paper: 2,000 / 10,000 epochs).
* ``quick``: tiny step counts and sample counts (a smoke run, not a result).

Fields under ``eval`` may change when a run is resumed; any other change is refused.
"""

from ml_collections import config_dict


def get_config(arg: str | None = None) -> config_dict.ConfigDict:
    c = config_dict.ConfigDict()
    c.dataset = "GunPoint"          # any name of mamjax.data.ucr.list_ucr()
    c.seed = 0
    c.tokenizer = config_dict.ConfigDict(dict(
        steps=1000, batch_size=32, learning_rate=1e-3, hidden=64, code_dim=16, num_codes=32, n_fft=8, hop=2,
        window="hann", padding="zeros", tokens_per_step=1, floor_down=False,
        down_l=config_dict.placeholder(int), down_h=config_dict.placeholder(int),  # None: ~10 / ~20 tokens
        codebook="unit_norm", ema_decay=0.8))  # codebook: "unit_norm" (cosine VQ, learned) or "ema"
    c.prior = config_dict.ConfigDict(dict(steps=2000, batch_size=32, learning_rate=1e-3, dim=64, depth=2,
                                          num_heads=4, p_uncond=0.2,
                                          loss_positions="hidden"))  # "hidden" (MaskGIT) or "all" (official)
    c.fcn_steps = 500
    c.save_every = 500
    c.eval = config_dict.ConfigDict(dict(
        methods=("naive", "ess"), num_decode_steps=10, temperature=4.0, guidance_scale=1.0,
        num_samples=config_dict.placeholder(int),  # None: max(N_test, 256) unconditional samples, as the paper
        num_cas_samples=256, cas_steps=300, sample_batch=128))
    for variant in [v for v in (arg or "").split(",") if v]:
        if variant == "cpu":
            pass
        elif variant == "official":
            c.tokenizer.update(dict(batch_size=128, code_dim=64, window="boxcar", padding="reflect",
                                    tokens_per_step=5, floor_down=True, down_l=3, down_h=1, codebook="ema"))
            c.prior.update(dict(batch_size=256, dim=256, depth=4, num_heads=2))
            c.prior.loss_positions = "all"
            c.eval.update(dict(sample_batch=256, methods=("naive", "ess_redraw")))
        elif variant == "quick":
            c.tokenizer.steps, c.prior.steps, c.fcn_steps, c.save_every = 100, 150, 60, 50
            c.eval.update(dict(num_samples=64, num_cas_samples=64, cas_steps=40, sample_batch=32))
        else:
            raise ValueError(f"unknown variant {variant!r} of configs/maskgit_ucr.py; known: cpu, official, quick")
    return c
