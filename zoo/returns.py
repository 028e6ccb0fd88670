"""Return and advantage estimators: discounted returns, GAE, n-step targets and V-trace.

Every quantity comes three ways: a numba ``@njit(cache=True)`` kernel over
preallocated numpy arrays (``*_numba``), a torch function for tensors on any
device (``*_torch``; vectorised over envs, a Python loop over time, no host
syncs), and a public dispatcher (``discounted_returns``, ``gae``,
``nstep_targets``, ``vtrace``) that validates its inputs and picks the path.

Conventions (time-major, shape ``(T, N)`` = steps x envs):

- ``terminated[t, i]`` / ``truncated[t, i]``: env ``i``'s episode ended after
  step ``t`` by termination / by a time limit. If both are set, termination
  wins (no bootstrap).
- ``bootstrap_values[t, i]``: V(true final observation) where ``truncated``
  (ignored elsewhere); ``last_values[i]``: V(s_T) of the observation after the
  last step (used where step ``T-1`` did not end the episode).
- ``next_value_t`` is ``bootstrap_values[t]`` if truncated, else
  ``values[t+1]`` (``last_values`` at ``t = T-1``), and 0 if terminated.

Dispatchers accept numpy arrays (or array-likes) and torch tensors, with bool,
integer or float flags (nonzero means set). Outputs are float64 if any float
input is float64, else float32, and of the inputs' kind: numpy arrays for
numpy inputs, tensors on the inputs' device as soon as one input is a tensor.
``backend=None`` runs numba for numpy inputs and CPU tensors (zero-copy) and
torch for tensors on an accelerator; ``"numba"`` or ``"torch"`` forces one.
Outputs are targets and carry no gradient. An ``out`` array must not overlap
the inputs.
"""

from __future__ import annotations

import math
import operator
from typing import Optional, Sequence, Union

import numpy as np
import torch
from numba import njit

from zoo.errors import ConfigError

__all__ = [
    "discounted_returns",
    "gae",
    "nstep_targets",
    "vtrace",
    "discounted_returns_numba",
    "gae_numba",
    "nstep_targets_numba",
    "vtrace_numba",
    "discounted_returns_torch",
    "gae_torch",
    "nstep_targets_torch",
    "vtrace_torch",
    "nstep_return",
]

Array = Union[np.ndarray, torch.Tensor]


# ---------------------------------------------------------------------------
# numba kernels (inputs: C-contiguous, one float dtype, bool flags)
# ---------------------------------------------------------------------------


@njit(cache=True, inline="always")
def _edge_value(t, i, T, terminated, truncated, bootstrap_values, last_values):
    """Where the recursion stops at step ``t`` of env ``i``: (True, the value to bootstrap from) at a
    termination (0), a truncation (the final observation's value) or the rollout's end (``last_values``);
    (False, 0) where it carries on from step ``t + 1``."""
    if terminated[t, i]:
        return True, 0.0
    if truncated[t, i]:
        return True, bootstrap_values[t, i]
    if t == T - 1:
        return True, last_values[i]
    return False, 0.0


@njit(cache=True)
def _discounted_returns_kernel(rewards, terminated, truncated, bootstrap_values, last_values, gamma, out):
    T, N = rewards.shape
    for t in range(T - 1, -1, -1):
        for i in range(N):
            edge, nxt = _edge_value(t, i, T, terminated, truncated, bootstrap_values, last_values)
            if not edge:
                nxt = out[t + 1, i]
            out[t, i] = rewards[t, i] + gamma * nxt


@njit(cache=True)
def _gae_kernel(rewards, values, terminated, truncated, bootstrap_values, last_values, gamma, lam,
                adv_out, ret_out):
    T, N = rewards.shape
    for t in range(T - 1, -1, -1):
        for i in range(N):
            carry = 0.0
            edge, nxt = _edge_value(t, i, T, terminated, truncated, bootstrap_values, last_values)
            if not edge:
                nxt = values[t + 1, i]
                carry = adv_out[t + 1, i]
            v = values[t, i]
            a = rewards[t, i] + gamma * nxt - v + gamma * lam * carry
            adv_out[t, i] = a
            ret_out[t, i] = a + v


