"""K-FAC for networks of :mod:`lab.nets` Dense layers, without layer tagging.

Contract: :func:`kfac` is given the network and the loss when it is built; its update
takes the batch as keyword arguments (the convention of :mod:`lab.optim.newton`, whose
``value_fn`` it replaces)::

    opt = kfac(net=net, loss=lab.losses.softmax_cross_entropy_with_integer_labels)
    value, grads = jax.value_and_grad(lambda p: loss(net.apply(p, x), y))(params)
    updates, state = opt.update(grads, state, params, inputs=x, targets=y, value=value)

``net`` is a :class:`lab.nets.Layer` (``serial`` of Dense layers and parameter-free
layers such as activations, possibly nested or with ``Residual``) and ``loss(outputs,
targets) -> scalar`` the batch mean of a per-example loss (the :mod:`lab.losses`
contract).  ``value`` (optional) is the loss at ``params``.  Inputs are ``(N, features)``.
The step is ``u = -lr Delta`` (``p <- p + u``); the state is one NamedTuple.  The
learning rate, damping, its bounds and factor ``omega`` and the factor decay are data;
the net, the loss, the Fisher estimator, the refresh period and ``adaptive`` are static.

Capture.  The layers are found from the params: each ``{'w': (in, out)[, 'b': (out,)]}``
dict is a Dense layer; every other layer must have no params (``()``), otherwise
``init``/``update`` raise ValueError.  To read a Dense layer's input ``a`` and the
gradient ``g`` at its pre-activation ``z = a W + b``, K-FAC runs ``net.apply`` with each
weight replaced by a stand-in that, when the layer computes ``a @ w``, records ``a`` and
returns ``a @ W + e`` with ``e = 0``; the cotangent of ``e`` is ``g`` (the perturbation
trick), one backward pass for all layers.  Parameter-free layers are assumed to act on
each example separately.
"""
from __future__ import annotations

from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp

from lab import losses
from lab.optim.base import (Optimizer, ScalarOrSchedule, apply_updates, cast_like, check_hyper,
                            check_hypers, check_static_int, check_structure, safe_increment,
                            tree_vdot, zero_count)
from lab.optim.newton import learning_rate_at
from lab.optim.kronecker import refresh_every

FISHERS = ("sampled", "exact", "empirical")


# ------------------------------------------------------------------ the predictive


def _categorical(key, logits):
    return jax.random.categorical(key, logits, axis=-1)


def _one_hot_categorical(key, logits):
    return jax.nn.one_hot(_categorical(key, logits), logits.shape[-1], dtype=logits.dtype)


def _gaussian(key, mean):  # ||p - t||^2 is -log N(t; p, I/2) up to a constant
    return mean + cast_like(0.5 ** 0.5, mean) * jax.random.normal(key, mean.shape, mean.dtype)


def _bernoulli(key, logits):
    return jax.random.bernoulli(key, jax.nn.sigmoid(logits)).astype(logits.dtype)


# target samplers ``(key, outputs) -> targets`` of the lab losses that are negative
# log-likelihoods, for fisher="sampled"
SAMPLERS = {
    losses.softmax_cross_entropy_with_integer_labels: _categorical,
    losses.softmax_cross_entropy: _one_hot_categorical,
    losses.mse: _gaussian,
    losses.binary_cross_entropy_with_logits: _bernoulli,
}


# ------------------------------------------------------------------ finding layers


class DenseLayer(NamedTuple):
    path: tuple  # indices into the nested params tuples ((), for a bare Dense)
    has_bias: bool
    shape: tuple[int, int]  # (in, out) of 'w'


