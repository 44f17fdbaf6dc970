"""Schedules: equal to optax at 1,000 counts, traceable hyperparameters, clear errors.

Every reference case is built twice from the same arguments, once with
``lab.optim.schedules`` and once with ``optax.schedules`` (same names), and the
two are compared at counts 0..999 in float64 (rtol 1e-12).  optax's own code
mixes int counts with float constants, so it is evaluated under standard dtype
promotion; ours runs under the strict promotion that conftest.py enables.
"""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lab.optim import schedules as S
from tests.helpers import assert_tree_allclose

RTOL, ATOL = 1e-12, 1e-15
COUNTS = np.arange(1000)

SGDR_CYCLES = (
    dict(init_value=0.0, peak_value=1.0, warmup_steps=20, decay_steps=300),
    dict(init_value=0.5, peak_value=0.8, warmup_steps=0, decay_steps=400, end_value=0.1),
    dict(init_value=0.0, peak_value=0.4, warmup_steps=50, decay_steps=200, exponent=2.0),
)

# (id, build) where build(module) returns a schedule; module is ours or optax's.
CASES = [
    ("constant", lambda m: m.constant_schedule(0.3)),
    ("constant-array", lambda m: m.constant_schedule(jnp.asarray(2.5))),
    ("linear", lambda m: m.linear_schedule(1.0, 0.01, 100)),
    ("linear-begin", lambda m: m.linear_schedule(0.0, 1.0, 300, transition_begin=250)),
    ("linear-steps0", lambda m: m.linear_schedule(0.5, 2.0, 0)),
    ("poly-2", lambda m: m.polynomial_schedule(1.0, 0.01, 2, 100)),
    # T = 512: optax's 1 - s / T is exact only for power-of-two T (see test_deviations_from_optax)
    ("poly-half-begin", lambda m: m.polynomial_schedule(1.0, 0.1, 0.5, 512, transition_begin=200)),
    ("poly-steps-neg", lambda m: m.polynomial_schedule(2.0, 0.0, 3, -5)),
    ("exp", lambda m: m.exponential_decay(1.0, 100, 0.9)),
    ("exp-stair-begin", lambda m: m.exponential_decay(1.0, 50, 0.5, transition_begin=100, staircase=True)),
    ("exp-floor", lambda m: m.exponential_decay(1.0, 100, 0.5, end_value=0.2)),
    ("exp-grow-ceiling", lambda m: m.exponential_decay(0.1, 100, 1.5, transition_begin=10, end_value=0.5)),
    ("exp-stair-floor", lambda m: m.exponential_decay(1.0, 40, 0.8, staircase=True, end_value=0.3)),
    ("exp-rate1-clip", lambda m: m.exponential_decay(1.0, 100, 1.0, end_value=0.5)),
    ("exp-steps0", lambda m: m.exponential_decay(1.0, 0, 0.5, end_value=0.7)),
    ("pwc", lambda m: m.piecewise_constant_schedule(1.0, {100: 0.1, 200: 0.01})),
    ("pwc-unsorted", lambda m: m.piecewise_constant_schedule(0.5, {300: 2.0, 50: 0.5, 700: 0.0})),
    ("pwc-none", lambda m: m.piecewise_constant_schedule(1.5)),
    ("pwi-linear", lambda m: m.piecewise_interpolate_schedule("linear", 1.0, {100: 0.1, 400: 0.01})),
    ("pwi-cosine", lambda m: m.piecewise_interpolate_schedule("cosine", 2.0, {0: 1.0, 250: 0.5, 600: 3.0})),
    ("cos", lambda m: m.cosine_decay_schedule(1.0, 500)),
    ("cos-alpha-exp2", lambda m: m.cosine_decay_schedule(2.0, 800, alpha=0.1, exponent=2.0)),
    ("cos-exp-half", lambda m: m.cosine_decay_schedule(1.0, 1000, 0.0, 0.5)),
    ("wcos", lambda m: m.warmup_cosine_decay_schedule(0.0, 1.0, 100, 800)),
    ("wcos-end-exp2", lambda m: m.warmup_cosine_decay_schedule(0.1, 1.0, 50, 600, end_value=0.05, exponent=2.0)),
    ("wcos-peak0", lambda m: m.warmup_cosine_decay_schedule(0.2, 0.0, 10, 100, end_value=0.3)),
    ("wcos-nowarmup", lambda m: m.warmup_cosine_decay_schedule(0.5, 1.0, 0, 500)),
    ("wconst", lambda m: m.warmup_constant_schedule(0.0, 1.0, 100)),
    ("wexp", lambda m: m.warmup_exponential_decay_schedule(0.0, 1.0, 100, 50, 0.9)),
    ("wexp-all", lambda m: m.warmup_exponential_decay_schedule(
        0.0, 1.0, 100, 30, 0.5, transition_begin=200, staircase=True, end_value=0.1)),
    ("onecycle-lin", lambda m: m.linear_onecycle_schedule(1000, 1.0)),
    ("onecycle-lin-args", lambda m: m.linear_onecycle_schedule(
        600, 0.1, pct_start=0.2, pct_final=0.7, div_factor=10.0, final_div_factor=100.0)),
    ("onecycle-lin-start0", lambda m: m.linear_onecycle_schedule(999, 1.0, pct_start=0.0)),
    ("onecycle-cos", lambda m: m.cosine_onecycle_schedule(1000, 1.0)),
    ("onecycle-cos-args", lambda m: m.cosine_onecycle_schedule(500, 0.3, 0.1, 5.0, 50.0)),
    ("sgdr", lambda m: m.sgdr_schedule(SGDR_CYCLES)),
    ("sgdr-one", lambda m: m.sgdr_schedule(SGDR_CYCLES[1:2])),
    ("join", lambda m: m.join_schedules(
        [m.linear_schedule(0.0, 1.0, 100), m.cosine_decay_schedule(1.0, 400), m.constant_schedule(0.05)],
        [100, 500])),
]


