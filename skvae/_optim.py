"""The optimizer skvae trains with: ``torch.optim.Adam``, without ``torch._dynamo``.

Every public method of ``torch.optim.Optimizer`` (``add_param_group``,
``zero_grad``, ``state_dict``, ``load_state_dict``) and ``Adam.step`` is
wrapped so that ``torch.compile`` leaves it alone, and the wrappers import
``torch._dynamo`` on their first call: 2.0-2.4 s on a 2-core machine, in every
fresh process, whatever the model. That was most of the first fit of a
process (iris: 3.4-3.7 s, the same fit again 1.4-1.6 s;
``benchmarks/bench_small_data.py --parts first``), and of every worker's first
fit in a parallel grid search.

:class:`Adam` is ``torch.optim.Adam`` with those methods calling the functions
the wrappers wrap (their ``__wrapped__``, set by ``functools.wraps``), and
``step`` calling PyTorch's functional ``adam`` the same way, with the arguments
``Adam.step`` gives it. The arithmetic, the state and its ``state_dict`` are
PyTorch's own: a model trains to the same bits, and a state saved by either
loads in the other. Where this PyTorch lacks one of those functions or
arguments, :class:`Adam` uses the wrapped method instead (slower to start,
the same steps). skvae never compiles its optimizer, so nothing is lost.
"""

import inspect

import torch
from torch.optim import Optimizer
from torch.optim import adam as _adam_module


def _unwrapped(function):
    """The function that a ``torch._disable_dynamo`` wrapper calls, or None."""
    inner = getattr(function, "__wrapped__", None)
    return inner if callable(inner) else None


_ADD_PARAM_GROUP = _unwrapped(Optimizer.add_param_group)
_ZERO_GRAD = _unwrapped(Optimizer.zero_grad)
_STATE_DICT = _unwrapped(Optimizer.state_dict)
_LOAD_STATE_DICT = _unwrapped(Optimizer.load_state_dict)
_ADAM = _unwrapped(getattr(_adam_module, "adam", None))


def _adam_arguments():
    """The parameter names of PyTorch's functional ``adam``, or None without one."""
    if _ADAM is None:
        return None
    try:
        return frozenset(inspect.signature(_ADAM).parameters)
    except (TypeError, ValueError):
        return None


#: the keyword arguments Adam.step passes from a group
_GROUP_ARGUMENTS = ("amsgrad", "lr", "weight_decay", "eps", "maximize", "foreach",
                    "capturable", "differentiable", "fused", "decoupled_weight_decay")
_ACCEPTED = _adam_arguments()


def _fast_path(group):
    """Whether ``_ADAM`` takes every argument of ``group`` that ``Adam.step`` passes."""
    return (_ACCEPTED is not None and not group.get("differentiable")
            and "beta1" in _ACCEPTED and "beta2" in _ACCEPTED
            and all(key in _ACCEPTED for key in _GROUP_ARGUMENTS if key in group))


class Adam(torch.optim.Adam):
    """``torch.optim.Adam`` whose calls do not import ``torch._dynamo`` (see the module).

    The same parameters, steps and ``state_dict`` as ``torch.optim.Adam``.
    """

    def add_param_group(self, param_group):
        if _ADD_PARAM_GROUP is None:
            return super().add_param_group(param_group)
        return _ADD_PARAM_GROUP(self, param_group)

    def zero_grad(self, set_to_none=True):
        if _ZERO_GRAD is None:
            return super().zero_grad(set_to_none)
        return _ZERO_GRAD(self, set_to_none)

    def state_dict(self):
        if _STATE_DICT is None:
            return super().state_dict()
        return _STATE_DICT(self)

    def load_state_dict(self, state_dict):
        if _LOAD_STATE_DICT is None:
            return super().load_state_dict(state_dict)
        return _LOAD_STATE_DICT(self, state_dict)

    def step(self, closure=None):
        """One Adam step, as ``torch.optim.Adam.step`` takes it."""
        if not hasattr(self, "_init_group") or not all(map(_fast_path, self.param_groups)):
            return super().step(closure)
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        check = getattr(self, "_accelerator_graph_capture_health_check", None) \
            or getattr(self, "_cuda_graph_capture_health_check", None)
        if check is not None:
            check()
        scaling = {"grad_scale": getattr(self, "grad_scale", None),
                   "found_inf": getattr(self, "found_inf", None)}
        with torch.no_grad():
            for group in self.param_groups:
                lists = params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps = (
                    [], [], [], [], [], [])
                has_complex = self._init_group(group, *lists)
                beta1, beta2 = group["betas"]
                options = {key: group[key] for key in _GROUP_ARGUMENTS if key in group}
                extra = {"has_complex": has_complex, **scaling}
                _ADAM(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps,
                      beta1=beta1, beta2=beta2, **options,
                      **{key: value for key, value in extra.items() if key in _ACCEPTED})
        return loss
