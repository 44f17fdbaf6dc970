"""MNIST-1D: ten hand-drawn 1-D digit templates turned into a 40-point classification task.

The data set of Greydanus, *Scaling down deep learning* (arXiv:2011.14439, 2020), rebuilt
here in plain NumPy so that lab never downloads it.  Each example starts from the 12-point
template of its digit and goes through the paper's chain of random distortions:

1. add ``1e-8`` (so the template is nonzero everywhere) and append ``p`` zeros,
   ``p`` uniform in ``padding = [low, high]``;
2. resample linearly to ``template_len + high`` points (a random dilation, since ``p``
   varies) and multiply by ``1 + scale_coeff (u - 1/2)``, ``u ~ U[0, 1)``;
3. roll right by ``k`` points, ``k`` uniform in ``{0, ..., max_translation - 1}``;
4. fill the exact zeros (the padding) with correlated noise: ``corr_noise_scale``
   times standard normal noise smoothed by a Gaussian filter (sigma 2, radius 8,
   mirror-reflected at the ends); then add iid ``N(0, iid_noise_scale^2)`` noise;
5. subtract the shear ``c * linspace(-1/2, 1/2)``, ``c = shear_scale (u - 1/2)``;
6. resample linearly to ``final_seq_length`` points.

Examples are made class by class (``num_samples / 10`` of each digit), shuffled, optionally
permuted along the sequence axis (``shuffle_seq``), standardised with the mean and standard
deviation of the whole array, and split into the first ``train_split`` fraction (train) and
the rest (test).

Every random number comes from one ``numpy.random.RandomState(seed)`` (the legacy
Mersenne-Twister stream that ``numpy.random.seed`` drives) in the order of the reference
package ``mnist1d`` (github.com/greydanus/mnist1d, Apache-2.0), so the same arguments give
the same arrays: ``tests/test_mnist1d.py`` compares them with a fixture the reference
produced.  Nothing here imports that package.  The default arguments are the paper's:
5,000 examples (4,000 train / 1,000 test), 40 points, seed 42.
"""
from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import numpy as np

NUM_CLASSES = 10

# The ten templates as drawn in the paper (fig. 1), one row per digit 0..9, 12 heights each.
TEMPLATE_HEIGHTS = np.array([
    [5, 6, 6.5, 6.75, 7, 7, 7, 7, 6.75, 6.5, 6, 5],       # 0
    [5, 3, 3, 3.4, 3.8, 4.2, 4.6, 5, 5.4, 5.8, 5, 5],      # 1
    [5, 6, 6.5, 6.5, 6, 5.25, 4.75, 4, 3.5, 3.5, 4, 5],    # 2
    [5, 6, 6.5, 6.5, 6, 5, 5, 6, 6.5, 6.5, 6, 5],          # 3
    [5, 4.4, 3.8, 3.2, 2.6, 2.6, 5, 5, 5, 5, 5, 5],        # 4
    [5, 3, 3, 3, 3, 5, 6, 6.5, 6.5, 6, 4.5, 5],            # 5
    [5, 4, 3.5, 3.25, 3, 3, 3, 3, 3.25, 3.5, 4, 5],        # 6
    [5, 7, 7, 6.6, 6.2, 5.8, 5.4, 5, 4.6, 4.2, 5, 5],      # 7
    [5, 4, 3.5, 3.5, 4, 5, 5, 4, 3.5, 3.5, 4, 5],          # 8
    [5, 4, 3.5, 3.5, 4, 5, 5, 5, 5, 4.7, 4.3, 5],          # 9
], dtype=np.float64)

NOISE_SIGMA = 2.0       # width of the Gaussian filter that correlates the background noise
NOISE_TRUNCATE = 4.0    # the filter is cut at NOISE_TRUNCATE * NOISE_SIGMA points (radius 8)
TEMPLATE_EPS = 1e-8     # added to the templates so that only the padding is exactly zero


