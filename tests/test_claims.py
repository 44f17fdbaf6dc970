"""The claims study: registry, verdict rules (each flips on a contrary measurement),
a few claims measured at tiny size, and the CLAIMS.md generator."""
import json

import numpy as np
import pytest

from studies import claims
from studies.claims import CAVEAT, FAILS, HOLDS

TINY = claims.Config(steps=20, seeds=1)
BY_ID = {c.id: c for c in claims.all_claims()}


def test_registry_ids_unique_seeds_known_and_contract():
    assert len(BY_ID) == len(claims.all_claims()) >= 25
    assert {c.seed for c in BY_ID.values()} <= set(claims.SEED_FILES)
    assert len({c.seed for c in BY_ID.values()}) == 5              # every seed file contributes
    assert all(c.statement and c.rule and c.topic for c in BY_ID.values())
    assert claims.QUICK.steps < claims.FULL.steps
    with pytest.raises(KeyError, match="unknown claim ids.*nonsense"):
        claims.select(claims.Config(only="xor_needs_hidden_layer,nonsense"))
    assert [c.id for c in claims.select(claims.Config(only="one_hot_encoding, xor_needs_hidden_layer"))] == \
        ["one_hot_encoding", "xor_needs_hidden_layer"]


# (claim id, measurement that supports it, measurement that contradicts it, expected contrary verdict)
FLIPS = [
    ("sigmoid_vanishing", {"depth": 10, "first_over_last": {"sigmoid": 1e-5}}, {"depth": 10, "first_over_last": {"sigmoid": 0.3}}, FAILS),
    ("l1_robust_to_outliers", {"l1_error": 0.01, "l2_error": 1.0}, {"l1_error": 1.0, "l2_error": 0.9}, FAILS),
    ("ce_beats_mse_gradient", {"ratio_at_minus8": 3e3}, {"ratio_at_minus8": 2.0}, FAILS),
    ("tanh_beats_sigmoid", {"final_tanh": 0.1, "final_sigmoid": 1.0}, {"final_tanh": 1.0, "final_sigmoid": 0.9}, FAILS),
    ("adagrad_steps_shrink", {"adagrad": {"late_over_early": 0.1}}, {"adagrad": {"late_over_early": 0.9}}, FAILS),
    ("width_approximates", {"widths": [1, 2, 4], "median": [1.0, 0.1, 1e-3]}, {"widths": [1, 2, 4], "median": [1.0, 1e-3, 5e-3]}, CAVEAT),
    ("sgd_escapes_saddle", {"steps": 200, "gd": {"final": 0.0}, "sgd": {"final": -0.25}},
     {"steps": 200, "gd": {"final": 0.0}, "sgd": {"final": -1e-3}}, FAILS),
    ("momentum_damps_oscillation",
     {"gd": {"final": 1.0, "steep_path": 3.0}, "momentum": {"final": 1e-4, "steep_path": 2.0}, "momentum_tuned": {"final": 1e-9}},
     {"gd": {"final": 1.0, "steep_path": 3.0}, "momentum": {"final": 1e-4, "steep_path": 20.0}, "momentum_tuned": {"final": 1e-9}},
     CAVEAT),
    ("clipping_tames_explosion", {"initial": 2.5, "plain": {"peak": 1e20, "final": 2.3}, "clipped": {"peak": 2.5, "final": 2.0}},
     {"initial": 2.5, "plain": {"peak": 3.0, "final": 2.3}, "clipped": {"peak": 2.5, "final": 2.0}}, FAILS),
    ("lstm_keeps_long_gradients", {"T": 60, "rnn": {"first_over_last": 1e-6}, "lstm": {"first_over_last": 1e-2},
                                   "lstm_fb3": {"first_over_last": 1.0}},
     {"T": 60, "rnn": {"first_over_last": 1e-6}, "lstm": {"first_over_last": 1e-5}, "lstm_fb3": {"first_over_last": 1.0}}, CAVEAT),
]


FLIPS.append(("small_batches_fewer_epochs_more_seconds",
              {"batches": [1, 512], "epochs": 3, "1": {"loss": [2.3, 0.2], "seconds_per_epoch": 0.5},
               "512": {"loss": [2.3, 2.0], "seconds_per_epoch": 0.01}},
              {"batches": [1, 512], "epochs": 3, "1": {"loss": [2.3, 0.2], "seconds_per_epoch": 0.02},
               "512": {"loss": [2.3, 2.0], "seconds_per_epoch": 0.01}}, FAILS))


@pytest.mark.parametrize("claim_id,supporting,contrary,expected", FLIPS, ids=[f[0] for f in FLIPS])
def test_verdict_reads_the_measurement(claim_id, supporting, contrary, expected):
    verdict = BY_ID[claim_id].verdict
    assert verdict(supporting).verdict == HOLDS
    got = verdict(contrary)
    assert got.verdict == expected
    assert (got.caveat != "") == (expected == CAVEAT)


