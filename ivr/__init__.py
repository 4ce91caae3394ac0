"""On-box AI telephone hotline for financial services."""

import os

# numpy's OpenBLAS threads spin after each product and fight the e5 model's own threads for the
# cores; the router's matrix-vector products are small, so one BLAS thread is faster. Must be
# set before numpy is first imported; an explicit setting in the environment wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

__version__ = "0.1.0"
