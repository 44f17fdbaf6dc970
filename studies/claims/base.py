"""The claim record and its verdicts, and the seed decks the claims come from.

A claim is a :class:`Claim`: where it came from (``seed``, a key of :data:`SEED_FILES`), what
it says, the rule that turns a measurement into a :class:`Verdict`, and its three functions
(run, verdict, plot; see :mod:`studies.claims`)."""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import NamedTuple

HOLDS, CAVEAT, FAILS = "holds", "holds with a caveat", "does not hold here"

# The lab's shared source material (flashcard decks, not shipped in this repository):
# seed key -> file name, and what each deck covers.
SEED_FILES = {
    "000": "000_3987a72f56222afd.txt", "001": "001_775db1f3b8feb607.txt", "002": "002_571e76fee13970cc.txt",
    "003": "003_10dd62bcb6b9a3e5.txt", "004": "004_e011cc1b13ec8efd.txt",
}
SEED_DECKS = {
    "000": "how networks learn: activations, losses, gradient descent and SGD, overfitting, dropout and "
           "DropConnect, momentum, Adam and RMSprop, one-hot targets",
    "001": "neural networks: vanishing and exploding gradients, backpropagation, the perceptron, CNNs, RNNs "
           "and LSTMs",
    "002": "37 interview questions: architectures, activations, cross-entropy, SGD and its variants, batch size, "
           "momentum, the Hessian, adaptive methods",
    "003": "a first course in deep learning: the perceptron, XOR, MLPs, L1 against L2 loss, ReLU against "
           "sigmoid, backpropagation",
    "004": "a back-propagation quiz: the chain rule, SGD and Adam updates, learning-rate schedules, momentum and "
           "RMSprop, dropout",
}


class Verdict(NamedTuple):
    verdict: str     # HOLDS, CAVEAT or FAILS
    key: str         # the key number, as text with its meaning ("ratio 3e-5")
    caveat: str = ""  # what limits the verdict (required for CAVEAT)


@dataclasses.dataclass(frozen=True)
class Claim:
    id: str                      # short snake_case name; also the figure's file name
    seed: str                    # "000".."004", the seed file it came from
    topic: str
    statement: str               # the claim in our words
    rule: str                    # the verdict rule, thresholds included
    run: Callable                # (config, store) -> measurement dict
    verdict: Callable            # measurement -> Verdict
    plot: Callable               # measurement -> matplotlib figure


def graded(key_text: str, *, holds: bool, core: bool, caveat: str) -> Verdict:
    """HOLDS when ``holds``; CAVEAT (``caveat``) when only the ``core`` of the claim holds;
    FAILS otherwise."""
    if holds:
        return Verdict(HOLDS, key_text)
    if core:
        return Verdict(CAVEAT, key_text, caveat)
    return Verdict(FAILS, key_text)


def ratio_verdict(what: str, a: float, b: float, *, below: float) -> Verdict:
    """HOLDS when ``a / b < below``, with the key text ``"<what> <a/b> (<a> vs <b>)"``."""
    ratio = a / b
    return Verdict(HOLDS if ratio < below else FAILS, f"{what} {ratio:.2g} ({a:.3g} vs {b:.3g})")
