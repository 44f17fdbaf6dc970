"""Names and theory constants of the Newton study (:mod:`studies.newton`): the methods of each
part, their labels, and the closed-form numbers the measurements are compared with."""
from __future__ import annotations

import math

QUAD_METHODS = ("newton", "gd", "heavy_ball")
MLP_SECOND_ORDER = ("damped_newton", "saddle_free_newton")
FIRST_ORDER = ("gd", "adam")
ROSENBROCK_METHODS = ("newton", "damped_newton", "gd", "heavy_ball", "adam")
ROSENBROCK_START = (-1.2, 1.0)
LABELS = {"newton": "Newton", "gd": "gradient descent", "heavy_ball": "heavy ball", "adam": "Adam",
          "damped_newton": "damped Newton", "saddle_free_newton": "saddle-free Newton", "newton_cg": "Newton-CG",
          "solve": "LU solve alone"}
SIGMA_PRIME2_MAX = 1.0 / (6.0 * math.sqrt(3.0))   # max |sigma''(z)| of the logistic sigmoid

# Log-log slopes of one step's cost against the parameter count P.
COST_THEORY = {"newton": {"time": "2 (forming H: P HVPs) to 3 (solve)", "memory": 2.0},
               "solve": {"time": 3.0, "memory": 2.0},
               "newton_cg": {"time": 1.0, "memory": 1.0},
               "gd": {"time": 1.0, "memory": 1.0}}

# Fixed draws that shape the problems (part of the sweeps' descriptions).
MINIMISER_KEY = 1          # the quadratic's w* ~ N(0, I) from key(1)
LOGISTIC_DATA_SEED = 0     # numpy default_rng seed of the logistic data set
FEATURE_SCALES = (1.0, 0.25)   # logistic features x_j ~ N(0, s_j^2), s geometric between these
TRUE_WEIGHT_SCALE = 1.5    # logistic w_true ~ N(0, 1.5^2)
LABEL_BIAS = 0.3           # logistic labels ~ Bernoulli(sigmoid(x . w_true + 0.3))
LOGISTIC_INIT_SCALE = 0.5  # logistic starts ~ N(0, 0.5^2) per coordinate
MLP_SUBSET_SEED = 0        # numpy default_rng seed of the digits subset
SLQ_KEY, LANCZOS_KEY = 7, 8   # keys of the SLQ probes and of the Lanczos start vector (spectrum part)
SOLVE_KEY = 1              # key of the random SPD system whose LU solve is timed (cost part)
