"""Named optimizers, part 1: SGD and momentum, sign methods, AdaGrad/RMSProp/AdaDelta,
layer-wise trust-ratio methods, Lion, Rprop, noisy and Polyak SGD.

Contract: each function returns an :class:`~lab.optim.base.Optimizer` built as a short
:func:`~lab.optim.transforms.chain` of building blocks, with optax's name, argument
names and defaults, and the same chain layout as optax (so the states correspond leaf
by leaf).  ``learning_rate`` may be a float, an array (also a tracer) or a schedule
``count -> lr``.  The update rule is written for one coordinate; ``p`` is a parameter,
``g`` its gradient, and every method ends with ``p <- p + u``.  The Adam family is in
:mod:`lab.optim.adam_family`.
"""
from __future__ import annotations

from lab.optim.base import Optimizer, ScalarOrSchedule, check_hypers, identity
from lab.optim.scale_rules import (scale_by_adadelta, scale_by_adam, scale_by_lion,
                                   scale_by_polyak, scale_by_rprop)
from lab.optim.transforms import (add_decayed_weights, add_noise, chain, ema, masked, scale,
                                  scale_by_learning_rate, scale_by_rms, scale_by_rss,
                                  scale_by_sign, scale_by_stddev, scale_by_trust_ratio, trace)


def sgd(learning_rate: ScalarOrSchedule, momentum=None, nesterov: bool = False,
        accumulator_dtype=None) -> Optimizer:
    """Stochastic gradient descent: ``u_t = -lr g_t``; with momentum
    ``v_t = g_t + momentum v_{t-1}`` and ``u_t = -lr v_t`` (heavy ball) or
    ``u_t = -lr (g_t + momentum v_t)`` (Nesterov).

    References: Robbins & Monro, 1951; Polyak, 1964; Sutskever et al., ICML 2013."""
    check_hypers("sgd", learning_rate=learning_rate, momentum=momentum)
    accelerate = identity() if momentum is None else trace(momentum, nesterov, accumulator_dtype)
    return chain(accelerate, scale_by_learning_rate(learning_rate))


def heavy_ball(learning_rate: ScalarOrSchedule, beta=0.9) -> Optimizer:
    """Heavy ball in EMA form: ``v_t = beta v_{t-1} + (1 - beta) g_t``; ``u_t = -lr v_t``.
    Equals ``sgd(lr (1 - beta), momentum=beta)`` step for step.

    Reference: Polyak, *Some methods of speeding up the convergence of iteration methods*, 1964."""
    check_hypers("heavy_ball", learning_rate=learning_rate, beta=beta)
    return chain(ema(beta, debias=False), scale_by_learning_rate(learning_rate))


def sign_sgd(learning_rate: ScalarOrSchedule) -> Optimizer:
    """signSGD: ``u_t = -lr sign(g_t)``.  Reference: Bernstein et al., *signSGD*, ICML 2018."""
    check_hypers("sign_sgd", learning_rate=learning_rate)
    return chain(scale_by_sign(), scale_by_learning_rate(learning_rate))


def signum(learning_rate: ScalarOrSchedule, beta=0.9, accumulator_dtype=None) -> Optimizer:
    """Signum: ``m_t = beta m_{t-1} + (1 - beta) g_t``; ``u_t = -lr sign(m_t)``.

    Reference: Bernstein et al., *signSGD*, ICML 2018, Algorithm 2."""
    check_hypers("signum", learning_rate=learning_rate, beta=beta)
    return chain(ema(beta, debias=False, accumulator_dtype=accumulator_dtype), scale_by_sign(),
                 scale_by_learning_rate(learning_rate))


def adagrad(learning_rate: ScalarOrSchedule, initial_accumulator_value=0.1, eps=1e-7) -> Optimizer:
    """AdaGrad: ``s_t = s_{t-1} + g_t^2`` (``s_0 = initial_accumulator_value``);
    ``u_t = -lr g_t / sqrt(s_t + eps)``.

    Reference: Duchi, Hazan & Singer, *Adaptive subgradient methods*, JMLR 2011."""
    check_hypers("adagrad", learning_rate=learning_rate,
                 initial_accumulator_value=initial_accumulator_value, eps=eps)
    return chain(scale_by_rss(initial_accumulator_value, eps),
                 scale_by_learning_rate(learning_rate))


