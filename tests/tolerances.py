"""The one table of tolerances the tests compare with, and why each is what it is.

Every comparison in the suite names one of these (``np.testing.assert_allclose(..., rtol=tol.EXACT64)``), so
a tolerance is chosen by what is compared, not typed anew. Relative unless the name ends in ``_ABS``.
"""

import numpy as np

# float64, one quantity by two exact routes (the fast path against A.5's tape.jacobian reference, a recorded
# quadratic against its brute-force sum, an op's map against TensorFlow's JVP): rounding of a few thousand
# operations in a different order.
EXACT64 = 1e-12
EXACT64_ABS = 1e-14
# float64 through long sums and deep products (many rounds, a whole network's Jacobian, float64 records of a
# float32 run's values): the same, with more operations behind each number.
SUMS64 = 1e-10
SUMS64_ABS = 1e-12
# float64 through a solve (normal equations with a pseudo-inverse, an eigendecomposition, an L-BFGS stopped at
# a gradient norm of 1e-9 or below), or a gradient read through one.
SOLVED64 = 1e-9
SOLVED64_ABS = 1e-10
# Two different solvers' optima of one convex problem (ours against scipy or least squares), each stopped at
# its own tolerance: they agree to about the square root of the product of the gradient tolerance and the
# curvature scale.
OPTIMA64 = 1e-8
OPTIMA64_LOOSE = 1e-7
# float32 against Keras' or TensorFlow's own float32 kernels (the same ops in another order or fusion).
KERAS32 = 1e-5
KERAS32_ABS = 1e-6
# float32 weights after several optimizer steps (rounding accumulates through the update's division and root).
STEPS32 = 2e-6
STEPS32_ABS = 1e-7
# float32 through a whole network and its backward pass, compared variable by variable.
NETWORK32 = 2e-5
NETWORK32_ABS = 2e-6
# A closed-form approximation that holds to first order (RMSProp's first step ≈ lr·sign(g)·√10 from zero).
FIRST_ORDER = 1e-3

# nta.solvers.minimize against closed forms: relative tolerances on the value and the minimiser, and the
# gradient-norm tolerance handed to it, by dtype (float32 minimisers are ill-determined along flat directions).
MINIMIZE = {
    np.float64: {"value": 1e-6, "v": 1e-5, "grad": 1e-6},
    np.float32: {"value": 1e-5, "v": 1e-2, "grad": 1e-4},
}
# By dtype, for tests parametrised over float64 and float32: exact routes.
EXACT = {"float64": SUMS64, "float32": NETWORK32}
