"""Config of ``examples/marginal_mnist.py``: the two-stage MLE recipe of MaM (Liu et al. 2024) on binarized MNIST.

    python examples/marginal_mnist.py --workdir runs/mam_mnist                     # default: CPU minutes
    python examples/marginal_mnist.py --config configs/marginal_mnist.py:quick     # a ~1 minute smoke run
    python examples/marginal_mnist.py --config.mam_steps=3000 --config.eval.ensemble=5

``get_config(arg)``: ``arg`` is a comma-separated list of variants, applied in order:

* (none) / ``cpu``: 14x14 statically binarized MNIST (D = 196), residual-MLP backbones (width 512,
  depth 2), 1,000 AO-ARM + 1,000 MaM steps at batch 128, Adam 1e-3 with clip 1: a few CPU minutes.
  Not the paper's network (that is ``mnist_unet``).
* ``quick``: 300 steps per stage, width 256, evaluation on 200 images.
* ``mnist_unet``: the paper's network and settings. The 28x28 ARDM U-Net (``ao_arm/image_runner.py`` /
  ``mam/image_runner.py`` build ``ARM_UNet(ch=256, ch_mult=[1], num_res_blocks=4, num_heads=1,
  dropout=0, max_time=1000, weave_attn=True)``) with the paper's marginal head (duplicate decoder,
  MLP 784 -> 4096 -> 4096 -> 1). Stage 1 as ``ao_arm/conf/config_image.yaml``: batch 24, Adam 1e-4,
  3001 epochs, gradient-norm clip 100 (hard-coded in ``ao_arm/image_runner.py``). Stage 2 as
  ``mam/config/config_image.yaml``: batch 32, Adam 1e-4, clip 100, 200 epochs, 4 Gibbs positions
  per chain and step, on-policy chains included; only the ``marg*`` parameters train. Epochs are
  converted to steps over the 60,000 training images of ``data.load("binarized_mnist")``
  (3001 * 2500 and 200 * 1875 steps). For an accelerator: data-parallel over all devices
  (``--num_devices``; the global batch must divide by them). The official code also learns log Z
  with its own rate (``zlr`` 5e-2); here ``f(empty)`` is pulled to 0 by the penalty instead.
* ``unet_cpu``: the same U-Net and recipe at CPU size: 14x14, 32 channels, 1 residual block,
  marginal MLP width 256, 200 + 200 steps at batch 32, Adam 1e-3 with clip 100, evaluation on
  50 test images (AO-ARM-E costs D U-Net calls per ordering).
* ``paper_optim``: the official optimiser settings (stage 1, ``ao_arm/conf/config_image.yaml``: batch
  24, Adam 1e-4; stage 2, ``mam/config/config_image.yaml``: batch 32, Adam 1e-4, clip 100, 4 Gibbs
  positions per chain and step) at 28x28 with the MLP backbones, for an accelerator.

Evaluation (``eval.*``, may change on resume): the test NLL of AO-ARM-S, AO-ARM-E (5 orderings, as
the paper) and the marginal network's unnormalized ``-(f(x) - f(empty))``; the paper's agreement
protocol on ``eval.agreement_images`` test images (censor counts 100/400/700 of 784, scaled to D;
near-duplicates within 5 nats dropped) beside its |S|-only and censor-count controls; the pooled
random-subset correlation with its |S|-only control.
"""

from ml_collections import config_dict

_VARIANTS = ("cpu", "quick", "paper_optim", "mnist_unet", "unet_cpu")
_TRAIN_IMAGES = 60000  # data.load("binarized_mnist", "train")


def get_config(arg: str | None = None) -> config_dict.ConfigDict:
    c = config_dict.ConfigDict()
    c.resolution = 14               # 28, or 14 = 2x2 pooled, then binarized
    c.binarization = "static"       # "static" or "dynamic"
    c.backbone = "mlp"              # "mlp", "official_mlp", "transformer" or "unet"
    c.width = 512                   # mlp / transformer sizes
    c.depth = 2
    c.num_heads = 4
    c.unet = config_dict.ConfigDict()  # backbone "unet" sizes (paper: 256, 4, 4096)
    c.unet.ch = 256
    c.unet.num_res_blocks = 4
    c.unet.marg_hidden = 4096
    c.unet.remat = False            # rematerialise every block in the backward pass (memory for compute)
    c.arm_steps = 1000
    c.mam_steps = 1000
    c.batch_size = 128              # global batch of both stages (split over the data mesh)
    c.mam_batch_size = 0            # stage-2 batch; 0: batch_size
    c.lr = 1e-3
    c.mam_lr = 0.0                  # stage-2 learning rate; 0: lr
    c.clip = 1.0                    # global-norm clip of both stages (0: none)
    c.chain_weight = 0.5            # share of the stage-2 loss on persistent Gibbs chains
    c.gibbs_steps = 1               # positions re-sampled per chain per step
    c.seed = 0
    c.save_every = 500
    c.log_every = 50
    c.eval = config_dict.ConfigDict()
    c.eval.num_test = 500           # test images of the NLL table
    c.eval.num_subsets = 500        # (image, random subset) pairs of the pooled correlation
    c.eval.ensemble = 5             # orderings of AO-ARM-E (paper: 5)
    c.eval.agreement_images = 100   # test images of the paper's agreement protocol
    c.eval.threshold = 5.0          # nats: near-duplicate completions are dropped (paper: 5)
    for v in [a.strip() for a in (arg or "").split(",") if a.strip()]:
        if v == "cpu":
            pass
        elif v == "quick":
            c.arm_steps, c.mam_steps, c.width = 300, 300, 256
            c.eval.num_test, c.eval.num_subsets, c.eval.agreement_images = 200, 200, 50
        elif v == "paper_optim":
            c.resolution, c.batch_size, c.mam_batch_size, c.lr, c.clip, c.gibbs_steps = 28, 24, 32, 1e-4, 100.0, 4
            c.arm_steps = c.mam_steps = 100000
        elif v == "mnist_unet":
            c.resolution, c.backbone, c.batch_size, c.mam_batch_size = 28, "unet", 24, 32
            c.lr, c.clip, c.gibbs_steps = 1e-4, 100.0, 4
            c.arm_steps, c.mam_steps = 3001 * (_TRAIN_IMAGES // 24), 200 * (_TRAIN_IMAGES // 32)
            c.save_every, c.log_every = 5000, 500
            c.eval.num_test = 10000
        elif v == "unet_cpu":
            c.resolution, c.backbone, c.batch_size, c.lr, c.clip = 14, "unet", 32, 1e-3, 100.0
            c.unet.ch, c.unet.num_res_blocks, c.unet.marg_hidden = 32, 1, 256
            c.arm_steps = c.mam_steps = 200
            c.eval.num_test, c.eval.num_subsets, c.eval.agreement_images = 50, 50, 20
        else:
            raise ValueError(f"unknown variant {v!r}; choose from {list(_VARIANTS)}")
    return c