def dense_layers(params, where: str = "kfac") -> tuple[DenseLayer, ...]:
    """The Dense layers of a params tree, in tree order; ValueError for any other layer."""
    found = []

    def visit(node, path):
        if isinstance(node, (tuple, list)):
            for i, child in enumerate(node):
                visit(child, path + (i,))
            return
        if isinstance(node, dict) and set(node) in ({"w"}, {"w", "b"}):
            w, b = jnp.shape(node["w"]), jnp.shape(node.get("b", jnp.zeros(0)))
            if len(w) == 2 and ("b" not in node or b == (w[1],)):
                found.append(DenseLayer(path, "b" in node, w))
                return
        shapes = jax.tree.map(jnp.shape, node)
        raise ValueError(
            f"{where}: the layer at params{list(path)} has params {shapes}; K-FAC handles "
            "Dense layers ({'w': (in, out), 'b': (out,)}) and layers without params only")

    visit(params, ())
    if not found:
        raise ValueError(f"{where}: the params hold no Dense layer")
    return tuple(found)


def _get(tree, path):
    for i in path:
        tree = tree[i]
    return tree


def _replace(tree, path, value):
    if not path:
        return value
    items = list(tree)
    items[path[0]] = _replace(tree[path[0]], path[1:], value)
    return tuple(items)


class _DenseTap:
    """Stands in for a Dense weight: ``a @ tap`` records ``a`` and returns ``a @ w + e``."""

    def __init__(self, w, e, record: list, where: str):
        self.w, self.e, self.record, self.where = w, e, record, where
        self.shape, self.dtype, self.ndim = w.shape, w.dtype, w.ndim

    def __rmatmul__(self, a):
        if a.ndim != 2 or a.shape[0] != self.e.shape[0]:
            raise ValueError(f"{self.where}: a Dense layer received an input of shape "
                             f"{a.shape}; K-FAC needs (N, features) with N = {self.e.shape[0]}")
        self.record.append(a)
        return a @ self.w + self.e


def capture(net, params, layers, inputs, where: str = "kfac"):
    """``(outputs, vjp, inputs_per_layer)``: ``vjp(c)`` maps an output cotangent ``c``
    (shaped like the outputs) to the pre-activation cotangents ``J_z^T c``, one
    ``(N, out)`` array per Dense layer; ``inputs_per_layer`` holds each ``a``, ``(N, in)``."""
    n = inputs.shape[0]

    def forward(es):
        records = [[] for _ in layers]
        tapped = params
        for layer, e, record in zip(layers, es, records):
            weights = dict(_get(params, layer.path))
            weights["w"] = _DenseTap(weights["w"], e, record, where)
            tapped = _replace(tapped, layer.path, weights)
        outputs = net.apply(tapped, inputs)
        if any(len(r) != 1 for r in records):
            calls = [len(r) for r in records]
            raise ValueError(f"{where}: the net applied its Dense layers {calls} times "
                             f"(layers at {[list(l.path) for l in layers]}); K-FAC needs each "
                             "applied once, as Dense(...) inside serial(...) does")
        return outputs, tuple(r[0] for r in records)

    zeros = tuple(jnp.zeros((n, layer.shape[1]), _get(params, layer.path)["w"].dtype)
                  for layer in layers)
    outputs, vjp, acts = jax.vjp(forward, zeros, has_aux=True)
    return outputs, (lambda c: vjp(c)[0]), acts


def output_cotangents(fisher: str, loss, outputs, targets, key, sampler):
    """``(R, N, d)`` cotangents ``c`` with ``E[g g^T] = (1/N) sum_{r, i} J_i^T c c^T J_i``.

    ``exact``: the columns of ``C_i = V_i sqrt(max(w_i, 0))`` from ``H_i = V_i diag(w_i)
    V_i^T``, the Hessian of the per-example loss in the outputs (``J^T H J`` is the
    Gauss-Newton block, and the Fisher for these likelihoods); ``sampled``: the
    per-example gradient ``N d loss / d outputs`` at targets drawn from the model;
    ``empirical``: the same at the true targets."""
    n = outputs.shape[0]
    if fisher == "exact":
        def hessian(o, t):
            return jax.hessian(lambda q: loss(q[None], t[None]))(o)

        h = jax.vmap(hessian)(outputs, targets)  # (N, ..., d, ..., d) per-example Hessians
        d = outputs[0].size
        w, v = jnp.linalg.eigh(h.reshape(n, d, d))
        root = v * jnp.sqrt(jnp.maximum(w, jnp.zeros_like(w)))[:, None, :]  # (N, d, R = d)
        return jnp.moveaxis(root, 2, 0).reshape((d,) + outputs.shape)
    if fisher == "sampled":
        targets = sampler(key, jax.lax.stop_gradient(outputs))
    per_example = cast_like(n, outputs) * jax.grad(loss)(outputs, targets)
    return per_example[None]


