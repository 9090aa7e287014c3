"""The masked-LM pipeline at tiny size: corpus windows, MLM losses, the MPT curve through the bridge."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from mamjax import nn, train
from mamjax.lml import masked_lm


def test_corpus_windows_and_vocab():
    text = masked_lm.python_docs_text()
    assert len(text) > 100_000
    chars, index = masked_lm.char_vocab(text, 40)
    assert len(chars) == 40 and index[chars[-1]] == 39
    win = masked_lm.char_windows(text, index, 16, 5, jax.random.key(0))
    assert win.shape == (5, 16) and win.dtype == np.int32 and win.max() < 40
    with pytest.raises(ValueError, match="seq_len"):
        masked_lm.char_windows("abc", index, 8, 2, jax.random.key(0))


def test_context_free_model_gives_the_exact_log_likelihood():
    """A model whose logits ignore the context is a joint (independent coordinates): MPT = log p(x) exactly."""
    logits = jax.random.normal(jax.random.key(0), (6, 5))
    apply = lambda params, t, m: jnp.broadcast_to(params, t.shape + (5,))  # position-wise, no context
    tokens = jax.random.randint(jax.random.key(1), (3, 6), 0, 5)
    est = masked_lm.mpt_curve(apply, logits, tokens, jax.random.key(2), 20, exact=True)
    logp = jax.nn.log_softmax(logits, -1)
    exact = jnp.sum(jnp.take_along_axis(logp[None], tokens[..., None], -1)[..., 0], -1)
    np.testing.assert_allclose(est.value, exact, rtol=1e-5)


@pytest.mark.slow
def test_tiny_transformer_trains_and_is_scored_across_rates():
    model = nn.TransformerEncoder(7, 8, dim=16, depth=1, num_heads=2, rngs=nnx.Rngs(0))
    apply, params = nn.functional(model)
    tokens = jnp.tile(jnp.arange(8, dtype=jnp.int32) % 7, (16, 1))  # a deterministic pattern to learn
    opt = optax.adam(1e-2)
    step = train.make_train_step(masked_lm.mlm_loss(apply, "uniform"), opt)
    state = train.TrainState.create(params, opt)
    before = masked_lm.mpt_curve(apply, params, tokens[:4], jax.random.key(1), 1)
    for i in range(30):
        state, m = step(state, {"x": tokens}, jax.random.key(i))
    after = masked_lm.mpt_curve(apply, state.params, tokens[:4], jax.random.key(1), 1)
    assert after.per_size.shape == (4, 8)
    assert float(jnp.mean(after.value)) > float(jnp.mean(before.value)) + 1.0
    with pytest.raises(ValueError, match="rate"):
        masked_lm.mlm_loss(apply, 1.5)


def test_pipeline_one_step_at_tiny_size():
    model = nn.TransformerEncoder(5, 4, dim=8, depth=1, num_heads=2, rngs=nnx.Rngs(1))
    apply, params = nn.functional(model)
    tokens = jax.random.randint(jax.random.key(0), (3, 4), 0, 5)
    opt = optax.sgd(0.1)
    state, m = train.make_train_step(masked_lm.mlm_loss(apply, 0.5), opt)(train.TrainState.create(params, opt),
                                                                           {"x": tokens}, jax.random.key(1))
    est = masked_lm.mpt_curve(apply, state.params, tokens, jax.random.key(2), 1)
    assert est.value.shape == (3,) and est.per_size.shape == (3, 4) and bool(jnp.all(jnp.isfinite(est.value)))
    assert np.isfinite(float(m["nll_per_token"]))
