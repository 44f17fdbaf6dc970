"""lab.protocol.spaces: distributions, search spaces as explicit config lists, one per optimizer."""
from __future__ import annotations

import inspect
import math

import jax.numpy as jnp
import numpy as np
import pytest

from lab import optim
from lab.protocol import sequences, spaces
from lab.protocol.spaces import Choice, LogUniform, OneMinus, SearchSpace, Uniform

U = np.array([0.0, 0.25, 0.5, 0.75, 0.999999])


# --------------------------------------------------------------------------- distributions


def test_distribution_transforms_by_hand():
    np.testing.assert_allclose(Uniform(-1.0, 3.0).transform(U), [-1.0, 0.0, 1.0, 2.0, 2.999996], rtol=1e-12)
    # LogUniform(1e-4, 1e-0): log10 uniform on [-4, 0], so u = 0.25 is 1e-3, u = 0.5 is 1e-2
    np.testing.assert_allclose(LogUniform(1e-4, 1.0).transform(U[:4]), [1e-4, 1e-3, 1e-2, 1e-1], rtol=1e-12)
    np.testing.assert_allclose(OneMinus(LogUniform(1e-3, 1e-1)).transform(np.array([0.0, 0.5])),
                               [0.999, 0.99], rtol=1e-12)
    # three values: [0, 1/3) -> first, [1/3, 2/3) -> second, [2/3, 1) -> third
    assert Choice((32, 64, 128)).transform(np.array([0.0, 0.33, 0.34, 0.66, 0.67, 0.999])) == [32, 32, 64, 64, 128, 128]
    assert Choice(["a"]).transform(np.array([0.9])) == ["a"]
    assert type(Choice((32, 64)).transform(np.array([0.7]))[0]) is int  # an int stays an int


def test_transforms_stay_in_range_at_the_ends():
    for dist in (LogUniform(1e-5, 1e-1), LogUniform(0.3, 0.7), Uniform(0.1, 0.2)):
        values = dist.transform(np.array([0.0, np.nextafter(1.0, 0.0)]))
        assert dist.low <= min(values) and max(values) <= dist.high
        assert values[0] == dist.low


# --------------------------------------------------------------------------- SearchSpace.sample


SPACE = SearchSpace({"learning_rate": LogUniform(1e-4, 1e-1), "b1": OneMinus(LogUniform(1e-2, 0.5)),
                     "warmup_fraction": Uniform(0.0, 0.1), "batch_size": Choice((64, 128))})


@pytest.mark.parametrize("method", spaces.METHODS)
def test_sample_is_a_list_of_configs(method):
    configs = SPACE.sample(32, seed=1, method=method)
    assert isinstance(configs, list) and len(configs) == 32
    for config in configs:
        assert list(config) == ["learning_rate", "b1", "warmup_fraction", "batch_size"]
        assert all(type(config[k]) is float for k in ("learning_rate", "b1", "warmup_fraction"))
        assert 1e-4 <= config["learning_rate"] <= 1e-1 and 0.5 <= config["b1"] <= 0.99
        assert 0.0 <= config["warmup_fraction"] <= 0.1 and config["batch_size"] in (64, 128)
    assert SPACE.sample(32, seed=1, method=method) == configs  # deterministic from the seed
    assert SPACE.sample(32, seed=2, method=method) != configs
    assert len({c["learning_rate"] for c in configs}) == 32


def test_sample_follows_the_sequence_points():
    # coordinate c of the scrambled Sobol point is knob c: log10(lr) = -4 + 3 u_0
    u = sequences.sobol(16, 4, seed=5)
    configs = SPACE.sample(16, seed=5)
    np.testing.assert_allclose([math.log10(c["learning_rate"]) for c in configs], -4 + 3 * u[:, 0], rtol=1e-12)
    np.testing.assert_allclose([c["warmup_fraction"] for c in configs], 0.1 * u[:, 2], rtol=1e-12)
    # the Sobol balance carries over: 2^k configs put one log-learning-rate in each of 2^k bins,
    # and a two-valued Choice gets each value exactly half the time
    configs = SPACE.sample(64, seed=9)
    bins = np.floor((np.log10([c["learning_rate"] for c in configs]) + 4) / 3 * 64 + 1e-9)
    np.testing.assert_array_equal(np.sort(bins), np.arange(64))
    assert sum(c["batch_size"] == 64 for c in configs) == 32


def test_restrict_and_replace():
    small = SPACE.restrict(["b1", "learning_rate"])
    assert small.knobs == ("b1", "learning_rate")
    fixed = SPACE.replace(batch_size=Choice((256,)), b1=OneMinus(Uniform(0.05, 0.1)))
    assert fixed.knobs == SPACE.knobs
    configs = fixed.sample(8, seed=0)
    assert {c["batch_size"] for c in configs} == {256}
    assert all(0.9 <= c["b1"] <= 0.95 for c in configs)
    assert SPACE.restrict("b1").knobs == ("b1",)