# ------------------------------------------------------------------------- K-FAC


class KfacState(NamedTuple):
    count: jax.Array  # (), int32: steps taken
    key: Optional[jax.Array]  # PRNG key for the sampled targets (None unless sampled)
    damping: jax.Array  # (), lambda for the next step
    rho: jax.Array  # (), reduction ratio of the last step (0 until measured)
    a_factors: tuple  # per Dense layer: A = E[abar abar^T], (in [+ 1], in [+ 1])
    g_factors: tuple  # per Dense layer: G = E[g g^T], (out, out)
    a_eigen: tuple  # per Dense layer: (eigenvalues, eigenvectors) of A at the last refresh
    g_eigen: tuple  # per Dense layer: (eigenvalues, eigenvectors) of G at the last refresh


def kfac(learning_rate: ScalarOrSchedule = 1.0, damping=1e-2, decay=0.95,
         omega=(20 / 19) ** 5, min_damping=1e-8, max_damping=1e8, *, net, loss: Callable,
         fisher: str = "sampled", key: Optional[jax.Array] = None,
         sample_targets: Optional[Callable] = None, adaptive: bool = True,
         precondition_frequency: int = 1) -> Optimizer:
    """K-FAC: ``u = -lr Delta`` with, for each Dense layer (``Wbar = [W; b]``, the bias
    as the last row, ``abar = [a, 1]``)::

        A = E[abar abar^T],  G = E[g g^T],  pi = sqrt((tr A / dim A) / (tr G / dim G)),
        Delta = (A + pi sqrt(lambda) I)^{-1} grad_Wbar (G + sqrt(lambda) / pi I)^{-1}

    (the factored Tikhonov damping of sec. 6.3, in the row layout ``z = a W + b`` where
    the block is ``A kron G``).  ``E`` averages over the batch; ``A`` and ``G`` are kept as
    averages over steps with weight ``eps_k = min(1 - 1/k, decay)`` on the old value at step
    ``k`` (M&G's online estimates, so step 1 uses the batch alone).  ``g = d ell_i / d z_i`` with targets drawn from the
    model's predictive distribution (``fisher="sampled"``, M&G's estimator; needs ``key``
    and a sampler: built in for the lab losses in ``SAMPLERS``, else ``sample_targets(key,
    outputs) -> targets``), the exact expectation over that distribution, ``G = E[J^T H J]``
    (``"exact"``: the Kronecker factors of the Gauss-Newton blocks), or the true targets
    (``"empirical"``).  The eigendecompositions of ``A`` and ``G`` are refreshed every
    ``precondition_frequency`` steps (static; M&G's ``T_3``), the damping applied to the
    eigenvalues at every step.

    With ``adaptive=True`` (static) ``lambda`` follows the Levenberg-Marquardt rule of sec.
    6.5 after every step: ``rho = (h(p + u) - h(p)) / (g^T u + u^T F u / 2)``, with ``F``
    the exact Gauss-Newton matrix of the batch (``lambda`` left out of the model, as
    kfac-jax does by default); ``lambda <- omega lambda`` if ``rho < 1/4`` (or NaN),
    ``lambda <- lambda / omega`` if ``rho > 3/4``, kept in ``[min_damping, max_damping]``.
    The default ``omega = (20/19)^5`` is M&G's factor for adjusting every ``T_1 = 5`` steps.
    M&G's step rescaling and momentum by the quadratic model (sec. 6.4, 7) are not done.

    Reference: Martens & Grosse, *Optimizing neural networks with Kronecker-factored
    approximate curvature*, ICML 2015."""
    where = "kfac"
    check_hypers(where, learning_rate=learning_rate, decay=decay)
    check_hyper(where, "damping", damping, "(0, inf)")
    check_hyper(where, "omega", omega, "[1, inf)")
    check_hyper(where, "min_damping", min_damping, "(0, inf)")
    check_hyper(where, "max_damping", max_damping, "(0, inf)")
    check_static_int(where, "precondition_frequency", precondition_frequency, 1)
    if fisher not in FISHERS:
        raise ValueError(f"{where}: fisher must be one of {FISHERS}, got {fisher!r}")
    if not callable(getattr(net, "apply", None)):
        raise ValueError(f"{where}: net must be a lab.nets Layer, got {type(net).__name__}")
    sampler = sample_targets or SAMPLERS.get(loss)
    if fisher == "sampled":
        if sampler is None:
            raise ValueError(f"{where}: fisher='sampled' draws targets from the model; pass "
                             "sample_targets=(key, outputs) -> targets, or use one of the lab "
                             f"losses {[f.__name__ for f in SAMPLERS]}")
        if key is None:
            raise ValueError(f"{where}: fisher='sampled' needs key=jax.random.key(...)")

    def eigen(matrix):
        eigenvalues, eigenvectors = jnp.linalg.eigh(matrix)
        return eigenvalues, eigenvectors

    def init(params):
        layers = dense_layers(params, where)
        dtype = jnp.asarray(jax.tree.leaves(params)[0]).dtype
        a_dims = [layer.shape[0] + layer.has_bias for layer in layers]
        a_factors = tuple(jnp.zeros((k, k), dtype) for k in a_dims)
        g_factors = tuple(jnp.zeros((layer.shape[1],) * 2, dtype) for layer in layers)

        def identity(f):
            return jnp.ones(f.shape[0], dtype), jnp.eye(f.shape[0], dtype=dtype)

        return KfacState(count=zero_count(), key=key if fisher == "sampled" else None,
                         damping=jnp.asarray(damping, dtype), rho=jnp.zeros([], dtype),
                         a_factors=a_factors, g_factors=g_factors,
                         a_eigen=tuple(map(identity, a_factors)),
                         g_eigen=tuple(map(identity, g_factors)))

    def update(grads, state, params=None, *, inputs=None, targets=None, value=None, **extra):
        if params is None or inputs is None or targets is None:
            raise TypeError(f"{where}.update needs the batch: call update(grads, state, "
                            "params, inputs=x, targets=y)")
        check_structure(where, grads, params=params)
        layers = dense_layers(params, where)
        inputs = jnp.asarray(inputs)
        count = safe_increment(state.count)
        next_key, sample_key = (jax.random.split(state.key) if fisher == "sampled"
                                else (None, None))

        # statistics of this batch: abar abar^T and g g^T, averaged over the examples
        outputs, vjp, acts = capture(net, params, layers, inputs, where)
        cotangents = output_cotangents(fisher, loss, outputs, targets, sample_key, sampler)
        pre_grads = jax.vmap(vjp)(cotangents)  # per layer: (R, N, out)
        n = inputs.shape[0]
        old = jnp.minimum(1 - 1 / count.astype(state.damping.dtype),
                          cast_like(decay, state.damping))  # M&G's eps_k
        a_factors, g_factors = [], []
        for layer, a, g, fa, fg in zip(layers, acts, pre_grads, state.a_factors,
                                       state.g_factors):
            if layer.has_bias:
                a = jnp.concatenate([a, jnp.ones((n, 1), a.dtype)], axis=1)
            a_batch = a.T @ a / cast_like(n, a)
            g_batch = jnp.einsum("rni,rnj->ij", g, g) / cast_like(n, g)
            a_factors.append(cast_like(old, fa) * fa + cast_like(1 - old, fa) * a_batch)
            g_factors.append(cast_like(old, fg) * fg + cast_like(1 - old, fg) * g_batch)
        a_factors, g_factors = tuple(a_factors), tuple(g_factors)
        a_eigen, g_eigen = refresh_every(
            precondition_frequency, state.count,
            lambda ops: (tuple(map(eigen, ops[0])), tuple(map(eigen, ops[1]))),
            lambda ops: (ops[2], ops[3]), (a_factors, g_factors, state.a_eigen, state.g_eigen))

        lam = state.damping
        updates = params
        lr = learning_rate_at(learning_rate, state.count)
        for layer, ea, eg in zip(layers, a_eigen, g_eigen):
            grad = _get(grads, layer.path)
            delta = factored_solve(grad, ea, eg, lam)
            step = {name: -cast_like(lr, d) * d for name, d in delta.items()}
            updates = _replace(updates, layer.path, step)

        rho = state.rho
        if adaptive:
            rho = reduction_ratio(net, loss, params, grads, updates, inputs, targets, value)
            rho = rho.astype(lam.dtype)
            factor = cast_like(omega, lam)
            lam = jnp.where(rho > 0.75, lam / factor, jnp.where(rho >= 0.25, lam, lam * factor))
            lam = jnp.clip(lam, cast_like(min_damping, lam), cast_like(max_damping, lam))
        return updates, KfacState(count=count, key=next_key, damping=lam, rho=rho,
                                  a_factors=a_factors, g_factors=g_factors, a_eigen=a_eigen,
                                  g_eigen=g_eigen)

    return Optimizer(init, update)


