"""The ActiveCLIP bench's noise bounds alone: how many updates would a perfect caption filter save?

    python bench/activeclip_oracle.py --seeds=0,1,2
    # = bench/activeclip.py --arms=uniform,oracle,oracle_filter --name=activeclip-oracle

Trains the bench's uniform arm and its two perfect filters with the settings of
`bench/activeclip.py`: `oracle`, uniform on the pool's clean pairs only (the filter applied to the
whole pool before training), and `oracle_filter`, the filter in the loop at activeclip's f = 0.5
(each super-batch's clean pairs kept first, corrupted ones only to fill b). Writes
bench/results/activeclip-oracle.{json,md}. Every option of `bench/activeclip.py` applies.
"""

from __future__ import annotations

import sys

from activeclip import main
from common import run_main

if __name__ == "__main__":
    sys.argv[1:1] = ["--arms=uniform,oracle,oracle_filter", "--name=activeclip-oracle"]
    sys.exit(run_main(main))
