"""Learnability selection inside your own plain-PyTorch training loop.

    python examples/own_loop.py            # Fashion-MNIST, 40% label noise, about a minute on 2 CPU cores

Only the lines marked `# <-` are learnability's; the rest is an ordinary training loop. The run is
written to runs/own-loop/ in the format `learnability report runs/own-loop` reads.
"""

import sys

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from learnability import RunLogger, Selector, super_batches
from learnability.config import DataConfig
from learnability.data import build_data
from learnability.flops import measure_cost
from learnability.models import build_model

STEPS = int(sys.argv[1]) if len(sys.argv) > 1 else 300
OUT = sys.argv[2] if len(sys.argv) > 2 else "runs/own-loop"

# The built-in data stands in for yours: a noisy training set and a small clean one.
splits = build_data(DataConfig(label_noise=0.4, test_size=2000))
train, clean = TensorDataset(splits.pool.x, splits.pool.y), TensorDataset(splits.reference.x, splits.reference.y)
torch.manual_seed(0)

# --- the README's example starts here ---
learner, proxy, reference = (build_model(n, (1, 28, 28), 10) for n in ("cnn_small", "mlp_small", "mlp_small"))
ref_opt = torch.optim.AdamW(reference.parameters(), lr=1e-3)
for epoch in range(5):  # pretrain the small reference on the clean data
    for x, y in DataLoader(clean, batch_size=128, shuffle=True):
        ref_opt.zero_grad(); F.cross_entropy(reference(x), y).backward(); ref_opt.step()

selector = Selector(score="learnability", batch_size=128, proxy=proxy, reference=reference,  # <-
                    proxy_optimizer=torch.optim.AdamW(proxy.parameters(), lr=1e-3), seed=0)   # <-
opt = torch.optim.AdamW(learner.parameters(), lr=1e-3)
for step, (batch, ids) in enumerate(super_batches(train, batch_size=128, filter_ratio=0.5), 1):  # <-
    x, y = selector.select(batch, ids)  # <- 128 of the 256 candidates
    loss = F.cross_entropy(learner(x), y)
    opt.zero_grad(); loss.backward(); opt.step()
    selector.train_proxy((x, y))  # <- the online proxy learns what the learner learns
    selector.charge_learner(learner, (x, y))  # <- count the learner's FLOPs in the ledger
    if step == STEPS:
        break
# --- the README's example ends here ---

learner.eval()
with torch.no_grad():
    accuracy = (learner(splits.test.x).argmax(1) == splits.test.y).float().mean().item()
print(f"test accuracy after {STEPS} selected steps: {accuracy:.4f}")
print("selector ledger (FLOPs):", {k: f"{v:.3g}" for k, v in selector.flops.items()})
selector.charge_reference(flops=5 * len(clean) * measure_cost(reference, (1, 28, 28)).train)  # its pretraining
with RunLogger(OUT, arm="learnability") as log:
    log.write(STEPS, selector.ledger, loss=loss.item(), test_accuracy=accuracy)
print(f"run written to {OUT}")