def optax_values(build):
    with jax.numpy_dtype_promotion("standard"):
        return np.asarray(jax.jit(jax.vmap(build(optax.schedules)))(COUNTS))


@pytest.mark.parametrize("build", [c[1] for c in CASES], ids=[c[0] for c in CASES])
def test_equals_optax_at_1000_counts(build):
    expected = optax_values(build)
    ours = build(S)
    under_jit = jax.jit(ours)(jnp.asarray(COUNTS))
    under_vmap = jax.jit(jax.vmap(ours))(jnp.asarray(COUNTS))
    assert under_jit.dtype == jnp.float64 and under_jit.shape == (1000,)
    assert_tree_allclose(under_jit, expected, rtol=RTOL, atol=ATOL)
    assert_tree_allclose(under_vmap, expected, rtol=RTOL, atol=ATOL)
    # eager, Python-int counts, at a few points across the range
    for t in (0, 100, 999):
        assert_tree_allclose(ours(t), expected[t], rtol=RTOL, atol=ATOL, err_msg=f"count {t}")


def test_int32_and_float_counts_agree_with_int64():
    sched = S.warmup_cosine_decay_schedule(0.0, 1.0, 100, 800, end_value=0.1)
    ref = jax.jit(sched)(jnp.asarray(COUNTS))
    assert_tree_allclose(jax.jit(sched)(jnp.asarray(COUNTS, jnp.int32)), ref, rtol=RTOL, atol=ATOL)
    assert_tree_allclose(jax.jit(sched)(jnp.asarray(COUNTS, jnp.float64)), ref, rtol=RTOL, atol=ATOL)


def test_counter_convention():
    """count = updates done: schedule(0) is the first update's value, end reached at count T."""
    sched = S.linear_schedule(0.0, 1.0, transition_steps=10)
    assert float(sched(0)) == 0.0
    assert float(sched(9)) == pytest.approx(0.9, rel=1e-15)
    assert float(sched(10)) == 1.0 and float(sched(11)) == 1.0


def test_documented_optax_surprises():
    # end_value clips from count 0 (r < 1, E > I): the value is E everywhere.
    assert float(S.exponential_decay(1.0, 10, 0.5, end_value=2.0)(0)) == 2.0
    # r == 1 counts as growth, so E is a ceiling: E < I is returned from count 0.
    assert float(S.exponential_decay(1.0, 10, 1.0, end_value=0.5)(0)) == 0.5
    # peak 0 ignores end_value after warmup.
    assert float(S.warmup_cosine_decay_schedule(0.2, 0.0, 10, 100, end_value=0.3)(50)) == 0.0
    # alpha is a fraction of init_value.
    assert float(S.cosine_decay_schedule(2.0, 10, alpha=0.25)(10)) == 0.5
    # piecewise scales multiply and apply at the boundary itself.
    pwc = S.piecewise_constant_schedule(1.0, {5: 0.1, 10: 0.1})
    assert [float(pwc(t)) for t in (4, 5, 10)] == pytest.approx([1.0, 0.1, 0.01], rel=1e-15)
    # onecycle schedules are 0 for negative counts.
    assert float(S.cosine_onecycle_schedule(100, 1.0)(-1)) == 0.0


