"""What one run draws and what a batch of runs costs, apart from the compiled program.

Contract.  :func:`run_keys` is the engine's key rule (a run's keys come from its seed
alone); :func:`batch_schedule` the host-side mini-batch order (a function of seed and
epoch alone, so any batch, chunk or device computes the same run); :func:`run_config` the
dict of knobs ``make_optimizer`` and a ``loss_config`` loss get; :func:`estimate_run_bytes`
and :func:`runs_per_device` how many runs one device computes at once.  Nothing here
compiles or touches a device's memory.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lab.sweep.spec import Problem


def is_key(x) -> bool:
    return jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)



# --------------------------------------------------------------------------- keys


class RunKeys(NamedTuple):
    """The keys of one run, all from its seed (:func:`run_keys`)."""
    seed_key: jax.Array

    @property
    def params(self) -> jax.Array:
        """The key ``Problem.init_params`` draws the run's initial parameters with."""
        return jax.random.fold_in(self.seed_key, 0)

    @property
    def steps(self) -> jax.Array:
        """The key the step keys come from: :meth:`step`."""
        return jax.random.fold_in(self.seed_key, 2)

    def step(self, t) -> jax.Array:
        """The key ``Problem.loss`` gets at step ``t`` (0-based)."""
        return jax.random.fold_in(self.steps, t)

    @property
    def sharpness(self) -> jax.Array:
        """The key of the Lanczos start vector of the opt-in ``sharpness`` metric."""
        return jax.random.fold_in(self.seed_key, 3)


def run_keys(seed) -> RunKeys:
    """The engine's keys for the run with ``seed`` (an integer in [0, 2**32), or a traced
    uint32): ``run_keys(s).params`` is the key its initial parameters were drawn with, so
    ``problem.init_params(run_keys(s).params)`` rebuilds them outside the engine."""
    return RunKeys(jax.random.key(seed))


# --------------------------------------------------------------------------- batches


def epoch_permutation(seed: int, epoch: int, n: int) -> np.ndarray:
    """A permutation of range(n) that depends only on (seed, epoch): the stable argsort of
    n raw PCG64 draws seeded by ``SeedSequence([seed, epoch])`` (both bit streams are
    fixed by NumPy's stability policy, unlike ``Generator.permutation``)."""
    bits = np.random.PCG64(np.random.SeedSequence([int(seed), int(epoch)])).random_raw(n)
    return np.argsort(bits, kind="stable").astype(np.int32)


def batch_schedule(seed: int, n: int, batch_size: int, start: int, length: int) -> np.ndarray:
    """Mini-batch indices of steps ``start .. start + length - 1``: an int32 (length, batch_size)
    array.  Epochs without replacement: epoch ``e`` is :func:`epoch_permutation` cut into
    ``n // batch_size`` batches (the ``n % batch_size`` left over are dropped, a different
    set each epoch), and step ``t`` belongs to epoch ``t // (n // batch_size)``."""
    per_epoch = n // batch_size
    first, last = start // per_epoch, (start + length - 1) // per_epoch
    rows = np.concatenate([epoch_permutation(seed, e, n)[:per_epoch * batch_size].reshape(per_epoch, batch_size)
                           for e in range(first, last + 1)])
    offset = start - first * per_epoch
    return rows[offset:offset + length].copy()   # not a view that keeps whole epochs alive


# --------------------------------------------------------------------------- memory


def tree_bytes(tree) -> int:
    return sum(math.prod(x.shape) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree)
               if not is_key(x)) + 8 * sum(math.prod(x.shape) for x in jax.tree.leaves(tree) if is_key(x))


def device_memory_budget(device) -> int:
    """Bytes the engine lets one call's run states use on ``device``: 40% of the
    accelerator's memory limit, or 1 GiB on a CPU (which shares memory with the host).
    The engine dispatches the next call before the running one is collected, so the next
    call's parameters and optimizer state (about a third of :func:`estimate_run_bytes`)
    wait beside it: the budget leaves room for that."""
    stats = None
    try:
        stats = device.memory_stats()
    except Exception:  # CPU and some plugins have no memory statistics
        stats = None
    if stats and stats.get("bytes_limit"):
        return int(0.4 * stats["bytes_limit"])
    return 1 << 30


def runs_per_device(run_bytes: int, device, *, cap: int | None = None) -> int:
    """How many runs one device computes at once: as many as fit the memory budget,
    at most ``cap`` (CPU default 16: bigger vmapped batches get slower per run as they
    outgrow a core's caches, the more so when every core runs a device; accelerators
    default 4096)."""
    if cap is None:
        cap = 16 if device.platform == "cpu" else 4096
    return int(max(1, min(cap, device_memory_budget(device) // max(run_bytes, 1))))


def run_config(static: dict, dynamic: tuple, hp) -> dict:
    """A run's knobs as ``make_optimizer`` (and a ``loss_config`` loss) get them: the group's
    static options, and each dynamic hyperparameter from ``hp`` (traced in the program)."""
    config = dict(static)
    config.update({name: hp[i] for i, name in enumerate(dynamic)})
    return config


def estimate_run_bytes(problem: Problem, make_optimizer, static: dict, dynamic: tuple) -> int:
    """Rough bytes one run needs while training: parameters, gradients, updates and the
    selected copies (5 parameter-sized trees), two optimizer states, and the batch."""
    float_dtype = jnp.result_type(float)

    def init(seed, hp):
        params = problem.init_params(jax.random.key(seed))
        return params, make_optimizer(run_config(static, dynamic, hp)).init(params)

    params, opt_state = jax.eval_shape(init, jax.ShapeDtypeStruct((), jnp.uint32),
                                       jax.ShapeDtypeStruct((len(dynamic),), float_dtype))
    x = np.shape(problem.x)
    batch = int(static["batch_size"]) * (math.prod(x[1:]) if len(x) > 1 else 1) * 4
    return 5 * tree_bytes(params) + 2 * tree_bytes(opt_state) + 4 * batch
