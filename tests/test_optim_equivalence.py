"""Every lab optimizer against optax (or a textbook version), step for step.

A row of ``ROWS`` is (optimizer name, keyword arguments); the same arguments build the
lab optimizer and the reference (``SCHEDULE`` becomes one lab schedule given to both,
``TREE_MASK`` a pytree of bools for the problem's params).  Every optimizer has at
least three rows, including non-defaults (nesterov, centered, eps_root > 0, masks,
schedules).  Each row runs 200 steps on

(a) a mixed pytree (scalar, vector, matrix, nested dict) with fixed random gradients
    whose scales differ by 100x, in float64, and
(b) the full-batch gradients of a 64-16-10 tanh MLP on the first 256 digits, in
    float64 and float32,

and params and every state leaf are compared at every step (tolerances from
tests/helpers.py: 1e-10 relative in float64, 1e-5 in float32).  The reference is
optax's optimizer of the same name, except heavy_ball (an optax chain) and rprop (a
textbook iRprop-, since optax.rprop lags a step; see test_optim_properties.py).
optax mixes Python floats with int32 counts, so it runs under standard dtype
promotion; lab runs under the strict promotion that conftest.py enables.
"""
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax import lax

import lab.optim as lo
from lab.data import load_digits
from tests.helpers import assert_tree_allclose

STEPS = 200
SCHEDULE = "schedule"  # -> lab exponential_decay(0.01, 40, 0.5), for both libraries
TREE_MASK = "tree_mask"  # -> {leaf: leaf.ndim >= 2} for the problem's params


def matrices_only(params):
    return jax.tree.map(lambda x: x.ndim >= 2, params)


