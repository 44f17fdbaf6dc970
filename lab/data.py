"""Data: small synthetic problems, one real data set, and batching as pure functions.

Contract:
* every generator is a pure function of an explicit PRNG key (``key`` first) and
  returns jax arrays ``(x, y)`` with ``x`` of shape (n, features) and ``y`` either
  integer class labels of shape (n,) or regression targets of shape (n, outputs);
  floating data is float32 unless ``dtype`` says otherwise;
* the real data set, :func:`load_digits`, ships inside the package
  (``lab/datasets/digits.npz``, source and licence in ``lab/datasets/README.md``) and
  never touches the network;
* batching returns *index arrays*: ``epoch_batches`` gives a (num_batches, batch_size)
  array of indices drawn without replacement, ``sample_batches`` draws with
  replacement, ``full_batch`` gives one batch of every index.  Gather with ``x[idx]``;
  inside ``jit`` the indices are ordinary integer arrays.
* the text corpus, :func:`load_text`, ships the same way
  (``lab/datasets/python_stdlib.txt.gz``, about 1 MB of Python standard-library source,
  PSF licence, see ``lab/datasets/TEXT_LICENSE.md``); its SHA-256 is checked on load and
  it returns int32 character ids over the fixed vocabulary ``TEXT_VOCAB`` with a
  deterministic split (the last 10% held out for validation);
* :func:`check_dataset` is the gate every training entry point calls: it rejects NaN or
  infinite inputs, mismatched lengths and labels outside ``[0, num_classes)`` with a
  ValueError that names the problem.
"""
from __future__ import annotations

import gzip
import hashlib
import math
from importlib import resources
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array


# --------------------------------------------------------------------------- checks

def check_dataset(x, y=None, *, num_classes: int | None = None, name: str = "data") -> None:
    """Raise ValueError if ``x``/``y`` are unfit for training.

    Checks: ``x`` has at least one example; ``x`` (and floating ``y``) are finite;
    ``x`` and ``y`` have the same number of examples; integer labels lie in
    ``[0, num_classes)`` when ``num_classes`` is given.  Works on concrete arrays only
    (call it before ``jit``)."""
    xa = np.asarray(x)
    if xa.ndim == 0 or xa.shape[0] == 0:
        raise ValueError(f"{name}: x must have a leading example axis with at least one example, got shape {xa.shape}")
    if xa.dtype.kind in "fc" and not np.all(np.isfinite(xa)):
        bad = int(np.size(xa) - np.count_nonzero(np.isfinite(xa)))
        raise ValueError(f"{name}: x contains {bad} NaN or infinite value(s); clean the data before training")
    if y is None:
        return
    ya = np.asarray(y)
    if ya.ndim == 0 or ya.shape[0] != xa.shape[0]:
        raise ValueError(f"{name}: x has {xa.shape[0]} examples but y has shape {ya.shape}")
    if ya.dtype.kind in "fc" and not np.all(np.isfinite(ya)):
        raise ValueError(f"{name}: y contains NaN or infinite values")
    if num_classes is not None:
        if ya.dtype.kind not in "iu":
            raise ValueError(f"{name}: class labels must be integers, got dtype {ya.dtype}")
        lo, hi = int(ya.min()), int(ya.max())
        if lo < 0 or hi >= num_classes:
            raise ValueError(f"{name}: labels must lie in [0, {num_classes}), found values in [{lo}, {hi}]")


def one_hot(labels, num_classes: int, dtype=jnp.float32) -> Array:
    """Encode integer labels of shape (n,) as an (n, num_classes) 0/1 matrix.

    Concrete labels outside ``[0, num_classes)`` raise ValueError (``jax.nn.one_hot``
    would silently return an all-zero row)."""
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if not isinstance(labels, jax.core.Tracer):
        lab = np.asarray(labels)
        if lab.dtype.kind not in "iu":
            raise ValueError(f"one_hot needs integer labels, got dtype {lab.dtype}")
        if lab.size and (lab.min() < 0 or lab.max() >= num_classes):
            raise ValueError(f"labels must lie in [0, {num_classes}), found values in [{lab.min()}, {lab.max()}]")
    return jax.nn.one_hot(labels, num_classes, dtype=dtype)