def rmsprop(learning_rate: ScalarOrSchedule, decay=0.9, eps=1e-8, initial_scale=0.0,
            eps_in_sqrt: bool = True, centered: bool = False, momentum=None,
            nesterov: bool = False, bias_correction: bool = False) -> Optimizer:
    """RMSProp: ``v_t = decay v_{t-1} + (1 - decay) g_t^2``; ``d_t = g_t / sqrt(v_t + eps)``
    (``centered``: ``/ sqrt(v_t - m_t^2 + eps)`` with ``m_t`` the EMA of ``g``);
    ``u_t = -lr d_t``, then optional (Nesterov) momentum on ``u``: ``w_t = u_t + momentum w_{t-1}``.

    References: Hinton, lecture 6e, 2012; Graves, 2013 (centred form)."""
    check_hypers("rmsprop", learning_rate=learning_rate, decay=decay, eps=eps,
                 initial_scale=initial_scale, momentum=momentum)
    rule = scale_by_stddev if centered else scale_by_rms
    return chain(rule(decay=decay, eps=eps, initial_scale=initial_scale, eps_in_sqrt=eps_in_sqrt,
                      bias_correction=bias_correction),
                 scale_by_learning_rate(learning_rate),
                 identity() if momentum is None else trace(momentum, nesterov))


def adadelta(learning_rate=None, rho=0.9, eps=1e-6, weight_decay=0.0,
             weight_decay_mask=None) -> Optimizer:
    """AdaDelta: ``E[g^2]_t = rho E[g^2]_{t-1} + (1 - rho) g_t^2``;
    ``d_t = sqrt(E[d^2]_{t-1} + eps) / sqrt(E[g^2]_t + eps) g_t``; ``u_t = -lr d_t``
    (``g`` includes ``weight_decay * p``).  ``learning_rate=None`` means 1, as in the paper.
    (optax's ``learning_rate=None`` skips the sign flip and so *ascends*.)

    Reference: Zeiler, *ADADELTA: an adaptive learning rate method*, 2012."""
    check_hypers("adadelta", learning_rate=learning_rate, rho=rho, eps=eps,
                 weight_decay=weight_decay)
    return chain(add_decayed_weights(weight_decay, mask=weight_decay_mask),
                 scale_by_adadelta(rho=rho, eps=eps),
                 scale_by_learning_rate(1.0 if learning_rate is None else learning_rate))


def lion(learning_rate: ScalarOrSchedule, b1=0.9, b2=0.99, mu_dtype=None, weight_decay=1e-3,
         mask=None) -> Optimizer:
    """Lion: ``u_t = -lr (sign((1 - b1) g_t + b1 m_{t-1}) + wd p_t)``;
    ``m_t = b2 m_{t-1} + (1 - b2) g_t``.

    Reference: Chen et al., *Symbolic discovery of optimization algorithms*, NeurIPS 2023."""
    check_hypers("lion", learning_rate=learning_rate, b1=b1, b2=b2, weight_decay=weight_decay)
    return chain(scale_by_lion(b1=b1, b2=b2, mu_dtype=mu_dtype),
                 add_decayed_weights(weight_decay, mask), scale_by_learning_rate(learning_rate))


def lars(learning_rate: ScalarOrSchedule, weight_decay=0.0, weight_decay_mask=True,
         trust_coefficient=0.001, eps=0.0, trust_ratio_mask=True, momentum=0.9,
         nesterov: bool = False) -> Optimizer:
    """LARS: per leaf ``d = g + wd p``, ``d <- d * tc ||p|| / (||d|| + eps)``;
    ``u = -lr d``, then momentum on ``u``: ``v_t = u_t + momentum v_{t-1}``, step ``v_t``.

    Reference: You, Gitman & Ginsburg, *Large batch training of convolutional networks*, 2017."""
    check_hypers("lars", learning_rate=learning_rate, weight_decay=weight_decay,
                 trust_coefficient=trust_coefficient, eps=eps, momentum=momentum)
    return chain(add_decayed_weights(weight_decay, mask=weight_decay_mask),
                 masked(scale_by_trust_ratio(trust_coefficient=trust_coefficient, eps=eps),
                        trust_ratio_mask),
                 scale_by_learning_rate(learning_rate), trace(decay=momentum, nesterov=nesterov))