def test_deviations_from_optax_are_the_textbook_values():
    """Where optax rounds s / T badly we give the exact formula (both documented)."""
    t = np.arange(1000)
    # polynomial, power 0.5, T = 500: optax gives NaN for t >= 700 under jit.
    got = jax.jit(S.polynomial_schedule(1.0, 0.1, 0.5, 500, transition_begin=200))(jnp.asarray(t))
    s = np.clip(t - 200, 0, 500)
    assert_tree_allclose(got, 0.9 * np.sqrt((500 - s) / 500) + 0.1, rtol=RTOL, atol=ATOL)
    assert float(got[999]) == 0.1
    # staircase, T = 49: optax drops one count late at t = 49, 98, 147, ...
    got = jax.jit(S.exponential_decay(1.0, 49, 0.5, staircase=True))(jnp.asarray(t))
    assert_tree_allclose(got, 0.5 ** (t // 49), rtol=RTOL, atol=ATOL)
    assert float(got[48]) == 1.0 and float(got[49]) == 0.5


def test_float32_hyperparameters_keep_float32_under_strict_promotion():
    f32 = jnp.float32
    cases = [
        S.linear_schedule(f32(1.0), f32(0.0), 100),
        S.exponential_decay(f32(1.0), 10, f32(0.9), end_value=f32(0.1)),
        S.warmup_cosine_decay_schedule(f32(0.0), f32(1.0), 10, 100),
        S.linear_onecycle_schedule(100, f32(1.0)),
        S.constant_schedule(f32(0.5)),
    ]
    for sched in cases:
        out = jax.jit(sched)(jnp.arange(200, dtype=jnp.int32))
        assert out.dtype == jnp.float32 and out.shape == (200,)
    assert S.linear_schedule(1.0, 0.0, 100)(jnp.int32(3)).dtype == jnp.float64


# (id, build(v), values): v is a traced hyperparameter swept over values.
VALUES = (0.0, 0.5, 0.9, 1.3, 2.0)
POSITIVE = VALUES[1:]
TRACED = [
    ("constant", lambda v: S.constant_schedule(v), VALUES),
    ("linear-init", lambda v: S.linear_schedule(v, 0.01, 100, 20), VALUES),
    ("poly-power", lambda v: S.polynomial_schedule(1.0, 0.1, v, 300), VALUES),
    ("exp-rate-with-end", lambda v: S.exponential_decay(1.0, 50, v, end_value=0.6), POSITIVE),
    ("exp-init-stair", lambda v: S.exponential_decay(v, 50, 0.7, staircase=True, end_value=0.05), VALUES),
    ("pwc-scale", lambda v: S.piecewise_constant_schedule(1.0, {100: v, 400: 0.5}), VALUES),
    ("cos-alpha", lambda v: S.cosine_decay_schedule(1.0, 600, alpha=v), VALUES),
    ("wcos-peak", lambda v: S.warmup_cosine_decay_schedule(0.0, v, 100, 800, end_value=0.1), VALUES),
    ("wexp-peak", lambda v: S.warmup_exponential_decay_schedule(0.0, v, 50, 100, 0.9), VALUES),
    ("onecycle-lin-peak", lambda v: S.linear_onecycle_schedule(900, v), VALUES),
    ("onecycle-cos-div", lambda v: S.cosine_onecycle_schedule(900, 1.0, div_factor=20 * v), POSITIVE),
    ("sgdr-peak", lambda v: S.sgdr_schedule(
        [dict(init_value=0.0, peak_value=v, warmup_steps=10, decay_steps=300)] * 3), VALUES),
]


@pytest.mark.parametrize("build,values", [c[1:] for c in TRACED], ids=[c[0] for c in TRACED])
def test_vmap_over_traced_hyperparameter_equals_loop(build, values):
    counts = jnp.asarray(COUNTS)
    swept = jax.jit(jax.vmap(lambda v: build(v)(counts)))(jnp.asarray(values))
    looped = np.stack([np.asarray(build(v)(counts)) for v in values])
    assert swept.shape == (len(values), 1000)
    assert_tree_allclose(swept, looped, rtol=RTOL, atol=ATOL)


def test_new_hyperparameters_do_not_recompile():
    traces = []

    @jax.jit
    def value(init, peak, end, rate, count):
        traces.append(1)
        warm = S.warmup_cosine_decay_schedule(init, peak, 10, 100, end_value=end)
        decay = S.exponential_decay(peak, 20, rate, end_value=end)
        return warm(count) + decay(count)

    a = value(0.0, 1.0, 0.1, 0.5, 50)
    b = value(0.1, 2.0, 0.2, 1.5, 60)
    assert len(traces) == 1
    expected_b = (S.warmup_cosine_decay_schedule(0.1, 2.0, 10, 100, end_value=0.2)(60)
                  + S.exponential_decay(2.0, 20, 1.5, end_value=0.2)(60))
    assert_tree_allclose(b, expected_b, rtol=RTOL, atol=ATOL)
    assert float(a) != float(b)


BAD = [
    ("cos-steps0", lambda: S.cosine_decay_schedule(1.0, 0), "decay_steps"),
    ("cos-steps-neg", lambda: S.cosine_decay_schedule(1.0, -5), "decay_steps"),
    ("exp-rate0", lambda: S.exponential_decay(1.0, 10, 0.0), "decay_rate"),
    ("exp-rate-neg", lambda: S.exponential_decay(1.0, 10, jnp.asarray(-0.5)), "decay_rate"),
    ("exp-begin-neg", lambda: S.exponential_decay(1.0, 10, 0.5, transition_begin=-1), "transition_begin"),
    ("poly-begin-neg", lambda: S.polynomial_schedule(1.0, 0.0, 2, 10, transition_begin=-1), "transition_begin"),
    ("linear-begin-neg", lambda: S.linear_schedule(1.0, 0.0, 10, -3), "transition_begin"),
    ("pwc-neg-scale", lambda: S.piecewise_constant_schedule(1.0, {10: 0.5, 20: -0.1}), "boundaries_and_scales"),
    ("pwi-type", lambda: S.piecewise_interpolate_schedule("cubic", 1.0, {10: 0.5}), "interpolate_type"),
    ("pwi-neg-boundary", lambda: S.piecewise_interpolate_schedule("linear", 1.0, {-10: 0.5}),
     "boundaries_and_scales"),
    ("wcos-decay-le-warmup", lambda: S.warmup_cosine_decay_schedule(0.0, 1.0, 100, 100), "decay_steps"),
    ("wcos-warmup-neg", lambda: S.warmup_cosine_decay_schedule(0.0, 1.0, -1, 100), "warmup_steps"),
    ("wexp-warmup-neg", lambda: S.warmup_exponential_decay_schedule(0.0, 1.0, -1, 10, 0.5), "warmup_steps"),
    ("wexp-rate0", lambda: S.warmup_exponential_decay_schedule(0.0, 1.0, 10, 10, 0.0), "decay_rate"),
    ("lin1c-steps0", lambda: S.linear_onecycle_schedule(0, 1.0), "transition_steps"),
    ("lin1c-start-after-final", lambda: S.linear_onecycle_schedule(100, 1.0, 0.9, 0.5), "pct_start"),
    ("lin1c-final-1", lambda: S.linear_onecycle_schedule(100, 1.0, pct_final=1.0), "pct_final"),
    ("lin1c-div0", lambda: S.linear_onecycle_schedule(100, 1.0, div_factor=0.0), "div_factor"),
    ("cos1c-steps-neg", lambda: S.cosine_onecycle_schedule(-1, 1.0), "transition_steps"),
    ("cos1c-start-1", lambda: S.cosine_onecycle_schedule(100, 1.0, pct_start=1.0), "pct_start"),
    ("cos1c-final-div-neg", lambda: S.cosine_onecycle_schedule(100, 1.0, final_div_factor=-2.0),
     "final_div_factor"),
    ("join-lengths", lambda: S.join_schedules([S.constant(1.0), S.constant(2.0)], [5, 10]), "boundaries"),
    ("join-unsorted", lambda: S.join_schedules([S.constant(1.0)] * 3, [10, 5]), "non-decreasing"),
    ("join-empty", lambda: S.join_schedules([], []), "schedules"),
    ("sgdr-empty", lambda: S.sgdr_schedule([]), "cosine_kwargs"),
    ("sgdr-no-decay-steps", lambda: S.sgdr_schedule([dict(init_value=0.0, peak_value=1.0, warmup_steps=1)]),
     "decay_steps"),
]


@pytest.mark.parametrize("build,match", [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_input_raises_value_error_naming_it(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_aliases_are_the_long_names():
    pairs = {"constant": "constant_schedule", "linear": "linear_schedule", "polynomial": "polynomial_schedule",
             "piecewise_constant": "piecewise_constant_schedule", "cosine_decay": "cosine_decay_schedule",
             "warmup_cosine_decay": "warmup_cosine_decay_schedule",
             "warmup_exponential_decay": "warmup_exponential_decay_schedule",
             "linear_onecycle": "linear_onecycle_schedule", "cosine_onecycle": "cosine_onecycle_schedule",
             "sgdr": "sgdr_schedule", "join": "join_schedules"}
    for short, long in pairs.items():
        assert getattr(S, short) is getattr(S, long)
    assert sorted(S.__all__) == sorted(set(S.__all__))
    assert all(hasattr(S, name) for name in S.__all__)