# --------------------------------------------------------------------------- real data

def load_digits(*, flatten: bool = True, scale: bool = True, dtype=jnp.float32) -> tuple[Array, Array]:
    """The 8x8 handwritten digits (UCI / Alpaydin & Kaynak 1998): 1,797 images, 10 classes.

    Returns ``(x, y)``: ``x`` of shape (1797, 64) when ``flatten`` else (1797, 8, 8, 1)
    (NHWC, ready for ``conv2d``), pixel values divided by 16 into [0, 1] when ``scale``
    (else the raw counts 0..16); ``y`` int32 labels of shape (1797,)."""
    path = resources.files("lab").joinpath("datasets/digits.npz")
    with path.open("rb") as fh, np.load(fh, allow_pickle=False) as z:
        images, labels = z["images"], z["labels"]
    if images.shape != (1797, 8, 8) or labels.shape != (1797,) or images.max() > 16:
        raise ValueError(f"digits.npz is damaged: images {images.shape}, labels {labels.shape}")
    x = images.astype(np.float64) / (16.0 if scale else 1.0)
    x = x.reshape(1797, 64) if flatten else x.reshape(1797, 8, 8, 1)
    return jnp.asarray(x, dtype=dtype), jnp.asarray(labels, dtype=jnp.int32)


# --------------------------------------------------------------------------- synthetic data

def xor(*, dtype=jnp.float32) -> tuple[Array, Array]:
    """The four XOR points {0,1}^2 with labels x1 xor x2 (not linearly separable)."""
    x = jnp.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]], dtype=dtype)
    return x, jnp.array([0, 1, 1, 0], dtype=jnp.int32)


def two_spirals(key, n: int = 200, *, noise: float = 0.1, turns: float = 1.5, dtype=jnp.float32):
    """Two interleaved spirals, n points each half (labels 0 and 1); radius grows with the angle."""
    k1, k2 = jax.random.split(key)
    t = jax.random.uniform(k1, (n,), dtype=dtype) * (2 * math.pi * turns)
    r = t / (2 * math.pi * turns)
    arm = jnp.stack([r * jnp.cos(t), r * jnp.sin(t)], axis=1)
    x = jnp.concatenate([arm, -arm]) + noise * 0.1 * jax.random.normal(k2, (2 * n, 2), dtype=dtype)
    y = jnp.concatenate([jnp.zeros(n, jnp.int32), jnp.ones(n, jnp.int32)])
    return x, y


def moons(key, n: int = 200, *, noise: float = 0.1, dtype=jnp.float32):
    """Two interleaving half circles, n points each (labels 0 and 1)."""
    k1, k2 = jax.random.split(key)
    t = jax.random.uniform(k1, (n,), dtype=dtype) * math.pi
    upper = jnp.stack([jnp.cos(t), jnp.sin(t)], axis=1)
    lower = jnp.stack([1.0 - jnp.cos(t), 0.5 - jnp.sin(t)], axis=1)
    x = jnp.concatenate([upper, lower]) + noise * jax.random.normal(k2, (2 * n, 2), dtype=dtype)
    y = jnp.concatenate([jnp.zeros(n, jnp.int32), jnp.ones(n, jnp.int32)])
    return x, y


def circles(key, n: int = 200, *, factor: float = 0.5, noise: float = 0.05, dtype=jnp.float32):
    """Two concentric circles, n points each: label 0 on radius 1, label 1 on radius ``factor``."""
    if not 0.0 < factor < 1.0:
        raise ValueError(f"factor must lie in (0, 1), got {factor}")
    k1, k2 = jax.random.split(key)
    t = jax.random.uniform(k1, (2 * n,), dtype=dtype) * (2 * math.pi)
    radius = jnp.concatenate([jnp.ones(n, dtype), jnp.full((n,), factor, dtype)])
    x = radius[:, None] * jnp.stack([jnp.cos(t), jnp.sin(t)], axis=1)
    x = x + noise * jax.random.normal(k2, (2 * n, 2), dtype=dtype)
    y = jnp.concatenate([jnp.zeros(n, jnp.int32), jnp.ones(n, jnp.int32)])
    return x, y


