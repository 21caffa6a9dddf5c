import math

import pytest
import torch

from learnability import config as C
from learnability.runtime import learner_lr, learner_step
from learnability.schedule import lr_at


def test_constant_without_warmup_is_the_base_rate_every_step():
    assert [lr_at(s, lr=0.003, steps=10) for s in range(1, 11)] == [0.003] * 10


def test_linear_warmup_then_constant():
    got = [lr_at(s, lr=1.0, steps=10, warmup=4) for s in range(1, 11)]
    assert got == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]


def test_cosine_after_warmup_ends_at_the_final_fraction():
    steps, warmup = 11, 1
    got = [lr_at(s, lr=2.0, steps=steps, warmup=warmup, schedule="cosine", final_fraction=0.1) for s in range(1, steps + 1)]
    assert got[0] == 2.0  # the warm-up's last step is the peak
    assert got[-1] == pytest.approx(0.2)
    assert got[5] == pytest.approx(0.2 + 1.8 * 0.5 * (1 + math.cos(math.pi * 0.5)))  # half-way
    assert all(a >= b for a, b in zip(got, got[1:]))


def test_bad_arguments_are_value_errors():
    with pytest.raises(ValueError, match="schedule"):
        lr_at(1, lr=1.0, steps=5, schedule="linear")
    with pytest.raises(ValueError, match="step >= 1"):
        lr_at(0, lr=1.0, steps=5)


@pytest.mark.parametrize("key,value", [("train.warmup", "-1"), ("train.schedule", "step"), ("train.final_lr_fraction", "1.5")])
def test_config_rejects_bad_schedule_settings_naming_the_key(key, value):
    cfg = C.apply_overrides(C.RunConfig(), [f"--{key}={value}"])
    with pytest.raises(C.ConfigError, match=key.replace(".", r"\.")):
        C.validate(cfg)


def test_learner_step_applies_the_schedule_to_the_optimizer():
    cfg = C.apply_overrides(C.RunConfig(), ["--train.steps=4", "--train.warmup=2", "--train.lr=0.1"])
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr)
    seen = []
    for step in range(1, 5):
        learner_step(model, opt, None, lambda: model(torch.ones(1, 2)).sum(), device=torch.device("cpu"),
                     autocast=False, where="test", lr=learner_lr(cfg, step))
        seen.append(opt.param_groups[0]["lr"])
    assert seen == [0.05, 0.1, 0.1, 0.1]
