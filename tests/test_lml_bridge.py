"""The bridge: adapters turn model logits / marginals into MPT log-likelihood estimates."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mamjax import lml, nn

D, V = 4, 3


def _table_model(key):
    """A random joint over V^D configurations with its exact conditionals and marginals."""
    all_x = jnp.asarray(list(itertools.product(range(V), repeat=D)), jnp.int32)  # [V^D, D]
    log_p = jax.nn.log_softmax(2.0 * jax.random.normal(key, (all_x.shape[0],), jnp.float64))

    def log_marginal(x, mask):
        keep = jnp.all((all_x == x[None, :]) | ~mask[None, :], axis=1)
        return jax.nn.logsumexp(jnp.where(keep, log_p, -1e30))

    def logits(x, mask):  # [D, V]: log p(x_j = v | x_O), up to a constant per j
        keep = jnp.all((all_x == x[None, :]) | ~mask[None, :], axis=1)  # consistent with x_O
        onehot = all_x[:, :, None] == jnp.arange(V)[None, None, :]  # [V^D, D, V]
        w = jnp.where(keep[:, None, None] & onehot, log_p[:, None, None], -1e30)
        return jax.nn.logsumexp(w, axis=0)

    return all_x, log_p, logits, log_marginal


def test_categorical_and_marginal_adapters_recover_the_exact_log_likelihood():
    with jax.enable_x64(True):
        all_x, log_p, logits, log_marginal = _table_model(jax.random.key(0))
        idx = jnp.array([0, 17, 55, 80])
        x = all_x[idx]
        for cond in (lml.categorical_cond_logpdf(logits), lml.marginal_cond_logpdf(log_marginal)):
            est = lml.mpt_log_likelihood(cond, x, jax.random.key(1), num_masks_per_rate=6)
            assert bool(jnp.all(est.exact))
            np.testing.assert_allclose(est.value, log_p[idx], atol=1e-10)
        # Monte Carlo (no enumeration) is unbiased over seeds.
        cond = lml.categorical_cond_logpdf(logits)
        keys = jax.random.split(jax.random.key(2), 300)
        vals = jax.jit(jax.vmap(lambda k: lml.mpt_log_likelihood(cond, x[1], k, 2, exact=False).value))(keys)
        assert abs(float(jnp.mean(vals)) - float(log_p[17])) < 4 * float(jnp.std(vals)) / np.sqrt(300)


def test_bernoulli_adapter_matches_linear_vae_conditionals():
    params = lml.linear_vae.init_params(jax.random.key(0), 6)
    grid = lml.latent_grid(2, bins=8)
    ref = lml.linear_vae_cond_logpdf(params, grid)

    def logits(x, mask):  # logit p(x_j = 1 | x_O) of the same model (hidden values are not read)
        return ref(jnp.where(mask, x, 1.0), mask) - ref(jnp.where(mask, x, 0.0), mask)

    x = jnp.array([1.0, 0, 0, 1, 1, 0])
    mask = jnp.array([True, False, True, False, True, False])
    np.testing.assert_allclose(lml.bernoulli_cond_logpdf(logits)(x, mask), ref(x, mask), atol=1e-5)


def test_hook_on_the_mamjax_transformer_matches_the_formula_by_hand():
    d = 5
    model = nn.TransformerEncoder(vocab_size=4, seq_len=d, dim=16, depth=1, num_heads=2, rngs=nnx.Rngs(0))
    apply, params = nn.functional(model)
    logits_fn = jax.jit(lambda x, m: apply(params, x[None], m[None])[0])
    tokens = jax.random.randint(jax.random.key(1), (2, d), 0, 4)
    est = lml.mpt_log_likelihood(lml.categorical_cond_logpdf(logits_fn), tokens, jax.random.key(2), 10)
    assert est.value.shape == (2,) and bool(jnp.all(est.exact))
    # Eq. (5) by hand: sum over sizes of the mean over subsets of the mean hidden log-prob.
    x = tokens[0]
    total = 0.0
    for m in range(1, d + 1):
        scores = []
        for hidden in itertools.combinations(range(d), m):
            mask = np.ones(d, bool)
            mask[list(hidden)] = False
            logp = np.asarray(jax.nn.log_softmax(logits_fn(x, jnp.asarray(mask)), axis=-1))
            scores.append(np.mean([logp[j, int(x[j])] for j in hidden]))
        total += np.mean(scores)
    np.testing.assert_allclose(est.value[0], total, rtol=1e-5)
