"""The inference network q(a | x, y) of WS-RAM: a proposal over glimpse locations.

Ba et al. (2015) train a second network that sees the label ``y`` (and, being used
only during training, may look at the whole image) to propose glimpse sequences
close to the posterior ``p(a | x, y)``. Ours factorizes like the prior policy,

    q(a | x, y) = prod_t q(a_t | h_{t-1}, x, y),

where ``h_{t-1}`` is the attention model's recurrent state after the glimpses
``a_{<t}`` (read with ``stop_gradient``: the proposal's loss must not move the
model), ``x`` enters as a low-resolution view of the whole image and ``y`` as a
one-hot vector.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

Array = jax.Array

__all__ = ["Proposal", "low_resolution"]


def low_resolution(image: Array, side: int) -> Array:
    """Average-pools a square [S, S] image to [side, side] (``side`` must divide ``S``)."""
    s = image.shape[-1]
    if s % side:
        raise ValueError(f"`side` ({side}) must divide the image side ({s}).")
    f = s // side
    return image.reshape(*image.shape[:-2], side, f, side, f).mean(axis=(-3, -1))


class Proposal(nnx.Module):
    """q(a_t | h_{t-1}, x, y): logits over the ``num_locations`` candidate glimpse centres.

    ``context(image, label)`` is computed once per image; ``logits(context, h)``
    at every step.
    """

    def __init__(self, *, image_size: int, view: int, num_classes: int, hidden: int,
                 state_size: int, num_locations: int, rngs: nnx.Rngs):
        if image_size % view:
            raise ValueError(f"`view` ({view}) must divide `image_size` ({image_size}).")
        self.view, self.num_classes = view, num_classes
        self.ctx = nnx.Linear(view * view + num_classes, hidden, rngs=rngs)
        self.state = nnx.Linear(state_size, hidden, rngs=rngs)
        self.direct = nnx.Linear(view * view, num_locations, rngs=rngs)
        self.out = nnx.Linear(hidden, num_locations,
                              kernel_init=nnx.initializers.zeros_init(), rngs=rngs)

    def context(self, image: Array, label: Array) -> tuple[Array, Array]:
        """image [..., S, S] float, label int [...] -> (hidden context [..., hidden], direct logits [..., G])."""
        v = low_resolution(image, self.view)
        v = v.reshape(*v.shape[:-2], -1)
        y = jax.nn.one_hot(label, self.num_classes, dtype=v.dtype)
        return self.ctx(jnp.concatenate([v, y], axis=-1)), self.direct(v)

    def logits(self, context: tuple[Array, Array], h: Array) -> Array:
        """context from :meth:`context`, h [..., state_size] -> logits [..., num_locations] (or the
        2 pre-tanh coordinates of a Gaussian mean, when ``num_locations = 2``)."""
        c, direct = context
        return direct + self.out(jax.nn.relu(c + self.state(jax.lax.stop_gradient(h))))
