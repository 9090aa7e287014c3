"""mamjax.progress: the bar's on/off rule and its pass-through of the iterable."""

import pytest

from mamjax import progress


def test_bar_yields_every_item_whether_shown_or_not(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    assert list(progress.bar(range(5), desc="x", progress=True)) == list(range(5))
    assert list(progress.bar(range(5), desc="x", progress=False)) == list(range(5))


def test_enabled_follows_ci_and_explicit_choice(monkeypatch):
    monkeypatch.setenv("CI", "1")
    assert not progress.enabled()
    assert progress.enabled(True)
    monkeypatch.delenv("CI")
    assert progress.enabled()
    assert not progress.enabled(False)


def test_manual_bar_counts_updates():
    b = progress.bar(total=3, desc="eval", progress=True)
    b.update(2)
    assert b.n == 2
    b.close()


@pytest.mark.parametrize("total", [-1, 1.5, True])
def test_bad_total_is_named(total):
    with pytest.raises(ValueError, match="total"):
        progress.bar(total=total)