def blobs(key, n: int = 300, *, centers: int = 3, features: int = 2, std: float = 1.0,
          spread: float = 10.0, dtype=jnp.float32):
    """Isotropic Gaussian blobs: n points split as evenly as possible over ``centers`` classes,
    centres uniform in [-spread, spread]^features."""
    if centers < 1 or n < centers:
        raise ValueError(f"need 1 <= centers <= n, got centers={centers}, n={n}")
    k1, k2 = jax.random.split(key)
    mu = jax.random.uniform(k1, (centers, features), dtype=dtype, minval=-spread, maxval=spread)
    y = jnp.arange(n, dtype=jnp.int32) % centers
    x = mu[y] + std * jax.random.normal(k2, (n, features), dtype=dtype)
    return x, y


def linear_regression(key, n: int = 100, *, features: int = 1, noise: float = 0.1,
                      outlier_fraction: float = 0.0, outlier_scale: float = 10.0, dtype=jnp.float32):
    """y = x w + b + noise, with a chosen fraction of targets replaced by gross outliers.

    Returns ``(x, y, w, b, is_outlier)``: the true ``w`` (features, 1) and ``b`` (1,)
    let a study measure how far a fit is pulled away by the outliers."""
    if not 0.0 <= outlier_fraction <= 1.0:
        raise ValueError(f"outlier_fraction must lie in [0, 1], got {outlier_fraction}")
    kx, kw, kb, kn, ko, ks = jax.random.split(key, 6)
    x = jax.random.normal(kx, (n, features), dtype=dtype)
    w = jax.random.normal(kw, (features, 1), dtype=dtype)
    b = jax.random.normal(kb, (1,), dtype=dtype)
    y = x @ w + b[None, :] + noise * jax.random.normal(kn, (n, 1), dtype=dtype)
    n_out = int(round(outlier_fraction * n))
    is_outlier = jnp.zeros(n, bool).at[jax.random.permutation(ko, n)[:n_out]].set(True)
    shift = outlier_scale * (1.0 + jnp.abs(jax.random.normal(ks, (n, 1), dtype=dtype)))
    y = jnp.where(is_outlier[:, None], y + shift, y)
    return x, y, w, b, is_outlier


def function_1d(key, n: int = 100, *, fn=jnp.sin, low: float = -math.pi, high: float = math.pi,
                noise: float = 0.0, grid: bool = False, dtype=jnp.float32):
    """Samples of a 1-D function (default sin on [-pi, pi]) for function approximation.

    ``grid=True`` gives n evenly spaced points instead of uniform draws."""
    if grid:
        x = jnp.linspace(low, high, n, dtype=dtype)[:, None]
    else:
        x = jax.random.uniform(key, (n, 1), dtype=dtype, minval=low, maxval=high)
    y = fn(x) + noise * jax.random.normal(jax.random.fold_in(key, 1), (n, 1), dtype=dtype)
    return x, y


class Quadratic(NamedTuple):
    """f(w) = 1/2 w^T A w - b^T w with A = Q diag(eigenvalues) Q^T; minimiser A^{-1} b."""
    A: Array            # (d, d), symmetric
    b: Array            # (d,)
    eigenvalues: Array  # (d,), as requested
    minimizer: Array    # (d,)

    def loss(self, w: Array) -> Array:
        return 0.5 * w @ (self.A @ w) - self.b @ w


def quadratic(key, eigenvalues, *, dtype=jnp.float32) -> Quadratic:
    """An ill-conditioned quadratic with exactly the given Hessian eigenvalues.

    The eigenbasis is a random orthogonal matrix (QR of a Gaussian matrix), ``b`` is
    standard normal; eigenvalues may be negative (an indefinite quadratic), in which case
    ``minimizer`` is only a stationary point, and a zero eigenvalue has none."""
    ev = jnp.asarray(eigenvalues, dtype=dtype)
    if ev.ndim != 1 or ev.shape[0] < 1:
        raise ValueError(f"eigenvalues must be a non-empty vector, got shape {ev.shape}")
    d = ev.shape[0]
    kq, kb = jax.random.split(key)
    q, r = jnp.linalg.qr(jax.random.normal(kq, (d, d), dtype=dtype))
    q = q * jnp.sign(jnp.diag(r))[None, :]
    a = (q * ev[None, :]) @ q.T
    a = 0.5 * (a + a.T)
    b = jax.random.normal(kb, (d,), dtype=dtype)
    w_star = q @ ((q.T @ b) / ev)
    return Quadratic(a, b, ev, w_star)


