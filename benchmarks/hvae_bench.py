"""Cost of the hierarchical VAEs on binarized MNIST: updates/s, peak memory, IWAE-5000 evaluation throughput.

    flock /tmp/mamjax_heavy.lock python -m benchmarks.hvae_bench            # ~6 min on 2 CPU cores
    python -m benchmarks.hvae_bench --updates 20 --eval-images 2 --iwae-k 50  # smoke

Models: rectified-Gaussian 3 and 4 layers, structured (``combine`` as in the presets) and
mean-field, and the 1- and 2-layer Gaussian VAEs (``reproduce.hvae.MODELS``). Each model
runs in a fresh process so its peak RSS is its own. Per model: compile seconds of the train
step, updates/s at batch 100 over ``--updates`` updates (compile excluded), and images/s of
the IWAE bound with K = ``--iwae-k`` (one image per ``[K, 784]`` pass, compile excluded).

Quality is compared at *equal numbers of updates* in ``reproduce/hvae.py``, not here: this
table only says what one update and one evaluation cost, so a time budget can be converted
into updates. The machine is shared: the load average is printed beside each row.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import time

try:
    from benchmarks.common import peak_rss_mib
except ImportError:  # run as a script from benchmarks/
    from common import peak_rss_mib


def _run_one(name: str, updates: int, eval_images: int, iwae_k: int, seed: int = 0) -> dict:
    import jax
    import numpy as np

    from mamjax import hvae
    from reproduce.hvae import MODELS

    x = (np.random.default_rng(seed).random((100, 784)) < 0.3).astype(np.float32)
    s = hvae.experiment.setup(784, MODELS[name], seed=seed)
    n_params = sum(int(a.size) for a in jax.tree.leaves(s.state.params))
    key = jax.random.key(seed)
    t0 = time.perf_counter()
    state, m = s.train_step(s.state, {"image": x}, key)
    jax.block_until_ready(state)
    compile_s = time.perf_counter() - t0
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    for i in range(updates):
        state, m = s.train_step(state, {"image": x}, jax.random.fold_in(key, i))
    jax.block_until_ready(state)
    ups = updates / (time.perf_counter() - t0)
    imgs = x[:eval_images + 1]
    hvae.evaluate(s.apply, state.params, state.model_state, imgs[:1], key, num_samples=iwae_k, batch_size=1)
    t0 = time.perf_counter()
    hvae.evaluate(s.apply, state.params, state.model_state, imgs[1:], key, num_samples=iwae_k, batch_size=1)
    ips = eval_images / (time.perf_counter() - t0)
    return dict(name=name, params=n_params, compile_s=compile_s, updates_per_s=ups, iwae_images_per_s=ips,
                load=(load0 + os.getloadavg()[0]) / 2, peak_rss_mib=peak_rss_mib())


def main(quick: bool = False, updates: int = 200, eval_images: int = 10, iwae_k: int = 5000) -> str:
    """Measures every model in a fresh process and returns the markdown table.

    ``quick`` (``python -m benchmarks.run --quick``): 50 updates, 4 images at K = 5000.
    """
    if quick:
        updates, eval_images = 50, 4
    from reproduce.hvae import LABELS, MODELS

    ctx = mp.get_context("spawn")
    rows = []
    for name in MODELS:
        with ctx.Pool(1) as pool:
            r = pool.apply(_run_one, (name, updates, eval_images, iwae_k))
        print(f"  {name}: {r['updates_per_s']:.1f} updates/s, {r['iwae_images_per_s']:.2f} images/s at K={iwae_k}",
              flush=True)
        rows.append(r)
    base = next(r for r in rows if r["name"] == "vae1")
    lines = [f"Batch 100, {updates} updates timed after compilation; IWAE K = {iwae_k} on {eval_images} images "
             "(one [K, 784] pass per image); peak RSS of the model's own process.", "",
             "| model | params | compile s | updates/s | x vae1 time per update | IWAE-" + str(iwae_k)
             + " images/s | peak RSS MiB | load avg |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {LABELS[r['name']]} | {r['params'] / 1e6:.2f}M | {r['compile_s']:.0f} | "
                     f"{r['updates_per_s']:.1f} | {base['updates_per_s'] / r['updates_per_s']:.1f} | "
                     f"{r['iwae_images_per_s']:.2f} | {r['peak_rss_mib']:.0f} | {r['load']:.1f} |")
    out = "\n".join(lines)
    print(out)
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--updates", type=int, default=200)
    ap.add_argument("--eval-images", type=int, default=10)
    ap.add_argument("--iwae-k", type=int, default=5000)
    a = ap.parse_args()
    main(updates=a.updates, eval_images=a.eval_images, iwae_k=a.iwae_k)
