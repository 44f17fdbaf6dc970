"""The batch-size study's problem and sweeps: an MLP 64-hidden-10 (tanh) trained by SGD on
the first ``train_size`` digits, evaluated on them and on the held-out rest."""
from __future__ import annotations

import numpy as np

from lab import losses, optim, train
from lab.sweep import Study, SweepSpec
from studies import common
from studies.batch_size.config import DIVERGENCE_FACTOR, Config, check, learning_rates, schedule

NAME = "batch_size"


def _digits(config: Config):
    """``(x_train, y_train, x_held, y_held)`` as float32 / int32 NumPy arrays."""
    x, y = common.digits()
    n = config.train_size
    return x[:n], y[:n], x[n:], y[n:]


def _net(config: Config):
    return common.digits_mlp(config.hidden)


def _mean_loss(net):
    def loss(params, xb, yb):
        return losses.softmax_cross_entropy_with_integer_labels(net.apply(params, xb), yb)
    return loss


def _study(config: Config) -> Study:
    x, y, xh, yh = _digits(config)
    net = _net(config)
    n = x.shape[0]
    xent = losses.softmax_cross_entropy_with_integer_labels    # mean over the rows given

    def evaluate(params, ex, ey):
        # eval_x holds the training subset followed by the held-out images
        logits = net.apply(params, ex)
        return {"train_loss": xent(logits[:n], ey[:n]), "train_accuracy": train.accuracy(logits[:n], ey[:n]),
                "heldout_loss": xent(logits[n:], ey[n:]), "heldout_accuracy": train.accuracy(logits[n:], ey[n:])}

    problem = common.classifier(net, x, y, evaluate=evaluate, eval_x=np.concatenate([x, xh]),
                                eval_y=np.concatenate([y, yh]))
    return Study(NAME, lambda static: problem, lambda cfg: optim.sgd(cfg["learning_rate"]),
                 hyperparameters={"learning_rate": 0.1}, static={"batch_size": 1},
                 description=common.digits_mlp_facts(config.hidden, training="first train_size images",
                                                     train_size=n, heldout=int(xh.shape[0]), optimizer=optim.sgd,
                                                     evaluate="train_loss, train_accuracy, heldout_loss, "
                                                              "heldout_accuracy"))


def tuning_specs(config: Config) -> list[SweepSpec]:
    """One sweep per batch size over the shared learning-rate grid (index = batch size's position)."""
    check(config)
    study = _study(config)
    lrs = [float(v) for v in learning_rates(config)]
    out = []
    for b in config.batch_sizes:
        steps, every = schedule(config, b)
        out.append(SweepSpec(study, {"batch_size": [int(b)], "learning_rate": lrs}, seeds=config.seeds,
                             steps=steps, eval_every=every, chunk_steps=steps,
                             divergence_factor=DIVERGENCE_FACTOR))
    return out


def target_spec(config: Config, batch_size: int, lr: float, steps: int) -> SweepSpec:
    """``batch_size`` at rate ``lr`` for ``steps`` steps (about the steps to target), one evaluation
    at the end with the sharpness of the whole training subset."""
    return SweepSpec(_study(config), {"batch_size": [int(batch_size)], "learning_rate": [float(lr)]},
                     seeds=config.seeds, steps=int(steps), eval_every=int(steps), chunk_steps=int(steps),
                     divergence_factor=DIVERGENCE_FACTOR, sharpness_iters=config.sharpness_iters,
                     sharpness_batch=config.train_size)