def teacher_student(key, n: int = 256, *, d_in: int = 10, d_hidden: int = 16, d_out: int = 1,
                    noise: float = 0.0, activation=jnp.tanh, dtype=jnp.float32):
    """Regression targets from a random one-hidden-layer teacher network.

    x ~ N(0, I); y = act(x W1 / sqrt(d_in)) W2 / sqrt(d_hidden) + noise.
    Returns ``(x, y, teacher)`` with ``teacher = {'W1', 'W2'}``."""
    kx, k1, k2, kn = jax.random.split(key, 4)
    x = jax.random.normal(kx, (n, d_in), dtype=dtype)
    teacher = {"W1": jax.random.normal(k1, (d_in, d_hidden), dtype=dtype),
               "W2": jax.random.normal(k2, (d_hidden, d_out), dtype=dtype)}
    h = activation(x @ teacher["W1"] / math.sqrt(d_in))
    y = h @ teacher["W2"] / math.sqrt(d_hidden) + noise * jax.random.normal(kn, (n, d_out), dtype=dtype)
    return x, y, teacher


# --------------------------------------------------------------------------- splits and scaling

def train_test_split(key, x, y, *, test_fraction: float = 0.25):
    """Shuffle once with ``key`` and split: returns ``(x_train, y_train, x_test, y_test)``."""
    n = x.shape[0]
    if y.shape[0] != n:
        raise ValueError(f"x has {n} examples but y has {y.shape[0]}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    n_test = int(round(test_fraction * n))
    if n_test == 0 or n_test == n:
        raise ValueError(f"test_fraction={test_fraction} leaves an empty split of {n} examples")
    perm = jax.random.permutation(key, n)
    tr, te = perm[n_test:], perm[:n_test]
    return x[tr], y[tr], x[te], y[te]


class Standardizer(NamedTuple):
    """Per-feature mean and std (shape (1, features)) fitted on training data."""
    mean: Array
    std: Array


def fit_standardizer(x, *, eps: float = 1e-8) -> Standardizer:
    """Mean and std of each feature (axis 0); constant features get std 1 (left unscaled)."""
    mean = jnp.mean(x, axis=0, keepdims=True)
    std = jnp.std(x, axis=0, keepdims=True)
    return Standardizer(mean, jnp.where(std > eps, std, jnp.ones_like(std)))


def standardize(x, stats: Standardizer) -> Array:
    """(x - mean) / std with statistics from :func:`fit_standardizer` (fit on train only)."""
    return (x - stats.mean) / stats.std


# --------------------------------------------------------------------------- batching

def iterations_per_epoch(n: int, batch_size: int, *, drop_last: bool = False) -> int:
    """Number of updates in one pass over n examples: ceil(n / B), or floor with drop_last.

    200 examples in batches of 5 take 40 iterations per epoch."""
    _check_batch(n, batch_size)
    return n // batch_size if drop_last else -(-n // batch_size)


def epoch_batches(key, n: int, batch_size: int) -> Array:
    """One epoch of mini-batches without replacement: a shuffled (n // B, B) index array.

    The n % B examples left over after the last full batch are dropped (a different
    set each epoch, since each epoch has its own key), so every batch has the same
    shape and the epoch compiles once."""
    _check_batch(n, batch_size)
    perm = jax.random.permutation(key, n)
    nb = n // batch_size
    return perm[: nb * batch_size].reshape(nb, batch_size)


def epochs_batches(key, n: int, batch_size: int, epochs: int) -> Array:
    """``epochs`` epochs back to back: an (epochs * (n // B), B) index array, one key per epoch."""
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    keys = jax.random.split(key, epochs)
    return jnp.concatenate([epoch_batches(k, n, batch_size) for k in keys])


def sample_batches(key, n: int, batch_size: int, num_batches: int) -> Array:
    """``num_batches`` batches drawn independently with replacement: (num_batches, B) indices."""
    _check_batch(n, batch_size)
    if num_batches < 1:
        raise ValueError(f"num_batches must be >= 1, got {num_batches}")
    return jax.random.randint(key, (num_batches, batch_size), 0, n)


def full_batch(n: int) -> Array:
    """The single batch holding every example: a (1, n) index array."""
    _check_batch(n, n)
    return jnp.arange(n)[None, :]


def _check_batch(n: int, batch_size: int) -> None:
    if n < 1:
        raise ValueError(f"the data set is empty (n={n})")
    if not 1 <= batch_size <= n:
        raise ValueError(f"batch_size must lie in [1, {n}] for a data set of {n} examples, got {batch_size}")


# --------------------------------------------------------------------------- text

TEXT_VOCAB = "\n" + "".join(chr(c) for c in range(32, 127))  # newline, then printable ASCII ' '..'~'
TEXT_SHA256 = "a3e454edf364af0f5805011237c451412ab9a5029d3da79f500e3069661a0f0b"  # of the decompressed text
TEXT_FILE = "datasets/python_stdlib.txt.gz"


class Text(NamedTuple):
    """A character-level corpus: ``text`` split into ``train`` and ``validation`` ids.

    ``vocab[i]`` is the character with id i; ``train`` is ``encode(text)[:n - n_val]`` and
    ``validation`` the last n_val ids, both int32 arrays of shape (n,)."""
    text: str
    vocab: str
    train: Array        # (n - n_val,) int32
    validation: Array   # (n_val,) int32

    def encode(self, text: str) -> np.ndarray:
        """Ids of ``text``'s characters, int32 (n,); a character outside the vocabulary raises."""
        return encode_text(text, self.vocab)

    def decode(self, ids) -> str:
        """The string whose characters have the given ids (an int array of shape (n,))."""
        return "".join(np.asarray(list(self.vocab))[np.asarray(ids)])


def encode_text(text: str, vocab: str = TEXT_VOCAB) -> np.ndarray:
    """``text`` as int32 ids into ``vocab`` (id i is ``vocab[i]``), shape (len(text),).

    A character outside ``vocab`` raises a ValueError naming it (never a silent id)."""
    if len(set(vocab)) != len(vocab):
        raise ValueError(f"vocab has repeated characters: {vocab!r}")
    bad = sorted(set(text) - set(vocab))
    if bad:
        raise ValueError(f"text has {len(bad)} character(s) outside the vocabulary: {bad[:10]}")
    codes = np.frombuffer(text.encode("utf-32-le"), np.uint32)   # one code point per character
    table = np.zeros(max(map(ord, vocab), default=0) + 1, np.int32)
    table[[ord(c) for c in vocab]] = np.arange(len(vocab), dtype=np.int32)
    return table[codes]


def decode_text_file(packed: bytes) -> str:
    """The text of a gzip-compressed corpus file, after checking its SHA-256 against ``TEXT_SHA256``."""
    raw = gzip.decompress(packed)
    digest = hashlib.sha256(raw).hexdigest()
    if digest != TEXT_SHA256:
        raise ValueError(f"python_stdlib.txt.gz has changed: its text has sha256 {digest}, "
                         f"expected {TEXT_SHA256} (regenerate with lab/datasets/make_text.py "
                         "and update TEXT_SHA256)")
    return raw.decode("ascii")


def load_text(*, validation_fraction: float = 0.1) -> Text:
    """A ~1 MB character-level corpus: 14 Python standard-library modules (PSF licence).

    The text ships inside the package (``lab/datasets/python_stdlib.txt.gz``, made by
    ``lab/datasets/make_text.py``; source and licence in ``lab/datasets/TEXT_LICENSE.md``)
    and never touches the network; its SHA-256 is checked on every load.  The vocabulary
    is the fixed string ``TEXT_VOCAB`` (96 characters: newline and printable ASCII, id
    = position), the same whatever the split.  The split is deterministic: the last
    ``round(validation_fraction * n)`` characters are held out for validation, the rest
    (the first ones) are for training.  Returns a :class:`Text`."""
    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must lie in (0, 1), got {validation_fraction}")
    with resources.files("lab").joinpath(TEXT_FILE).open("rb") as fh:
        text = decode_text_file(fh.read())
    ids = encode_text(text, TEXT_VOCAB)
    n_val = int(round(validation_fraction * ids.size))
    if n_val == 0 or n_val == ids.size:
        raise ValueError(f"validation_fraction={validation_fraction} leaves an empty split of {ids.size} characters")
    return Text(text, TEXT_VOCAB, jnp.asarray(ids[:-n_val]), jnp.asarray(ids[-n_val:]))


# --------------------------------------------------------------------------- MNIST-1D, breast cancer

BREAST_CANCER_FILE = "datasets/breast_cancer.npz"
BREAST_CANCER_SHA256 = "e534f129789c8c5a6ef9facd53cd98b5fcf46481de1da69b152f89c86fbfc048"
_MNIST1D_CACHE: dict = {}  # lab.mnist1d.Mnist1dArgs -> lab.mnist1d.Mnist1d, filled on first use


def load_mnist1d(seed: int = 42, *, dtype=jnp.float32, **options) -> tuple[Array, Array, Array, Array]:
    """MNIST-1D (Greydanus 2020, arXiv:2011.14439): returns ``(x_train, y_train, x_test, y_test)``.

    With the defaults, the paper's data set: ``x`` of shape (4000, 40) and (1000, 40) in
    ``dtype`` (standardised over the whole set), ``y`` int32 digit labels 0..9.  Nothing
    ships: :func:`lab.mnist1d.generate` makes the arrays from ``seed`` on the first call
    for given arguments (about 1 s of NumPy) and they are cached in memory for the rest
    of the process.  ``options`` are further generator arguments, the fields of
    :class:`lab.mnist1d.Mnist1dArgs` (``num_samples``, ``shuffle_seq``, ...); an unknown
    name or an invalid value raises ValueError."""
    from lab import mnist1d
    args = mnist1d.arguments(seed=seed, **options)
    if args not in _MNIST1D_CACHE:
        _MNIST1D_CACHE[args] = mnist1d.generate(args)
    d = _MNIST1D_CACHE[args]
    return (jnp.asarray(d.x, dtype=dtype), jnp.asarray(d.y, dtype=jnp.int32),
            jnp.asarray(d.x_test, dtype=dtype), jnp.asarray(d.y_test, dtype=jnp.int32))


def load_breast_cancer(*, dtype=jnp.float32) -> tuple[Array, Array]:
    """Breast Cancer Wisconsin (Diagnostic) (Street, Wolberg & Mangasarian 1993; UCI): 569 x 30.

    Returns ``(x, y)``: ``x`` (569, 30) in ``dtype``, the raw features (not standardised:
    their scales run from 1e-3 to 4e3, so fit :func:`fit_standardizer` on the training
    part and :func:`standardize` before training); ``y`` int32 (569,) with scikit-learn's
    coding, 0 = malignant (212) and 1 = benign (357).  The file ships inside the package
    (``lab/datasets/breast_cancer.npz``, scikit-learn's copy, BSD-3; source and licence in
    ``lab/datasets/BREAST_CANCER_LICENSE.md``); its SHA-256 is checked against
    ``BREAST_CANCER_SHA256`` on every load.  Column names: :func:`breast_cancer_feature_names`."""
    arrays = _read_breast_cancer()
    return jnp.asarray(arrays["features"], dtype=dtype), jnp.asarray(arrays["labels"], dtype=jnp.int32)


def breast_cancer_feature_names() -> tuple[str, ...]:
    """The names of :func:`load_breast_cancer`'s 30 columns, "mean radius" to "worst fractal dimension"."""
    return tuple(str(name) for name in _read_breast_cancer()["feature_names"])


def _read_breast_cancer() -> dict[str, np.ndarray]:
    import hashlib
    import io
    raw = resources.files("lab").joinpath(BREAST_CANCER_FILE).read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if digest != BREAST_CANCER_SHA256:
        raise ValueError(f"breast_cancer.npz has changed: sha256 {digest}, expected {BREAST_CANCER_SHA256}")
    with np.load(io.BytesIO(raw), allow_pickle=False) as z:
        arrays = {name: z[name] for name in z.files}
    if arrays["features"].shape != (569, 30) or arrays["labels"].shape != (569,):
        raise ValueError(f"breast_cancer.npz is damaged: features {arrays['features'].shape}, "
                         f"labels {arrays['labels'].shape}")
    return arrays
