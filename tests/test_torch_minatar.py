"""torch/minatar-*: step-for-step equal to MinAtar 1.0.15, batched, on any device."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

import zoo
from zoo.envs.torch_minatar import TORCH_MINATAR, BreakoutTorch, SeaquestTorch
from zoo.errors import ActionError

minatar = pytest.importorskip("minatar")

from minatar_lockstep import Lockstep  # noqa: E402  (beside this file)

GAMES = ("asterix", "breakout", "freeway", "seaquest", "space_invaders")
LEFT, UP, RIGHT, DOWN, FIRE = 1, 2, 3, 4, 5


# ------------------------------------------------------------------ scripted policies (full action codes)

def uniform(ls, rng):
    return rng.integers(0, 6, size=ls.num_envs)


def track_ball(ls, rng):
    """Breakout: move the paddle under the ball, with some noise."""
    out = []
    for env in ls.theirs:
        g = env.env
        a = LEFT if g.ball_x < g.pos else RIGHT if g.ball_x > g.pos else 0
        out.append(a if rng.random() < 0.97 else rng.integers(6))
    return np.array(out)


def mostly(action, p):
    def policy(ls, rng):
        return np.where(rng.random(ls.num_envs) < p, action, rng.integers(0, 6, size=ls.num_envs))
    return policy


def seaquest_diver(ls, rng):
    """Seaquest: chase the nearest diver, fire at enemies in the row, surface when carrying divers or short of air."""
    out = []
    for env in ls.theirs:
        g = env.env
        if g.oxygen < 40 or g.diver_count >= 1 and rng.random() < 0.3:
            a = UP
        elif g.divers:
            d = min(g.divers, key=lambda d: abs(d[0] - g.sub_x) + abs(d[1] - g.sub_y))
            a = DOWN if d[1] > g.sub_y else UP if d[1] < g.sub_y else LEFT if d[0] < g.sub_x else RIGHT
        else:
            a = FIRE if any(e[1] == g.sub_y for e in g.e_fish + g.e_subs) else rng.integers(6)
        out.append(a if rng.random() < 0.8 else rng.integers(6))
    return np.array(out)


def seaquest_patrol(ls, rng):
    """Seaquest: mostly wait at the surface (where nothing reaches the sub), dip a row to fire now and then."""
    out = []
    for env in ls.theirs:
        g = env.env
        if g.sub_y == 0:
            a = rng.choice([DOWN, FIRE, LEFT, RIGHT]) if rng.random() < 0.1 else 0
        else:
            a = rng.choice([UP, FIRE, LEFT, RIGHT])
        out.append(a)
    return np.array(out)


# ------------------------------------------------------------------ start states that reach rare branches

def few_bricks(g, rng):
    g.brick_map[:] = 0
    g.brick_map[2, rng.integers(10)] = 1


def holey_wall(g, rng):
    """Holes in the wall let the ball in, where a bounce can carry it straight into the next brick."""
    g.brick_map[1:4] = rng.random((3, 10)) < 0.5


def asterix_fast(g, rng):
    g.spawn_speed, g.spawn_timer, g.move_speed, g.move_timer, g.ramp_timer, g.ramp_index = 1, 0, 2, 0, 0, 3


def freeway_near_end(g, rng):
    g.terminate_timer = int(rng.integers(20, 200))


def seaquest_full_crew(g, rng):
    g.diver_count, g.sub_y, g.surface, g.oxygen = 6, int(rng.integers(1, 4)), False, int(rng.integers(20, 200))


def seaquest_low_air(g, rng):
    g.oxygen, g.sub_y, g.surface, g.diver_count = int(rng.integers(1, 4)), 5, False, int(rng.integers(0, 3))


def seaquest_no_diver(g, rng):
    g.sub_y, g.surface, g.diver_count = 1, False, 0


def seaquest_crowded(g, rng):
    g.e_spawn_speed, g.e_spawn_timer, g.move_speed, g.ramp_index, g.diver_count = 1, 0, 2, 30, -1


def last_alien(g, rng):
    g.alien_map[:] = 0
    g.alien_map[int(rng.integers(0, 4)), int(rng.integers(0, 10))] = 1


def low_aliens(g, rng):
    g.alien_map[:] = 0
    g.alien_map[5:9, 2:8] = 1
    g.alien_move_timer = 0


# (policy, setup, steps[, the setup on every episode]): all scenarios of a game together must reach every
# listed event.
SCENARIOS = {
    "breakout": [(uniform, None, 300), (track_ball, None, 400), (track_ball, few_bricks, 400),
                 (track_ball, holey_wall, 300, True)],
    "asterix": [(uniform, None, 500), (uniform, asterix_fast, 300)],
    "freeway": [(mostly(UP, 0.8), None, 500), (mostly(UP, 0.9), freeway_near_end, 250)],
    "seaquest": [(uniform, None, 300), (seaquest_diver, None, 500), (mostly(UP, 0.9), seaquest_full_crew, 40),
                 (uniform, seaquest_low_air, 20), (mostly(UP, 1.0), seaquest_no_diver, 5),
                 (seaquest_patrol, seaquest_crowded, 200, True)],
    "space_invaders": [(mostly(FIRE, 0.5), None, 600), (mostly(FIRE, 0.7), last_alien, 200),
                       (mostly(LEFT, 0.5), low_aliens, 150)],
}
EXPECTED_EVENTS = {
    "breakout": {"brick", "terminal", "refill", "pass_through", "paddle"},
    "asterix": {"gold", "terminal", "lanes_full", "ramp", "faster_moves"},
    "freeway": {"cross", "terminal", "hit", "wrap"},
    "seaquest": {"kill", "terminal", "diver_pickup", "surface", "surface_full_crew", "negative_crew", "oxygen_out",
                 "surfaced_without_diver", "enemy_shot", "spawn_blocked_or_hit", "ramp", "crowded"},
    "space_invaders": {"kill", "terminal", "enemy_shot", "new_wave", "ramp", "turn", "aliens_landed"},
}


@pytest.mark.parametrize("game", GAMES)
def test_step_for_step_equal_to_minatar(game):
    """Same states, actions and random numbers: same next state, observation, reward and terminal, every step."""
    events, steps = {}, 0
    for k, (policy, setup, n_steps, *every_episode) in enumerate(SCENARIOS[game]):
        ls = Lockstep(game, num_envs=8, seed=k, setup=setup, every_episode=bool(every_episode))
        rng = np.random.default_rng(100 + k)
        for _ in range(n_steps):
            ls.step(policy(ls, rng))
        steps += n_steps * ls.num_envs
        for name, count in ls.events.items():
            events[name] = events.get(name, 0) + count
    missing = EXPECTED_EVENTS[game] - set(events)
    assert not missing, f"{game}: the scenarios never reached {sorted(missing)} (reached: {events})"
    assert steps >= 4000


@pytest.mark.parametrize("game", GAMES)
def test_equal_on_the_accelerator_code_path(game):
    """Without the host's shortcuts (every env gets a fresh start, kept where done; all Seaquest slots), as on a GPU."""
    ls = Lockstep(game, num_envs=6, seed=5, host_shortcuts=False,
                  setup=freeway_near_end if game == "freeway" else None)
    rng = np.random.default_rng(5)
    for _ in range(250):
        ls.step(rng.integers(0, 6, size=6))
    assert ls.events["episodes"] > 0


