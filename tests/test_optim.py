"""skvae's Adam: torch.optim.Adam's steps and state, without importing torch._dynamo."""

import copy
import subprocess
import sys
import textwrap

import pytest
import torch

from skvae._optim import AVERAGING_DECAY, Adam, WeightAverage
from skvae._utils import adam_options


def _model_and_batches(seed=0):
    gen = torch.Generator().manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 3))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen))
    batches = [torch.randn(16, 5, generator=gen) for _ in range(6)]
    return model, batches


def _groups(model):
    # two groups at different rates, as skvae trains (the variances apart)
    first, *rest = model.parameters()
    return [{"params": [first], "lr": 0.05}, {"params": rest, "lr": 0.01}]


def _train(optimizer_class, options, model, batches, start=None):
    optimizer = optimizer_class(_groups(model), **options)
    if start is not None:
        optimizer.load_state_dict(start)
    for x in batches:
        optimizer.zero_grad()
        model(x).square().mean().backward()
        optimizer.step()
    return optimizer


@pytest.mark.parametrize("options", [
    adam_options("cpu"), {"foreach": True}, {"foreach": False},
    {"weight_decay": 0.1, "amsgrad": True}, {"maximize": True, "betas": (0.8, 0.95)},
], ids=str)
def test_steps_and_state_are_torch_adams(options):
    model, batches = _model_and_batches()
    reference = copy.deepcopy(model)
    ours = _train(Adam, options, model, batches)
    theirs = _train(torch.optim.Adam, options, reference, batches)
    for p, q in zip(model.parameters(), reference.parameters()):
        assert torch.equal(p, q)
    a, b = ours.state_dict(), theirs.state_dict()
    assert a["param_groups"] == b["param_groups"]
    for key in b["state"]:
        for name, value in b["state"][key].items():
            assert torch.equal(a["state"][key][name], value)
    # a state saved by either resumes in the other, to the same steps
    _train(Adam, options, model, batches, start=b)
    _train(torch.optim.Adam, options, reference, batches, start=a)
    for p, q in zip(model.parameters(), reference.parameters()):
        assert torch.equal(p, q)


def test_step_hooks_and_closure():
    model, batches = _model_and_batches()
    optimizer = Adam(model.parameters(), lr=0.01)
    calls = []
    optimizer.register_step_pre_hook(lambda opt, args, kwargs: calls.append("pre"))
    optimizer.register_step_post_hook(lambda opt, args, kwargs: calls.append("post"))

    def closure():
        optimizer.zero_grad()
        loss = model(batches[0]).square().mean()
        loss.backward()
        return loss

    before = [p.detach().clone() for p in model.parameters()]
    loss = optimizer.step(closure)
    assert calls == ["pre", "post"]
    assert loss.ndim == 0 and torch.isfinite(loss)  # the closure's loss
    assert all(not torch.equal(p, q) for p, q in zip(model.parameters(), before))
    optimizer.zero_grad()
    assert all(p.grad is None for p in model.parameters())


def test_a_fit_imports_neither_dynamo_nor_sympy():
    # torch.optim.Adam's methods import torch._dynamo on their first call, and
    # Module.to_empty of meta tensors imports SymPy: 2-3 s of a process's
    # first fit, which skvae does without. What skvae adds is measured: on a
    # GPU image (torch 2.11, H200) `import skorch` loads both, through
    # torch_geometric where it is installed (its isinstance module imports
    # torch._dynamo); on a clean environment all three lines are []
    code = textwrap.dedent("""
        import sys
        def loaded():
            return sorted(m for m in ("torch._dynamo", "sympy") if m in sys.modules)
        import numpy, scipy, pandas, torch, sklearn, skorch  # skvae's dependencies
        print(loaded())
        import numpy as np
        from skvae import VAETransformer
        print(loaded())
        X = np.random.default_rng(0).normal(size=(60, 4))
        model = VAETransformer(2, max_epochs=3, random_state=0, device="cpu").fit(X)
        model.set_params(warm_start=True).fit(X)
        model.partial_fit(X)
        model.score(X)
        print(loaded())
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    dependencies, skvae, fitted = out.stdout.strip().splitlines()[-3:]
    assert skvae == dependencies and fitted == dependencies


# ------------------------------------------------------------- weight averaging

def test_weight_average_follows_the_warmed_up_exponential_average():
    model, _ = _model_and_batches()
    start = [p.detach().clone() for p in model.parameters()]
    average = WeightAverage(model)
    expected = [p.clone() for p in start]
    for t in range(1, 6):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(1.0)
        average.update()
        decay = min(AVERAGING_DECAY, (1 + t) / (10 + t))
        expected = [decay * e + (1 - decay) * p.detach()
                    for e, p in zip(expected, model.parameters())]
    trained = [p.detach().clone() for p in model.parameters()]
    average.use(True)  # the module gets the average, the average keeps the trained weights
    for p, e in zip(model.parameters(), expected):
        torch.testing.assert_close(p.detach(), e)
    assert not any(torch.equal(p.detach(), t) for p, t in zip(model.parameters(), trained))
    average.use(True)  # a second call changes nothing
    for p, e in zip(model.parameters(), expected):
        torch.testing.assert_close(p.detach(), e)
    with pytest.raises(RuntimeError, match="averaged weights"):
        average.update()
    average.use(False)  # back to the trained weights, bit for bit
    for p, t in zip(model.parameters(), trained):
        assert torch.equal(p.detach(), t)


def test_weight_average_of_constant_weights_is_those_weights():
    model, _ = _model_and_batches()
    before = [p.detach().clone() for p in model.parameters()]
    average = WeightAverage(model)
    for _ in range(50):
        average.update()
    average.use(True)
    for p, b in zip(model.parameters(), before):
        torch.testing.assert_close(p.detach(), b)
