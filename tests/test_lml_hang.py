"""The general Gaussian route (one Cholesky per mask) returns at D = 50 and D = 200 (issue 20).

It used to deadlock on a 2-core CPU: two independent batched jaxlib LAPACK kernels (the remainder
chunk's Cholesky beside the scan's; the two triangular solves, or their transposes in a training
step) ran at once and each blocked an XLA pool thread waiting for its parts (seen in gdb). The
per-mask route now maps one mask at a time; the matmul routes pad chunks and chain their solves. Run in a subprocess with a timeout so a
regression fails instead of hanging the suite; the chunk sizes leave a remainder on purpose.
"""

import os
import subprocess
import sys
import textwrap


_SCRIPT = textwrap.dedent("""
    import sys
    import jax, jax.numpy as jnp, numpy as np
    from mamjax import lml

    def check(d, n, chunk):
        w = jax.random.normal(jax.random.key(0), (d, 2))
        x = lml.ppca_sample(jax.random.key(1), w, 0.2, n)
        cov = lml.ppca_cov(w, 0.2)
        gen = lml.mvn_conditional_logpdf(jnp.zeros(d), cov)
        fast = lml.ppca_cond_logpdf(w, 0.2)
        def loss(w):
            c = lml.mvn_conditional_logpdf(jnp.zeros(d), lml.ppca_cov(w, 0.2))
            est = lml.cumulative_mpt(c, x, jax.random.key(3), 1, exact=False).value
            full = lml.gaussian_mpt(x, jax.random.key(3), 1, jnp.zeros(d), lml.ppca_cov(w, 0.2), chunk_size=7).value
            return -jnp.mean(est) - jnp.mean(full) - jnp.mean(lml.ppca_lml(x, w, 0.2))
        grad = jax.jit(jax.grad(loss))
        # The old deadlock was a race in the runtime: execute everything twice (the second time from the
        # compilation caches: the same callables, so no recompilation).
        for _ in range(2):
            a = lml.cumulative_mpt(gen, x, jax.random.key(2), 1, exact=False)  # auto: one mask at a time
            b = lml.cumulative_mpt(fast, x, jax.random.key(2), 1, exact=False)
            np.testing.assert_allclose(a.value, b.value, rtol=2e-3)
            c = lml.gaussian_mpt(x, jax.random.key(2), 1, jnp.zeros(d), cov, exact=False, chunk_size=chunk // 4)
            np.testing.assert_allclose(c.value, b.value, rtol=2e-3)
            assert bool(jnp.all(jnp.isfinite(grad(w))))

    for size in sys.argv[1:]:
        d, n, chunk = map(int, size.split(","))
        check(d, n, chunk)
        print("ok", d, flush=True)
""")


def test_general_gaussian_route_returns_at_d50_and_d200():
    """One subprocess for both sizes (one interpreter start and import instead of four)."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", _SCRIPT, "50,200,41", "200,4,57"], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.split() == ["ok", "50", "ok", "200"], proc.stderr[-2000:]