@pytest.mark.parametrize("game", ["asterix", "seaquest", "space_invaders"])
def test_equal_without_difficulty_ramping_and_with_minimal_actions(game):
    ls = Lockstep(game, num_envs=4, seed=7, difficulty_ramping=False, use_minimal_action_set=True)
    rng = np.random.default_rng(7)
    n = ls.ours.single_action_space.n
    assert list(ls.ours.action_set) == ls.theirs[0].minimal_action_set()
    for _ in range(300):
        ls.step(rng.integers(0, n, size=4))
    assert int(ls.ours.state["ramp_index"].max()) == 0


def _ks_statistic(a: np.ndarray, b: np.ndarray) -> float:
    grid = np.union1d(a, b)
    cdf = lambda x: np.searchsorted(np.sort(x), grid, side="right") / len(x)  # noqa: E731
    return float(np.abs(cdf(a) - cdf(b)).max())


@pytest.mark.parametrize("game", ["breakout", "asterix", "seaquest"])
def test_random_policy_episodes_distributed_like_minatar(game):
    """With each simulator's own random numbers: episode lengths and returns agree (two-sample KS, alpha 0.001)."""
    episodes = 300
    env = TORCH_MINATAR[f"minatar-{game}"](num_envs=episodes, seed=3)
    env.reset()
    rng = np.random.default_rng(3)
    ret, length = torch.zeros(episodes), torch.zeros(episodes)
    done_ret, done_len = torch.full((episodes,), float("nan")), torch.full((episodes,), float("nan"))
    while torch.isnan(done_len).any():
        _, r, te, tr, _ = env.step(torch.as_tensor(rng.integers(0, 6, size=episodes)))
        ret += r
        length += 1
        first = (te | tr) & torch.isnan(done_len)
        done_ret[first], done_len[first] = ret[first], length[first]
        ret[te | tr], length[te | tr] = 0, 0
    theirs = minatar.Environment(game)
    theirs.seed(3)
    their_ret, their_len = [], []
    for _ in range(episodes):
        theirs.reset()
        total, steps, term = 0.0, 0, False
        while not term:
            r, term = theirs.act(int(rng.integers(6)))
            total, steps = total + r, steps + 1
        their_ret.append(total)
        their_len.append(steps)
    critical = 1.95 * np.sqrt(2 / episodes)  # alpha = 0.001
    assert _ks_statistic(done_len.numpy(), np.array(their_len)) < critical
    assert _ks_statistic(done_ret.numpy(), np.array(their_ret)) < critical