@njit(cache=True, inline="always")
def nstep_return(rewards, terminated, truncated, t, i, n, gamma, last, num_rows):
    """The n-step return from row ``t`` of column ``i`` (Sutton & Barto 2018, eq. 7.1, without its bootstrap):
    ``sum_{k<m} gamma^k r_{t+k}`` over ``m <= n`` rows, stopping after the first row that ends the episode
    (terminated or truncated) and at row ``last`` (the newest row written). Rows are taken modulo ``num_rows``
    (a circular replay buffer); a ``(T, N)`` block passes ``last = T - 1``, ``num_rows = T``.

    Returns ``(sum, discount, terminated, row)``: ``discount`` is ``gamma^m``, or 0 if the episode terminated
    within the ``m`` rows; ``row`` is the last row summed, whose next observation the target bootstraps from.
    The one n-step kernel of the package: :func:`nstep_targets` and :class:`zoo.buffers.ReplayBuffer` use it.
    """
    total, scale, row, term = 0.0, 1.0, t, False
    for k in range(n):
        row = (t + k) % num_rows
        total += scale * rewards[row, i]
        scale *= gamma
        if terminated[row, i]:
            term = True
            break
        if truncated[row, i] or row == last:
            break
    return total, (0.0 if term else scale), term, row


@njit(cache=True)
def _nstep_kernel(rewards, terminated, truncated, n, gamma, ret_out, disc_out, idx_out):
    T, N = rewards.shape
    for t in range(T):
        for i in range(N):
            total, discount, _, row = nstep_return(rewards, terminated, truncated, t, i, n, gamma, T - 1, T)
            ret_out[t, i] = total
            disc_out[t, i] = discount
            idx_out[t, i] = row


@njit(cache=True)
def _vtrace_kernel(log_rhos, rewards, values, terminated, truncated, bootstrap_values, last_values,
                   gamma, rho_bar, c_bar, lam, vs_out, adv_out):
    T, N = rewards.shape
    for t in range(T - 1, -1, -1):
        for i in range(N):
            ratio = math.exp(log_rhos[t, i])
            rho = min(rho_bar, ratio)
            c = lam * min(c_bar, ratio)
            carry = 0.0
            edge, nxt = _edge_value(t, i, T, terminated, truncated, bootstrap_values, last_values)
            vs_nxt = nxt
            if not edge:
                nxt = values[t + 1, i]
                vs_nxt = vs_out[t + 1, i]
                carry = vs_nxt - nxt
            v = values[t, i]
            r = rewards[t, i]
            vs_out[t, i] = v + rho * (r + gamma * nxt - v) + gamma * c * carry
            adv_out[t, i] = rho * (r + gamma * vs_nxt - v)


def discounted_returns_numba(rewards, terminated, truncated, bootstrap_values, last_values, gamma, out=None):
    """Numba path of :func:`discounted_returns` (prepared inputs: contiguous, one float dtype, bool flags)."""
    if out is None:
        out = np.empty_like(rewards)
    _discounted_returns_kernel(rewards, terminated, truncated, bootstrap_values, last_values, float(gamma), out)
    return out


def gae_numba(rewards, values, terminated, truncated, bootstrap_values, last_values, gamma, lam, out=None):
    """Numba path of :func:`gae`; ``out`` is an ``(advantages, returns)`` pair or None."""
    adv, ret = (np.empty_like(rewards), np.empty_like(rewards)) if out is None else out
    _gae_kernel(rewards, values, terminated, truncated, bootstrap_values, last_values,
                float(gamma), float(lam), adv, ret)
    return adv, ret


def nstep_targets_numba(rewards, terminated, truncated, n, gamma, out=None):
    """Numba path of :func:`nstep_targets`; ``out`` is ``(returns, discounts, bootstrap_index)`` or None."""
    if out is None:
        out = (np.empty_like(rewards), np.empty_like(rewards), np.empty(rewards.shape, dtype=np.int64))
    ret, disc, idx = out
    _nstep_kernel(rewards, terminated, truncated, int(n), float(gamma), ret, disc, idx)
    return ret, disc, idx


def vtrace_numba(log_rhos, rewards, values, terminated, truncated, bootstrap_values, last_values, gamma,
                 rho_bar=1.0, c_bar=1.0, lam=1.0, out=None):
    """Numba path of :func:`vtrace`; ``out`` is a ``(vs, pg_advantages)`` pair or None."""
    vs, adv = (np.empty_like(rewards), np.empty_like(rewards)) if out is None else out
    _vtrace_kernel(log_rhos, rewards, values, terminated, truncated, bootstrap_values, last_values,
                   float(gamma), float(rho_bar), float(c_bar), float(lam), vs, adv)
    return vs, adv


