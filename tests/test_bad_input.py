"""Bad input at the public entry points of the core, marginal, maskgit, lml, attention and hvae packages (issue 18).

One table per package of ``(case id, call, expected exception, message regex)``. Every
call gets concrete (not traced) input, where the checks are eager; each must raise
the expected error naming the argument. ``test_no_silent_calls`` runs the whole table
and reports the calls that returned a result instead, so the suite measures the count
of silent calls (goal: 0).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mamjax import checkpoint, masks, metrics, nn, sharding, train
from mamjax.data import ising, mnist
from mamjax.data.stream import BatchStream
from mamjax.distributions import Normal, RectifiedGaussian, bernoulli_log_prob
from mamjax.marginal import arm, exact, losses, sampling
from mamjax.maskgit import decoding, ess, prior, self_critic, tokenizer, vq
from mamjax.maskgit import metrics as mg_metrics
from mamjax import attention, hvae, lml

KEY = jax.random.key(0)


@functools.cache
def _encoder():
    return nn.TransformerEncoder(5, 4, dim=8, depth=1, num_heads=2, num_classes=3, rngs=nnx.Rngs(0))


@functools.cache
def _cond_net():
    return arm.make_conditional_net(jax.random.key(1), 4, 2, width=8, depth=1)


@functools.cache
def _tokenizer():
    return tokenizer.Tokenizer(16, hidden=8, code_dim=4, num_codes=6, rngs=nnx.Rngs(0))


def _logits_fn(tokens, mask, labels):
    return jnp.zeros(tokens.shape + (5,))


def _tokens(v):
    return jnp.full((2, 4), v, jnp.int32)


ALL_OBSERVED = jnp.ones((2, 4), bool)


def _fit(**kw):
    opt = __import__("optax").sgd(0.1)
    step = train.make_train_step(lambda p, b, k: (jnp.sum(p ** 2), {}), opt)
    return train.fit(step, train.TrainState.create(jnp.ones(2), opt), lambda s: None,
                     **dict(dict(num_steps=2, key=KEY, progress=False), **kw))


def _file(tmp):
    path = tmp / "regular_file"
    path.write_text("x")
    return path


def _energy_bad_shape():
    cond_apply, cond_params = _cond_net()
    marg = lambda p, x, m: jnp.zeros(x.shape[:1])  # noqa: E731
    return losses.energy_loss(marg, cond_apply, lambda x: jnp.zeros((x.shape[0], 1)),
                              {"marginal": {}, "conditional": cond_params}, jnp.zeros((3, 4), jnp.int32), None, KEY)


# (id, call(tmp_path), exception, regex)
CORE = [
    ("nn.encoder token id >= vocab", lambda t: _encoder()(_tokens(5), ALL_OBSERVED, jnp.zeros(2, jnp.int32)),
     ValueError, r"`tokens` must hold ids in \[0, 5\)"),
    ("nn.encoder negative token id", lambda t: _encoder()(_tokens(-1), ALL_OBSERVED, jnp.zeros(2, jnp.int32)),
     ValueError, "`tokens`"),
    ("nn.encoder label > null class", lambda t: _encoder()(_tokens(1), ALL_OBSERVED, jnp.full(2, 4, jnp.int32)),
     ValueError, r"`labels` must hold ids in \[0, 4\)"),
    ("nn.encoder leave_one_out id >= vocab", lambda t: _encoder().leave_one_out(_tokens(7), jnp.zeros(2, jnp.int32)),
     ValueError, "`tokens`"),
    ("nn.encoder num_heads=0", lambda t: nn.TransformerEncoder(5, 4, dim=8, num_heads=0, rngs=nnx.Rngs(0)),
     ValueError, "`num_heads` must be a positive int"),
    ("nn.encoder depth=0", lambda t: nn.TransformerEncoder(5, 4, dim=8, depth=0, num_heads=2, rngs=nnx.Rngs(0)),
     ValueError, "`depth`"),
    ("nn.MLP zero width", lambda t: nn.MLP(3, [0], 1, rngs=nnx.Rngs(0)), ValueError, r"`hidden\[0\]`"),
    ("nn.MLP negative in", lambda t: nn.MLP(-3, [4], 1, rngs=nnx.Rngs(0)), ValueError, "`in_features`"),
    ("nn.ResidualMLP width 0", lambda t: nn.ResidualMLP(3, 0, 1, 2, rngs=nnx.Rngs(0)), ValueError, "`width`"),
    ("nn.ResidualMLP depth -1", lambda t: nn.ResidualMLP(3, 4, -1, 2, rngs=nnx.Rngs(0)), ValueError, "`depth`"),
    ("masks.ordering not a permutation", lambda t: masks.ordering_mask(jnp.array([0, 0, 1]), 1),
     ValueError, "`ordering` must be a permutation"),
    ("masks.ordering out of range", lambda t: masks.ordering_mask(jnp.array([0, 5, 1]), 1),
     ValueError, "`ordering`"),
    ("masks.ordering_mask count > D", lambda t: masks.ordering_mask(jnp.array([0, 2, 1]), 4),
     ValueError, "`num_observed`"),
    ("masks.mask_by_count count > D", lambda t: masks.mask_by_count(KEY, 3, 4), ValueError, "`num_hidden`"),
    ("masks.mask_by_count negative", lambda t: masks.mask_by_count(KEY, 3, -1), ValueError, "`num_hidden`"),
    ("masks.mask_by_rate rate 1.5", lambda t: masks.mask_by_rate(KEY, 3, 1.5), ValueError, "`rate`"),
    ("masks.mask_by_rate num_dims 0", lambda t: masks.mask_by_rate(KEY, 0, 0.5), ValueError, "`num_dims`"),
    ("masks.random_ordering num_dims -2", lambda t: masks.random_ordering(KEY, -2), ValueError, "`num_dims`"),
    ("masks.num_hidden_at step >= num_steps", lambda t: masks.num_hidden_at(5, 3, 4), ValueError, "`step`"),
    ("masks.num_hidden_at step -1", lambda t: masks.num_hidden_at(-1, 3, 4), ValueError, "`step`"),
    ("masks.cosine_schedule ratio 2", lambda t: masks.cosine_schedule(2.0), ValueError, "`ratio`"),
    ("masks.linear_schedule ratio -1", lambda t: masks.linear_schedule(-1.0), ValueError, "`ratio`"),
    ("masks.num_subsets M > D", lambda t: masks.num_subsets(4, 5), ValueError, "`num_hidden`"),
    ("masks.num_hidden_at num_steps 0", lambda t: masks.num_hidden_at(0, 0, 4), ValueError, "`num_steps`"),
    ("distributions.RG negative scale", lambda t: RectifiedGaussian(jnp.zeros(2), jnp.array([1.0, -1.0])),
     ValueError, "`scale` must be > 0"),
    ("distributions.RG zero scale", lambda t: RectifiedGaussian(0.0, 0.0), ValueError, "`scale`"),
    ("distributions.Normal negative scale", lambda t: Normal(jnp.zeros(2), -jnp.ones(2)), ValueError, "`scale`"),
    ("distributions.Normal nan scale", lambda t: Normal(0.0, jnp.nan), ValueError, "`scale`"),
    ("distributions.bernoulli grey levels", lambda t: bernoulli_log_prob(jnp.zeros(3), jnp.array([0, 128, 255])),
     ValueError, r"`x` must hold binary values"),
    ("data.BatchStream step -1", lambda t: BatchStream(np.zeros((4, 2)), 2)(-1), ValueError, "`step`"),
    ("data.BatchStream batch 0", lambda t: BatchStream(np.zeros((4, 2)), 0), ValueError, "`batch_size`"),
    ("data.lattice_adjacency L=1", lambda t: ising.lattice_adjacency(1), ValueError, "`L`"),
    ("data.ising.log_f 0/1 bits", lambda t: ising.log_f(np.ones(9) * np.arange(9) % 2, *ising.ising_params(3)),
     ValueError, r"`x` must hold spins in \{-1, \+1\}"),
    ("data.ising.bits_to_spins 2", lambda t: ising.bits_to_spins(np.array([2, 0])), ValueError, "`bits`"),
    ("data.ising.spins_to_bits 0", lambda t: ising.spins_to_bits(np.array([0, 1])), ValueError, "`x`"),
    ("data.ising.spins_to_index 0", lambda t: ising.spins_to_index(np.array([[0, 1, 1]])), ValueError, "`x`"),
    ("data.static_binarize negative", lambda t: mnist.static_binarize(np.full((2, 4), -3.0), 0), ValueError,
     r"`images` must hold grey levels in \[0, 255\]"),
    ("data.dynamic_binarize 300", lambda t: mnist.dynamic_binarize(np.full((2, 4), 300.0), KEY), ValueError,
     "`batch`"),
    ("sharding.data_mesh([])", lambda t: sharding.data_mesh(devices=[]), ValueError, "`devices` is empty"),
    ("sharding.shard_batch scalar", lambda t: sharding.shard_batch(np.float32(1.0), sharding.data_mesh()),
     ValueError, "`batch`"),
    ("metrics.log_mean_exp empty", lambda t: metrics.log_mean_exp(jnp.zeros((0,))), ValueError, "`x` has no entries"),
    ("metrics.bits_per_dim num_dims 0", lambda t: metrics.bits_per_dim(jnp.zeros(3), 0), ValueError, "`num_dims`"),
    ("metrics.bits_per_dim num_dims 2.5", lambda t: metrics.bits_per_dim(jnp.zeros(3), 2.5), ValueError,
     "`num_dims`"),
    ("checkpoint.save(-1)", lambda t: checkpoint.Checkpointer(t / "ck").save(-1, {"a": jnp.ones(1)}),
     ValueError, "`step`"),
    ("checkpoint.key_to_json float", lambda t: checkpoint.key_to_json(jnp.ones(2)), TypeError, "`key`"),
    ("checkpoint at a regular file", lambda t: checkpoint.Checkpointer(_file(t)), NotADirectoryError,
     "`directory`"),
    ("train.fit log_every 2.5", lambda t: _fit(log_every=2.5), TypeError, "`log_every`"),
    ("train.fit eval_every -1", lambda t: _fit(eval_every=-1), ValueError, "`eval_every`"),
    ("train.fit num_steps -1", lambda t: _fit(num_steps=-1), ValueError, "`num_steps`"),
    ("train.fit workdir is a file", lambda t: _fit(workdir=_file(t)), NotADirectoryError, "`workdir`"),
    ("train.fit workdir under a file", lambda t: _fit(workdir=_file(t) / "sub"), NotADirectoryError, "`workdir`"),
]

MARGINAL = [
    ("conditional_log_probs x=2 (binary)", lambda t: arm.conditional_log_probs(
        _cond_net()[0], _cond_net()[1], jnp.full((2, 4), 2, jnp.int32), ALL_OBSERVED),
     ValueError, r"`x` must hold ids in \[0, 2\)"),
    ("conditional_log_probs int mask", lambda t: arm.conditional_log_probs(
        _cond_net()[0], _cond_net()[1], _tokens(1), jnp.ones((2, 4), jnp.int32)), TypeError, "`mask`"),
    ("conditional_log_probs float x", lambda t: arm.conditional_log_probs(
        _cond_net()[0], _cond_net()[1], jnp.ones((2, 4)), ALL_OBSERVED), TypeError, "`x`"),
    ("arm_loss grey levels", lambda t: arm.arm_loss(_cond_net()[0], _cond_net()[1], _tokens(255), KEY),
     ValueError, "`x` must hold ids"),
    ("arm_loss negative x", lambda t: arm.arm_loss(_cond_net()[0], _cond_net()[1], _tokens(-1), KEY),
     ValueError, "`x`"),
    ("sampling.sample num_samples 0", lambda t: sampling.sample(_cond_net()[0], _cond_net()[1], KEY, 0, 4),
     ValueError, "`num_samples`"),
    ("sampling.sample num_dims -1", lambda t: sampling.sample(_cond_net()[0], _cond_net()[1], KEY, 2, -1),
     ValueError, "`num_dims`"),
    ("energy_loss log_f [B, 1]", lambda t: _energy_bad_shape(), ValueError, r"`log_f` must return .* \(3,\)"),
    ("gibbs_step chain value 2", lambda t: sampling.gibbs_step(_cond_net()[0], _cond_net()[1], _tokens(2), KEY),
     ValueError, r"`x` must hold ids in \[0, 2\)"),
    ("conditional_sample temperature 0", lambda t: sampling.conditional_sample(
        _cond_net()[0], _cond_net()[1], _tokens(0), ~ALL_OBSERVED, KEY, temperature=0.0), ValueError, "`temperature`"),
    ("conditional_sample observed value 3", lambda t: sampling.conditional_sample(
        _cond_net()[0], _cond_net()[1], _tokens(3), ALL_OBSERVED, KEY), ValueError, "`x`"),
    ("fill_in_order repeated position", lambda t: sampling.fill_in_order(
        _cond_net()[0], _cond_net()[1], jnp.zeros(4, jnp.int32), jnp.zeros(4, bool), jnp.array([0, 0]), KEY),
     ValueError, "`positions` must not repeat"),
    ("fill_in_order position >= D", lambda t: sampling.fill_in_order(
        _cond_net()[0], _cond_net()[1], jnp.zeros(4, jnp.int32), jnp.zeros(4, bool), jnp.array([1, 4]), KEY),
     ValueError, r"`positions` must hold ids in \[0, 4\)"),
    ("exact.enumerate_states too many", lambda t: exact.enumerate_states(30, 2), ValueError, "too many"),
]

MASKGIT = [
    ("decode token id >= K", lambda t: decoding.decode(_logits_fn, _tokens(5), ALL_OBSERVED, KEY, num_steps=2),
     ValueError, r"`tokens` must hold ids in \[0, 5\)"),
    ("decode negative observed id", lambda t: decoding.decode(
        _logits_fn, _tokens(-3), ALL_OBSERVED, KEY, num_steps=2), ValueError, "`tokens`"),
    ("decode num_steps 0", lambda t: decoding.decode(_logits_fn, _tokens(1), ~ALL_OBSERVED, KEY, num_steps=0),
     ValueError, "`num_steps`"),
    ("decode start_step > num_steps", lambda t: decoding.decode(
        _logits_fn, _tokens(1), ~ALL_OBSERVED, KEY, num_steps=2, start_step=jnp.array([0, 5])),
     ValueError, "`start_step`"),
    ("decode num_initial_hidden > L", lambda t: decoding.decode(
        _logits_fn, _tokens(1), ~ALL_OBSERVED, KEY, num_steps=2, num_initial_hidden=jnp.array([9, 1])),
     ValueError, "`num_initial_hidden`"),
    ("decode int mask", lambda t: decoding.decode(_logits_fn, _tokens(1), jnp.ones((2, 4), jnp.int32), KEY),
     TypeError, "`mask`"),
    ("decode temperature -1", lambda t: decoding.decode(
        _logits_fn, _tokens(1), ~ALL_OBSERVED, KEY, num_steps=2, temperature=-1.0), ValueError, "`temperature`"),
    ("decode guidance without null_label", lambda t: decoding.decode(
        _logits_fn, _tokens(1), ~ALL_OBSERVED, KEY, num_steps=2, guidance_scale=2.0), ValueError, "`null_label`"),
    ("mask_by_random_topk count > L", lambda t: decoding.mask_by_random_topk(
        KEY, jnp.array([9]), jnp.zeros((1, 4)), 1.0), ValueError, "`num_hidden`"),
    ("maskgit_loss targets >= K", lambda t: prior.maskgit_loss(
        _logits_fn, _tokens(0), _tokens(7), KEY), ValueError, "`targets`"),
    ("maskgit_mask int maskable", lambda t: prior.maskgit_mask(KEY, jnp.ones((2, 4), jnp.int32)), TypeError,
     "`maskable`"),
    ("vq.lookup id >= K", lambda t: vq.lookup(jnp.array([9]), jnp.ones((5, 3))), ValueError, "`codes`"),
    ("ess_decode batch_size 0", lambda t: ess.ess_decode(_logits_fn, KEY, jnp.ones((5, 3)), batch_size=0,
                                                          seq_len=4), ValueError, "`batch_size`"),
    ("fid one sample", lambda t: mg_metrics.fid(np.ones((1, 3)), np.ones((5, 3))), ValueError, "at least 2 rows"),
    ("frechet non-PSD", lambda t: mg_metrics.frechet_distance(np.zeros(2), -np.eye(2), np.zeros(2), np.eye(2)),
     ValueError, "`cov1` must be positive semi-definite"),
    ("inception_score not probabilities", lambda t: mg_metrics.inception_score(np.array([[2.0, -1.0]])),
     ValueError, "`probs`"),
    ("critic token id >= K", lambda t: self_critic.critic_log_probs(
        _logits_fn, _tokens(6), None, jnp.ones((5, 3))), ValueError, r"`tokens` must hold ids in \[0, 5\)"),
    ("detokenize code id >= K", lambda t: _tokenizer().detokenize(
        jnp.full((1, 2), 6, jnp.int32), jnp.zeros((1, 4), jnp.int32)), ValueError, r"`codes_l` must hold ids"),
    ("detokenize negative code", lambda t: _tokenizer().detokenize(
        jnp.zeros((1, 2), jnp.int32), jnp.full((1, 4), -1, jnp.int32)), ValueError, "`codes_h`"),
]

LML = [
    ("gp_cov lengthscale 0", lambda t: lml.gp_cov(jnp.ones((3, 1)), lengthscale=0.0), ValueError, "`lengthscale`"),
    ("gp_cov variance -1", lambda t: lml.gp_cov(jnp.ones((3, 1)), variance=-1.0), ValueError, "`variance`"),
    ("gp_cov noise_var -1", lambda t: lml.gp_cov(jnp.ones((3, 1)), noise_var=-1.0), ValueError, "`noise_var`"),
    ("ppca_lml noise_var 0", lambda t: lml.ppca_lml(jnp.ones((2, 3)), jnp.ones((3, 1)), 0.0), ValueError,
     "`noise_var`"),
    ("ppca_cond_logpdf noise_var -1", lambda t: lml.ppca_cond_logpdf(jnp.ones((3, 1)), -1.0), ValueError,
     "`noise_var`"),
]

ATTENTION = [
    ("RAMConfig num_glimpses 0", lambda t: attention.RAMConfig(num_glimpses=0), ValueError, "`num_glimpses`"),
    ("RAMConfig num_classes 1", lambda t: attention.RAMConfig(num_classes=1), ValueError, "`num_classes`"),
    ("RAMConfig unknown core", lambda t: attention.RAMConfig(core="gru"), ValueError, "`core`"),
    ("RAMConfig location_std 0", lambda t: attention.RAMConfig(locations="gaussian", location_std=0.0), ValueError,
     "`location_std`"),
    ("labels >= num_classes", lambda t: attention.check_labels(jnp.array([0, 10]), 10), ValueError, "`labels`"),
    ("float labels", lambda t: attention.check_labels(jnp.array([0.0, 1.0]), 10), ValueError, "`labels`"),
]


def _hvae(**kw):
    return hvae.HVAE(4, (3,), (5,), rngs=nnx.Rngs(0), **kw)


HVAE_CASES = [
    ("HVAE unknown combine", lambda t: _hvae(combine="sum"), ValueError, "`combine`"),
    ("HVAE unknown posterior", lambda t: _hvae(posterior="full"), ValueError, "`posterior`"),
    ("HVAE unknown latent", lambda t: _hvae(latent="beta"), ValueError, "`latent`"),
    ("HVAE num_dense 0", lambda t: _hvae(num_dense=0), ValueError, "`num_dense`"),
    ("HVAE conv at 4 pixels", lambda t: _hvae(conv=True), ValueError, "`conv=True`"),
    ("HVAE sizes of different lengths", lambda t: hvae.HVAE(4, (3, 2), (5,), rngs=nnx.Rngs(0)), ValueError,
     "`latent_sizes`"),
]

TABLE = ([("core",) + c for c in CORE] + [("marginal",) + c for c in MARGINAL] + [("maskgit",) + c for c in MASKGIT]
         + [("lml",) + c for c in LML] + [("attention",) + c for c in ATTENTION] + [("hvae",) + c for c in HVAE_CASES])


@pytest.mark.parametrize("package,case,call,exc,match", TABLE, ids=[f"{p}: {c}" for p, c, *_ in TABLE])
def test_bad_input_raises_a_clear_error(tmp_path, package, case, call, exc, match):
    with pytest.raises(exc, match=match):
        call(tmp_path)


def test_no_silent_calls(tmp_path):
    """The measured count of calls in the table that return without an error (goal: 0)."""
    silent = []
    for i, (package, case, call, exc, match) in enumerate(TABLE):
        d = tmp_path / str(i)
        d.mkdir()
        try:
            call(d)
        except Exception:  # noqa: BLE001 - a wrong type or message is the other test's failure
            continue
        silent.append(f"{package}: {case}")
    assert silent == [], f"{len(silent)} of {len(TABLE)} bad calls were silent: {silent}"