def factored_solve(grad: dict, a_eigen, g_eigen, damping) -> dict:
    """``(A + pi gamma I)^{-1} grad_Wbar (G + gamma / pi I)^{-1}``, ``gamma = sqrt(damping)``,
    from the eigendecompositions ``A = Q_A diag(e_A) Q_A^T`` and ``G = Q_G diag(e_G) Q_G^T``;
    returned as ``{'w': (in, out)[, 'b': (out,)]}``."""
    w = grad["w"]
    gbar = jnp.concatenate([w, grad["b"][None, :]], axis=0) if "b" in grad else w
    (ea, qa), (eg, qg) = a_eigen, g_eigen
    ea, eg = jnp.maximum(ea, jnp.zeros_like(ea)), jnp.maximum(eg, jnp.zeros_like(eg))
    mean_a, mean_g = jnp.mean(ea), jnp.mean(eg)
    positive = (mean_a > 0) & (mean_g > 0)
    pi = jnp.where(positive, jnp.sqrt(mean_a / jnp.where(positive, mean_g, 1)), 1)
    gamma = jnp.sqrt(cast_like(damping, ea))
    scale = (ea + pi * gamma)[:, None] * (eg + gamma / pi)[None, :]
    delta = qa @ ((qa.T @ gbar.astype(qa.dtype) @ qg) / scale) @ qg.T
    out = {"w": delta[:w.shape[0]].astype(w.dtype)}
    if "b" in grad:
        out["b"] = delta[-1].astype(grad["b"].dtype)
    return out


def reduction_ratio(net, loss, params, grads, updates, inputs, targets, value=None):
    """``rho = (h(p + u) - h(p)) / (g^T u + u^T F u / 2)``, ``F`` the Gauss-Newton matrix of
    ``h = loss(net.apply(., inputs), targets)`` at ``p`` (``u^T F u`` from one forward-mode
    pass of the net and a second derivative of the loss along ``J u``)."""
    def value_fn(p):
        return loss(net.apply(p, inputs), targets)

    before = value_fn(params) if value is None else jnp.asarray(value)
    after = value_fn(apply_updates(params, updates))
    outputs, ju = jax.jvp(lambda p: net.apply(p, inputs), (params,), (updates,))

    def slope(o):
        return jax.jvp(lambda q: loss(q, targets), (o,), (ju,))[1]

    curvature = jax.jvp(slope, (outputs,), (ju,))[1]  # (J u)^T H_L (J u)
    predicted = tree_vdot(grads, updates) + curvature.astype(before.dtype) / 2
    return (after - before) / predicted.astype(before.dtype)