# ---------------------------------------------------------------------------
# torch path (any device; vectorised over envs, loop over time, no host syncs)
# ---------------------------------------------------------------------------


def _next_values_torch(values, terminated, truncated, bootstrap_values, last_values):
    """next_value_t: values[t+1] (last_values at T-1), bootstrap where truncated, 0 where terminated."""
    nxt = torch.cat((values[1:], last_values.unsqueeze(0)), 0)
    nxt = torch.where(truncated, bootstrap_values, nxt)
    return torch.where(terminated, 0.0, nxt)


def _backward_recurrence_torch(b, c, out):
    """``out[t] = b[t] + c[t] * out[t+1]`` with ``out[T] = 0``."""
    T = b.shape[0]
    if T == 0:
        return out
    out[T - 1].copy_(b[T - 1])
    for t in range(T - 2, -1, -1):
        torch.addcmul(b[t], c[t], out[t + 1], out=out[t])
    return out


def _continues(terminated, truncated, dtype):
    return (~(terminated | truncated)).to(dtype)


@torch.no_grad()
def discounted_returns_torch(rewards, terminated, truncated, bootstrap_values, last_values, gamma, out=None):
    """Torch path of :func:`discounted_returns` (prepared inputs: one device and float dtype, bool flags)."""
    # G_t = b_t + gamma * continues_t * G_{t+1}, with every bootstrap folded into b_t.
    zeros = torch.zeros_like(rewards)
    b = rewards + gamma * _next_values_torch(zeros, terminated, truncated, bootstrap_values, last_values)
    c = gamma * _continues(terminated, truncated, rewards.dtype)
    return _backward_recurrence_torch(b, c, torch.empty_like(rewards) if out is None else out)


@torch.no_grad()
def gae_torch(rewards, values, terminated, truncated, bootstrap_values, last_values, gamma, lam, out=None):
    """Torch path of :func:`gae`; ``out`` is an ``(advantages, returns)`` pair or None."""
    adv, ret = (torch.empty_like(rewards), torch.empty_like(rewards)) if out is None else out
    nxt = _next_values_torch(values, terminated, truncated, bootstrap_values, last_values)
    deltas = rewards + gamma * nxt - values
    coef = (gamma * lam) * _continues(terminated, truncated, rewards.dtype)
    _backward_recurrence_torch(deltas, coef, adv)
    torch.add(adv, values, out=ret)
    return adv, ret


@torch.no_grad()
def nstep_targets_torch(rewards, terminated, truncated, n, gamma, out=None):
    """Torch path of :func:`nstep_targets`; ``out`` is ``(returns, discounts, bootstrap_index)`` or None."""
    T, N = rewards.shape
    if out is None:
        out = (torch.empty_like(rewards), torch.empty_like(rewards),
               torch.empty((T, N), dtype=torch.int64, device=rewards.device))
    ret, disc, idx = out
    ret.zero_()
    disc.fill_(1.0)
    count = torch.zeros((T, N), dtype=torch.int64, device=rewards.device)
    alive = torch.ones((T, N), dtype=torch.bool, device=rewards.device)
    done = terminated | truncated
    for k in range(min(int(n), T)):
        L = T - k  # rows t < L have a step t + k inside the block
        a, d = alive[:L], disc[:L]
        ret[:L] += torch.where(a, d * rewards[k:], 0.0)
        count[:L] += a
        disc[:L] = torch.where(a, torch.where(terminated[k:], 0.0, d * gamma), d)
        alive[:L] = a & ~done[k:]
    torch.add(count - 1, torch.arange(T, device=rewards.device).unsqueeze(1), out=idx)
    return ret, disc, idx


@torch.no_grad()
def vtrace_torch(log_rhos, rewards, values, terminated, truncated, bootstrap_values, last_values, gamma,
                 rho_bar=1.0, c_bar=1.0, lam=1.0, out=None):
    """Torch path of :func:`vtrace`; ``out`` is a ``(vs, pg_advantages)`` pair or None."""
    vs, adv = (torch.empty_like(rewards), torch.empty_like(rewards)) if out is None else out
    ratios = torch.exp(log_rhos)
    rhos = torch.clamp(ratios, max=float(rho_bar))
    cs = lam * torch.clamp(ratios, max=float(c_bar))
    nxt = _next_values_torch(values, terminated, truncated, bootstrap_values, last_values)
    deltas = rhos * (rewards + gamma * nxt - values)
    coef = gamma * _continues(terminated, truncated, rewards.dtype) * cs
    _backward_recurrence_torch(deltas, coef, vs)  # vs - V
    vs.add_(values)
    vs_next = _next_values_torch(vs, terminated, truncated, bootstrap_values, last_values)
    torch.mul(rhos, rewards + gamma * vs_next - values, out=adv)
    return vs, adv


