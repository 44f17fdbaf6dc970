"""Named optimizers, part 2: Adam and its relatives.

Contract: as in :mod:`lab.optim.aliases` -- optax's names, argument names, defaults and
chain layout; ``learning_rate`` is a float, an array (also a tracer) or a schedule.
Throughout, ``m_t = b1 m_{t-1} + (1 - b1) g_t``, ``v_t = b2 v_{t-1} + (1 - b2) g_t^2``,
``m_hat = m_t / (1 - b1^t)``, ``v_hat = v_t / (1 - b2^t)`` with ``t`` counted from 1,
and every method ends with ``p <- p + u``.
"""
from __future__ import annotations

from lab.optim.base import Optimizer, ScalarOrSchedule, check_hypers
from lab.optim.scale_rules import (scale_by_adam, scale_by_adamax, scale_by_amsgrad,
                                   scale_by_belief, scale_by_radam, scale_by_yogi)
from lab.optim.transforms import add_decayed_weights, chain, scale_by_learning_rate


def adam(learning_rate: ScalarOrSchedule, b1=0.9, b2=0.999, eps=1e-8, eps_root=0.0,
         mu_dtype=None, *, nesterov: bool = False) -> Optimizer:
    """Adam: ``u_t = -lr m_hat / (sqrt(v_hat + eps_root) + eps)``; ``nesterov=True`` is NAdam.
    With ``b1 = 0`` this is RMSProp with bias correction and ``eps`` outside the root.

    Reference: Kingma & Ba, *Adam: a method for stochastic optimization*, ICLR 2015."""
    check_hypers("adam", learning_rate=learning_rate, b1=b1, b2=b2, eps=eps, eps_root=eps_root)
    return chain(scale_by_adam(b1=b1, b2=b2, eps=eps, eps_root=eps_root, mu_dtype=mu_dtype,
                               nesterov=nesterov),
                 scale_by_learning_rate(learning_rate))


def nadam(learning_rate: ScalarOrSchedule, b1=0.9, b2=0.999, eps=1e-8, eps_root=0.0,
          mu_dtype=None, *, nesterov: bool = True) -> Optimizer:
    """NAdam: Adam with the Nesterov first moment
    ``m_bar = b1 m_t / (1 - b1^(t+1)) + (1 - b1) g_t / (1 - b1^t)``;
    ``u_t = -lr m_bar / (sqrt(v_hat + eps_root) + eps)``.  (Dozat's Algorithm 2 also
    multiplies ``v_hat`` by ``b2``; optax, PyTorch and this library omit that factor.)

    Reference: Dozat, *Incorporating Nesterov momentum into Adam*, ICLR workshop 2016."""
    return adam(learning_rate, b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov)


def adamw(learning_rate: ScalarOrSchedule, b1=0.9, b2=0.999, eps=1e-8, eps_root=0.0,
          mu_dtype=None, weight_decay: ScalarOrSchedule = 1e-4, mask=None, *,
          nesterov: bool = False) -> Optimizer:
    """AdamW: ``u_t = -lr (m_hat / (sqrt(v_hat + eps_root) + eps) + wd p_t)``; ``mask``
    (pytree of bools or function of params) selects the leaves that decay.

    Reference: Loshchilov & Hutter, *Decoupled weight decay regularization*, ICLR 2019."""
    check_hypers("adamw", learning_rate=learning_rate, b1=b1, b2=b2, eps=eps, eps_root=eps_root,
                 weight_decay=weight_decay)
    return chain(scale_by_adam(b1=b1, b2=b2, eps=eps, eps_root=eps_root, mu_dtype=mu_dtype,
                               nesterov=nesterov),
                 add_decayed_weights(weight_decay, mask), scale_by_learning_rate(learning_rate))


def nadamw(learning_rate: ScalarOrSchedule, b1=0.9, b2=0.999, eps=1e-8, eps_root=0.0,
           mu_dtype=None, weight_decay: ScalarOrSchedule = 1e-4, mask=None, *,
           nesterov: bool = True) -> Optimizer:
    """NAdamW: AdamW with NAdam's first moment (see :func:`nadam`).

    References: Dozat, 2016; Loshchilov & Hutter, ICLR 2019."""
    return adamw(learning_rate, b1, b2, eps, eps_root, mu_dtype, weight_decay, mask,
                 nesterov=nesterov)


