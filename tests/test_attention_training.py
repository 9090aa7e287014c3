"""Training glue, evaluation and plots of mamjax.attention on a tiny synthetic problem (smoke + sanity)."""

import os

import jax
import numpy as np
import optax
import pytest

from mamjax import train
from mamjax.attention import model as model_lib
from mamjax.attention import plotting, training
from mamjax.data.stream import BatchStream

CFG = model_lib.RAMConfig(image_size=8, patch=2, num_scales=2, grid_size=2, num_glimpses=2, glimpse_hidden=8,
                          location_hidden=4, hidden=8, num_classes=3, proposal_view=4, proposal_hidden=8)


def _data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n).astype(np.int32)
    images = (rng.random((n, 8, 8)) * 60).astype(np.uint8)
    images[np.arange(n), labels * 2 + 1, labels * 2 + 1] = 255  # the class is where the bright pixel is
    return {"image": images, "label": labels}


@pytest.mark.slow  # the notebook (executed by nbmake in the default suite) covers the same glue
def test_both_methods_train_evaluate_and_plot(tmp_path):
    d = _data()
    stream = BatchStream(d, 16, seed=0)
    curves = {}
    for method, k in (("wsram", 3), ("reinforce", 1)):
        ram, params, loss_fn = training.make_method(method, CFG, jax.random.key(0), num_samples=k)
        opt = optax.adam(1e-2)
        state = train.TrainState.create(params, opt)
        eval_fn = lambda st, ram=ram: {"error": model_lib.error_rate(ram, st.params, d["image"], d["label"],  # noqa
                                                                      jax.random.key(1), batch_size=32)}
        state, curve = training.fit_for_seconds(train.make_train_step(loss_fn, opt), state, stream, seconds=0.0,
                                                key=jax.random.key(2), eval_fn=eval_fn, chunk=5, max_steps=5)
        assert int(state.step) == 5 and [c["step"] for c in curve] == [0, 5]
        assert all(0.0 <= c["error"] <= 1.0 for c in curve)
        curves[method] = plotting.budget_curve(curve, stream.steps_per_epoch)
        if method == "wsram":
            png = plotting.plot_glimpse_paths(ram, state.params, d["image"][:4], jax.random.key(3),
                                              tmp_path / f"{method}.png", labels=d["label"][:4])
            assert os.path.getsize(png) > 1000
    assert os.path.getsize(plotting.plot_error_curves(curves, tmp_path / "c.png", reference={"paper": 1.2})) > 1000
    with pytest.raises(ValueError, match="method"):
        training.make_method("vi", CFG, jax.random.key(0))
    with pytest.raises(ValueError, match="workdir"):
        training.fit_for_seconds(None, state, stream, seconds=1.0, key=jax.random.key(0), workdir="x")


def test_error_curve_from_fit_records():
    records = [{"step": 10, "steps_per_sec": 5.0, "eval/error": 0.5}, {"step": 20, "steps_per_sec": 10.0},
               {"step": 30, "steps_per_sec": 10.0, "eval/error": 0.25}]
    cur = plotting.error_curve(records, steps_per_epoch=10)
    np.testing.assert_allclose(cur["seconds"], [2.0, 4.0])
    np.testing.assert_allclose(cur["epoch"], [1.0, 3.0])
    np.testing.assert_allclose(cur["error"], [0.5, 0.25])


def test_error_axis_keeps_the_curves_readable_when_a_reference_is_far_below():
    from matplotlib.figure import Figure

    ax = Figure().subplots()
    ax.plot([0, 100], [80.0, 70.0], label="run")
    plotting._error_axis(ax, "updates", {"RAM, full training: 1.22%": 1.22, "inside": 75.0})
    lo, hi = ax.get_ylim()
    assert lo > 60 and hi < 90  # not widened down to 1.22
    labels = [line.get_label() for line in ax.get_lines()]
    assert "off the axis: RAM, full training: 1.22%" in labels
    assert sum(1 for line in ax.get_lines() if list(line.get_ydata()) == [75.0, 75.0]) == 1  # drawn: in range
