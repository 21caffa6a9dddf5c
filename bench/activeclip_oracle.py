"""The ActiveCLIP bench's noise bound alone: how many updates would a perfect caption filter save?

    python bench/activeclip_oracle.py --seeds=0,1,2     # = bench/activeclip.py --arms=uniform,oracle --name=activeclip-oracle

Trains the bench's uniform arm and its oracle arm (uniform on the pool's clean pairs only, what a
perfect filter would keep) with the settings of `bench/activeclip.py`, and writes
bench/results/activeclip-oracle.{json,md}. Every option of `bench/activeclip.py` applies.
"""

from __future__ import annotations

import sys

from activeclip import main

if __name__ == "__main__":
    sys.argv[1:1] = ["--arms=uniform,oracle", "--name=activeclip-oracle"]
    sys.exit(main())