def amsgrad(learning_rate: ScalarOrSchedule, b1=0.9, b2=0.999, eps=1e-8, eps_root=0.0,
            mu_dtype=None, bias_correction_mu: bool = True,
            bias_correction_nu: bool = True) -> Optimizer:
    """AMSGrad: ``vmax_t = max(vmax_{t-1}, v_hat)``;
    ``u_t = -lr m_hat / (sqrt(vmax_t + eps_root) + eps)``.

    Reference: Reddi, Kale & Kumar, *On the convergence of Adam and beyond*, ICLR 2018."""
    check_hypers("amsgrad", learning_rate=learning_rate, b1=b1, b2=b2, eps=eps, eps_root=eps_root)
    return chain(scale_by_amsgrad(b1=b1, b2=b2, eps=eps, eps_root=eps_root, mu_dtype=mu_dtype,
                                  bias_correction_mu=bias_correction_mu,
                                  bias_correction_nu=bias_correction_nu),
                 scale_by_learning_rate(learning_rate))


def adamax(learning_rate: ScalarOrSchedule, b1=0.9, b2=0.999, eps=1e-8) -> Optimizer:
    """AdaMax: ``v_t = max(|g_t| + eps, b2 v_{t-1})``; ``u_t = -lr m_hat / v_t``.

    Reference: Kingma & Ba, *Adam*, ICLR 2015, section 7.1."""
    check_hypers("adamax", learning_rate=learning_rate, b1=b1, b2=b2, eps=eps)
    return chain(scale_by_adamax(b1=b1, b2=b2, eps=eps), scale_by_learning_rate(learning_rate))


def radam(learning_rate: ScalarOrSchedule, b1=0.9, b2=0.999, eps=1e-8, eps_root=0.0,
          threshold=5.0, *, nesterov: bool = False) -> Optimizer:
    """RAdam: ``u_t = -lr r_t m_hat / (sqrt(v_hat + eps_root) + eps)`` once the SMA length
    ``rho_t = rho_inf - 2 t b2^t / (1 - b2^t)`` reaches ``threshold``, else
    ``u_t = -lr m_hat``; ``r_t`` is the variance rectification term.

    Reference: Liu et al., *On the variance of the adaptive learning rate and beyond*, ICLR 2020."""
    check_hypers("radam", learning_rate=learning_rate, b1=b1, b2=b2, eps=eps, eps_root=eps_root,
                 threshold=threshold)
    return chain(scale_by_radam(b1=b1, b2=b2, eps=eps, eps_root=eps_root, threshold=threshold,
                                nesterov=nesterov),
                 scale_by_learning_rate(learning_rate))


def adabelief(learning_rate: ScalarOrSchedule, b1=0.9, b2=0.999, eps=1e-16, eps_root=1e-16, *,
              nesterov: bool = False) -> Optimizer:
    """AdaBelief: ``s_t = b2 s_{t-1} + (1 - b2)(g_t - m_t)^2 + eps_root``;
    ``u_t = -lr m_hat / (sqrt(s_t / (1 - b2^t)) + eps)``.

    Reference: Zhuang et al., *AdaBelief optimizer*, NeurIPS 2020."""
    check_hypers("adabelief", learning_rate=learning_rate, b1=b1, b2=b2, eps=eps,
                 eps_root=eps_root)
    return chain(scale_by_belief(b1=b1, b2=b2, eps=eps, eps_root=eps_root, nesterov=nesterov),
                 scale_by_learning_rate(learning_rate))


def yogi(learning_rate: ScalarOrSchedule, b1=0.9, b2=0.999, eps=1e-3) -> Optimizer:
    """Yogi: ``v_t = v_{t-1} - (1 - b2) sign(v_{t-1} - g_t^2) g_t^2`` (additive, not
    multiplicative, second-moment update; moments start at 1e-6);
    ``u_t = -lr m_hat / (sqrt(v_hat) + eps)``.

    Reference: Zaheer et al., *Adaptive methods for nonconvex optimization*, NeurIPS 2018."""
    check_hypers("yogi", learning_rate=learning_rate, b1=b1, b2=b2, eps=eps)
    return chain(scale_by_yogi(b1=b1, b2=b2, eps=eps), scale_by_learning_rate(learning_rate))