def test_spaces_beyond_sobol_dimensions_use_halton_or_random():
    wide = SearchSpace({f"k{i}": Uniform(0.0, 1.0) for i in range(sequences.MAX_SOBOL_DIM + 1)})
    with pytest.raises(ValueError, match="dim must be in"):
        wide.sample(4, seed=0)
    assert len(wide.sample(4, seed=0, method="halton")) == 4
    assert len(wide.sample(4, seed=0, method="random")) == 4


# --------------------------------------------------------------------------- the optimizer spaces


def test_at_least_eight_optimizers_named_as_lab_optim_names_them():
    assert len(spaces.SPACES) >= 8
    assert set(spaces.SPACES) <= set(optim.OPTIMIZERS) | set(optim.FRONTIER)
    assert {"sgd", "adamw"} <= set(spaces.SPACES)


def test_adamw_space_is_the_protocols():
    space = spaces.SPACES["adamw"]
    assert space["learning_rate"] == LogUniform(1e-4, 1e-1)
    assert space["weight_decay"] == LogUniform(1e-5, 1e-1)
    assert space["warmup_fraction"] == Uniform(0.0, 0.1)
    assert isinstance(space["b1"], OneMinus) and isinstance(space["b2"], OneMinus)
    assert space["b2"].of == LogUniform(1e-4, 1e-1)  # b2 in [0.9, 0.9999]
    assert spaces.SPACES["sgd"]["momentum"] == OneMinus(LogUniform(1e-3, 0.5))


@pytest.mark.parametrize("name", sorted(spaces.SPACES))
def test_every_knob_is_an_argument_of_its_optimizer(name):
    parameters = inspect.signature(getattr(optim, name)).parameters
    for knob in spaces.SPACES[name]:
        assert knob in parameters or knob in spaces.SCHEDULE_KNOBS, f"{name} has no argument {knob!r}"
    for config in spaces.search_space(name).sample(16, seed=0):
        for knob, value in config.items():
            assert math.isfinite(value) and value >= 0, (name, knob, value)
            if knob in ("b1", "b2", "beta", "momentum", "decay"):
                assert 0 < value < 1, (name, knob, value)


def quadratic(params):
    return sum(jnp.sum(leaf**2) for leaf in params.values())


@pytest.mark.parametrize("name", sorted(spaces.SPACES))
def test_sampled_configs_build_working_optimizers(name):
    # the explicit config list feeds lab.optim directly (schedule knobs aside): one update each
    config = spaces.search_space(name).sample(1, seed=3)[0]
    opt = getattr(optim, name)(**{k: v for k, v in config.items() if k not in spaces.SCHEDULE_KNOBS})
    params = {"w": jnp.ones((3, 2)), "b": jnp.full(2, 0.5)}
    extra = {"value_fn": quadratic} if name == "sophia" else {}
    updates, _ = opt.update(params, opt.init(params), params, **extra)
    assert all(bool(jnp.all(jnp.isfinite(u))) for u in updates.values())


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("make,error,match", [
    (lambda: Uniform(1.0, 1.0), ValueError, "empty range"),
    (lambda: Uniform(2.0, 1.0), ValueError, "inverted"),
    (lambda: LogUniform(1e-3, 1e-3), ValueError, "empty range"),
    (lambda: LogUniform(1e-1, 1e-3), ValueError, "inverted"),
    (lambda: LogUniform(0.0, 1.0), ValueError, "positive range"),
    (lambda: LogUniform(-1.0, 1.0), ValueError, "positive range"),
    (lambda: Uniform(float("nan"), 1.0), ValueError, "Uniform low must be finite"),
    (lambda: LogUniform(1e-3, float("inf")), ValueError, "LogUniform high must be finite"),
    (lambda: Uniform(True, 2.0), TypeError, "real number"),
    (lambda: Choice(()), ValueError, "empty"),
    (lambda: Choice((1, 2, 1)), ValueError, "repeats"),
    (lambda: Choice("abc"), TypeError, "sequence"),
    (lambda: OneMinus(Choice((0.1,))), TypeError, "Uniform or LogUniform"),
    (lambda: SearchSpace({}), ValueError, "at least one knob"),
    (lambda: SearchSpace({"lr": 0.1}), TypeError, "knob 'lr'"),
    (lambda: SearchSpace({"not a name": Uniform(0.0, 1.0)}), ValueError, "identifiers"),
    (lambda: SPACE.restrict(["learning_rate", "lr"]), ValueError, r"unknown knob\(s\) \['lr'\]"),
    (lambda: SPACE.replace(momentum=Uniform(0.0, 1.0)), ValueError, r"unknown knob\(s\) \['momentum'\]"),
    (lambda: spaces.search_space("adamm"), ValueError, "no search space for optimizer 'adamm'"),
    (lambda: SPACE.sample(0, seed=0), ValueError, "n must be a positive number of configs, got 0"),
    (lambda: SPACE.sample(-3, seed=0, method="random"), ValueError, "got -3"),
    (lambda: SPACE.sample(2.0, seed=0), TypeError, "n must be an integer"),
    (lambda: SPACE.sample(4, seed=0, method="grid"), ValueError, "unknown sampling method 'grid'"),
    (lambda: SPACE.sample(4, seed=-1, method="random"), ValueError, "seed must be a nonnegative"),
])
def test_bad_input_is_named(make, error, match):
    with pytest.raises(error, match=match):
        make()
