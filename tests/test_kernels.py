"""Return/advantage kernels (zoo.returns) against naive references written from the definitions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from zoo import returns as K
from zoo.returns import discounted_returns, gae, nstep_targets, vtrace

BACKENDS = ("numba", "torch")
F64 = dict(rtol=1e-9, atol=1e-9)
F32 = dict(rtol=1e-4, atol=1e-4)


# --------------------------------------------------------------------------
# naive references: forward sums over each env's time line, straight from the definitions
# --------------------------------------------------------------------------


def ref_next_value(t, i, values, term, trunc, boot, last):
    if term[t, i]:
        return 0.0
    if trunc[t, i]:
        return boot[t, i]
    return last[i] if t == len(values) - 1 else values[t + 1, i]


def ref_segment_end(t, i, term, trunc):
    """Last step of the episode segment that starts at t within the block (inclusive)."""
    T = term.shape[0]
    s = t
    while s < T - 1 and not (term[s, i] or trunc[s, i]):
        s += 1
    return s


def ref_discounted_returns(r, term, trunc, boot, last, gamma):
    T, N = r.shape
    G = np.zeros((T, N))
    for i in range(N):
        for t in range(T):
            e = ref_segment_end(t, i, term, trunc)
            total = sum(gamma ** (s - t) * r[s, i] for s in range(t, e + 1))
            if not term[e, i]:
                tail = boot[e, i] if trunc[e, i] else last[i]
                total += gamma ** (e - t + 1) * tail
            G[t, i] = total
    return G


def ref_gae(r, v, term, trunc, boot, last, gamma, lam):
    """Schulman et al. 2016 eq. 16, summed forward up to the end of each episode segment."""
    T, N = r.shape
    delta = np.zeros((T, N))
    for i in range(N):
        for t in range(T):
            delta[t, i] = r[t, i] + gamma * ref_next_value(t, i, v, term, trunc, boot, last) - v[t, i]
    A = np.zeros((T, N))
    for i in range(N):
        for t in range(T):
            e = ref_segment_end(t, i, term, trunc)
            A[t, i] = sum((gamma * lam) ** (s - t) * delta[s, i] for s in range(t, e + 1))
    return A, A + v


def ref_nstep(r, term, trunc, n, gamma):
    T, N = r.shape
    ret, disc, idx = np.zeros((T, N)), np.zeros((T, N)), np.zeros((T, N), dtype=np.int64)
    for i in range(N):
        for t in range(T):
            m = 1
            while m < n and t + m < T and not (term[t + m - 1, i] or trunc[t + m - 1, i]):
                m += 1
            ret[t, i] = sum(gamma ** k * r[t + k, i] for k in range(m))
            disc[t, i] = 0.0 if term[t + m - 1, i] else gamma ** m
            idx[t, i] = t + m - 1
    return ret, disc, idx


def ref_vtrace(log_rhos, r, v, term, trunc, boot, last, gamma, rho_bar, c_bar, lam):
    """Espeholt et al. 2018 eq. 1 as written: vs_t = V_t + sum_s gamma^(s-t) (prod_{t<=j<s} c_j) delta_s V."""
    T, N = r.shape
    ratio = np.exp(log_rhos)
    rho, c = np.minimum(rho_bar, ratio), lam * np.minimum(c_bar, ratio)
    vs, adv = np.zeros((T, N)), np.zeros((T, N))
    for i in range(N):
        for t in range(T):
            e = ref_segment_end(t, i, term, trunc)
            total, weight = 0.0, 1.0
            for s in range(t, e + 1):
                delta = rho[s, i] * (r[s, i] + gamma * ref_next_value(s, i, v, term, trunc, boot, last) - v[s, i])
                total += weight * delta
                weight *= gamma * c[s, i]
            vs[t, i] = v[t, i] + total
        for t in range(T):
            vs_next = ref_next_value(t, i, vs, term, trunc, boot, last)
            adv[t, i] = rho[t, i] * (r[t, i] + gamma * vs_next - v[t, i])
    return vs, adv


# --------------------------------------------------------------------------
# random trajectories
# --------------------------------------------------------------------------

unit = st.one_of(st.just(0.0), st.just(1.0), st.floats(0.0, 1.0))


@st.composite
def trajectories(draw, max_T=9, max_N=4):
    T = draw(st.integers(1, max_T))
    N = draw(st.integers(1, max_N))
    term = draw(arrays(np.bool_, (T, N)))
    trunc = draw(arrays(np.bool_, (T, N)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    r, v = rng.normal(size=(T, N)), rng.normal(size=(T, N))
    # Values that must be ignored are NaN: a kernel that reads them fails.
    boot = np.where(trunc & ~term, rng.normal(size=(T, N)), np.nan)
    last = np.where(term[-1] | trunc[-1], np.nan, rng.normal(size=N))
    log_rhos = rng.normal(scale=0.7, size=(T, N))
    return dict(r=r, v=v, term=term, trunc=trunc, boot=boot, last=last, log_rhos=log_rhos)


def every_position(T=5):
    """Termination, truncation, and both, each at every step (env groups), plus one env that never ends."""
    N = 3 * T + 1
    term, trunc = np.zeros((T, N), bool), np.zeros((T, N), bool)
    for t in range(T):
        term[t, t] = True
        trunc[t, T + t] = True
        term[t, 2 * T + t] = trunc[t, 2 * T + t] = True
    rng = np.random.default_rng(7)
    r, v = rng.normal(size=(T, N)), rng.normal(size=(T, N))
    boot = np.where(trunc & ~term, rng.normal(size=(T, N)), np.nan)
    last = np.where(term[-1] | trunc[-1], np.nan, rng.normal(size=N))
    return dict(r=r, v=v, term=term, trunc=trunc, boot=boot, last=last, log_rhos=rng.normal(size=(T, N)))


def as32(*xs):
    return [x.astype(np.float32) if getattr(x, "dtype", None) == np.float64 else x for x in xs]


def check(got, want, tol):
    for g, w in zip(got, want):
        g = g.numpy() if isinstance(g, torch.Tensor) else g
        assert np.all(np.isfinite(g))
        np.testing.assert_allclose(g, w, **tol)


def run_all_ways(fn, ref, args, kwargs=None):
    """Both backends in float64 against the reference; float32 against each other and the reference."""
    kwargs = kwargs or {}
    res32 = []
    for backend in BACKENDS:
        got = fn(*args, backend=backend, **kwargs)
        got = got if isinstance(got, tuple) else (got,)
        assert all(g.dtype in (np.float64, np.int64) for g in got)
        check(got, ref, F64)
        got32 = fn(*as32(*args), backend=backend, **kwargs)
        got32 = got32 if isinstance(got32, tuple) else (got32,)
        assert got32[0].dtype == np.float32
        scale = 1.0 + max(float(np.abs(w).max()) for w in ref)
        check(got32, ref, dict(rtol=1e-4, atol=1e-4 * scale))
        res32.append(got32)
    check(res32[1], res32[0], dict(rtol=1e-4, atol=1e-5 * scale))


# --------------------------------------------------------------------------
# property tests
# --------------------------------------------------------------------------


@settings(max_examples=50, deadline=None)
@given(trajectories(), unit)
def test_discounted_returns_matches_reference(d, gamma):
    ref = ref_discounted_returns(d["r"], d["term"], d["trunc"], d["boot"], d["last"], gamma)
    run_all_ways(discounted_returns, (ref,), (d["r"], d["term"], d["trunc"], d["boot"], d["last"], gamma))


@settings(max_examples=50, deadline=None)
@given(trajectories(), unit, unit)
def test_gae_matches_reference(d, gamma, lam):
    ref = ref_gae(d["r"], d["v"], d["term"], d["trunc"], d["boot"], d["last"], gamma, lam)
    run_all_ways(gae, ref, (d["r"], d["v"], d["term"], d["trunc"], d["boot"], d["last"], gamma, lam))


@settings(max_examples=50, deadline=None)
@given(trajectories(), unit, st.integers(1, 11))
def test_nstep_targets_match_reference(d, gamma, n):
    ref = ref_nstep(d["r"], d["term"], d["trunc"], n, gamma)
    run_all_ways(nstep_targets, ref, (d["r"], d["term"], d["trunc"], n, gamma))
    for backend in BACKENDS:
        idx = nstep_targets(d["r"], d["term"], d["trunc"], n, gamma, backend=backend)[2]
        np.testing.assert_array_equal(idx, ref[2])


@settings(max_examples=50, deadline=None)
@given(trajectories(), unit, unit, st.sampled_from([(1.0, 1.0), (2.0, 0.5), (0.7, 1.3), (math.inf, math.inf)]))
def test_vtrace_matches_reference(d, gamma, lam, bars):
    rho_bar, c_bar = bars
    ref = ref_vtrace(d["log_rhos"], d["r"], d["v"], d["term"], d["trunc"], d["boot"], d["last"],
                     gamma, rho_bar, c_bar, lam)
    run_all_ways(vtrace, ref, (d["log_rhos"], d["r"], d["v"], d["term"], d["trunc"], d["boot"], d["last"],
                               gamma, rho_bar, c_bar, lam))


@settings(max_examples=50, deadline=None)
@given(trajectories(), unit, unit)
def test_vtrace_on_policy_is_discounted_return_and_gae(d, gamma, lam):
    zeros = np.zeros_like(d["r"])
    args = (d["r"], d["term"], d["trunc"], d["boot"], d["last"])
    G = discounted_returns(*args, gamma)
    for backend in BACKENDS:
        vs, pg = vtrace(zeros, d["r"], d["v"], d["term"], d["trunc"], d["boot"], d["last"], gamma, backend=backend)
        np.testing.assert_allclose(vs, G, **F64)
        np.testing.assert_allclose(pg, G - d["v"], **F64)
        # With lam < 1 on-policy V-trace targets are the TD(lambda) returns of GAE.
        vs_lam, _ = vtrace(zeros, d["r"], d["v"], d["term"], d["trunc"], d["boot"], d["last"], gamma, lam=lam,
                           backend=backend)
        _, ret = gae(d["r"], d["v"], d["term"], d["trunc"], d["boot"], d["last"], gamma, lam, backend=backend)
        np.testing.assert_allclose(vs_lam, ret, **F64)


@pytest.mark.parametrize("gamma,lam,n", [(0.9, 0.8, 3), (1.0, 1.0, 1), (0.0, 0.5, 7)])
def test_ends_at_every_position(gamma, lam, n):
    d = every_position()
    a = (d["r"], d["term"], d["trunc"], d["boot"], d["last"])
    run_all_ways(discounted_returns, (ref_discounted_returns(*a, gamma),), (*a, gamma))
    av = (d["r"], d["v"], d["term"], d["trunc"], d["boot"], d["last"])
    run_all_ways(gae, ref_gae(*av, gamma, lam), (*av, gamma, lam))
    flags = (d["r"], d["term"], d["trunc"])
    run_all_ways(nstep_targets, ref_nstep(*flags, n, gamma), (*flags, n, gamma))
    ref = ref_vtrace(d["log_rhos"], *av, gamma, 1.0, 1.0, lam)
    run_all_ways(vtrace, ref, (d["log_rhos"], *av, gamma, 1.0, 1.0, lam))


def test_numba_and_torch_agree_on_a_long_float32_rollout():
    rng = np.random.default_rng(3)
    T, N = 256, 16
    r, v = rng.normal(size=(T, N)).astype(np.float32), rng.normal(size=(T, N)).astype(np.float32)
    term, trunc = rng.random((T, N)) < 0.02, rng.random((T, N)) < 0.02
    boot, last = rng.normal(size=(T, N)).astype(np.float32), rng.normal(size=N).astype(np.float32)
    lr = rng.normal(scale=0.3, size=(T, N)).astype(np.float32)
    pairs = [
        lambda b: (discounted_returns(r, term, trunc, boot, last, 0.99, backend=b),),
        lambda b: gae(r, v, term, trunc, boot, last, 0.99, 0.95, backend=b),
        lambda b: nstep_targets(r, term, trunc, 5, 0.99, backend=b),
        lambda b: vtrace(lr, r, v, term, trunc, boot, last, 0.99, lam=0.95, backend=b),
    ]
    for f in pairs:
        for x, y in zip(f("numba"), f("torch")):
            assert x.dtype == y.dtype
            np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-3)


# --------------------------------------------------------------------------
# hand-computed case and stable-baselines3
# --------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_gae_hand_computed_truncation(backend):
    # T=3, N=1, gamma=0.5, lam=0.5; r=[1,2,3], V=[0.5,1,1.5]; truncated after t=1 with
    # V(final obs)=4; last_values=2.
    #   t=2: delta = 3 + 0.5*2   - 1.5 = 2.5;  A2 = 2.5
    #   t=1: delta = 2 + 0.5*4   - 1.0 = 3.0;  A1 = 3.0 (truncation: no A2 term)
    #   t=0: delta = 1 + 0.5*1.0 - 0.5 = 1.0;  A0 = 1.0 + 0.25*3.0 = 1.75
    #   returns = A + V = [2.25, 4.0, 4.0]
    # Terminated too at t=1 (termination wins): delta1 = 2 - 1 = 1, A1 = 1, A0 = 1 + 0.25 = 1.25.
    # Discounted returns (truncated only): G2 = 3 + 0.5*2 = 4, G1 = 2 + 0.5*4 = 4, G0 = 1 + 0.5*4 = 3.
    r = np.array([[1.0], [2.0], [3.0]])
    v = np.array([[0.5], [1.0], [1.5]])
    term = np.zeros((3, 1), bool)
    trunc = np.array([[False], [True], [False]])
    boot = np.array([[0.0], [4.0], [0.0]])
    last = np.array([2.0])
    adv, ret = gae(r, v, term, trunc, boot, last, 0.5, 0.5, backend=backend)
    np.testing.assert_allclose(adv[:, 0], [1.75, 3.0, 2.5])
    np.testing.assert_allclose(ret[:, 0], [2.25, 4.0, 4.0])
    np.testing.assert_allclose(discounted_returns(r, term, trunc, boot, last, 0.5, backend=backend)[:, 0],
                               [3.0, 4.0, 4.0])
    adv, _ = gae(r, v, trunc, trunc, boot, last, 0.5, 0.5, backend=backend)
    np.testing.assert_allclose(adv[:, 0], [1.25, 1.0, 2.5])


def test_gae_matches_stable_baselines3_without_truncation():
    from gymnasium import spaces
    from stable_baselines3.common.buffers import RolloutBuffer

    rng = np.random.default_rng(11)
    T, N, gamma, lam = 32, 4, 0.97, 0.9
    r, v = rng.normal(size=(T, N)).astype(np.float32), rng.normal(size=(T, N)).astype(np.float32)
    term = rng.random((T, N)) < 0.15
    term[0, 0] = term[-1, 1] = True
    last = rng.normal(size=N).astype(np.float32)
    buf = RolloutBuffer(T, spaces.Box(-1, 1, (1,)), spaces.Discrete(2), device="cpu",
                        gae_lambda=lam, gamma=gamma, n_envs=N)
    buf.rewards[:] = r
    buf.values[:] = v
    # SB3 marks episode *starts*: step t+1 starts an episode iff ours ended at step t; the
    # rollout's last step is passed as `dones`. episode_starts[0] is never read.
    buf.episode_starts[1:] = term[:-1]
    buf.episode_starts[0] = 1.0
    buf.compute_returns_and_advantage(last_values=torch.from_numpy(last), dones=term[-1])
    no_trunc = np.zeros((T, N), bool)
    for backend in BACKENDS:
        adv, ret = gae(r, v, term, no_trunc, np.zeros_like(r), last, gamma, lam, backend=backend)
        np.testing.assert_allclose(adv, buf.advantages, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(ret, buf.returns, rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------
# input kinds, dtypes, out arrays
# --------------------------------------------------------------------------


def test_tensor_inputs_give_tensors_and_float_flags_are_accepted():
    d = every_position(4)
    t = {k: torch.from_numpy(x) for k, x in d.items()}
    want = gae(d["r"], d["v"], d["term"], d["trunc"], d["boot"], d["last"], 0.9, 0.7)
    float_flags = (t["term"].float(), t["trunc"].to(torch.int64))
    for backend in (None, "numba", "torch"):
        got = gae(t["r"], t["v"], *float_flags, t["boot"], t["last"], 0.9, 0.7, backend=backend)
        for g, w in zip(got, want):
            assert isinstance(g, torch.Tensor) and g.dtype == torch.float64
            np.testing.assert_allclose(g.numpy(), w, **F64)
    # Mixed numpy / tensor inputs; float32 tensors with float64 numpy values promote to float64.
    got = discounted_returns(t["r"].float(), d["term"].astype(np.float32), d["trunc"], d["boot"], d["last"], 0.9)
    assert isinstance(got, torch.Tensor) and got.dtype == torch.float64
    # numpy flags as lists and ints
    got = nstep_targets(d["r"].tolist(), d["term"].astype(int), d["trunc"].tolist(), 2, 0.9)
    np.testing.assert_allclose(got[0], ref_nstep(d["r"], d["term"], d["trunc"], 2, 0.9)[0], **F64)


@pytest.mark.parametrize("backend", BACKENDS)
def test_out_arrays_are_filled(backend):
    d = every_position(4)
    a = (d["r"], d["v"], d["term"], d["trunc"], d["boot"], d["last"], 0.9, 0.7)
    want = gae(*a)
    out = (np.empty_like(d["r"]), np.empty_like(d["r"]))
    got = gae(*a, out=out, backend=backend)
    assert got[0] is out[0] and got[1] is out[1]
    check(got, want, F64)
    t = [torch.from_numpy(x) if isinstance(x, np.ndarray) else x for x in a]
    tout = (torch.empty(d["r"].shape, dtype=torch.float64), torch.empty(d["r"].shape, dtype=torch.float64),
            torch.empty(d["r"].shape, dtype=torch.int64))
    got = nstep_targets(t[0], t[2], t[3], 3, 0.9, out=tout, backend=backend)
    assert all(g is o for g, o in zip(got, tout))
    check(got, ref_nstep(d["r"], d["term"], d["trunc"], 3, 0.9), F64)
    single = np.empty_like(d["r"])
    assert discounted_returns(d["r"], d["term"], d["trunc"], d["boot"], d["last"], 0.9, out=single,
                              backend=backend) is single


def test_numba_kernels_are_cached():
    from numba.core.caching import NullCache

    for k in (K._discounted_returns_kernel, K._gae_kernel, K._nstep_kernel, K._vtrace_kernel):
        assert not isinstance(k._cache, NullCache)


# --------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------


def _good(T=4, N=2):
    z = np.zeros((T, N))
    return dict(r=z, v=z, term=z.astype(bool), trunc=z.astype(bool), boot=z, last=np.zeros(N))


def test_bad_shapes_name_the_argument():
    g = _good()
    with pytest.raises(ValueError, match=r"rewards must have shape \(T, N\)"):
        discounted_returns(np.zeros(4), np.zeros(4), np.zeros(4), np.zeros(4), np.zeros(1), 0.9)
    with pytest.raises(ValueError, match=r"values must have shape \(T, N\) = \(4, 2\).*got shape \(4, 3\)"):
        gae(g["r"], np.zeros((4, 3)), g["term"], g["trunc"], g["boot"], g["last"], 0.9, 0.9)
    with pytest.raises(ValueError, match=r"last_values must have shape \(N,\) = \(2,\)"):
        gae(g["r"], g["v"], g["term"], g["trunc"], g["boot"], np.zeros(3), 0.9, 0.9)
    with pytest.raises(ValueError, match="truncated must have shape"):
        nstep_targets(g["r"], g["term"], np.zeros((2, 4), bool), 3, 0.9)
    with pytest.raises(ValueError, match="log_rhos must have shape"):
        vtrace(np.zeros((2, 2)), g["r"], g["v"], g["term"], g["trunc"], g["boot"], g["last"], 0.9)
    with pytest.raises(ValueError, match="bootstrap_values must have shape"):
        discounted_returns(g["r"], g["term"], g["trunc"], np.zeros((4, 1)), g["last"], 0.9)


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), "x", None])
def test_bad_gamma_and_lam(bad):
    g = _good()
    with pytest.raises(ValueError, match="gamma"):
        discounted_returns(g["r"], g["term"], g["trunc"], g["boot"], g["last"], bad)
    with pytest.raises(ValueError, match="lam"):
        gae(g["r"], g["v"], g["term"], g["trunc"], g["boot"], g["last"], 0.9, bad)
    with pytest.raises(ValueError, match="gamma"):
        nstep_targets(g["r"], g["term"], g["trunc"], 3, bad)


def test_other_bad_inputs():
    g = _good()
    for n in (0, -2, 1.5, True, "3"):
        with pytest.raises(ValueError, match="n must be an integer >= 1"):
            nstep_targets(g["r"], g["term"], g["trunc"], n, 0.9)
    with pytest.raises(ValueError, match="rho_bar"):
        vtrace(g["r"], g["r"], g["v"], g["term"], g["trunc"], g["boot"], g["last"], 0.9, rho_bar=-1.0)
    with pytest.raises(TypeError, match="rewards must hold real numbers"):
        discounted_returns(np.full((4, 2), "a"), g["term"], g["trunc"], g["boot"], g["last"], 0.9)
    with pytest.raises(TypeError, match="bootstrap_values is required"):
        discounted_returns(g["r"], g["term"], g["trunc"], None, g["last"], 0.9)
    with pytest.raises(ValueError, match="backend"):
        discounted_returns(g["r"], g["term"], g["trunc"], g["boot"], g["last"], 0.9, backend="jax")
    with pytest.raises(ValueError, match="one device"):
        discounted_returns(torch.zeros(4, 2), torch.zeros(4, 2, device="meta"), g["trunc"], g["boot"], g["last"], 0.9)
    with pytest.raises(ValueError, match=r"out advantages must have shape \(4, 2\) and dtype float64"):
        gae(g["r"], g["v"], g["term"], g["trunc"], g["boot"], g["last"], 0.9, 0.9,
            out=(np.zeros((4, 2), np.float32), np.zeros((4, 2))))
    with pytest.raises(TypeError, match="out must be a tuple of 2"):
        gae(g["r"], g["v"], g["term"], g["trunc"], g["boot"], g["last"], 0.9, 0.9, out=np.zeros((4, 2)))
    r = np.zeros((4, 2))
    with pytest.raises(ValueError, match="overlaps an input"):
        discounted_returns(r, g["term"], g["trunc"], g["boot"], g["last"], 0.9, out=r)