ROWS = [
    ("sgd", dict(learning_rate=0.05)),
    ("sgd", dict(learning_rate=0.05, momentum=0.9)),
    ("sgd", dict(learning_rate=SCHEDULE, momentum=0.9, nesterov=True)),
    ("heavy_ball", dict(learning_rate=0.1, beta=0.9)),
    ("heavy_ball", dict(learning_rate=0.05, beta=0.5)),
    ("heavy_ball", dict(learning_rate=SCHEDULE, beta=0.99)),
    ("adagrad", dict(learning_rate=0.1)),
    ("adagrad", dict(learning_rate=0.1, initial_accumulator_value=0.0, eps=1e-10)),
    ("adagrad", dict(learning_rate=SCHEDULE, initial_accumulator_value=1.0)),
    ("rmsprop", dict(learning_rate=0.01)),
    ("rmsprop", dict(learning_rate=0.01, centered=True)),
    ("rmsprop", dict(learning_rate=0.01, momentum=0.9, nesterov=True)),
    ("rmsprop", dict(learning_rate=SCHEDULE, centered=True, eps_in_sqrt=False,
                     bias_correction=True, momentum=0.5, initial_scale=0.1)),
    ("adadelta", dict(learning_rate=1.0)),
    ("adadelta", dict(learning_rate=0.5, rho=0.95, eps=1e-5, weight_decay=0.01)),
    ("adadelta", dict(learning_rate=SCHEDULE, weight_decay=0.1, weight_decay_mask=TREE_MASK)),
    ("adam", dict(learning_rate=0.01)),
    ("adam", dict(learning_rate=0.01, b1=0.5, b2=0.9, eps_root=1e-8)),
    ("adam", dict(learning_rate=SCHEDULE, nesterov=True, eps=1e-6)),
    ("adamw", dict(learning_rate=0.01)),
    ("adamw", dict(learning_rate=0.01, weight_decay=0.1, mask=TREE_MASK)),
    ("adamw", dict(learning_rate=SCHEDULE, weight_decay=0.05, mask=matrices_only, nesterov=True)),
    ("amsgrad", dict(learning_rate=0.01)),
    ("amsgrad", dict(learning_rate=0.01, eps_root=1e-8, bias_correction_nu=False)),
    ("amsgrad", dict(learning_rate=SCHEDULE, bias_correction_mu=False, b2=0.9)),
    ("adamax", dict(learning_rate=0.01)),
    ("adamax", dict(learning_rate=0.01, b1=0.5, b2=0.9, eps=1e-4)),
    ("adamax", dict(learning_rate=SCHEDULE)),
    ("nadam", dict(learning_rate=0.01)),
    ("nadam", dict(learning_rate=0.01, b1=0.8, eps_root=1e-8)),
    ("nadam", dict(learning_rate=SCHEDULE, b2=0.99)),
    ("nadamw", dict(learning_rate=0.01)),
    ("nadamw", dict(learning_rate=0.01, weight_decay=0.1, mask=TREE_MASK)),
    ("nadamw", dict(learning_rate=SCHEDULE, b1=0.5)),
    ("radam", dict(learning_rate=0.01)),
    ("radam", dict(learning_rate=0.01, threshold=6.0, eps_root=1e-8, b2=0.99)),
    ("radam", dict(learning_rate=SCHEDULE, nesterov=True)),
    ("adabelief", dict(learning_rate=0.01)),
    ("adabelief", dict(learning_rate=0.01, eps=1e-8, eps_root=1e-8, b1=0.5)),
    ("adabelief", dict(learning_rate=SCHEDULE, nesterov=True)),
    ("yogi", dict(learning_rate=0.01)),
    ("yogi", dict(learning_rate=0.01, b1=0.5, eps=1e-4)),
    ("yogi", dict(learning_rate=SCHEDULE, b2=0.9)),
    ("lion", dict(learning_rate=1e-3)),
    ("lion", dict(learning_rate=1e-3, b1=0.5, b2=0.9, weight_decay=0.0)),
    ("lion", dict(learning_rate=SCHEDULE, weight_decay=0.1, mask=TREE_MASK)),
    ("lamb", dict(learning_rate=0.01)),
    ("lamb", dict(learning_rate=0.01, weight_decay=0.1, mask=TREE_MASK, eps_root=1e-8)),
    ("lamb", dict(learning_rate=SCHEDULE, b1=0.5)),
    ("lars", dict(learning_rate=0.1)),
    ("lars", dict(learning_rate=0.1, weight_decay=0.01, trust_coefficient=0.01, nesterov=True,
                  weight_decay_mask=TREE_MASK)),
    ("lars", dict(learning_rate=SCHEDULE, trust_ratio_mask=matrices_only, momentum=0.5, eps=1e-8)),
    ("sign_sgd", dict(learning_rate=1e-3)),
    ("sign_sgd", dict(learning_rate=0.01)),
    ("sign_sgd", dict(learning_rate=SCHEDULE)),
    ("signum", dict(learning_rate=1e-3)),
    ("signum", dict(learning_rate=1e-3, beta=0.5)),
    ("signum", dict(learning_rate=SCHEDULE, beta=0.99)),
    ("rprop", dict(learning_rate=1e-3)),
    ("rprop", dict(learning_rate=1e-2, eta_minus=0.3, eta_plus=1.5)),
    ("rprop", dict(learning_rate=1e-3, min_step_size=1e-4, max_step_size=2e-3)),
    ("noisy_sgd", dict(learning_rate=0.01, key=0)),
    ("noisy_sgd", dict(learning_rate=0.01, eta=0.1, gamma=0.3, key=1)),
    ("noisy_sgd", dict(learning_rate=SCHEDULE, key=jax.random.key(2))),
    ("polyak_sgd", dict()),
    ("polyak_sgd", dict(max_learning_rate=0.1, f_min=0.1)),
    ("polyak_sgd", dict(scaling=SCHEDULE, eps=1e-3, variant="sps+")),
]


def optax_heavy_ball(learning_rate, beta=0.9):
    """heavy_ball is not in optax; this is the same chain written with optax blocks."""
    return optax.chain(optax.ema(beta, debias=False), optax.scale_by_learning_rate(learning_rate))


class RpropRefState(NamedTuple):
    step_sizes: dict
    prev_grads: dict  # the last gradient, zeroed where its sign flipped


def textbook_rprop(learning_rate, eta_minus=0.5, eta_plus=1.2, min_step_size=1e-6,
                   max_step_size=50.0):
    """iRprop- as in Igel & Huesken (2000), figure 1, per coordinate.  (optax.rprop returns
    the *previous* step's move, see test_optim_properties.py, so it is not the reference.)"""
    def init(params):
        return RpropRefState(jax.tree.map(lambda p: jnp.full_like(p, learning_rate), params),
                             jax.tree.map(jnp.zeros_like, params))

    def coordinate(g, step, g_prev):
        same, flip = jnp.sign(g) == jnp.sign(g_prev), jnp.sign(g) == -jnp.sign(g_prev)
        same, flip = same & (g != 0) & (g_prev != 0), flip & (g != 0)
        step = jnp.where(same, jnp.minimum(step * eta_plus, max_step_size),
                         jnp.where(flip, jnp.maximum(step * eta_minus, min_step_size), step))
        g = jnp.where(flip, jnp.zeros_like(g), g)
        return -jnp.sign(g) * step, step, g

    def update(grads, state, params=None, **extra):
        out = jax.tree.map(coordinate, grads, state.step_sizes, state.prev_grads)
        pick = lambda i: jax.tree.map(lambda _, o: o[i], grads, out)
        return pick(0), RpropRefState(pick(1), pick(2))

    return optax.GradientTransformation(init, update)


