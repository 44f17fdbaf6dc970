"""The ``lab`` command: the only place that parses arguments and prints.

    lab demo [--epochs N] [--out DIR]   train an MLP on the digits data, write a figure

Later issues add ``lab list``, ``lab run STUDY``, ``lab plot STUDY`` and ``lab show``.
"""
from __future__ import annotations

import argparse
import sys
import time


def _demo(args) -> int:
    from studies import digits_demo

    cfg = digits_demo.Config(epochs=args.epochs)
    print(f"training an MLP {cfg.sizes} ({cfg.activation}) on the 8x8 digits: "
          f"{cfg.epochs} epochs, batch {cfg.batch_size}, {cfg.optimizer} lr={cfg.learning_rate}")
    t0 = time.perf_counter()

    def report(epoch, row):
        print(f"  epoch {epoch + 1:3d}/{cfg.epochs}  train loss {row['train_loss']:.4f}  "
              f"test loss {row['test_loss']:.4f}  test accuracy {row['test_accuracy']:.3f}", flush=True)

    results = digits_demo.run(cfg, callback=report)
    paths = digits_demo.plot(results, args.out)
    print(f"done in {time.perf_counter() - t0:.1f}s; final test accuracy "
          f"{results['test_accuracy'][-1]:.3f}; figure: {', '.join(str(p) for p in paths)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lab", description="A JAX functional optimization laboratory.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="train an MLP on the 8x8 digits and write figures/digits_demo.png")
    demo.add_argument("--epochs", type=int, default=30, help="training epochs (default 30)")
    demo.add_argument("--out", default="figures", help="directory for the figure (default figures/)")
    demo.set_defaults(func=_demo)
    args = parser.parse_args(argv)
    if getattr(args, "epochs", 1) < 1:
        parser.error(f"--epochs must be >= 1, got {args.epochs}")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
