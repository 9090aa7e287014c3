"""configs/maskgit_ucr.py: variants load; the official GunPoint sizes build and run one train step on CPU."""

import jax
import numpy as np
import pytest

from mamjax import cli, data
from mamjax.maskgit import pipeline, tokenizer, vq


def _tok_kwargs(tk, batch_size):
    return dict(batch_size=batch_size, hidden=tk.hidden, code_dim=tk.code_dim, num_codes=tk.num_codes, n_fft=tk.n_fft,
                hop=tk.hop, window=tk.window, padding=tk.padding, tokens_per_step=tk.tokens_per_step,
                floor_down=tk.floor_down, down_l=tk.down_l, down_h=tk.down_h, codebook=tk.codebook,
                ema_decay=tk.ema_decay)


def test_variants_load_and_unknown_variant_is_refused():
    for spec in ("maskgit_ucr", "maskgit_ucr:cpu", "maskgit_ucr:quick", "maskgit_ucr:official"):
        c = cli.load_config(spec)
        assert c.dataset == "GunPoint" and c.eval.num_decode_steps == 10
    off = cli.load_config("maskgit_ucr:official")
    assert (off.prior.dim, off.prior.depth, off.prior.num_heads, off.tokenizer.code_dim) == (256, 4, 2, 64)
    # the official protocol: the loss on every token, critical resampling redrawing every token
    assert off.prior.loss_positions == "all" and tuple(off.eval.methods) == ("naive", "ess_redraw")
    assert cli.load_config("maskgit_ucr").prior.loss_positions == "hidden"
    with pytest.raises(cli.ConfigError, match="variant"):
        cli.load_config("maskgit_ucr:huge")


def test_official_config_shapes_without_compiling():
    """The official sizes by abstract evaluation (fast): 45 / 190 tokens, 64-d codes, 256-wide prior logits."""
    c = cli.load_config("maskgit_ucr:official")
    kw = _tok_kwargs(c.tokenizer, 8)
    kw.pop("batch_size")
    module = pipeline.make_tokenizer(150, **kw)
    params, fns = tokenizer.tokenizer_functions(module)
    x = jax.ShapeDtypeStruct((8, 150), jax.numpy.float32)
    cl, ch = jax.eval_shape(fns["tokenize"], params, x)
    assert cl.shape == (8, 45) and ch.shape == (8, 190)
    assert jax.eval_shape(fns["detokenize"], params, cl, ch).shape == (8, 150)
    pri = pipeline.init_prior(32, 45, 190, 2, dim=c.prior.dim, depth=c.prior.depth, num_heads=c.prior.num_heads)
    toks = jax.ShapeDtypeStruct((8, 45), jax.numpy.int32)
    logits = jax.eval_shape(pri.apply_l, pri.params["lf"], toks, jax.ShapeDtypeStruct((8, 45), bool),
                            jax.ShapeDtypeStruct((8,), jax.numpy.int32))
    assert logits.shape == (8, 45, 32)


@pytest.mark.slow  # ~30-120 s on 2 shared cores: compiles the 256-wide, 4-layer priors over 236 tokens
def test_official_config_builds_and_runs_one_train_step():
    """45 low-band / 190 high-band tokens on GunPoint; one EMA-tokenizer step and one prior step at batch 8, sharded over the test mesh."""
    c = cli.load_config("maskgit_ucr:official")
    x = data.load("ucr/GunPoint", "train")
    mesh = cli.make_mesh(None)
    tok, hist = pipeline.train_tokenizer(x["x"][:16], num_steps=1, mesh=mesh, progress=False,
                                         **_tok_kwargs(c.tokenizer, 8))
    assert (tok.len_l, tok.len_h) == (45, 190) and np.isfinite(hist[-1]["loss"])
    cl, ch = pipeline.tokenize(tok, x["x"][:16])
    assert cl.shape == (16, 45) and ch.shape == (16, 190)
    assert tok.fns["codebooks"](tok.params)[0].shape == (32, 64)
    pri, h = pipeline.train_prior(cl, ch, x["label"][:16], 2, num_codes=32, num_steps=1, batch_size=8,
                                  dim=c.prior.dim, depth=c.prior.depth, num_heads=c.prior.num_heads, mesh=mesh,
                                  progress=False)
    assert np.isfinite(h[-1]["loss"])
    assert pri.params["lf"]  # a 256-wide, 4-layer prior was built
    rt = pipeline.round_trip(tok, x["x"][:4])
    assert rt.shape == (4, 150) and np.isfinite(rt).all()


def test_ema_update_closed_form():
    """Two codes, decay 0.5: counts, sums and the Laplace-smoothed codebook by hand."""
    count, total = np.array([1.0, 1.0]), np.array([[0.0, 0.0], [1.0, 1.0]])
    z = np.array([[2.0, 0.0], [4.0, 0.0], [0.0, 3.0]])
    codes = np.array([0, 0, 1])
    c, t, book = vq.ema_update(count, total, z, codes, 0.5, eps=0.0)
    np.testing.assert_allclose(c, [0.5 + 1.0, 0.5 + 0.5])
    np.testing.assert_allclose(t, [[0.0 + 3.0, 0.0], [0.5 + 0.0, 0.5 + 1.5]])
    np.testing.assert_allclose(book, [[2.0, 0.0], [0.5, 2.0]])


def test_save_every_reaches_the_fits_of_both_stages(monkeypatch):
    """``save_every`` is the checkpoint interval that ``train.fit`` gets; None keeps half the steps."""
    seen = []

    class Stop(Exception):
        pass

    def fake_fit(*args, save_every, **kwargs):
        seen.append(save_every)
        raise Stop

    monkeypatch.setattr(pipeline.train_lib, "fit", fake_fit)
    rng = np.random.default_rng(0)
    cl, ch = rng.integers(0, 4, (8, 3)).astype(np.int32), rng.integers(0, 4, (8, 4)).astype(np.int32)
    kw = dict(num_codes=4, num_steps=10, batch_size=4, dim=8, depth=1, num_heads=1, progress=False)
    for save_every in (3, None):
        with pytest.raises(Stop):
            pipeline.train_prior(cl, ch, np.zeros(8, np.int32), 1, save_every=save_every, **kw)
    x = data.load("ucr/GunPoint", "train")["x"][:8]
    with pytest.raises(Stop):
        pipeline.train_tokenizer(x, num_steps=10, save_every=4, progress=False)
    assert seen == [3, 5, 4]