def rprop_state_view(state):
    """Our rprop state (step_sizes, prev_updates = step * sign(g)) from the textbook one."""
    moves = jax.tree.map(lambda s, g: s * jnp.sign(g), state.step_sizes, state.prev_grads)
    return (lo.ScaleByRpropState(state.step_sizes, moves), lo.EmptyState())


REFERENCES = {"heavy_ball": optax_heavy_ball, "rprop": textbook_rprop}  # else optax.<name>
STATE_VIEWS = {"rprop": rprop_state_view}  # reference state -> our layout; else identity


def reference(name):
    """The reference factory for ``name``: REFERENCES, else optax, else optax.contrib."""
    if name in REFERENCES:
        return REFERENCES[name]
    factory = getattr(optax, name, None) or getattr(optax.contrib, name, None)
    if factory is None:
        raise LookupError(f"no reference for {name!r} in REFERENCES, optax or optax.contrib")
    return factory


def build(library, name, kwargs, params):
    """The optimizer ``name`` from ``library`` (lab.optim, or any module holding lab
    optimizers, or optax, meaning :func:`reference`) with markers resolved.

    Both libraries get the same lab schedule: optax's own schedules compute in float32
    even under x64 (an int32 count divided by an int), so they cannot be compared at
    1e-10; lab's schedules are checked against optax's in tests/test_schedules.py."""
    def resolve(value):
        if value == SCHEDULE:
            return lo.exponential_decay(0.01, 40, 0.5)
        if value == TREE_MASK:
            return matrices_only(params)
        return value
    kwargs = {k: resolve(v) if isinstance(v, str) else v for k, v in kwargs.items()}
    if library is optax:
        return reference(name)(**kwargs)
    return getattr(library, name)(**kwargs)


# ------------------------------------------------------------------------- problems


@functools.lru_cache(maxsize=None)
def mixed_problem(dtype):
    """Params with a scalar, a vector, a matrix and a nested dict; STEPS steps of random
    gradients with per-leaf scales 0.1 .. 10, and random loss values for Polyak."""
    shapes = {"scalar": (), "vector": (5,), "matrix": (3, 4), "nested": {"deeper": {"m": (2, 2)}}}
    scales = {"scalar": 0.1, "vector": 1.0, "matrix": 10.0, "nested": {"deeper": {"m": 0.1}}}
    rng = np.random.default_rng(0)
    is_shape = lambda s: isinstance(s, tuple)
    params = jax.tree.map(lambda s: jnp.asarray(rng.standard_normal(s), dtype), shapes,
                          is_leaf=is_shape)
    grads = jax.tree.map(lambda s, c: jnp.asarray(c * rng.standard_normal((STEPS, *s)), dtype),
                         shapes, scales, is_leaf=is_shape)
    values = jnp.asarray(rng.uniform(0.5, 2.0, STEPS), dtype)

    def grad_fn(params, t):
        return jax.tree.map(lambda g: g[t], grads), values[t]

    return params, grad_fn


@functools.lru_cache(maxsize=None)
def mlp_problem(dtype):
    """A 64-16-10 tanh MLP with softmax cross-entropy on the first 256 digits, full batch."""
    x, y = load_digits()
    x, y = jnp.asarray(np.asarray(x[:256]), dtype), jnp.asarray(y[:256])
    rng = np.random.default_rng(1)
    params = {"w1": jnp.asarray(rng.standard_normal((64, 16)) / 8, dtype),
              "b1": jnp.zeros(16, dtype),
              "w2": jnp.asarray(rng.standard_normal((16, 10)) / 4, dtype),
              "b2": jnp.zeros(10, dtype)}

    def loss(p, x):
        logits = jnp.tanh(x @ p["w1"] + p["b1"][None]) @ p["w2"] + p["b2"][None]
        log_probs = logits - jax.nn.logsumexp(logits, axis=1, keepdims=True)
        return -jnp.mean(jnp.take_along_axis(log_probs, y[:, None], axis=1))

    def grad_fn(params, t):
        # Barriers stop XLA from merging the matmuls of different runs (they share x) or
        # fusing the gradient into its consumers, which would make runs round differently.
        params, x_own = lax.optimization_barrier((params, x))
        value, grads = jax.value_and_grad(loss)(params, x_own)
        return lax.optimization_barrier((grads, value))

    return params, grad_fn