# ---------------------------------------------------------------------------
# validation and dispatch
# ---------------------------------------------------------------------------


def _unit(name: str, x) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number in [0, 1], got {x!r}") from None
    if not 0.0 <= v <= 1.0:
        raise ConfigError(f"{name} must be in [0, 1], got {v}")
    return v


def _nonneg(name: str, x) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a non-negative number, got {x!r}") from None
    if not v >= 0.0:
        raise ConfigError(f"{name} must be >= 0 (inf allowed), got {v}")
    return v


def _as_array(name: str, x) -> Array:
    if isinstance(x, torch.Tensor):
        if x.is_complex():
            raise TypeError(f"{name} must hold real numbers or bools, got dtype {x.dtype}")
        return x
    if x is None:
        raise TypeError(f"{name} is required (a numpy array or torch tensor), got None")
    arr = np.asarray(x)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers or bools, got dtype {arr.dtype}")
    return arr


class _Prepared:
    """Validated inputs converted for one backend, plus what the outputs should look like."""

    def __init__(self, floats: dict, flags: dict, per_env: dict, backend: Optional[str]):
        named = {**floats, **flags, **per_env}
        arrays = {k: _as_array(k, v) for k, v in named.items()}
        ref_name = next(iter(floats))
        ref = arrays[ref_name]
        if ref.ndim != 2:
            raise ValueError(f"{ref_name} must have shape (T, N) = (steps, envs), got shape {tuple(ref.shape)}")
        self.shape = T, N = tuple(ref.shape)
        for k, a in arrays.items():
            want = (N,) if k in per_env else (T, N)
            if tuple(a.shape) != want:
                like = f"(N,) = {want}" if k in per_env else f"(T, N) = {want}"
                raise ValueError(f"{k} must have shape {like} to match {ref_name}, got shape {tuple(a.shape)}")
        tensors = [(k, a) for k, a in arrays.items() if isinstance(a, torch.Tensor)]
        self.device = tensors[0][1].device if tensors else None
        for k, a in tensors:
            if a.device != self.device:
                raise ValueError(f"{k} is on {a.device} but {tensors[0][0]} is on {self.device}; "
                                 "put all inputs on one device")
        if backend is None:
            backend = "torch" if self.device is not None and self.device.type != "cpu" else "numba"
        elif backend not in ("numba", "torch"):
            raise ValueError(f"backend must be None, 'numba' or 'torch', got {backend!r}")
        self.backend = backend
        is64 = any(a.dtype == (torch.float64 if isinstance(a, torch.Tensor) else np.float64)
                   for k, a in arrays.items() if k not in flags)
        self.np_dtype = np.float64 if is64 else np.float32
        self.torch_dtype = torch.float64 if is64 else torch.float32
        self.values = {}
        for k, a in arrays.items():
            self.values[k] = self._flag(a) if k in flags else self._float(a)

    def _float(self, a):
        if self.backend == "numba":
            if isinstance(a, torch.Tensor):
                a = a.detach().to("cpu", self.torch_dtype).numpy()
            return np.ascontiguousarray(a, dtype=self.np_dtype)
        if isinstance(a, np.ndarray):
            a = torch.from_numpy(np.ascontiguousarray(a, dtype=self.np_dtype))
        return a.detach().to(self.device or "cpu", self.torch_dtype)

    def _flag(self, a):
        if self.backend == "numba":
            if isinstance(a, torch.Tensor):
                a = (a if a.dtype == torch.bool else a != 0).detach().cpu().numpy()
            return np.ascontiguousarray(a if a.dtype == np.bool_ else a != 0)
        if isinstance(a, np.ndarray):
            a = torch.from_numpy(np.ascontiguousarray(a if a.dtype == np.bool_ else a != 0))
        return (a if a.dtype == torch.bool else a != 0).to(self.device or "cpu")

    # outputs -----------------------------------------------------------------

    def native_out(self, out, names: Sequence[str], int_last: bool = False):
        """Check user ``out`` arrays; return those the backend can write into directly (None elsewhere)."""
        if out is None:
            return None
        single = len(names) == 1
        outs = (out,) if single else tuple(out) if isinstance(out, (tuple, list)) else None
        if outs is None or len(outs) != len(names):
            raise TypeError(f"out must be a tuple of {len(names)} arrays ({', '.join(names)}), "
                            f"got {type(out).__name__}")
        native = []
        for j, (name, o) in enumerate(zip(names, outs)):
            is_int = int_last and j == len(names) - 1
            if self.device is not None:
                if not isinstance(o, torch.Tensor) or o.device != self.device:
                    raise TypeError(f"out {name} must be a tensor on {self.device} like the inputs")
                want = torch.int64 if is_int else self.torch_dtype
            else:
                if not isinstance(o, np.ndarray):
                    raise TypeError(f"out {name} must be a numpy array like the inputs, got {type(o).__name__}")
                want = np.dtype(np.int64) if is_int else np.dtype(self.np_dtype)
            if tuple(o.shape) != self.shape or o.dtype != want:
                raise ValueError(f"out {name} must have shape {self.shape} and dtype {want}, "
                                 f"got shape {tuple(o.shape)} and dtype {o.dtype}")
            n = None
            if self.backend == "numba":
                if isinstance(o, torch.Tensor):
                    o = o.detach().numpy() if o.is_contiguous() and not o.requires_grad else None
                if o is not None and o.flags.c_contiguous and o.flags.writeable:
                    if any(np.may_share_memory(o, v) for v in self.values.values()):
                        raise ValueError(f"out {name} overlaps an input; give separate output arrays")
                    n = o
            elif isinstance(o, torch.Tensor):
                n = o
            native.append(n)
        self._user_out = outs
        self._direct = all(x is not None for x in native)
        return tuple(native) if self._direct else None

    def finish(self, results, out):
        """Convert backend results to the inputs' kind, or copy them into user ``out`` if not written there."""
        if out is not None:
            if not self._direct:
                for o, r in zip(self._user_out, results):
                    if isinstance(o, torch.Tensor):
                        o.copy_(torch.as_tensor(r))
                    else:
                        np.copyto(o, r.cpu().numpy() if isinstance(r, torch.Tensor) else r)
            conv = list(self._user_out)
        elif self.device is not None:
            conv = [torch.from_numpy(r).to(self.device) if isinstance(r, np.ndarray) else r for r in results]
        else:
            conv = [r.cpu().numpy() if isinstance(r, torch.Tensor) else r for r in results]
        return conv[0] if len(conv) == 1 else tuple(conv)


