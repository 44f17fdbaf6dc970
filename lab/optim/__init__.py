"""lab.optim: optimizers as pairs of pure functions over pytrees (optax's contract).

    opt = lab.optim.adam(1e-3)
    state = opt.init(params)
    updates, state = opt.update(grads, state, params)
    params = lab.optim.apply_updates(params, updates)

Module map: :mod:`~lab.optim.base` (the contract, type aliases, validation),
:mod:`~lab.optim.transforms` (building blocks and combinators; the moment blocks are
defined in :mod:`~lab.optim.moments`),
:mod:`~lab.optim.scale_rules` (the adaptive methods' scaling rules),
:mod:`~lab.optim.aliases` and :mod:`~lab.optim.adam_family` (named first-order
optimizers), :mod:`~lab.optim.newton`, :mod:`~lab.optim.hessian_free`,
:mod:`~lab.optim.quasi_newton` and :mod:`~lab.optim.linesearch` (second-order methods,
whose ``update`` also takes the objective ``value_fn=``),
:mod:`~lab.optim.schedules` (``schedule(count) -> value``; defined in
:mod:`~lab.optim.basic_schedules` and :mod:`~lab.optim.composite_schedules`).
"""
from lab.optim.adam_family import (adabelief, adam, adamax, adamw, amsgrad, nadam, nadamw, radam,
                                   yogi)
from lab.optim.aliases import (adadelta, adagrad, heavy_ball, lamb, lars, lion, noisy_sgd,
                               polyak_sgd, rmsprop, rprop, sgd, sign_sgd, signum)
from lab.optim.base import (EmptyState, OptState, Optimizer, Params, ScalarOrSchedule, Schedule,
                            Updates, apply_updates, identity)
from lab.optim.hessian_free import adahessian, gauss_newton, newton_cg
from lab.optim.linesearch import backtracking_linesearch
from lab.optim.newton import damped_newton, newton, saddle_free_newton
from lab.optim.quasi_newton import bfgs, lbfgs
from lab.optim.scale_rules import (ScaleByAdaDeltaState, ScaleByAdamState, ScaleByAmsgradState,
                                   ScaleByLionState, ScaleByRpropState, scale_by_adadelta,
                                   scale_by_adam, scale_by_adamax, scale_by_amsgrad,
                                   scale_by_belief, scale_by_lion, scale_by_polyak,
                                   scale_by_radam, scale_by_rprop, scale_by_yogi)
from lab.optim.schedules import (constant_schedule, cosine_decay_schedule,
                                 cosine_onecycle_schedule, exponential_decay, join_schedules,
                                 linear_onecycle_schedule, linear_schedule,
                                 piecewise_constant_schedule, piecewise_interpolate_schedule,
                                 polynomial_schedule, sgdr_schedule, warmup_constant_schedule,
                                 warmup_cosine_decay_schedule, warmup_exponential_decay_schedule)
from lab.optim.transforms import (AddNoiseState, ApplyIfFiniteState, EmaState, MaskedNode,
                                  MaskedState, ScaleByRmsState, ScaleByRmsWithCountState,
                                  ScaleByRssState, ScaleByRStdDevState,
                                  ScaleByRStdDevWithCountState, ScaleByScheduleState, TraceState,
                                  WeightDecaySchedule, add_decayed_weights, add_noise,
                                  apply_if_finite, bias_correct, chain, clip, clip_by_global_norm,
                                  ema, masked, scale, scale_by_learning_rate, scale_by_rms,
                                  scale_by_rss, scale_by_schedule, scale_by_sign, scale_by_stddev,
                                  scale_by_trust_ratio, trace)

# the first-order optimizers, each with optax's name and signature where optax has it
OPTIMIZERS = (
    "sgd", "heavy_ball", "adagrad", "rmsprop", "adadelta", "adam", "adamw", "amsgrad", "adamax",
    "nadam", "nadamw", "radam", "adabelief", "yogi", "lion", "lamb", "lars", "sign_sgd", "signum",
    "rprop", "noisy_sgd", "polyak_sgd",
)

__all__ = [
    # contract
    "Optimizer", "Params", "Updates", "OptState", "Schedule", "ScalarOrSchedule", "EmptyState",
    "apply_updates", "identity", "OPTIMIZERS",
    # named optimizers
    *OPTIMIZERS,
    "newton", "damped_newton", "saddle_free_newton", "newton_cg", "gauss_newton", "adahessian",
    "bfgs", "lbfgs", "backtracking_linesearch",
    # building blocks and combinators
    "trace", "ema", "bias_correct", "scale_by_rss", "scale_by_rms", "scale_by_stddev", "scale",
    "scale_by_learning_rate", "scale_by_schedule", "scale_by_sign", "scale_by_trust_ratio",
    "add_decayed_weights", "add_noise", "clip", "clip_by_global_norm", "chain", "masked",
    "apply_if_finite", "MaskedNode",
    # scaling rules
    "scale_by_adam", "scale_by_amsgrad", "scale_by_adamax", "scale_by_adadelta",
    "scale_by_belief", "scale_by_yogi", "scale_by_radam", "scale_by_lion", "scale_by_rprop",
    "scale_by_polyak",
    # states
    "TraceState", "EmaState", "ScaleByRssState", "ScaleByRmsState", "ScaleByRmsWithCountState",
    "ScaleByRStdDevState", "ScaleByRStdDevWithCountState", "ScaleByScheduleState",
    "WeightDecaySchedule", "AddNoiseState", "MaskedState", "ApplyIfFiniteState",
    "ScaleByAdamState", "ScaleByAmsgradState", "ScaleByLionState", "ScaleByAdaDeltaState",
    "ScaleByRpropState",
    # schedules
    "constant_schedule", "linear_schedule", "polynomial_schedule", "exponential_decay",
    "piecewise_constant_schedule", "piecewise_interpolate_schedule", "cosine_decay_schedule",
    "warmup_constant_schedule", "warmup_cosine_decay_schedule",
    "warmup_exponential_decay_schedule", "linear_onecycle_schedule", "cosine_onecycle_schedule",
    "sgdr_schedule", "join_schedules",
]
