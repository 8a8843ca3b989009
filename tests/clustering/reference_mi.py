"""Kolchinsky-Tracey MI bounds computed directly (full N x N, pairwise differences, NumPy).

Input: `sigma2`, then rows `label z_1 ... z_M`. Output: mi_x_upper mi_x_lower mi_y_upper mi_y_lower.
"""
import sys

import numpy as np
from scipy.special import logsumexp

with open(sys.argv[1]) as f:
    sigma2 = float(f.readline())
    data = np.loadtxt(f, ndmin=2)
y = data[:, 0].astype(int)
z = data[:, 1:]


def entropy_estimate(rows, c):
    d = ((rows[:, None, :] - rows[None, :, :]) ** 2).sum(-1)
    n = rows.shape[0]
    return -np.mean(logsumexp(-d / (c * sigma2), axis=1) - np.log(n))


out = []
for c in (2.0, 8.0):
    h = entropy_estimate(z, c)
    cond = sum(np.mean(y == k) * entropy_estimate(z[y == k], c) for k in np.unique(y))
    out.append((h, h - cond))
upper, lower = out
open(sys.argv[2], "w").write("%r %r %r %r\n" % (upper[0], lower[0], upper[1], lower[1]))
