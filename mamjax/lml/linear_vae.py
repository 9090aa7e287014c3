"""Bernoulli linear latent-variable model with a grid-integrated 2-D latent (paper §5, exp. 5).

``z ~ N(0, I_K)`` restricted to a regular grid of ``bins^K`` points in
``[-limit, limit]^K`` (prior weights ``pi_g`` proportional to the normal
density, normalised over the grid), ``x_d | z ~ Bernoulli(sigmoid(w_d^T z + b_d))``.
On the grid the model is an exact finite mixture, so

    log p(x)       = logsumexp_g [log pi_g + sum_d log p(x_d | z_g)]
    p(x_j | x_O)   = sum_g p(z_g | x_O) p(x_j | z_g),
    log p(z_g|x_O) = log pi_g + sum_{d in O} log p(x_d | z_g) - const,

and the MPT identity holds exactly for this joint (tests check it by
enumeration). The paper's code weights the grid by ``(10/L)^2 N(z_g)``
(unnormalised) and scores masked tokens jointly without conditioning on the
observed ones; here every masked coordinate is predicted from the observed ones.

Parameters: ``{"w": [D, K], "b": [D]}`` for the decoder, plus, for the ELBO
baseline (a linear Gaussian encoder as in the paper), ``{"v": [K, D],
"enc_log_var": [K]}``.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

Array = jax.Array
CondLogpdf = Callable[[Array, Array], Array]

__all__ = ["LatentGrid", "latent_grid", "init_params", "linear_vae_lml", "linear_vae_cond_logpdf",
           "linear_vae_elbo", "linear_vae_mask_scores", "linear_vae_mpt", "linear_vae_subset_lml"]

# Keeps log() finite if a mixture probability underflows (float32).
_TINY = 1e-30


class LatentGrid(NamedTuple):
    """Quadrature grid: ``z [G, K]`` points and ``log_prior [G]`` normalised log weights."""

    z: Array
    log_prior: Array


def latent_grid(latent_dim: int = 2, bins: int = 20, limit: float = 5.0, dtype=jnp.float32) -> LatentGrid:
    """A ``bins^K`` grid on ``[-limit, limit]^K`` with normalised standard-normal weights."""
    if latent_dim < 1 or bins < 2:
        raise ValueError(f"need `latent_dim` >= 1 and `bins` >= 2; got {latent_dim}, {bins}.")
    axis = jnp.linspace(-limit, limit, bins, dtype=dtype)
    z = jnp.stack(jnp.meshgrid(*([axis] * latent_dim), indexing="ij"), axis=-1).reshape(-1, latent_dim)
    logits = -0.5 * jnp.sum(z**2, axis=-1)
    return LatentGrid(z, jax.nn.log_softmax(logits))


def init_params(key: jax.Array, num_dims: int, latent_dim: int = 2, scale: float = 1.0) -> dict:
    """Standard-normal initialisation (as the paper's code): decoder and linear encoder."""
    kw, kb, kv, ke = jax.random.split(key, 4)
    return {
        "w": scale * jax.random.normal(kw, (num_dims, latent_dim)),
        "b": scale * jax.random.normal(kb, (num_dims,)),
        "v": scale * jax.random.normal(kv, (latent_dim, num_dims)) / jnp.sqrt(num_dims),
        "enc_log_var": jnp.zeros((latent_dim,)),
    }


def _log_lik_tables(params: dict, grid: LatentGrid) -> tuple[Array, Array]:
    """``log sigmoid(a)`` and ``log sigmoid(-a)`` with ``a = z W^T + b``: two ``[G, D]`` tables."""
    a = grid.z.astype(params["w"].dtype) @ params["w"].T + params["b"][None, :]
    return jax.nn.log_sigmoid(a), jax.nn.log_sigmoid(-a)


def linear_vae_lml(params: dict, x: Array, grid: LatentGrid) -> Array:
    """Grid-integrated ``log p(x)``.

    Args:
      params: ``{"w": [D, K], "b": [D]}`` (other keys ignored).
      x: ``[D]`` or ``[N, D]`` binary (0/1, any dtype).
      grid: from :func:`latent_grid`.

    Returns:
      ``[]`` or ``[N]``.
    """
    lp, ln = _log_lik_tables(params, grid)
    x2 = jnp.reshape(x, (-1, lp.shape[1])).astype(lp.dtype)
    log_joint = grid.log_prior[None, :] + x2 @ lp.T + (1.0 - x2) @ ln.T  # [N, G]
    return jax.nn.logsumexp(log_joint, axis=-1).reshape(x.shape[:-1])


def linear_vae_cond_logpdf(params: dict, grid: LatentGrid) -> CondLogpdf:
    """``cond_logpdf(x [D], mask [D]) -> [D]``: ``log p(x_j | x_O)`` at hidden j, 0 at observed.

    Written as matrix-vector products over the grid so that vmapping over a
    batch becomes matrix multiplications (no ``[N, G, D]`` intermediate).
    """
    lp, ln = _log_lik_tables(params, grid)
    p1, p0 = jnp.exp(lp), jnp.exp(ln)

    def cond_logpdf(x: Array, mask: Array) -> Array:
        x = x.astype(lp.dtype)
        m = mask.astype(lp.dtype)
        post = jax.nn.softmax(grid.log_prior + lp @ (x * m) + ln @ ((1.0 - x) * m))  # [G]
        log_p1 = jnp.log(jnp.maximum(post @ p1, _TINY))
        log_p0 = jnp.log(jnp.maximum(post @ p0, _TINY))
        return jnp.where(mask, 0.0, x * log_p1 + (1.0 - x) * log_p0)

    return cond_logpdf


def linear_vae_mask_scores(x: Array, masks: Array, w: Array, b: Array, z: Array, log_prior: Array) -> Array:
    """Per-mask MPT scores ``[N, S]`` for binary ``x [N, D]`` and masks ``[S, D]``, as matrix products.

    The same quantity as :func:`mamjax.lml.masked_pretraining_score` of :func:`linear_vae_cond_logpdf`
    mask by mask, ``1/M sum_{j hidden} log p(x_j | x_O)``, but every (example, mask) posterior over the
    grid comes from one ``[N S, D] x [D, G]`` product and every predictive from one ``[N S, G] x [G, D]``
    product (the per-example route is a matrix-vector product per mask, and vmapping it over masks
    gives batched products that XLA's CPU backend runs far slower).

    Args:
      x: ``[N, D]`` binary; masks: ``[S, D]`` bool, True = observed.
      w, b: decoder ``[D, K]``, ``[D]``; z, log_prior: the :class:`LatentGrid` fields ``[G, K]``, ``[G]``.
    """
    lp, ln = _log_lik_tables({"w": w, "b": b}, LatentGrid(z, log_prior))
    x = x.astype(lp.dtype)
    o = masks.astype(lp.dtype)
    h = 1.0 - o
    # posterior logits: log pi_g + sum_{d observed} [x_d lp_gd + (1 - x_d) ln_gd]
    logits = (log_prior[None, None] + jnp.einsum("nsd,gd->nsg", x[:, None, :] * o[None], lp - ln)
              + (o @ ln.T)[None])  # [N, S, G]
    post = jax.nn.softmax(logits, axis=-1)
    log_p1 = jnp.log(jnp.maximum(post @ jnp.exp(lp), _TINY))  # [N, S, D]
    log_p0 = jnp.log(jnp.maximum(post @ jnp.exp(ln), _TINY))
    cond = x[:, None, :] * log_p1 + (1.0 - x[:, None, :]) * log_p0
    return jnp.sum(cond * h[None], axis=-1) / jnp.sum(h, axis=-1)[None]


def linear_vae_mpt(params: dict, x: Array, grid: LatentGrid, key: jax.Array, num_masks_per_rate: int,
                   rates=None, *, num_hidden=None, exact: bool | str = "auto", chunk_size: int | str = "auto"):
    """:func:`mamjax.lml.cumulative_mpt` of the grid model, every mask through :func:`linear_vae_mask_scores`.

    Same plan, masks (for the same key) and result as ``cumulative_mpt(linear_vae_cond_logpdf(params,
    grid), x, key, ...)``.

    Args:
      params: ``{"w": [D, K], "b": [D]}``; x: ``[D]`` or ``[N, D]`` binary; grid: :func:`latent_grid`.
      key, num_masks_per_rate, rates, num_hidden, exact: as in ``cumulative_mpt``.
      chunk_size: masks per ``lax.map`` chunk (``"auto"`` keeps ``N x chunk x D`` bounded).

    Returns:
      :class:`mamjax.lml.MPTEstimate`.
    """
    from mamjax.lml import lowrank  # the shared matmul-route driver (lowrank imports nothing from here)

    x = jnp.asarray(x)
    if x.ndim not in (1, 2) or x.shape[-1] != params["w"].shape[0]:
        raise ValueError(f"`x` must have shape [D] or [N, D] with D = {params['w'].shape[0]}; got {tuple(x.shape)}.")
    w = params["w"]
    mean = jnp.zeros(x.shape[-1], w.dtype)
    return lowrank.run_matmul_route(linear_vae_mask_scores, x.astype(w.dtype), key, num_masks_per_rate,
                                    (w, params["b"], grid.z.astype(w.dtype), grid.log_prior.astype(w.dtype)),
                                    mean, rates, num_hidden, exact, chunk_size, 2 * x.shape[-1])


def linear_vae_subset_lml(params: dict, x: Array, grid: LatentGrid, hidden: Array) -> Array:
    """Grid ``log p(x_T)`` of the coordinates ``T`` marked by ``hidden [S, D]`` (True = in T): ``[N, S]``.

    The masked-token objective of the paper's exp.-5 code (the masked pixels scored jointly by their
    marginal, not conditioned on the observed ones): ``D / M log p(x_T)`` is its per-example loss.
    """
    lp, ln = _log_lik_tables(params, grid)
    x = x.astype(lp.dtype)
    t = hidden.astype(lp.dtype)
    logits = (grid.log_prior[None, None] + jnp.einsum("nsd,gd->nsg", x[:, None, :] * t[None], lp - ln)
              + (t @ ln.T)[None])
    return jax.nn.logsumexp(logits, axis=-1)


def linear_vae_elbo(params: dict, x: Array, key: jax.Array) -> Array:
    """One-sample ELBO of the linear VAE (the paper's baseline), per example.

    Encoder ``q(z | x) = N(V (x - b), diag(exp(enc_log_var)))`` (continuous z,
    reparameterised), decoder Bernoulli, prior ``N(0, I)``.

    Args:
      params: ``{"w", "b", "v", "enc_log_var"}``.
      x: ``[N, D]`` binary.
      key: PRNG key.

    Returns:
      ``[N]`` ELBO values.
    """
    x = x.astype(params["w"].dtype)
    mean = (x - params["b"][None, :]) @ params["v"].T  # [N, K]
    var = jnp.exp(params["enc_log_var"])[None, :]
    z = mean + jnp.sqrt(var) * jax.random.normal(key, mean.shape, mean.dtype)
    a = z @ params["w"].T + params["b"][None, :]
    rec = jnp.sum(x * jax.nn.log_sigmoid(a) + (1.0 - x) * jax.nn.log_sigmoid(-a), axis=-1)
    kl = 0.5 * jnp.sum(var + mean**2 - 1.0 - jnp.log(var), axis=-1)
    return rec - kl