@dataclasses.dataclass(frozen=True)
class Mnist1dArgs:
    """The generator's arguments; the defaults are the paper's (and the reference's)."""
    num_samples: int = 5000          # total examples, a multiple of the 10 classes
    train_split: float = 0.8         # fraction of examples in the training split
    template_len: int = 12           # the dilated signal has template_len + padding[1] points
    padding: tuple[int, int] = (36, 60)  # zeros appended to a template: uniform in [low, high]
    scale_coeff: float = 0.4         # amplitude factor 1 + scale_coeff * (u - 1/2)
    max_translation: int = 48        # roll by k in {0, ..., max_translation - 1}
    corr_noise_scale: float = 0.25   # std of the background noise before smoothing
    iid_noise_scale: float = 2e-2    # std of the white noise added everywhere
    shear_scale: float = 0.75        # shear slope c = shear_scale * (u - 1/2)
    shuffle_seq: bool = False        # permute the 40 positions (one permutation for all)
    final_seq_length: int = 40       # points per example
    seed: int = 42                   # seed of the RandomState that draws everything

    def __post_init__(self):
        object.__setattr__(self, "padding", tuple(self.padding))
        check_args(self)


class Mnist1d(NamedTuple):
    x: np.ndarray       # (n_train, final_seq_length), float64, whole set standardised
    y: np.ndarray       # (n_train,), int64 digit labels 0..9
    x_test: np.ndarray  # (n_test, final_seq_length)
    y_test: np.ndarray  # (n_test,)
    t: np.ndarray       # (final_seq_length,), the time axis the reference returns for plotting


def check_args(args: Mnist1dArgs) -> None:
    """Raise ValueError for arguments the generator cannot honour, naming the argument."""
    def need(ok, message):
        if not ok:
            raise ValueError(f"mnist1d: {message}")

    for name in ("num_samples", "template_len", "max_translation", "final_seq_length", "seed"):
        value = getattr(args, name)
        need(isinstance(value, (int, np.integer)) and not isinstance(value, bool),
             f"{name} must be an integer, got {value!r}")
    need(args.num_samples >= NUM_CLASSES and args.num_samples % NUM_CLASSES == 0,
         f"num_samples must be a positive multiple of {NUM_CLASSES}, got {args.num_samples}")
    n_train = int(args.num_samples * args.train_split)
    need(0.0 < args.train_split < 1.0 and 0 < n_train < args.num_samples,
         f"train_split={args.train_split} must leave both splits of {args.num_samples} "
         "examples non-empty")
    need(len(args.padding) == 2, f"padding must be a pair (low, high), got {args.padding!r}")
    low, high = args.padding
    need(0 <= low <= high, f"padding must satisfy 0 <= low <= high, got {args.padding!r}")
    need(args.template_len >= 1, f"template_len must be >= 1, got {args.template_len}")
    length = args.template_len + high
    need(1 <= args.max_translation <= length,
         f"max_translation must lie in [1, {length}] (the dilated length template_len + "
         f"padding[1]), got {args.max_translation}")
    need(args.final_seq_length >= 2, f"final_seq_length must be >= 2, got {args.final_seq_length}")
    for name in ("scale_coeff", "corr_noise_scale", "iid_noise_scale", "shear_scale"):
        value = getattr(args, name)
        need(math.isfinite(value) and value >= 0, f"{name} must be finite and >= 0, got {value}")
    need(0 <= args.seed < 2 ** 32, f"seed must lie in [0, 2**32), got {args.seed}")


def templates() -> tuple[np.ndarray, np.ndarray]:
    """The normalised templates ``(x, t)``: ``x`` (10, 12), each row standardised, shifted
    to start at 0 and divided by 6; ``t`` (12,) the time points ``linspace(-5, 5) / 6``."""
    x = TEMPLATE_HEIGHTS.copy()
    x -= x.mean(axis=1, keepdims=True)
    x /= x.std(axis=1, keepdims=True)
    x -= x[:, :1]
    t = np.linspace(-5, 5, TEMPLATE_HEIGHTS.shape[1]) / 6.0
    return x / 6.0, t


def resample(signal: np.ndarray, n: int) -> np.ndarray:
    """Linear interpolation of ``signal`` (on an even grid over [0, 1]) at n even points."""
    return np.interp(np.linspace(0.0, 1.0, n), np.linspace(0.0, 1.0, signal.shape[0]), signal)


