import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lab
from lab import data, losses, nets, optim, train
from studies import cli
from lab.optim.base import accepts_extra_args


def _problem():
    x, y = data.load_digits()
    x, y = x[:200], y[:200]
    net = nets.mlp([16, 10], activation="tanh")
    _, params = net.init(jax.random.key(0), (-1, 64))

    def loss_fn(p, xb, yb, _key):
        return losses.softmax_cross_entropy_with_integer_labels(net.apply(p, xb), yb)

    return net, params, loss_fn, x, y


def test_train_learns_and_reports_every_epoch():
    net, params, loss_fn, x, y = _problem()
    seen = []
    res = train.train(loss_fn, params, optim.adam(1e-2), x, y, key=jax.random.key(1), batch_size=20, epochs=4,
                      callback=lambda e, p, ls: seen.append((e, ls.shape)))
    assert seen == [(e, (10,)) for e in range(4)]
    assert res.step_losses.shape == (40,)
    assert res.step_losses[-5:].mean() < 0.5 * res.step_losses[:5].mean()
    acc = float(train.accuracy(net.apply(res.params, x), y))
    assert acc > 0.8


def test_train_is_deterministic_and_accepts_optax():
    _, params, loss_fn, x, y = _problem()
    runs = [train.train(loss_fn, params, opt, x, y, key=jax.random.key(3), batch_size=50, epochs=2)
            for opt in (optim.sgd(0.1, momentum=0.9), optim.sgd(0.1, momentum=0.9), optax.sgd(0.1, momentum=0.9))]
    np.testing.assert_array_equal(runs[0].step_losses, runs[1].step_losses)
    np.testing.assert_allclose(runs[0].step_losses, runs[2].step_losses, rtol=1e-5)


def test_train_refuses_nan_data_and_bad_epochs():
    _, params, loss_fn, x, y = _problem()
    with pytest.raises(ValueError, match="training data: x contains 1 NaN"):
        train.train(loss_fn, params, optim.sgd(0.1), x.at[0, 0].set(jnp.nan), y, key=jax.random.key(0),
                    batch_size=10, epochs=1)
    with pytest.raises(ValueError, match="epochs must be >= 1"):
        train.train(loss_fn, params, optim.sgd(0.1), x, y, key=jax.random.key(0), batch_size=10, epochs=0)
    with pytest.raises(ValueError, match=r"batch_size must lie in \[1, 200\]"):
        train.train(loss_fn, params, optim.sgd(0.1), x, y, key=jax.random.key(0), batch_size=500, epochs=1)


def test_accuracy():
    logits = jnp.array([[0.0, 1.0], [2.0, 1.0], [0.0, 3.0]])
    assert float(train.accuracy(logits, jnp.array([1, 0, 0]))) == pytest.approx(2 / 3)


def test_package_exports_every_module():
    for name in ("activations", "losses", "init", "nets", "backprop", "data", "optim", "train"):
        assert hasattr(lab, name), name
    assert lab.fit is train.train and lab.mlp is nets.mlp


def test_demo_command_writes_its_figure(tmp_path, capsys):
    assert cli.main(["demo", "--epochs", "2", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "epoch   2/2" in out and "final test accuracy" in out
    png = tmp_path / "digits_demo.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and (tmp_path / "digits_demo.svg").stat().st_size > 1000
    acc = float(out.split("final test accuracy ")[1].split(";")[0])
    assert acc > 0.8  # two epochs of Adam already classify most held-out digits


def test_demo_command_rejects_bad_epochs():
    with pytest.raises(SystemExit):
        cli.main(["demo", "--epochs", "0"])


def test_make_step_gives_newton_methods_the_batch_loss():
    # least squares on one batch: Newton with lr 1 lands on the batch's minimiser in one step
    x = jnp.asarray(np.random.default_rng(0).normal(size=(32, 4)))
    y = x @ jnp.arange(1.0, 5.0)

    def loss(w, xb, yb, key):
        return 0.5 * jnp.mean((xb @ w - yb) ** 2)

    sgd = optax.sgd(0.1)   # optax.sgd itself takes extra args; this transform's update does not
    plain = optax.GradientTransformation(sgd.init, lambda g, state, params=None: sgd.update(g, state, params))
    assert accepts_extra_args(optim.newton(1.0)) and accepts_extra_args(optax.sgd(0.1))
    assert not accepts_extra_args(plain)
    step = jax.jit(train.make_step(loss, optim.newton(1.0)))
    w, _, before = step(jnp.zeros(4), optim.newton(1.0).init(jnp.zeros(4)), x, y, jax.random.key(0))
    np.testing.assert_allclose(w, [1.0, 2.0, 3.0, 4.0], rtol=1e-10)
    assert float(before) > 1.0
    # a plain optax transform still gets the three-argument update
    w2, _, _ = train.make_step(loss, plain)(jnp.zeros(4), plain.init(jnp.zeros(4)), x, y, jax.random.key(0))
    assert float(loss(w2, x, y, None)) < float(before)


def test_fit_trains_full_batch_and_refuses_no_steps():
    a = jnp.diag(jnp.array([1.0, 0.1]))
    loss = lambda w: 0.5 * w @ (a @ w)  # noqa: E731
    w, values = train.fit(loss, jnp.ones(2), optim.sgd(1.0), 30)
    # GD on a diagonal quadratic: each coordinate shrinks by (1 - lr lambda) per step
    np.testing.assert_allclose(w, [0.0, 0.9 ** 30], atol=1e-12)
    assert values.shape == (30,) and float(values[0]) == 0.5 * 1.1
    with pytest.raises(ValueError, match="steps must be >= 1"):
        train.fit(loss, jnp.ones(2), optim.sgd(1.0), 0)