def lamb(learning_rate: ScalarOrSchedule, b1=0.9, b2=0.999, eps=1e-6, eps_root=0.0,
         weight_decay=0.0, mask=None) -> Optimizer:
    """LAMB: per leaf ``d = m_hat / (sqrt(v_hat + eps_root) + eps) + wd p`` (Adam moments),
    ``u = -lr d ||p|| / ||d||``.

    Reference: You et al., *Large batch optimization for deep learning: training BERT in
    76 minutes*, ICLR 2020."""
    check_hypers("lamb", learning_rate=learning_rate, b1=b1, b2=b2, eps=eps, eps_root=eps_root,
                 weight_decay=weight_decay)
    return chain(scale_by_adam(b1=b1, b2=b2, eps=eps, eps_root=eps_root),
                 add_decayed_weights(weight_decay=weight_decay, mask=mask),
                 scale_by_trust_ratio(), scale_by_learning_rate(learning_rate))


def rprop(learning_rate, eta_minus=0.5, eta_plus=1.2, min_step_size=1e-6,
          max_step_size=50.0) -> Optimizer:
    """Rprop (iRprop-): per coordinate, the step grows by ``eta_plus`` while ``g`` keeps its
    sign and shrinks by ``eta_minus`` when it flips (that step is then skipped);
    ``u_t = -step_t sign(g_t)``.  Step sizes start at ``learning_rate``.

    Reference: Riedmiller & Braun, ICNN 1993; Igel & Huesken, 2000."""
    check_hypers("rprop", learning_rate=learning_rate, eta_minus=eta_minus, eta_plus=eta_plus,
                 min_step_size=min_step_size, max_step_size=max_step_size)
    return chain(scale_by_rprop(learning_rate, eta_minus, eta_plus, min_step_size, max_step_size),
                 scale(-1.0))


def noisy_sgd(learning_rate: ScalarOrSchedule, eta=0.01, gamma=0.55, key=None) -> Optimizer:
    """SGD with annealed Gaussian noise: ``u_t = -lr (g_t + sqrt(eta / t^gamma) xi_t)``,
    ``xi_t ~ N(0, I)`` drawn from ``key`` exactly as optax draws it.  ``key`` (a PRNG key
    or an int seed) is required.

    Reference: Neelakantan et al., *Adding gradient noise improves learning for very deep
    networks*, 2015."""
    check_hypers("noisy_sgd", learning_rate=learning_rate, eta=eta, gamma=gamma)
    return chain(add_noise(eta, gamma, key), scale_by_learning_rate(learning_rate))


def polyak_sgd(max_learning_rate=1.0, scaling: ScalarOrSchedule = 1.0, f_min=0.0, eps=0.0,
               variant: str = "sps") -> Optimizer:
    """SGD with Polyak's step size: with ``d = -scaling g``,
    ``u = min((f - f_min) / (||d||^2 + eps), max_learning_rate) d``; ``update`` needs
    ``value=f``.  Note (as in optax) that ``scaling`` enters squared in the denominator,
    so outside the ``max_learning_rate`` cap the step is ``-(f - f_min) g / (scaling ||g||^2)``.

    Reference: Loizou et al., *Stochastic Polyak step-size for SGD*, AISTATS 2021."""
    check_hypers("polyak_sgd", max_learning_rate=max_learning_rate, scaling=scaling, eps=eps)
    return chain(sgd(learning_rate=scaling),
                 scale_by_polyak(max_learning_rate=max_learning_rate, f_min=f_min, eps=eps,
                                 variant=variant))
