"""Demo: an MLP trained on the real 8x8 digits, loss and accuracy per epoch.

Held-out split: 25% of the 1,797 images (449) for testing, fixed by ``seed``.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from lab import data, losses, nets, optim, plotting, train


@dataclasses.dataclass(frozen=True)
class Config:
    sizes: tuple[int, ...] = (64, 64, 10)  # widths of the dense layers: hidden..., classes
    activation: str = "relu"
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    batch_size: int = 32
    epochs: int = 30
    seed: int = 0


def run(config: Config, callback=None) -> dict:
    """Train and evaluate after every epoch; returns per-epoch arrays (numpy)."""
    key = jax.random.key(config.seed)
    k_split, k_init, k_train = jax.random.split(key, 3)
    x, y = data.load_digits()
    xtr, ytr, xte, yte = data.train_test_split(k_split, x, y, test_fraction=0.25)
    net = nets.mlp(list(config.sizes), activation=config.activation)
    _, params = net.init(k_init, (-1, x.shape[1]))

    def loss_fn(p, xb, yb, _key):
        return losses.softmax_cross_entropy_with_integer_labels(net.apply(p, xb), yb)

    @jax.jit
    def evaluate(p):
        out = []
        for xs, ys in ((xtr, ytr), (xte, yte)):
            logits = net.apply(p, xs)
            out += [losses.softmax_cross_entropy_with_integer_labels(logits, ys), train.accuracy(logits, ys)]
        return jnp.stack(out)

    rows = []

    def on_epoch(epoch, p, step_losses):
        tr_loss, tr_acc, te_loss, te_acc = (float(v) for v in evaluate(p))
        row = dict(epoch=epoch + 1, step_loss=float(np.mean(step_losses)), train_loss=tr_loss,
                   train_accuracy=tr_acc, test_loss=te_loss, test_accuracy=te_acc)
        rows.append(row)
        if callback is not None:
            callback(epoch, row)

    opt = getattr(optim, config.optimizer)(config.learning_rate)
    result = train.train(loss_fn, params, opt, xtr, ytr, key=k_train, batch_size=config.batch_size,
                         epochs=config.epochs, callback=on_epoch)
    out = {k: np.array([r[k] for r in rows]) for k in rows[0]}
    out["step_losses"] = result.step_losses
    out["config"] = dataclasses.asdict(config)
    return out


def plot(results: dict, outdir="figures"):
    """Two panels: cross-entropy (log scale) and accuracy per epoch, train vs test."""
    cfg = results["config"]
    fig, (ax_loss, ax_acc) = plotting.figure(2)
    ep = results["epoch"]
    ax_loss.plot(ep, results["train_loss"], label="train")
    ax_loss.plot(ep, results["test_loss"], label="test")
    ax_loss.set(yscale="log", xlabel="epoch", ylabel="softmax cross-entropy", title="loss")
    ax_acc.plot(ep, results["train_accuracy"], label="train")
    ax_acc.plot(ep, results["test_accuracy"], label="test")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title=f"final test accuracy {results['test_accuracy'][-1]:.3f}")
    ax_loss.legend()
    fig.suptitle(f"MLP {list(cfg['sizes'])} {cfg['activation']} on 8x8 digits, "
                 f"{cfg['optimizer']} lr={cfg['learning_rate']}, batch {cfg['batch_size']}")
    return plotting.save(fig, outdir, "digits_demo")