# ------------------------------------------------------------------ the VecEnv contract

@pytest.mark.parametrize("game", GAMES)
def test_make_env_spaces_and_gymnasium_checker(game):
    env_id = f"torch/minatar-{game}"
    assert env_id in zoo.list_envs("torch")
    env = zoo.make_env(env_id, num_envs=3, seed=0)
    channels = len(type(env).channels)
    assert env.env_id == env_id and env.single_observation_space.shape == (10, 10, channels)
    assert env.single_observation_space.dtype == np.uint8 and env.single_action_space.n == 6
    obs = env.reset()
    assert obs.shape == (3, 10, 10, channels) and obs.dtype == torch.uint8 and obs.device.type == "cpu"
    host = zoo.make_env(f"minatar/{game}", num_envs=1)
    assert host.single_observation_space == env.single_observation_space
    host.close()
    single = zoo.envs.make_single_env(env_id, seed=0)
    check_env(single, skip_render_check=True)


def test_auto_reset_keeps_final_observation_and_truncates():
    env = BreakoutTorch(num_envs=16, seed=1, max_episode_steps=12)
    env.reset()
    seen_terminal = seen_truncated = False
    for _ in range(60):
        obs, reward, terminated, truncated, info = env.step(torch.zeros(16, dtype=torch.int64))
        done = terminated | truncated
        assert not (terminated & truncated).any()
        assert torch.equal(info["final_obs"][~done], obs[~done])
        for i in done.nonzero().squeeze(1).tolist():
            assert env.elapsed[i] == 0
            assert obs[i, 3, :, 1].sum() == 1 and obs[i, 1:4, :, 3].all()  # a new ball on row 3, a full wall
            assert obs[i, 9, 4, 0] == 1 and not torch.equal(info["final_obs"][i], obs[i])
        if terminated.any():  # the ball reached the bottom row in the final observation
            assert info["final_obs"][terminated][:, 9, :, 1].sum(1).eq(1).all()
        seen_terminal |= bool(terminated.any())
        seen_truncated |= bool(truncated.any())
        assert int(env.elapsed.max()) < 12
    assert seen_terminal and seen_truncated


def test_sticky_actions_repeat_the_previous_action():
    always = BreakoutTorch(num_envs=4, seed=0, sticky_action_prob=1.0)
    always.reset()
    for _ in range(3):
        always.step(torch.full((4,), RIGHT))
    assert (always.state["pos"] == 4).all()  # every action replaced by the first no-op
    never = BreakoutTorch(num_envs=4, seed=0, sticky_action_prob=0.0)
    never.reset()
    never.step(torch.full((4,), RIGHT))
    assert (never.state["pos"] == 5).all()
    some = BreakoutTorch(num_envs=4096, seed=0)
    some.reset()
    some.step(torch.full((4096,), RIGHT))
    assert 0.08 < float((some.state["pos"] == 4).float().mean()) < 0.12


def test_minimal_action_set_maps_to_minatar_codes():
    env = zoo.make_env("torch/minatar-breakout", num_envs=2, use_minimal_action_set=True, sticky_action_prob=0.0)
    assert env.single_action_space.n == 3
    env.reset()
    env.step(torch.tensor([1, 2]))  # left, right
    assert env.state["pos"].tolist() == [3, 5]
    with pytest.raises(ActionError, match=r"actions must be in \[0, 3\)"):
        env.step(torch.tensor([0, 3]))