PROBLEMS = {"mixed": mixed_problem, "mlp": mlp_problem}


def comparable_leaves(state):
    """State leaves with PRNG keys replaced by their key data."""
    return [jax.random.key_data(x) if jnp.issubdtype(x.dtype, jax.dtypes.prng_key) else x
            for x in jax.tree.leaves(state)]


# XLA options that cut CPU compile time about threefold; lab and optax get the same ones.
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_cpu_use_fusion_emitters": False}


# float64 on both problems; float32 on the MLP (its dtype handling on the mixed pytree
# is checked for every optimizer in test_optim_properties.py)
CASES = [("mixed", "float64"), ("mlp", "float64"), ("mlp", "float32")]


def run_rows(rows, library=lo, cases=None):
    """Run ``rows`` (the lab side built from ``library``) on every case in ``cases``
    (default CASES), lab and reference side by side, in one scan
    of STEPS steps (one compiled program per optimizer keeps the suite fast).  Returns
    ``{"problem/dtype": [per row (lab params, lab state leaves, ref params, ref state
    leaves in our layout)]}`` with every leaf stacked over the steps.

    On the MLP in float32 the reference steps from *our* params each step (same
    gradient, its own state).  XLA fuses the two equivalent computations differently,
    so they can differ in the last bit (a multiply-add that becomes an FMA in one of
    them), and float32 training dynamics amplify such differences a thousandfold
    within 60 steps whatever the optimizer code: stepped separately, the two updates
    agree bit for bit.  Everywhere else both trajectories run free.
    """
    view = STATE_VIEWS.get(rows[0][0], lambda state: state)
    setups = {}
    for problem, dtype in (CASES if cases is None else cases):
        params0, grad_fn = PROBLEMS[problem](jnp.dtype(dtype))
        ours = [build(library, name, kwargs, params0) for name, kwargs in rows]
        with jax.numpy_dtype_promotion("standard"):
            refs = [build(optax, name, kwargs, params0) for name, kwargs in rows]
        forced = problem == "mlp" and dtype == "float32"
        setups[f"{problem}/{dtype}"] = (params0, grad_fn, ours, refs, forced)

    def init():
        carry = {}
        for case, (params0, _, ours, refs, _) in setups.items():
            with jax.numpy_dtype_promotion("standard"):
                ref_states = [r.init(params0) for r in refs]
            carry[case] = [(params0, o.init(params0), params0, s) for o, s in zip(ours, ref_states)]
        return carry

    def step(carry, t):
        new_carry, record = {}, {}
        for case, (_, grad_fn, ours, refs, forced) in setups.items():
            new_carry[case], record[case] = [], []
            for opt, ref, (lp, ls, rp, rs) in zip(ours, refs, carry[case]):
                with jax.numpy_dtype_promotion("standard"):
                    grads, value = grad_fn(lp if forced else rp, t)
                    updates, rs = ref.update(grads, rs, lp if forced else rp, value=value)
                    rp = optax.apply_updates(lp if forced else rp, updates)
                grads, value = grad_fn(lp, t)
                updates, ls = opt.update(grads, ls, lp, value=value)
                lp = lo.apply_updates(lp, updates)
                new_carry[case].append((lp, ls, rp, rs))
                record[case].append((lp, comparable_leaves(ls), rp, comparable_leaves(view(rs))))
        return new_carry, record

    run = jax.jit(lambda: lax.scan(step, init(), jnp.arange(STEPS))[1],
                  compiler_options=FAST_COMPILE)
    return run()


NAMES = list(dict.fromkeys(name for name, _ in ROWS))


@pytest.mark.parametrize("name", NAMES)
def test_matches_optax_every_step(name):
    rows = [row for row in ROWS if row[0] == name]
    assert len(rows) >= 3
    for case, results in run_rows(rows).items():
        dtype = jnp.dtype(case.split("/")[1])
        for (_, kwargs), (lp, ls, rp, rs) in zip(rows, results):
            label = f"{name}({kwargs}) on {case}"
            assert jax.tree.map(lambda x: x.dtype, lp) == jax.tree.map(lambda x: dtype, lp), label
            assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(lp)), label
            assert len(ls) == len(rs), f"{label}: state has {len(ls)} leaves, reference {len(rs)}"
            # every leaf is stacked over the steps, so this compares every step
            assert_tree_allclose(lp, rp, err_msg=f"{label}: params")
            assert_tree_allclose(ls, rs, err_msg=f"{label}: state")
