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


#: Decay of :class:`WeightAverage`, at most: the average's horizon grows with
#: the steps taken (about the last tenth of them) up to 100 steps. Measured on
#: benchmarks/bench_quality.py (26 rows, 3 seeds): every mean held-out score
#: the same or higher than with the last weights, up to 13.6 nats per image on
#: 5,000 MNIST images at k=16 and 3.1 on the swiss roll at k=2, seed spreads
#: smaller (MNIST at k=2: 12.3 -> 4.0 nats); 0.995 lagged behind the MNIST
#: fits still improving at their budget (-1985.8 against -1965.8 at k=2).
AVERAGING_DECAY = 0.99


class WeightAverage:
    """An exponential moving average of a module's parameters (Polyak averaging).

    After step ``t`` of training the average moves towards the parameters by
    ``1 - decay`` with ``decay = min(AVERAGING_DECAY, (1 + t) / (10 + t))``
    (the warm-up of TensorFlow's ``ExponentialMovingAverage``), so that early
    on it follows the fast-moving weights closely. The average of the noisy
    iterates of a stochastic optimizer lies nearer the optimum than its last
    iterate (Polyak & Juditsky 1992): skvae validates, keeps and returns the
    averaged weights, and trains the others.

    ``torch.optim.swa_utils.AveragedModel`` (with ``get_ema_multi_avg_fn``)
    keeps the average in a deep copy of the module, at a fixed decay from its
    first update; skorch validates and early stopping copies ``module_``, so
    here the average is swapped into the module instead (:meth:`use`), and the
    decay warms up with the steps, as the small tables' fits are a few hundred
    steps long.

    Parameters
    ----------
    module : torch.nn.Module
        Its parameters are averaged; their values at construction start the
        average.

    Attributes
    ----------
    steps : int
        Updates so far.
    in_module : bool
        Whether the module holds the averaged weights (and the average the
        trained ones) now: :meth:`use` swaps them.
    """

    def __init__(self, module):
        self.params = [param for param in module.parameters()]
        self.other = [param.detach().clone() for param in self.params]
        self.steps = 0
        self.in_module = False

    def update(self):
        """Move the average towards the module's current (trained) parameters."""
        if self.in_module:
            raise RuntimeError("update() while the module holds the averaged weights")
        self.steps += 1
        decay = min(AVERAGING_DECAY, (1 + self.steps) / (10 + self.steps))
        with torch.no_grad():
            torch._foreach_lerp_(self.other, self.params, 1.0 - decay)

    def use(self, averaged):
        """Put the averaged (True) or the trained (False) weights into the module.

        The parameters trade storage with the average (``Parameter.data``):
        no copy, and the same ``Parameter`` objects, which the optimizer's
        state is keyed by. Twice an epoch, a clone and two copies of every
        parameter cost 0.2-0.5 ms of an iris epoch of about 3.3 ms.
        """
        if averaged == self.in_module:
            return
        for i, (param, other) in enumerate(zip(self.params, self.other)):
            self.other[i], param.data = param.data, other
        self.in_module = averaged
