"""Checks shared by the optimizer test files (tests/test_optim_*.py), written once.

* a small problem: :func:`tree_params` (a scalar, a vector and a nested matrix),
  :func:`tree_loss`, and a scanned training loop (:func:`train`, :func:`trajectory`,
  :func:`last_step`);
* :func:`run_lanes`: lab optimizers and their references side by side in one scan, for
  the tables whose problems the harness of tests/test_optim_equivalence.py does not
  cover (objectives, forced references in float64); :func:`check_every_step` checks such
  a table's records, and ``run_rows``'s;
* :func:`assert_kept` and :func:`float_dtypes` (structure and dtypes kept),
  :func:`check_sweep` (a vmap over hyperparameters equals a loop and compiles once),
  :func:`check_inside_optax_chain` (a lab optimizer behind an optax block matches its
  optax twin there), :func:`bad_input_test` (a table of bad hyperparameters, one test).

Tolerances are tests/helpers.py's unless a check says otherwise.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax import lax

from lab.optim.base import apply_updates
from tests.helpers import assert_tree_allclose
from tests.test_optim_equivalence import FAST_COMPILE, STEPS, comparable_leaves

RANGE = "is outside its valid range"  # the message of every out-of-range hyperparameter

# ------------------------------------------------------------------ the small problem


def tree_params(dtype=jnp.float64):
    return {"s": jnp.asarray(1.5, dtype), "v": jnp.asarray([1.0, -2.0, 0.5], dtype),
            "nested": {"m": jnp.asarray([[0.3, -0.7], [1.1, 0.2]], dtype)}}


def tree_loss(p):
    return 0.5 * p["s"] ** 2 + jnp.sum(p["v"] ** 2) + jnp.sum(jnp.cos(p["nested"]["m"]))


def _scan(opt, params, steps, loss, keywords):
    """``(final (params, state), (every step's params, every step's updates))``."""
    offered = {"obj_fn": loss, "grad_fn": lambda p, i: jax.grad(loss)(p)}

    def step(carry, _):
        params, state = carry
        value, grads = jax.value_and_grad(loss)(params)
        extra = {k: value if k == "value" else offered[k] for k in keywords}
        updates, state = opt.update(grads, state, params, **extra)
        params = apply_updates(params, updates)
        return (params, state), (params, updates)

    return lax.scan(step, (params, opt.init(params)), None, length=steps)


def train(opt, params, steps, loss=tree_loss, keywords=("value",)):
    """``steps`` steps of ``opt`` on ``loss`` from ``params`` in a ``lax.scan``: the final
    ``(params, state)``.  ``update`` gets the keyword arguments named in ``keywords``:
    ``value`` (the loss at the params), ``obj_fn`` (the loss, as Sophia takes it),
    ``grad_fn`` (its gradient, as opaque SAM takes it)."""
    return _scan(opt, params, steps, loss, keywords)[0]


def trajectory(opt, params, steps, loss=tree_loss, keywords=("value",)):
    """:func:`train`, returning the params after every step, stacked."""
    return _scan(opt, params, steps, loss, keywords)[1][0]


def last_step(opt, params, steps=2, loss=tree_loss, keywords=("value",)):
    """:func:`train`, returning ``(updates, params, state)`` after its last step."""
    (params, state), (_, updates) = _scan(opt, params, steps, loss, keywords)
    return jax.tree.map(lambda u: u[-1], updates), params, state


def largest_change(stacked, base) -> float:
    """``max |x - base|`` over all leaves (and over the steps, for stacked leaves)."""
    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(b))))
               for x, b in zip(jax.tree.leaves(stacked), jax.tree.leaves(base)))


# ------------------------------------------------------------- side by side, scanned


class Lane(NamedTuple):
    """One lab optimizer and its reference on one problem, in :func:`run_lanes`."""

    case: str  # "problem/dtype": the key of the lane's record
    ours: Any  # the lab optimizer
    reference: Any  # its twin (run under standard promotion, as optax needs)
    params0: Any
    inputs: Callable  # (params, t) -> (grads, keyword arguments of update)
    forced: bool = False  # True: the reference steps from our params (its own state)


def _standard(fn, *args, **kwargs):
    with jax.numpy_dtype_promotion("standard"):
        return fn(*args, **kwargs)


def run_lanes(lanes, steps=STEPS, view=lambda state: state):
    """All ``lanes`` in one jitted scan of ``steps`` steps (one compiled program keeps the
    suite fast).  Returns ``{case: [per lane, in order: (lab params, lab state leaves,
    reference params, reference state leaves)]}``, every leaf stacked over the steps;
    ``view`` maps a reference state to the lab's layout first."""
    def one_step(lane, carry, t):
        ours, ours_state, theirs, theirs_state = carry
        start = ours if lane.forced else theirs
        grads, extra = _standard(lane.inputs, start, t)
        updates, theirs_state = _standard(lane.reference.update, grads, theirs_state, start,
                                          **extra)
        theirs = _standard(optax.apply_updates, start, updates)
        grads, extra = lane.inputs(ours, t)
        updates, ours_state = lane.ours.update(grads, ours_state, ours, **extra)
        return apply_updates(ours, updates), ours_state, theirs, theirs_state

    def step(carries, t):
        carries = [one_step(lane, carry, t) for lane, carry in zip(lanes, carries)]
        return carries, [(p, comparable_leaves(s), rp, comparable_leaves(view(rs)))
                         for p, s, rp, rs in carries]

    start = [(lane.params0, lane.ours.init(lane.params0), lane.params0,
              _standard(lane.reference.init, lane.params0)) for lane in lanes]
    records = jax.jit(lambda: lax.scan(step, start, jnp.arange(steps))[1],
                      compiler_options=FAST_COMPILE)()
    by_case = {}
    for lane, record in zip(lanes, records):
        by_case.setdefault(lane.case, []).append(record)
    return by_case