def gaussian_smooth(signal: np.ndarray, sigma: float = NOISE_SIGMA,
                    truncate: float = NOISE_TRUNCATE) -> np.ndarray:
    """Correlate a 1-D signal with a normalised Gaussian of std ``sigma``, cut at radius
    ``int(truncate * sigma + 1/2)``; the ends are mirrored (``... b a | a b ... | z y ...``).

    The sum is taken centre first, then the symmetric pairs from the outermost inwards,
    the order of ``scipy.ndimage.gaussian_filter``, so both give the same floats."""
    radius = int(truncate * sigma + 0.5)
    offsets = np.arange(-radius, radius + 1)
    weights = np.exp(-0.5 / (sigma * sigma) * offsets ** 2)
    weights = weights / weights.sum()  # (2 radius + 1,), weights[radius] is the centre
    n = signal.shape[0]
    if n <= radius:
        raise ValueError(f"gaussian_smooth needs more than {radius} points, got {n}")
    padded = np.pad(signal, radius, mode="symmetric")
    out = padded[radius:radius + n] * weights[radius]
    for j in range(radius, 0, -1):
        out = out + (padded[radius - j:radius - j + n] + padded[radius + j:radius + j + n]) * weights[radius - j]
    return out


def distort(template: np.ndarray, rng: np.random.RandomState, args: Mnist1dArgs) -> np.ndarray:
    """One example: steps 1-6 of the module docstring applied to one template row.

    Draws, in this order: the padding length, the scale, the shift, the correlated noise,
    the iid noise, the shear."""
    low, high = args.padding
    length = args.template_len + high
    pad = low + int(rng.random_sample() * (high - low + 1))
    signal = np.concatenate([template + TEMPLATE_EPS, np.zeros(pad)])
    signal = resample(signal, length)
    signal = signal * (1.0 + args.scale_coeff * (rng.random_sample() - 0.5))
    signal = np.roll(signal, rng.randint(args.max_translation))
    background = gaussian_smooth(args.corr_noise_scale * rng.standard_normal(length))
    signal = np.where(signal != 0, signal, background)
    signal = signal + args.iid_noise_scale * rng.standard_normal(length)
    slope = args.shear_scale * (rng.random_sample() - 0.5)
    signal = signal - slope * np.linspace(-0.5, 0.5, length)
    return resample(signal, args.final_seq_length)


def arguments(args: Mnist1dArgs | None = None, **overrides) -> Mnist1dArgs:
    """``args`` (default: the paper's) with the named fields replaced, checked; an unknown
    name or an invalid value raises ValueError."""
    args = Mnist1dArgs() if args is None else args
    unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(Mnist1dArgs)})
    if unknown:
        raise ValueError(f"mnist1d: unknown argument(s) {unknown}; the arguments are the "
                         "fields of Mnist1dArgs")
    return dataclasses.replace(args, **overrides) if overrides else args


def generate(args: Mnist1dArgs | None = None, **overrides) -> Mnist1d:
    """The MNIST-1D data set for ``args`` (default: the paper's), fields replaced by ``overrides``.

    ``generate()`` gives 4,000 training and 1,000 test examples of 40 points in about 1 s
    on one CPU core (a Python loop over the examples).  A pure function of the arguments:
    the same arguments give the same arrays, bit for bit.  Unknown or invalid arguments
    raise ValueError."""
    args = arguments(args, **overrides)
    rng = np.random.RandomState(args.seed)
    shapes, t = templates()
    per_class = args.num_samples // NUM_CLASSES
    xs = np.stack([distort(shapes[label], rng, args)
                   for label in range(NUM_CLASSES) for _ in range(per_class)])
    ys = np.repeat(np.arange(NUM_CLASSES, dtype=np.int64), per_class)
    order = rng.permutation(ys.shape[0])
    xs, ys = xs[order], ys[order]
    if args.shuffle_seq:
        xs = xs[:, rng.permutation(args.final_seq_length)]
    t = resample(resample(t, args.template_len + args.padding[1]), args.final_seq_length)
    t = t / xs.std()
    xs = (xs - xs.mean()) / xs.std()
    n_train = int(ys.shape[0] * args.train_split)
    return Mnist1d(xs[:n_train], ys[:n_train], xs[n_train:], ys[n_train:], t)
