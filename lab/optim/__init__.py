"""lab.optim: optimizers as pairs of pure functions over pytrees (optax's contract).

    opt = lab.optim.adam(1e-3)
    state = opt.init(params)
    updates, state = opt.update(grads, state, params)
    params = lab.optim.apply_updates(params, updates)

Module map: :mod:`~lab.optim.base` (the contract, type aliases, validation, and the
tree and mixed-dtype helpers every module shares),
:mod:`~lab.optim.transforms` (building blocks and combinators; the moment blocks are
defined in :mod:`~lab.optim.moments`),
:mod:`~lab.optim.scale_rules` (the adaptive methods' scaling rules),
:mod:`~lab.optim.aliases` and :mod:`~lab.optim.adam_family` (named first-order
optimizers), :mod:`~lab.optim.newton`, :mod:`~lab.optim.hessian_free`,
:mod:`~lab.optim.quasi_newton` and :mod:`~lab.optim.linesearch` (second-order methods,
whose ``update`` also takes the objective ``value_fn=``),
:mod:`~lab.optim.schedules` (``schedule(count) -> value``; defined in
:mod:`~lab.optim.basic_schedules` and :mod:`~lab.optim.composite_schedules`).

The methods of current research, each equal to its ``optax.contrib`` twin:
:mod:`~lab.optim.averaging` (schedule-free SGD and AdamW, and the parameters to evaluate
them at), :mod:`~lab.optim.lr_free` (Prodigy, D-Adaptation AdamW, Mechanic),
:mod:`~lab.optim.parameter_free` (DoG, DoWG, COCOB), :mod:`~lab.optim.adam_variants`
(ADOPT, AdEMAMix, MADGRAD), :mod:`~lab.optim.orthogonal` (Muon: orthogonalised updates of
matrices) and :mod:`~lab.optim.sharpness` (SAM, Sophia).  Structured second-order
methods with no optax twin, each equal to a dense float64 reference in the tests:
:mod:`~lab.optim.kronecker` (Shampoo and SOAP for matrix leaves, grafted onto Adam or SGD)
and :mod:`~lab.optim.natural_gradient` (K-FAC for the dense layers of a :mod:`lab.nets` network,
found without layer tags; its ``update`` also takes ``inputs=`` and ``targets=``).
"""
from lab.optim.adam_family import (adabelief, adam, adamax, adamw, amsgrad, nadam, nadamw, radam,
                                   yogi)
from lab.optim.adam_variants import (MadgradState, ScaleByAdemamixState,
                                     ScaleBySimplifiedAdEMAMixState, ademamix, adopt, madgrad,
                                     scale_by_ademamix, scale_by_adopt, scale_by_madgrad,
                                     scale_by_simplified_ademamix, simplified_ademamix)
from lab.optim.aliases import (adadelta, adagrad, heavy_ball, lamb, lars, lion, noisy_sgd,
                               polyak_sgd, rmsprop, rprop, sgd, sign_sgd, signum)
from lab.optim.averaging import (ScheduleFreeState, schedule_free, schedule_free_adamw,
                                 schedule_free_eval_params, schedule_free_sgd)
from lab.optim.base import (EmptyState, OptState, Optimizer, Params, ScalarOrSchedule, Schedule,
                            Updates, apply_updates, identity)
from lab.optim.hessian_free import adahessian, gauss_newton, newton_cg
from lab.optim.natural_gradient import KfacState, kfac
from lab.optim.linesearch import backtracking_linesearch
from lab.optim.lr_free import (DAdaptAdamWState, MechanicState, ProdigyState, dadapt_adamw,
                               mechanize, prodigy)
from lab.optim.orthogonal import (MuonDimensionNumbers, MuonState, muon,
                                  orthogonalize_via_newton_schulz, scale_by_muon, scale_by_shape)
from lab.optim.newton import damped_newton, newton, saddle_free_newton
from lab.optim.parameter_free import (COCOBState, DoGState, DoWGState, cocob, dog, dowg,
                                      scale_by_cocob, scale_by_dog, scale_by_dowg)
from lab.optim.quasi_newton import bfgs, lbfgs
from lab.optim.scale_rules import (ScaleByAdaDeltaState, ScaleByAdamState, ScaleByAmsgradState,
                                   ScaleByLionState, ScaleByRpropState, scale_by_adadelta,
                                   scale_by_adam, scale_by_adamax, scale_by_amsgrad,
                                   scale_by_belief, scale_by_lion, scale_by_polyak,
                                   scale_by_radam, scale_by_rprop, scale_by_yogi)
from lab.optim.kronecker import ShampooState, SoapState, inverse_root, shampoo, soap
from lab.optim.sharpness import (HutchinsonState, SAMState, SophiaState,
                                 hutchinson_estimator_diag_hessian, normalize, sam,
                                 scale_by_sophia, sharpness_aware, sophia)