def test_epoch_definition_verdict_has_three_outcomes():
    def case(b, steps):
        return {"batch": b, "expected": 2 * -(-200 // b), "per_epoch": -(-200 // b), "per_epoch_drop_last": 200 // b, "steps": steps}
    verdict = BY_ID["epoch_iteration_batch"].verdict
    assert verdict({"epochs": 2, "cases": [case(7, 58)]}).verdict == HOLDS
    assert verdict({"epochs": 2, "cases": [case(7, 56)]}).verdict == CAVEAT
    assert verdict({"epochs": 2, "cases": [case(7, 57)]}).verdict == FAILS


def test_tiny_claims_measure_the_expected_numbers():
    grad = BY_ID["softmax_ce_gradient"].run(TINY, ":memory:")
    assert grad["max_abs_diff"] < 1e-12 * grad["max_abs_grad"] + 1e-15       # float64 in the tests
    collapse = BY_ID["no_activation_is_linear"].run(TINY, ":memory:")
    assert collapse["max_abs_diff"] < 1e-5 * collapse["scale"]            # float32 nets
    hot = BY_ID["one_hot_encoding"].run(TINY, ":memory:")
    assert hot["row_sums"] == [1.0] * 5 and hot["values"] == [0.0, 1.0] and hot["ce_diff"] < 1e-12
    drop = BY_ID["dropout_keeps_expectation"].run(TINY, ":memory:")
    assert drop["standard"]["test_over_input"] == pytest.approx(0.5)
    assert drop["inverted"]["test_over_input"] == pytest.approx(1.0)
    assert drop["standard"]["final"] < 0.03 and drop["inverted"]["final"] < 0.03
    saddle = BY_ID["sgd_escapes_saddle"].run(TINY, ":memory:")
    assert abs(saddle["gd"]["final"]) < 1e-12                                  # v never leaves 0 under exact GD
    assert saddle["sgd"]["final"] == pytest.approx(-0.25, abs=0.02)             # noise finds a minimum, f = -1/4
    ce = BY_ID["ce_beats_mse_gradient"].run(TINY, ":memory:")
    z = np.array(ce["z"])
    sig = 1 / (1 + np.exp(-z))
    np.testing.assert_allclose(ce["ce"], 1 - sig, rtol=1e-9)                  # |dCE/dz| = 1 - sigmoid(z)
    np.testing.assert_allclose(ce["mse"], 2 * (1 - sig) * sig * (1 - sig), rtol=1e-9)


def test_run_load_plot_and_claims_md(tmp_path):
    config = claims.Config(steps=20, seeds=1, only="one_hot_encoding,no_activation_is_linear,ce_beats_mse_gradient")
    store = tmp_path / "results" / "lab.sqlite"
    results = claims.run(config, store=store, progress=False)
    assert [r["id"] for r in results["claims"]] == config.only.split(",")
    assert all(r["verdict"] == HOLDS for r in results["claims"])
    assert json.loads((tmp_path / "results" / "claims.json").read_text()) == claims.load(config, store=store)
    with pytest.raises(LookupError, match="not"):
        claims.load(claims.Config(steps=21, seeds=1, only=config.only), store=store)
    paths = claims.plot(results, outdir=tmp_path / "figures")
    expected = [f"{i}.{e}" for i in config.only.split(",") for e in ("png", "svg")] + ["CLAIMS.md"]
    assert sorted(p.name for p in paths) == sorted(expected)
    assert all(p.exists() for p in paths)
    md = (tmp_path / "CLAIMS.md").read_text()  # written by plot, beside the figures folder
    table = [line for line in md.splitlines() if line.startswith("| ")]
    assert table[0] == "| id | claim | seed file | verdict | key number | figure |"
    assert len(table) == 1 + 3
    assert "[one_hot_encoding.png](figures/claims/one_hot_encoding.png)" in md
    assert "000_3987a72f56222afd.txt" in md and "3 claims: 3 holds" in md


# --- the claims of batch_and_sparse, recurrent_and_capacity and loss_definitions -----------------

def _batch_measurement(gap_small, sharp_small):
    """A two-batch, two-lr measurement of the batch sweep; batch 256's gap is 0.6 and sharpness 1."""
    return {"batches": [8, 256], "lrs": [0.1, 1.0], "common_lr": 0.1, "initial_loss": 2.3,
            "gap": [[[gap_small] * 3, [0.9] * 3], [[0.6] * 3, [0.7] * 3]],
            "test_accuracy": [[[0.8] * 3, [0.7] * 3], [[0.8] * 3, [0.8] * 3]],
            "sharpness": [[[sharp_small] * 3, [0.3] * 3], [[1.0] * 3, [0.2] * 3]],
            "final_train_loss": [[0.05, 0.04], [0.05, 0.003]], "diverged": [[0.0, 0.0], [0.0, 0.0]]}


def _sparse(sgd, adagrad, adam):
    return {k: {"rare_error": e, "dense_error": 0.01, "best_lr": 0.1} for k, e in (("sgd", sgd), ("adagrad", adagrad), ("adam", adam))}


def _init(relu_glorot):
    return {"depth": 20, "relu_glorot_theory": 2.0 ** -9, "relu_he_normal": {"last_over_first": 0.9},
            "relu_glorot_normal": {"last_over_first": relu_glorot}, "tanh_glorot_normal": {"last_over_first": 0.5},
            "tanh_he_normal": {"last_over_first": 1.1}}


def _mean_loss(batch_error):
    return {"loss_rel_diff": {"ce": 1e-7}, "grad_rel_diff": {"ce": 1e-7}, "batch_error": [batch_error],
            "batch_predicted": [0.032], "masks": 2000, "batch": 16, "tolerance": 1e-5}


NEW_FLIPS = [
    ("adaptive_steps_for_sparse_features", _sparse(0.1, 1e-3, 1e-3), _sparse(0.1, 1e-3, 0.09), CAVEAT),
    ("small_batch_generalises", _batch_measurement(0.3, 1.0), _batch_measurement(0.6, 1.0), FAILS),
    ("large_batch_sharp_minima", _batch_measurement(0.6, 0.2), _batch_measurement(0.6, 1.1), FAILS),
    ("larger_batch_larger_lr",
     {"batches": [8, 256], "lrs": [0.1, 0.3, 1.0], "initial_loss": 2.3, "final_train_loss": [[0.5, 0.2, 9.0], [0.6, 0.3, 0.1]],
      "diverged": [[0.0, 0.0, 1.0], [0.0, 0.0, 0.0]]},
     {"batches": [8, 256], "lrs": [0.1, 0.3, 1.0], "initial_loss": 2.3, "final_train_loss": [[0.5, 0.2, 9.0], [0.6, 0.3, 9.0]],
      "diverged": [[0.0, 0.0, 1.0], [0.0, 0.0, 1.0]]}, FAILS),
    ("gd_reaches_convex_minimum", {"steps": [300], "batches": [256, 8], "gd_worst": 1e-7, "sgd_median": 0.05},
     {"steps": [300], "batches": [256, 8], "gd_worst": 1e-7, "sgd_median": 1e-5}, CAVEAT),
    ("rnn_gradients_explode", {"lengths": [5, 80], "3.0": {"param_grad": [1.0, 1e5]}, "1.0": {"param_grad": [1.0, 5.0]}},
     {"lengths": [5, 80], "3.0": {"param_grad": [1.0, 50.0]}, "1.0": {"param_grad": [1.0, 5.0]}}, FAILS),
    ("rnn_gradients_vanish", {"lengths": [5, 10, 80], "0.5": {"first_input_gain": [0.06, 0.001, 0.0]}},
     {"lengths": [5, 10, 80], "0.5": {"first_input_gain": [0.06, 0.01, 1e-9]}}, FAILS),
    ("clipping_rescues_rnn_training",
     {"lrs": [0.01, 0.1], "initial": 1.5, "final": [[0.2, float("inf")], [1.0, 0.3]], "diverged": [[0.0, 1.0], [0.0, 0.0]]},
     {"lrs": [0.01, 0.1], "initial": 1.5, "final": [[0.2, 0.4], [1.0, 0.3]], "diverged": [[0.0, 0.0], [0.0, 0.0]]}, FAILS),
    ("dropconnect_keeps_expectation", {"masks": 4000, "final": 0.016, "final_predicted": 0.014, "test_over_weights": 0.0},
     {"masks": 4000, "final": 0.1, "final_predicted": 0.014, "test_over_weights": 0.0}, FAILS),
    ("dropconnect_regularises", {"gap": [0.35, 0.2], "test_accuracy": [0.87] * 2},
     {"gap": [0.35, 0.3], "test_accuracy": [0.87] * 2}, FAILS),
    ("overfitting_grows_with_capacity",
     {"params": [160, 1210, 9610], "gap": [[0.1] * 3, [0.2] * 3, [0.5] * 3], "accuracy_gap": [[0.0] * 3, [0.1] * 3, [0.2] * 3]},
     {"params": [160, 1210, 9610], "gap": [[1.3] * 3, [0.7] * 3, [0.8] * 3], "accuracy_gap": [[0.3] * 3, [0.2] * 3, [0.2] * 3]},
     FAILS),
    ("init_matches_activation", _init(0.0017), _init(0.5), FAILS),
    ("cross_entropy_is_log_loss", {"curve_rel_diff": 1e-7, "random_rel_diff": 1e-8, "tolerance": 1e-5, "ce": [18.42]},
     {"curve_rel_diff": 1e-2, "random_rel_diff": 1e-8, "tolerance": 1e-5, "ce": [18.42]}, FAILS),
    ("multiclass_ce_extends_binary", {"worst": 1e-7, "tolerance": 1e-5}, {"worst": 0.1, "tolerance": 1e-5}, FAILS),
    ("set_loss_is_mean_of_examples", _mean_loss(0.03), _mean_loss(0.2), FAILS),
]


@pytest.mark.parametrize("claim_id,supporting,contrary,expected", NEW_FLIPS, ids=[f[0] for f in NEW_FLIPS])
def test_new_claims_verdicts_read_the_measurement(claim_id, supporting, contrary, expected):
    test_verdict_reads_the_measurement(claim_id, supporting, contrary, expected)


def test_capacity_verdict_caveat_when_not_monotone():
    m = {"params": [160, 1210, 9610], "gap": [[0.1] * 3, [0.5] * 3, [0.3] * 3], "accuracy_gap": [[0.0] * 3] * 3}
    got = BY_ID["overfitting_grows_with_capacity"].verdict(m)
    assert got.verdict == CAVEAT and "monotone" in got.caveat


def test_new_claims_registered_with_seeds():
    new = [f[0] for f in NEW_FLIPS]
    assert len(set(new)) == len(new) == 15 and set(new) <= set(BY_ID)
    assert len(BY_ID) >= 46
    assert all(BY_ID[i].seed in {"000", "001", "002"} for i in new)


def test_tiny_new_claims_measure_the_theory():
    rnn = BY_ID["rnn_gradients_explode"].run(TINY, ":memory:")
    assert rnn["lengths"] == [5, 10, 20, 40, 80] and set(rnn["scales"]) == {0.5, 1.0, 3.0}
    gain = np.array(rnn["0.5"]["first_input_gain"])
    assert np.all(gain <= 0.5 ** (np.array(rnn["lengths"]) - 1.0) * (1 + 1e-6))   # |W_h| = 0.5, |tanh'| <= 1
    assert rnn["3.0"]["param_grad"][-1] > 1e3 * rnn["3.0"]["param_grad"][0]
    dc = BY_ID["dropconnect_keeps_expectation"].run(TINY, ":memory:")
    assert dc["test_over_weights"] < 1e-6                  # test time is x (pW) + b
    assert 0.5 * dc["final_predicted"] < dc["final"] < 2 * dc["final_predicted"]
    assert len(dc["relative_error"]) == dc["masks"] == 4000
    binary = BY_ID["multiclass_ce_extends_binary"].run(TINY, ":memory:")
    assert binary["tolerance"] == 1e-12 and binary["worst"] < 1e-11    # float64 in the tests
    init = BY_ID["init_matches_activation"].run(TINY, ":memory:")
    assert len(init["relu_he_normal"]["stds"]) == 19
    ratio = init["relu_glorot_normal"]["last_over_first"] / init["relu_glorot_theory"]
    assert 0.5 < ratio < 2                                 # ReLU + Glorot: std x 2^(-1/2) per layer


def test_tiny_convex_sweep_contracts_at_the_gradient_descent_rate():
    from studies.claims import batch_and_sparse
    m = BY_ID["gd_reaches_convex_minimum"].run(TINY, ":memory:")
    d = np.array(m["distance"])
    assert d.shape == (2, 1, 10) and m["steps"] == list(range(2, 21, 2))
    x, _, _ = batch_and_sparse._convex_data()
    design = np.concatenate([x, np.ones((x.shape[0], 1))], axis=1)
    eig = np.linalg.eigvalsh(2 * design.T @ design / x.shape[0])   # Hessian of the MSE
    rate = np.max(np.abs(1 - 0.1 * eig))                               # GD's contraction per step, lr 0.1
    assert np.all(d[0, 0, 1:] <= d[0, 0, :-1] * rate ** 2 * (1 + 1e-9))  # two steps between evaluations
    assert d[0, 0, -1] < 0.2 * d[0, 0, 0]


def test_epochs_vs_clock_measures_every_batch_size():
    claim = BY_ID["small_batches_fewer_epochs_more_seconds"]
    m = claim.run(TINY, ":memory:")
    assert m["batches"] == [1, 32, 512] and m["epochs"] == 3
    for b in m["batches"]:
        assert len(m[str(b)]["loss"]) == 4 and m[str(b)]["seconds_per_epoch"] > 0
    # same start for every batch size; 512 single-example updates per epoch beat one full-batch update
    assert len({round(m[str(b)]["loss"][0], 6) for b in m["batches"]}) == 1
    assert m["1"]["loss"][-1] < m["512"]["loss"][-1]
    assert claim.verdict(m).verdict in (HOLDS, FAILS)
