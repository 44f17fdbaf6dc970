"""Neural networks as pure functions over plain pytrees, in the spirit of ``stax``.

Contract.  A layer -- and a whole network, since ``serial`` returns one -- is a
``Layer`` NamedTuple of four pure functions:

    init(key, in_shape, *, dtype=float32)            -> (out_shape, params)
    apply(params, x, *, key=None, train=False)        -> y
    init_with_state(key, in_shape, *, dtype=float32) -> (out_shape, params, state)
    apply_with_state(params, state, x, *, key=None, train=False) -> (y, new_state)

* Shapes are tuples whose first entry is the batch size; any int works there (-1 is
  customary) because init only passes it through.  Inputs to ``apply`` always carry
  the batch axis.  ``dtype`` is the dtype of the params (float32 keeps float32 data
  float32; use float64 params for float64 data: promotion is never implicit).
* Params are plain pytrees: a dict of arrays per layer (``()`` for a layer without
  params), a tuple of those for ``serial``.
* ``key`` is only needed where randomness is (Dropout, DropConnect with train=True);
  ``serial`` splits it, one independent subkey per layer.  ``train`` selects the
  training behaviour of Dropout, DropConnect and BatchNorm and is a Python bool
  (mark it static under ``jax.jit``).
* ``apply`` checks its input against the sizes its params were initialised for
  (features, channels, rank) and raises a ValueError naming the expected and the
  actual shape; a mismatch is never broadcast.

State.  Running statistics are the only state (BatchNorm's running mean and
variance).  They live in a separate ``state`` pytree with the same nesting as
params, created by ``init_with_state`` and threaded by ``apply_with_state``, which
returns the new state instead of mutating anything.  A net without BatchNorm can
ignore state and use the plain pair; a net with BatchNorm must use the stateful pair
(BatchNorm's plain ``apply`` raises).  Training and evaluating a BatchNorm net::

    _, params, state = net.init_with_state(key, (-1, 64))
    def loss(params, state, x, y, key):
        out, state = net.apply_with_state(params, state, x, key=key, train=True)
        return mean_loss(out, y), state
    (value, state), grads = jax.value_and_grad(loss, has_aux=True)(params, state, x, y, key)
    logits, _ = net.apply_with_state(params, state, x_test, train=False)  # running stats

Modules: ``core`` (Layer, serial, Residual, param_count), ``layers`` (Dense, Conv2D,
pools, Flatten, activations, PReLU), ``stochastic`` (Dropout, DropConnect),
``normalization`` (BatchNorm, LayerNorm), ``recurrent`` (SimpleRNN, LSTM), ``attention``
(Embedding, PositionalEmbedding, CausalSelfAttention, TransformerBlock; token ids (B, T)
of an integer dtype, activations (B, T, D)) and ``builders`` (mlp, cnn, rnn, lstm,
transformer_lm, rbf_network, perceptron).
"""
from lab.nets.attention import (CausalSelfAttention, Embedding, PositionalEmbedding, TransformerBlock,
                                causal_softmax)
from lab.nets.builders import (RBF, cnn, lstm, mlp, perceptron, perceptron_update, rbf_network, rnn,
                               transformer_lm)
from lab.nets.core import Layer, Residual, param_count, serial, stateless
from lab.nets.layers import (
    Activation,
    AvgPool,
    Conv2D,
    Dense,
    Elu,
    Flatten,
    Gelu,
    Identity,
    LeakyRelu,
    LogSoftmax,
    MaxPool,
    PReLU,
    Relu,
    Sigmoid,
    Silu,
    Softmax,
    Softplus,
    Step,
    Swish,
    Tanh,
)
from lab.nets.normalization import BatchNorm, LayerNorm
from lab.nets.recurrent import LSTM, SimpleRNN
from lab.nets.stochastic import DropConnect, Dropout

__all__ = [
    "Layer", "serial", "Residual", "stateless", "param_count",
    "Dense", "Conv2D", "MaxPool", "AvgPool", "Flatten",
    "Activation", "Identity", "Step", "Sigmoid", "Tanh", "Relu", "LeakyRelu", "Elu", "Gelu",
    "Swish", "Silu", "Softplus", "Softmax", "LogSoftmax", "PReLU",
    "Dropout", "DropConnect", "BatchNorm", "LayerNorm", "SimpleRNN", "LSTM", "RBF",
    "Embedding", "PositionalEmbedding", "CausalSelfAttention", "TransformerBlock", "causal_softmax",
    "mlp", "cnn", "rnn", "lstm", "transformer_lm", "rbf_network", "perceptron", "perceptron_update",
]