from lab.optim.schedules import (constant_schedule, cosine_decay_schedule,
                                 cosine_onecycle_schedule, exponential_decay, join_schedules,
                                 linear_onecycle_schedule, linear_schedule,
                                 piecewise_constant_schedule, piecewise_interpolate_schedule,
                                 polynomial_schedule, sgdr_schedule, warmup_constant_schedule,
                                 warmup_cosine_decay_schedule, warmup_exponential_decay_schedule)
from lab.optim.transforms import (AddNoiseState, ApplyIfFiniteState, EmaState, MaskedNode,
                                  MaskedState, PartitionState, ScaleByRmsState,
                                  ScaleByRmsWithCountState, ScaleByRssState, ScaleByRStdDevState,
                                  ScaleByRStdDevWithCountState, ScaleByScheduleState, TraceState,
                                  WeightDecaySchedule, add_decayed_weights, add_noise,
                                  apply_if_finite, bias_correct, chain, clip, clip_by_global_norm,
                                  ema, masked, partition, scale, scale_by_learning_rate,
                                  scale_by_rms, scale_by_rss, scale_by_schedule, scale_by_sign,
                                  scale_by_stddev, scale_by_trust_ratio, trace)

# the first-order optimizers, each with optax's name and signature where optax has it
OPTIMIZERS = (
    "sgd", "heavy_ball", "adagrad", "rmsprop", "adadelta", "adam", "adamw", "amsgrad", "adamax",
    "nadam", "nadamw", "radam", "adabelief", "yogi", "lion", "lamb", "lars", "sign_sgd", "signum",
    "rprop", "noisy_sgd", "polyak_sgd",
)
# the methods of current research, each with optax.contrib's name and signature
FRONTIER = (
    "schedule_free_sgd", "schedule_free_adamw", "prodigy", "dadapt_adamw", "dog", "dowg", "cocob",
    "adopt", "ademamix", "simplified_ademamix", "madgrad", "muon", "sophia", "sam",
)

__all__ = [
    # contract
    "Optimizer", "Params", "Updates", "OptState", "Schedule", "ScalarOrSchedule", "EmptyState",
    "apply_updates", "identity", "OPTIMIZERS", "FRONTIER",
    # named optimizers
    *OPTIMIZERS, *FRONTIER, "sharpness_aware", "schedule_free", "schedule_free_eval_params",
    "mechanize",
    "newton", "damped_newton", "saddle_free_newton", "newton_cg", "gauss_newton", "adahessian",
    "bfgs", "lbfgs", "backtracking_linesearch", "shampoo", "soap", "kfac", "inverse_root",
    # building blocks and combinators
    "trace", "ema", "bias_correct", "scale_by_rss", "scale_by_rms", "scale_by_stddev", "scale",
    "scale_by_learning_rate", "scale_by_schedule", "scale_by_sign", "scale_by_trust_ratio",
    "add_decayed_weights", "add_noise", "clip", "clip_by_global_norm", "chain", "masked",
    "apply_if_finite", "MaskedNode",
    # scaling rules
    "scale_by_adam", "scale_by_amsgrad", "scale_by_adamax", "scale_by_adadelta",
    "scale_by_belief", "scale_by_yogi", "scale_by_radam", "scale_by_lion", "scale_by_rprop",
    "scale_by_polyak", "scale_by_dog", "scale_by_dowg", "scale_by_cocob", "scale_by_adopt",
    "scale_by_ademamix", "scale_by_simplified_ademamix", "scale_by_madgrad", "scale_by_muon",
    "scale_by_shape", "orthogonalize_via_newton_schulz", "partition", "normalize",
    "scale_by_sophia", "hutchinson_estimator_diag_hessian", "MuonDimensionNumbers",
    # states
    "TraceState", "EmaState", "ScaleByRssState", "ScaleByRmsState", "ScaleByRmsWithCountState",
    "ScaleByRStdDevState", "ScaleByRStdDevWithCountState", "ScaleByScheduleState",
    "WeightDecaySchedule", "AddNoiseState", "MaskedState", "ApplyIfFiniteState",
    "ScaleByAdamState", "ScaleByAmsgradState", "ScaleByLionState", "ScaleByAdaDeltaState",
    "ScaleByRpropState", "DoGState", "DoWGState", "COCOBState", "ScaleByAdemamixState",
    "ScaleBySimplifiedAdEMAMixState", "MadgradState", "MuonState", "PartitionState", "SAMState",
    "SophiaState", "HutchinsonState", "ScheduleFreeState", "ProdigyState", "DAdaptAdamWState",
    "MechanicState", "ShampooState", "SoapState", "KfacState",
    # schedules
    "constant_schedule", "linear_schedule", "polynomial_schedule", "exponential_decay",
    "piecewise_constant_schedule", "piecewise_interpolate_schedule", "cosine_decay_schedule",
    "warmup_constant_schedule", "warmup_cosine_decay_schedule",
    "warmup_exponential_decay_schedule", "linear_onecycle_schedule", "cosine_onecycle_schedule",
    "sgdr_schedule", "join_schedules",
]
