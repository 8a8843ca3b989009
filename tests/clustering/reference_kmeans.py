"""Best inertia of scikit-learn KMeans (k-means++, n_init restarts, Lloyd): input `k n_init`, rows."""
import sys
import warnings

import numpy as np
from sklearn.cluster import KMeans

with open(sys.argv[1]) as f:
    k, n_init = (int(v) for v in f.readline().split())
    x = np.loadtxt(f, ndmin=2)
warnings.simplefilter("ignore")
best = KMeans(n_clusters=k, n_init=n_init, init="k-means++", algorithm="lloyd",
              random_state=0).fit(x).inertia_
open(sys.argv[2], "w").write("%r\n" % float(best))
