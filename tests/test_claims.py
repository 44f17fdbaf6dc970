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
