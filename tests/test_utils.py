"""Tests of the helpers: devices, seeds, optional imports (skvae/_utils.py)."""

import numpy as np
import pytest
import torch
from numpy.testing import assert_array_equal

from skvae._utils import (adam_options, check_device_name, derive_seed, import_optional,
                          make_generator, make_seed, resolve_device)


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:0", "cuda:12", "mps"])
def test_check_device_name_accepts(device):
    assert check_device_name(device)


@pytest.mark.parametrize("device", ["gpu", "CUDA", "cuda:", "cuda:x", "cuda:-1", " cpu", "cpu ",
                                    "", 0, None, torch.device("cpu")])
def test_check_device_name_rejects(device):
    assert not check_device_name(device)


def test_resolve_device_auto(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda *args: False)
    assert resolve_device("auto") == "cpu"
    assert resolve_device("cpu") == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda *args: True)
    assert resolve_device("auto") == "cuda"


@pytest.mark.parametrize("device", ["cuda", "cuda:0", "cuda:3"])
def test_resolve_device_cuda_without_cuda_is_an_error(monkeypatch, device):
    monkeypatch.setattr(torch.cuda, "is_available", lambda *args: False)
    with pytest.raises(ValueError, match=f"device='{device}'.*CUDA is not available.*"
                                         "device='auto'"):
        resolve_device(device)


def test_resolve_device_checks_the_cuda_index(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda *args: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda *args: 2)
    assert resolve_device("cuda") == "cuda"
    assert resolve_device("cuda:1") == "cuda:1"
    with pytest.raises(ValueError, match=r"device='cuda:2'.*only 2 CUDA device"):
        resolve_device("cuda:2")


def test_resolve_device_mps_without_mps(monkeypatch):
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda *args: False)
    with pytest.raises(ValueError, match="mps.*not available"):
        resolve_device("mps")


def test_make_seed_from_int_is_fixed():
    seeds = {make_seed(0) for _ in range(3)}
    assert len(seeds) == 1
    assert make_seed(0) != make_seed(1)
    assert 0 <= make_seed(123) < np.iinfo(np.int32).max
    assert make_seed(0) == np.random.RandomState(0).randint(np.iinfo(np.int32).max)


def test_make_seed_advances_a_random_state_by_one_draw():
    rng = np.random.RandomState(7)
    first, second = make_seed(rng), make_seed(rng)
    assert first != second
    reference = np.random.RandomState(7)
    assert [first, second] == [reference.randint(np.iinfo(np.int32).max) for _ in range(2)]


def test_make_seed_none_is_fresh_and_leaves_numpy_alone():
    np.random.seed(0)
    state = np.random.get_state()
    seeds = {make_seed(None) for _ in range(5)}
    assert len(seeds) == 5
    after = np.random.get_state()
    assert_array_equal(after[1], state[1])
    assert after[2] == state[2]


def test_derive_seed():
    assert derive_seed(5, 1) == derive_seed(5, 1)
    # (numpy's SeedSequence ignores trailing zero keys: derive_seed(5, 0) equals
    # derive_seed(5); skvae always passes its keys in full)
    values = {derive_seed(5, 0), derive_seed(5, 1), derive_seed(5, 2), derive_seed(5, 1, 2),
              derive_seed(6, 0), derive_seed(6, 1)}
    assert len(values) == 6
    assert all(isinstance(v, int) and v >= 0 for v in values)


def test_make_generator():
    a = torch.randn(4, generator=make_generator(3))
    assert torch.equal(a, torch.randn(4, generator=make_generator(3)))
    assert not torch.equal(a, torch.randn(4, generator=make_generator(4)))
    assert make_generator(3).device.type == "cpu"
    # numpy integers and the largest derived seeds work
    make_generator(np.int64(3))
    make_generator(derive_seed(2**31, 5))


def test_adam_options():
    options = adam_options("cpu")
    assert options in ({"fused": True}, {"foreach": True})
    module = torch.nn.Linear(3, 1)
    optimizer = torch.optim.Adam(module.parameters(), lr=0.1, **options)
    module(torch.ones(2, 3)).sum().backward()
    optimizer.step()


def test_import_optional():
    assert import_optional("math", extra="plot", caller="f") is __import__("math")
    with pytest.raises(ImportError, match=r"plot_latent_space needs 'skvae_not_a_module'.*"
                                          r'pip install "skvae\[plot\]"'):
        import_optional("skvae_not_a_module.pyplot", extra="plot", caller="plot_latent_space")