@pytest.mark.parametrize("game", GAMES)
def test_get_state_set_state_round_trip_and_errors(game):
    a = TORCH_MINATAR[f"minatar-{game}"](num_envs=5, seed=2)
    a.reset()
    actions = [torch.randint(0, 6, (5,), generator=torch.Generator().manual_seed(i)) for i in range(30)]
    for act in actions[:10]:
        a.step(act)
    b = TORCH_MINATAR[f"minatar-{game}"](num_envs=5, seed=9)
    b.reset()
    b.set_state(a.get_state())
    observations = {}
    for env in (a, b):  # the same random numbers for both from here on
        gen = torch.Generator().manual_seed(5)
        env.draw_source = lambda name, count, gen=gen: torch.rand(5, count, generator=gen)
        observations[env] = [env.step(act)[0] for act in actions[10:]]
    assert all(torch.equal(x, y) for x, y in zip(observations[a], observations[b]))
    state = a.get_state()
    with pytest.raises(KeyError, match="unknown fields"):
        b.set_state({**state, "bogus": state["elapsed"]})
    name = next(iter(type(a).fields))
    with pytest.raises(ValueError, match=f"field '{name}' has shape"):
        b.set_state({**state, name: state[name][:2]})


def test_seeded_reset_is_reproducible():
    one = zoo.make_env("torch/minatar-freeway", num_envs=64, seed=4)
    two = zoo.make_env("torch/minatar-freeway", num_envs=64, seed=4)
    other = zoo.make_env("torch/minatar-freeway", num_envs=64, seed=5)
    assert torch.equal(one.reset(), two.reset()) and not torch.equal(one.reset(seed=4), other.reset())


def test_seaquest_capacity_is_never_reached_under_the_fastest_ramp():
    """Spawns every frame, moves every third: the most enemies MinAtar's rules allow, all in lockstep."""
    ls = Lockstep("seaquest", num_envs=8, seed=11, setup=seaquest_crowded)
    rng = np.random.default_rng(11)
    most = 0
    for _ in range(400):
        ls.step(np.zeros(8, dtype=np.int64) if rng.random() < 0.9 else rng.integers(0, 6, size=8))
        most = max(most, int(ls.ours.state["enemy_alive"].sum(1).max()))
    assert 20 <= most < SeaquestTorch.fields["enemy_alive"][1][0]


# ------------------------------------------------------------------ devices

def _same_draws_run(device: str, game: str, steps: int = 200) -> list[torch.Tensor]:
    env = TORCH_MINATAR[f"minatar-{game}"](num_envs=64, device=device, seed=0)
    gen = torch.Generator().manual_seed(0)
    env.draw_source = lambda name, count: torch.rand(64, count, generator=gen).to(device)
    out = [env.reset().cpu()]
    actions = torch.randint(0, 6, (steps, 64), generator=torch.Generator().manual_seed(1))
    for t in range(steps):
        obs, reward, term, trunc, info = env.step(actions[t].to(device))
        assert obs.device.type == reward.device.type == term.device.type == info["final_obs"].device.type == \
            torch.device(device).type
        out += [obs.cpu(), reward.cpu(), term.cpu()]
    return out


@pytest.mark.parametrize("game", GAMES)
def test_state_and_outputs_live_on_the_cpu(game):
    env = zoo.make_env(f"torch/minatar-{game}", num_envs=2, device="cpu")
    env.reset()
    assert all(v.device.type == "cpu" for v in env.get_state().values())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("game", GAMES)
def test_cuda_matches_cpu(game):
    cpu, cuda = _same_draws_run("cpu", game), _same_draws_run("cuda", game)
    assert all(torch.equal(a, b) for a, b in zip(cpu, cuda))


# ------------------------------------------------------------------ learning

def test_ppo_learns_breakout_beyond_random():
    """The TA-LPO MinAtar preset on torch/minatar-breakout, a short run: well above a random policy's return."""
    from zoo.agents import PPO

    t0 = time.perf_counter()
    agent = PPO("torch/minatar-breakout", seed=0, device="cpu")
    agent.learn(65_536, progress=False)
    trained = agent.evaluate(64)["return_mean"]
    random_env = zoo.make_env("torch/minatar-breakout", num_envs=64, seed=1)
    random_env.reset()
    ret, first = torch.zeros(64), torch.full((64,), float("nan"))  # each env's first episode: an unbiased sample
    while torch.isnan(first).any():
        _, r, te, tr, _ = random_env.step(random_env.sample_actions())
        ret += r
        ends = (te | tr) & torch.isnan(first)
        first[ends] = ret[ends]
        ret[te | tr] = 0
    random_return = float(first.mean())
    assert trained > random_return + 1.5, (trained, random_return, time.perf_counter() - t0)