def discounted_returns(rewards, terminated, truncated, bootstrap_values, last_values, gamma, *,
                       out=None, backend=None):
    """Bootstrapped discounted returns (Sutton & Barto eq. 3.9, with bootstraps at truncations and the tail).

    ``G_t = r_t + gamma * (1 - terminated_t) * (bootstrap_values_t if truncated_t
    else G_{t+1}, or last_values at t = T-1)``. Returns ``(T, N)`` returns.
    """
    gamma = _unit("gamma", gamma)
    p = _Prepared({"rewards": rewards, "bootstrap_values": bootstrap_values},
                  {"terminated": terminated, "truncated": truncated},
                  {"last_values": last_values}, backend)
    v = p.values
    native = p.native_out(out, ("returns",))
    fn = discounted_returns_numba if p.backend == "numba" else discounted_returns_torch
    res = fn(v["rewards"], v["terminated"], v["truncated"], v["bootstrap_values"], v["last_values"], gamma,
             out=None if native is None else native[0])
    return p.finish((res,), out)


def gae(rewards, values, terminated, truncated, bootstrap_values, last_values, gamma, lam, *,
        out=None, backend=None):
    """Generalized advantage estimation, Schulman et al. 2016 ("High-dimensional continuous control using
    GAE"), eq. 16: ``A_t = sum_l (gamma lam)^l delta_{t+l}`` with ``delta_t = r_t + gamma V(s_{t+1}) - V(s_t)``
    (eq. 10), computed backwards as ``A_t = delta_t + gamma lam continues_t A_{t+1}``.

    Truncation: where an episode hit a time limit after step ``t``, ``V(s_{t+1})`` is
    ``bootstrap_values[t]`` (the value of the true final observation, not of the
    auto-reset one) and the sum stops there, as at a termination; at a
    termination ``V(s_{t+1}) = 0``. The rollout's tail bootstraps from
    ``last_values``. Returns ``(advantages, returns)`` with ``returns = advantages + values``
    (the TD(lambda) return).
    """
    gamma, lam = _unit("gamma", gamma), _unit("lam", lam)
    p = _Prepared({"rewards": rewards, "values": values, "bootstrap_values": bootstrap_values},
                  {"terminated": terminated, "truncated": truncated},
                  {"last_values": last_values}, backend)
    v = p.values
    native = p.native_out(out, ("advantages", "returns"))
    fn = gae_numba if p.backend == "numba" else gae_torch
    res = fn(v["rewards"], v["values"], v["terminated"], v["truncated"], v["bootstrap_values"],
             v["last_values"], gamma, lam, out=native)
    return p.finish(res, out)