def check_every_step(rows, results, *, label=lambda row: f"{row[0]}({row[1]})", moved=1e-8,
                     also=None):
    """The records of ``run_rows`` or :func:`run_lanes` (``{case: [per row]}``, cases named
    "problem/dtype ..."): for every row, the params keep the case's dtype and stay finite,
    the state has as many leaves as the reference's, the params and every state leaf equal
    the reference's at every step, and the params moved (by more than ``moved`` at some
    step).  ``also(row, case, record, label)`` adds a check of its own."""
    for case, per_row in results.items():
        dtype = jnp.dtype(case.split("/")[1].split()[0])
        assert len(per_row) == len(rows), case
        for row, record in zip(rows, per_row):
            lp, ls, rp, rs = record
            where = f"{label(row)} on {case}"
            assert {x.dtype for x in jax.tree.leaves(lp)} == {dtype}, where
            assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(lp)), where
            assert len(ls) == len(rs), f"{where}: state has {len(ls)} leaves, reference {len(rs)}"
            assert_tree_allclose(lp, rp, err_msg=f"{where}: params")
            assert_tree_allclose(ls, rs, err_msg=f"{where}: state")
            change = largest_change(lp, jax.tree.map(lambda x: x[:1], lp))
            assert change > moved, f"{where}: the params hardly moved ({change:.3g})"
            if also is not None:
                also(row, case, record, where)


# ----------------------------------------------------------------------- properties


def float_dtypes(tree) -> set:
    """The dtypes of the floating leaves of ``tree``."""
    return {x.dtype for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.floating)}


def assert_kept(params, updates, new_params=None, label=""):
    """``updates`` (and ``new_params``) have the structure and the leaf dtypes of
    ``params`` and are finite; ``new_params`` moved away from ``params``."""
    trees = (updates,) if new_params is None else (updates, new_params)
    dtypes = jax.tree.map(lambda x: x.dtype, params)
    for tree in trees:
        assert jax.tree.structure(tree) == jax.tree.structure(params), label
        assert jax.tree.map(lambda x: x.dtype, tree) == dtypes, label
        assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(tree)), label
    if new_params is not None:
        assert largest_change(new_params, params) > 0, f"{label}: the params did not move"


def check_sweep(run, *values, rtol=None):
    """``run(*hyperparameters) -> pytree`` swept by ``jax.vmap`` over ``values`` (arrays of
    one length): the sweep equals a loop of jitted single runs, neither retraces for new
    values (the sweep is called again with them reversed, and gives its results
    reversed), and the first and last results differ.  Returns the sweep."""
    traces = []

    def traced(*hyperparameters):
        traces.append(None)  # runs only while tracing
        return run(*hyperparameters)

    sweep = jax.jit(jax.vmap(traced), compiler_options=FAST_COMPILE)
    one = jax.jit(traced, compiler_options=FAST_COMPILE)
    swept = sweep(*values)
    reversed_ = sweep(*(v[::-1] for v in values))
    looped = jax.tree.map(lambda *xs: jnp.stack(xs), *[one(*h) for h in zip(*values)])
    assert len(traces) == 2, f"{len(traces)} traces: hyperparameters must be data"
    assert_tree_allclose(swept, looped, rtol=rtol)
    assert_tree_allclose(reversed_, jax.tree.map(lambda x: x[::-1], swept), rtol=rtol)
    first, last = (jax.tree.map(lambda x, i=i: x[i], swept) for i in (0, -1))
    assert largest_change(first, last) > 0, "the sweep gave one result for all values"
    return swept


def check_factories_sweep(factories, *values, steps=20):
    """:func:`check_sweep` of ``steps`` steps of :func:`train` on the small problem, for
    every ``make(*hyperparameters) -> optimizer`` in the dict ``factories`` at once."""
    params = tree_params()
    return check_sweep(lambda *hyper: {name: train(make(*hyper), params, steps)[0]
                                       for name, make in factories.items()}, *values)


def check_inside_optax_chain(pairs, params=None, loss=tree_loss, steps=30, keywords=("value",)):
    """Each ``(ours, theirs)`` behind ``optax.clip_by_global_norm(1.0)`` in an
    ``optax.chain``: after ``steps`` steps of :func:`train` the params and every state
    leaf are equal, and the params moved."""
    params = tree_params() if params is None else params
    chained = lambda opt: optax.chain(optax.clip_by_global_norm(1.0), opt)  # noqa: E731

    def run():
        return [(train(chained(ours), params, steps, loss, keywords),
                 _standard(train, chained(theirs), params, steps, loss, keywords))
                for ours, theirs in pairs]

    for i, ((pa, sa), (pb, sb)) in enumerate(jax.jit(run, compiler_options=FAST_COMPILE)()):
        assert_tree_allclose(pa, pb, err_msg=f"pair {i}: params")
        assert_tree_allclose(comparable_leaves(sa), comparable_leaves(sb),
                             err_msg=f"pair {i}: state")
        assert largest_change(pa, params) > 1e-6, f"pair {i}: the params did not move"


def bad_input_test(table, error=ValueError):
    """A test over ``table``, rows ``(factory, kwargs, message)``: ``factory(**kwargs)``
    raises ``error`` with a message matching the regular expression ``message``.  Assign
    it to a ``test_...`` name in the test module."""
    @pytest.mark.parametrize("factory,kwargs,message", table,
                             ids=[f"{i}-{m[:32]}" for i, (_, _, m) in enumerate(table)])
    def test(factory, kwargs, message):
        with pytest.raises(error, match=message):
            factory(**kwargs)

    return test
