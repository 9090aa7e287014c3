"""The residual LeakyReLU MLP of the official MaM code (PrincetonLIPS/MaM ``models/nn.py``, ``MLPRes``).

The Ising / molecule experiments use two of them (``MLPResDual``): one maps the one-hot + "?"
encoding (``D * (K + 1)`` features) to D * K conditional logits, the other to the scalar log
marginal. Each is

    h = act(W_in x);   h = act(W_l h) + h  for l = 1 .. num_layers - 1;   out = W_out h

with ``act = LeakyReLU(0.01)``, no normalization, and PyTorch's default ``nn.Linear``
initialisation (weights and biases uniform in ``+-1/sqrt(fan_in)``), so that the network, its
size and its starting point are those of the official runs (hidden 2048, ``num_layers`` 4: three
hidden 2048 x 2048 layers per network). Written from the description, not copied.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

Array = jax.Array

__all__ = ["LeakyResMLP"]


def _torch_bias_init(fan_in: int):
    bound = 1.0 / np.sqrt(fan_in)

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def _linear(fan_in: int, fan_out: int, rngs: nnx.Rngs) -> nnx.Linear:
    # variance_scaling(1/3, fan_in, uniform) is U(+-1/sqrt(fan_in)): torch's kaiming_uniform(a=sqrt(5))
    return nnx.Linear(fan_in, fan_out, kernel_init=nnx.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform"),
                      bias_init=_torch_bias_init(fan_in), rngs=rngs)


class LeakyResMLP(nnx.Module):
    """``in -> hidden`` (LeakyReLU), ``num_layers - 1`` residual ``hidden -> hidden`` layers, ``-> out``.

    Call: ``x [..., in_features] -> [..., out_features]``.
    """

    def __init__(self, in_features: int, hidden: int, out_features: int, num_layers: int, *, rngs: nnx.Rngs,
                 negative_slope: float = 0.01):
        for name, v in (("in_features", in_features), ("hidden", hidden), ("out_features", out_features),
                        ("num_layers", num_layers)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"`{name}` must be a positive int; got {v!r}.")
        self.inp = _linear(in_features, hidden, rngs)
        self.hidden = nnx.List([_linear(hidden, hidden, rngs) for _ in range(num_layers - 1)])
        self.out = _linear(hidden, out_features, rngs)
        self.negative_slope = negative_slope
        self.in_features = in_features

    def __call__(self, x: Array) -> Array:
        if x.shape[-1] != self.in_features:
            raise ValueError(f"`x` must have last dimension {self.in_features}; got shape {x.shape}.")
        act = lambda v: jax.nn.leaky_relu(v, self.negative_slope)
        h = act(self.inp(x))
        for layer in self.hidden:
            h = act(layer(h)) + h
        return self.out(h)
