"""AMI / NMI of labelings with scikit-learn: input blocks of `n`, true labels, predicted labels.

Per normalisation prints `ami nmi conditioned`; conditioned is 0 when the AMI denominator
(average entropy - expected MI) is below 1e-9 of the average: AMI is then 0/0 and scikit-learn's
value is rounding noise of its own log and summation order (0.8 or 1.0 for the same kind of input).
"""
import sys

import numpy as np
from sklearn.metrics import adjusted_mutual_info_score, normalized_mutual_info_score
from sklearn.metrics.cluster import contingency_matrix, entropy
from sklearn.metrics.cluster._expected_mutual_info_fast import expected_mutual_information
from sklearn.metrics.cluster._supervised import _generalized_average

lines = open(sys.argv[1]).read().split("\n")
out = []
i = 0
while i < len(lines) and lines[i].strip():
    n = int(lines[i])
    true = [int(v) for v in lines[i + 1].split()]
    pred = [int(v) for v in lines[i + 2].split()]
    assert len(true) == n and len(pred) == n
    for method in ("arithmetic", "max", "geometric", "min"):
        ami = adjusted_mutual_info_score(true, pred, average_method=method)
        nmi = normalized_mutual_info_score(true, pred, average_method=method)
        c = contingency_matrix(true, pred, sparse=True).astype(np.float64)
        emi = expected_mutual_information(c, n)
        average = _generalized_average(entropy(true), entropy(pred), method)
        # average = 0 (a single-valued labeling) gives MI = EMI = 0 exactly: AMI 0, well defined.
        conditioned = int(average == 0 or abs(average - emi) > 1e-9 * average)
        out.append("%r %r %d" % (float(ami), float(nmi), conditioned))
    i += 3
open(sys.argv[2], "w").write("\n".join(out) + "\n")
