"""lab: a JAX functional optimization laboratory.

Everything is a pure function over plain pytrees.  Module map:

* :mod:`lab.activations` — activation functions, ``get(name)``
* :mod:`lab.losses`      — batch-mean losses and the L2 penalty
* :mod:`lab.init`        — weight initializers ``init(key, shape, dtype)``
* :mod:`lab.nets`        — layers as ``(init, apply)`` pairs, ``serial``, builders (mlp, cnn, rnn, lstm, ...)
* :mod:`lab.backprop`    — a hand-written forward/backward pass for an MLP
* :mod:`lab.data`        — synthetic problems, the digits data set, splits and batching
* :mod:`lab.optim`       — hand-written optimizers and schedules, optax-compatible; Newton family
* :mod:`lab.curvature`   — Hessian-vector products, Lanczos eigenvalues, traces, spectral densities
* :mod:`lab.train`       — the training step and loop
* :mod:`lab.sweep`       — vmapped, multi-device, resumable sweeps (``run_sweep``)
* :mod:`lab.store`       — the SQLite results database
* :mod:`lab.plotting`    — the figure style (imported on demand: it loads matplotlib)
"""
from lab import activations, backprop, curvature, data, init, losses, nets, optim, store, sweep, train
from lab.data import load_digits
from lab.nets import Layer, mlp, serial
from lab.optim import apply_updates
from lab.train import train as fit
from lab.version import __version__

__all__ = ["activations", "backprop", "curvature", "data", "init", "losses", "nets", "optim", "store", "sweep", "train",
           "load_digits", "Layer", "mlp", "serial", "apply_updates", "fit", "__version__"]