def nstep_targets(rewards, terminated, truncated, n, gamma, *, out=None, backend=None):
    """n-step return targets (Sutton & Barto 2018, eq. 7.1) for a ``(T, N)`` trajectory block.

    For each ``(t, i)``: ``returns = sum_{k<m} gamma^k r_{t+k}``, where ``m <= n`` stops at the
    first step that ends the episode (inclusive) or at the block's end; ``discounts =
    gamma^m`` (0 if the episode terminated within those steps); ``bootstrap_index = t + m - 1``,
    the step whose next observation to bootstrap from. The target is
    ``returns + discounts * Q(next_obs[bootstrap_index])``.
    Returns ``(returns, discounts, bootstrap_index)``, the last int64.
    """
    gamma = _unit("gamma", gamma)
    try:
        n_int = operator.index(n)
    except TypeError:
        raise ConfigError(f"n must be an integer >= 1, got {n!r}") from None
    if isinstance(n, bool) or n_int < 1:
        raise ConfigError(f"n must be an integer >= 1, got {n!r}")
    p = _Prepared({"rewards": rewards}, {"terminated": terminated, "truncated": truncated}, {}, backend)
    v = p.values
    native = p.native_out(out, ("returns", "discounts", "bootstrap_index"), int_last=True)
    fn = nstep_targets_numba if p.backend == "numba" else nstep_targets_torch
    res = fn(v["rewards"], v["terminated"], v["truncated"], n_int, gamma, out=native)
    return p.finish(res, out)


def vtrace(log_rhos, rewards, values, terminated, truncated, bootstrap_values, last_values, gamma,
           rho_bar=1.0, c_bar=1.0, lam=1.0, *, out=None, backend=None):
    """V-trace targets, Espeholt et al. 2018 (IMPALA), eq. 1, and the policy-gradient advantage of sec. 4.2.

    ``log_rhos = log pi(a_t|x_t) - log mu(a_t|x_t)``; ``rho_t = min(rho_bar, e^log_rho)``,
    ``c_t = lam min(c_bar, e^log_rho)``, ``delta_t = rho_t (r_t + gamma next_value_t - V_t)``,
    ``vs_t - V_t = delta_t + gamma continues_t c_t (vs_{t+1} - V_{t+1})``;
    ``pg_adv_t = rho_t (r_t + gamma vs_next_t - V_t)``, ``vs_next_t = vs_{t+1}`` except
    ``bootstrap_values`` at truncations, ``last_values`` at ``T-1`` and 0 at terminations.
    On-policy (``log_rhos = 0``, ``lam = 1``) ``vs`` is :func:`discounted_returns`.
    Returns ``(vs, pg_advantages)``.
    """
    gamma, lam = _unit("gamma", gamma), _unit("lam", lam)
    rho_bar, c_bar = _nonneg("rho_bar", rho_bar), _nonneg("c_bar", c_bar)
    p = _Prepared({"rewards": rewards, "log_rhos": log_rhos, "values": values,
                   "bootstrap_values": bootstrap_values},
                  {"terminated": terminated, "truncated": truncated},
                  {"last_values": last_values}, backend)
    v = p.values
    native = p.native_out(out, ("vs", "pg_advantages"))
    fn = vtrace_numba if p.backend == "numba" else vtrace_torch
    res = fn(v["log_rhos"], v["rewards"], v["values"], v["terminated"], v["truncated"], v["bootstrap_values"],
             v["last_values"], gamma, rho_bar, c_bar, lam, out=native)
    return p.finish(res, out)
