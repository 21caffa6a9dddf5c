"""learnability: active data selection ("Bad Students Make Great Teachers", Evans et al. 2024).

Public API for your own training loop:
    Selector        the per-step object: score a super-batch, select, train the online proxy, account
    super_batches   a DataLoader of (batch, ids) super-batches from any dataset
    RunLogger       write metrics in the format `learnability report` reads
    functional      pure per-example losses, scores, samplers and FLOP formulas
"""

from learnability import functional
from learnability.flops import Ledger, ModelCost
from learnability.loader import super_batches
from learnability.reference import ReferenceLosses
from learnability.runlog import RunLogger
from learnability.selector import Selection, Selector

__version__ = "0.1.0"
__all__ = ["Ledger", "ModelCost", "ReferenceLosses", "RunLogger", "Selection", "Selector", "functional",
           "super_batches"]
