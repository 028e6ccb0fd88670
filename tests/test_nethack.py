"""ONI's NetHack tasks, observation pipeline and encoder: success rules, actions, macros, crop, shapes, MiniHack."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

pytest.importorskip("nle")

from nle import nethack

import zoo
from zoo.envs import make_single_env
from zoo.envs.nethack import (
    BLSTATS_SCALE,
    NUM_TTY_COLORS,
    PALETTE,
    ONIObservation,
    glyph_table,
    render_crop,
    scale_blstats,
)
from zoo.envs.nethack_extended import (
    BL_DEPTH,
    BL_DLEVEL,
    BL_X,
    BL_Y,
    EXTENDED_ACTIONS,
    SUCCESS_REWARD,
    NetHackExtended,
    message_bytes,
    oracle_glyph,
    oracle_success,
    prompt_key,
    staircase_success,
)
from zoo.errors import ConfigError
from zoo.nets import NetHackEncoder, make_encoder

EXTENDED_IDS = ["nethack/score-extended", "nethack/oracle-extended", "nethack/staircase-lvl3-extended",
                "nethack/staircase-lvl4-extended"]
A = {action: i for i, action in enumerate(EXTENDED_ACTIONS)}
D, C = nethack.CompassDirection, nethack.Command


def _message(text: bytes) -> np.ndarray:
    out = np.zeros(256, np.uint8)
    out[:len(text)] = np.frombuffer(text, np.uint8)
    return out


def _raw(env, *keys):
    """Type ``keys`` into NetHack directly (dismissing --More--), as a scripted player in wizard mode."""
    base = env.unwrapped
    for key in keys:
        obs, _ = base.nethack.step(key if isinstance(key, int) else ord(key))
        while obs[base._internal_index][3]:
            obs, _ = base.nethack.step(ord(" "))
    base.last_observation = obs
    return obs


def _last(env, key):
    base = env.unwrapped
    return base.last_observation[base._observation_keys.index(key)]


# ----------------------------------------------------------------------------- success rules (pure)
def test_blstats_indices_match_nle():
    assert (BL_X, BL_Y, BL_DEPTH, BL_DLEVEL) == (nethack.NLE_BL_X, nethack.NLE_BL_Y, nethack.NLE_BL_DEPTH,
                                                 nethack.NLE_BL_DLEVEL)
    assert nethack.NLE_BLSTATS_SIZE == len(BLSTATS_SCALE) == 27


def test_staircase_success_rule():
    blstats = np.zeros(27, np.int64)
    blstats[BL_DLEVEL], blstats[BL_DEPTH] = 3, 5  # e.g. the third level of the Gnomish Mines, at depth 5
    assert staircase_success(blstats, b"You descend the stairs.", 3)
    assert not staircase_success(blstats, b"You descend the stairs.", 4)
    assert not staircase_success(blstats, b"You fall through a trap door!", 3)  # no stairs, no success
    assert not staircase_success(blstats, b"You descend the stairs.", 3, stat=BL_DEPTH)
    assert staircase_success(blstats, b"You descend the stairs.", 5, stat=BL_DEPTH)


def test_oracle_success_rule():
    oracle = oracle_glyph()
    assert nethack.permonst(nethack.glyph_to_mon(oracle)).mname == "Oracle"
    glyphs = np.zeros((21, 79), np.int16)
    blstats = np.zeros(27, np.int64)
    blstats[BL_X], blstats[BL_Y] = 10, 5
    assert not oracle_success(blstats, glyphs, oracle)
    glyphs[6, 11] = oracle  # diagonal neighbour (row y + 1, column x + 1)
    assert oracle_success(blstats, glyphs, oracle)
    glyphs[6, 11] = 0
    glyphs[7, 10] = oracle  # two rows away
    assert not oracle_success(blstats, glyphs, oracle)
    blstats[BL_X], blstats[BL_Y] = 0, 0  # the corner: the neighbourhood is clipped, not wrapped
    glyphs[:] = 0
    glyphs[20, 78] = oracle
    assert not oracle_success(blstats, glyphs, oracle)
    glyphs[1, 0] = oracle
    assert oracle_success(blstats, glyphs, oracle)


def test_prompt_key_macro():
    eat = b"What do you want to eat? [ghij or ?*] "
    assert prompt_key(eat, ord("y")) == ord("g")
    assert prompt_key(eat, ord("j")) == ord(" ")
    assert prompt_key(b"What do you want to drink? [ef or ?*] ", ord("y")) == ord("e")
    assert prompt_key(b"What do you want to eat? [*] ", ord("y")) == ord(" ")  # nothing offered
    assert prompt_key(b"There is a lichen corpse here; eat it? [ynq] (n) ", ord("y")) == ord("y")
    assert prompt_key(b"", ord("k")) == ord("k")
    assert message_bytes(_message(b"Hello")) == b"Hello"


# ----------------------------------------------------------------------------- the action set
def test_extended_action_set():
    from nle.env.tasks import TASK_ACTIONS

    assert len(TASK_ACTIONS) == 23 and len(EXTENDED_ACTIONS) == 28
    assert EXTENDED_ACTIONS[:23] == TASK_ACTIONS
    assert EXTENDED_ACTIONS[23:] == (C.CAST, C.QUAFF, C.PRAY, C.PICKUP, C.PAY)
    assert [int(a) for a in EXTENDED_ACTIONS[23:]] == [ord("Z"), ord("q"), 0x80 | ord("p"), ord(","), ord("p")]
    env = make_single_env("nethack/oracle-extended", seed=0)
    assert env.action_space.n == 28 and env.unwrapped.actions == EXTENDED_ACTIONS
    env.close()


def test_bad_extended_arguments_raise_clear_errors():
    with pytest.raises(ConfigError, match="level"):
        NetHackExtended("staircase", None)
    with pytest.raises(ConfigError, match="goal"):
        NetHackExtended("gold")
    with pytest.raises(ConfigError, match="28 actions"):
        NetHackExtended("score", actions=EXTENDED_ACTIONS[:5])
    with pytest.raises(ConfigError, match="observation must be"):
        make_single_env("nethack/score-extended", observation="pixels")
    with pytest.raises(ConfigError, match="observation_keys"):
        make_single_env("nethack/score", observation="oni", observation_keys=("glyphs",))


# ----------------------------------------------------------------------------- macros on the real game
def test_cast_macro_casts_spell_a():
    env = make_single_env("nethack/score-extended", seed=0, observation="nle", character="wiz-hum-neu-mal")
    env.reset(seed=0)
    energy = int(_last(env, "blstats")[nethack.NLE_BL_ENE])
    obs, *_ = env.step(A[C.CAST])  # force bolt, the wizard's spell 'a', costs 5 energy and asks for a direction
    assert message_bytes(obs["message"]).startswith(b"In what direction?")
    assert int(obs["blstats"][nethack.NLE_BL_ENE]) == energy - 5
    env.close()


def test_eat_and_drink_prompts_take_the_first_letter_on_y():
    env = make_single_env("nethack/score-extended", seed=0, observation="nle")  # a monk: food and a potion
    env.reset(seed=0)
    obs, *_ = env.step(A[C.EAT])
    assert message_bytes(obs["message"]).startswith(b"What do you want to eat? [g")
    obs, *_ = env.step(A[D.S])  # any other key dismisses the prompt
    assert message_bytes(obs["message"]) == b"Never mind."
    env.step(A[C.EAT])
    turn = int(_last(env, "blstats")[nethack.NLE_BL_TIME])
    obs, *_ = env.step(A[D.NW])  # 'y': eat item g
    assert b"want to eat" not in message_bytes(obs["message"]) and int(obs["blstats"][nethack.NLE_BL_TIME]) > turn
    obs, *_ = env.step(A[C.QUAFF])
    assert message_bytes(obs["message"]).startswith(b"What do you want to drink?")  # left to the agent
    obs, *_ = env.step(A[D.NW])
    assert b"want to drink" not in message_bytes(obs["message"]) and message_bytes(obs["message"]) != b"Never mind."
    env.close()


class _ScriptedNethack:
    """Stands in for NLE's game: records the keys sent and answers with prepared observations."""

    def __init__(self, answers):
        self.answers, self.keys = list(answers), []

    def step(self, key):
        self.keys.append(int(key))
        return self.answers.pop(0), False


def _state(env, text: bytes, more: bool = False):
    base = env.unwrapped
    obs = [a.copy() for a in base.last_observation]
    obs[base._message_index] = _message(text)
    obs[base._internal_index][:4] = (0, 0, 0, int(more))
    return tuple(obs)


def test_enhance_and_stairs_message_macros():
    env = make_single_env("nethack/score-extended", seed=0, observation="nle")
    env.reset(seed=0)
    base = env.unwrapped
    real = base.nethack
    try:
        # a skill can be advanced: the next free moment runs #enhance and picks the first entry
        base.nethack = _ScriptedNethack([_state(env, b""), _state(env, b"")])
        base._perform_known_steps(_state(env, b"You feel more confident in your weapon skills."), False, key=ord("F"))
        assert base.nethack.keys == [int(C.ENHANCE), ord("a")] and not base._enhance
        # --More-- after the descent: dismissed, and the message kept for the staircase rule
        base.nethack = _ScriptedNethack([_state(env, b"")])
        obs, _ = base._perform_known_steps(_state(env, b"You descend the stairs.", more=True), False, key=ord(">"))
        assert base.nethack.keys == [ord(" ")]
        assert message_bytes(obs[base._message_index]) == b"You descend the stairs."
        # CAST opens the spell menu: the macro picks spell 'a'
        base.nethack = _ScriptedNethack([_state(env, b"In what direction?")])
        base._perform_known_steps(_state(env, b""), False, key=int(C.CAST))
        assert base.nethack.keys == [ord("a")]
    finally:
        base.nethack = real
    env.close()


# ----------------------------------------------------------------------------- tasks on the real game
def test_staircase_lvl3_succeeds_on_reaching_level_3():
    env = make_single_env("nethack/staircase-lvl3-extended", seed=0, wizard=True)
    env.reset(seed=0)
    rewards, successes = [], []
    for _ in range(2):
        _raw(env, nethack.C("f"), nethack.C("t"), ">", ".")  # map the level, teleport onto the down stairs
        obs, reward, terminated, truncated, info = env.step(A[nethack.MiscDirection.DOWN])
        rewards.append(reward)
        successes.append(info["success"])
        assert message_bytes(obs["message"]).startswith(b"You descend the stairs")
    assert rewards == [0.0, SUCCESS_REWARD] and successes == [False, True]
    assert terminated and not truncated and info["depth"] == 3
    env.close()


def test_oracle_succeeds_next_to_the_oracle():
    env = make_single_env("nethack/oracle-extended", seed=0, wizard=True)
    env.reset(seed=0)
    _, reward, terminated, _, info = env.step(A[C.SEARCH])
    assert reward == 0.0 and not terminated and not info["success"]
    _raw(env, nethack.C("g"), *"Oracle", "\r", "y")  # create the Oracle beside the hero
    _, reward, terminated, truncated, info = env.step(A[C.SEARCH])
    assert reward == SUCCESS_REWARD and terminated and not truncated and info["success"]
    env.close()


def test_time_limit_is_a_truncation_and_score_pays_score_delta():
    env = make_single_env("nethack/score-extended", seed=0, max_episode_steps=4)
    env.reset(seed=0)
    ends = [env.step(A[C.SEARCH])[2:4] for _ in range(4)]
    assert ends == [(False, False)] * 3 + [(False, True)]
    env.reset(seed=0)
    _, reward, *_ = env.step(A[nethack.MiscAction.MORE])  # the clock does not move: NLE's -0.01 penalty
    assert reward == pytest.approx(-0.01)
    env.close()


# ----------------------------------------------------------------------------- observation pipeline
def test_blstats_scaling_by_hand():
    blstats = np.zeros(27, np.int64)
    blstats[0], blstats[1], blstats[9], blstats[13], blstats[20], blstats[21] = 79, 21, 1234, 10_000, 500, 1
    out = scale_blstats(blstats)
    assert out.dtype == np.float32 and out.shape == (27,)
    expected = np.zeros(27, np.float32)
    expected[0], expected[1], expected[13], expected[20], expected[21] = 1.0, 1.0, 5.0, 0.5, 1.0  # gold clipped
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    assert scale_blstats(-blstats)[13] == -5.0
    assert scale_blstats(blstats[:26]).shape == (26,)
    with pytest.raises(ConfigError, match="27 entries"):
        scale_blstats(np.zeros(30))


def test_glyph_table_and_render_crop_by_hand():
    table = glyph_table()
    assert table.shape == (256 * NUM_TTY_COLORS, 3, 6, 6) and table.dtype == np.uint8
    at, white = ord("@") * NUM_TTY_COLORS, 15
    assert not table[ord(" ") * NUM_TTY_COLORS + white].any() and table[at + white].any()
    assert (table[at + 1][1:] == 0).all() and table[at + 1][0].any()  # red '@': red channel only
    np.testing.assert_array_equal(table[ord(" ") * NUM_TTY_COLORS + 16 + white], 255)  # reverse-video space
    rng = np.random.default_rng(0)
    chars = rng.integers(32, 127, (24, 80)).astype(np.uint8)
    colors = rng.integers(0, 32, (24, 80)).astype(np.int8)
    for row, col in [(10, 40), (0, 0), (23, 79), (2, 75)]:
        crop = render_crop(chars, colors, row, col, table)
        assert crop.shape == (3, 72, 72) and crop.dtype == np.uint8
        for i in range(12):  # cell by cell against the table
            for j in range(12):
                r, c = row - 6 + i, col - 6 + j
                tile = crop[:, 6 * i:6 * i + 6, 6 * j:6 * j + 6]
                if 0 <= r < 24 and 0 <= c < 80:
                    np.testing.assert_array_equal(tile, table[int(chars[r, c]) * NUM_TTY_COLORS + int(colors[r, c])])
                else:
                    assert not tile.any()


def test_oni_observation_on_real_nle_is_centred_on_the_hero():
    env = make_single_env("nethack/score-extended", seed=0)
    assert isinstance(env, ONIObservation)
    obs, _ = env.reset(seed=0)
    for action in (D.E, D.S, D.W, D.N):
        assert env.observation_space.contains(obs)
        assert obs["crop"].shape == (3, 72, 72) and obs["crop"].dtype == np.uint8
        assert obs["blstats"].shape == (27,) and obs["blstats"].dtype == np.float32
        assert obs["message"].shape == (256,) and obs["message"].dtype == np.uint8
        blstats, chars, colors = _last(env, "blstats"), _last(env, "tty_chars"), _last(env, "tty_colors")
        x, y = int(blstats[BL_X]), int(blstats[BL_Y])
        assert chars[y + 1, x] == ord("@")  # the hero's tty cell (row 0 is the message line)
        centre = obs["crop"][:, 36:42, 36:42]
        np.testing.assert_array_equal(centre, env.table[ord("@") * NUM_TTY_COLORS + int(colors[y + 1, x])])
        np.testing.assert_allclose(obs["blstats"], scale_blstats(blstats))
        np.testing.assert_array_equal(obs["message"], _last(env, "message"))
        obs, *_ = env.step(A[action])
    env.close()


def test_palette_is_nethacks_colour_order():
    assert PALETTE.shape == (16, 3)  # NetHack's color.h: CLR_RED 1, CLR_BROWN 3, NO_COLOR 8, CLR_WHITE 15
    assert tuple(PALETTE[1]) == (170, 0, 0) and tuple(PALETTE[3]) == (170, 85, 0)
    assert tuple(PALETTE[8]) == (85, 85, 85) and tuple(PALETTE[15]) == (255, 255, 255)


@pytest.mark.parametrize("env_id", EXTENDED_IDS[:2])
def test_env_checker_passes(env_id):
    env = make_single_env(env_id, seed=0, max_episode_steps=12)
    check_env(env, skip_render_check=True)
    env.close()


def test_old_ids_keep_nle_observations_and_take_oni():
    env = make_single_env("nethack/score", seed=0)
    assert "glyphs" in env.observation_space.spaces and env.action_space.n == 23
    env.close()
    env = make_single_env("nethack/score", seed=0, observation="oni", max_episode_steps=12)
    assert set(env.observation_space.spaces) == {"crop", "blstats", "message"}
    check_env(env, skip_render_check=True)
    env.close()


def test_vectorised_with_process_workers():
    with zoo.make_env("nethack/staircase-lvl3-extended", num_envs=2, seed=0, vectorization="process",
                      num_workers=2, max_episode_steps=5) as env:
        assert env.info_keys == ("success",)
        obs = env.reset()
        assert obs["crop"].shape == (2, 3, 72, 72) and obs["crop"].dtype == torch.uint8
        assert obs["blstats"].dtype == torch.float32 and obs["message"].shape == (2, 256)
        for _ in range(5):
            obs, _, terminated, truncated, info = env.step(env.sample_actions())
            assert info["success"].shape == (2,) and not info["success"].any()
        assert truncated.all() and not terminated.any()  # the time limit


# ----------------------------------------------------------------------------- encoder
def test_encoder_on_real_observations():
    with zoo.make_env("nethack/oracle-extended", num_envs=2, seed=0, vectorization="sync") as env:
        encoder = make_encoder(env.single_observation_space)
        assert isinstance(encoder, NetHackEncoder) and encoder.out_dim == 512 + 128 + 27 + 128
        obs = env.reset()
        features = encoder(obs)
        assert features.shape == (2, encoder.out_dim) and torch.isfinite(features).all()
        torch.testing.assert_close(features[:, 640:667], obs["blstats"])  # the raw blstats are passed through
        obs2, *_ = env.step(env.sample_actions())
        assert not torch.equal(encoder(obs2), features)
    layers = [(m.in_channels, m.out_channels, m.kernel_size[0], m.stride[0])
              for m in encoder.conv if isinstance(m, torch.nn.Conv2d)]
    assert layers == [(3, 32, 8, 4), (32, 64, 4, 2), (64, 128, 3, 2)]
    assert encoder.crop_fc[0].in_features == 128 * 3 * 3 and encoder.crop_fc[0].out_features == 512
    with pytest.raises(ConfigError, match="crop"):
        NetHackEncoder(env.single_observation_space.__class__({"crop": env.single_observation_space["message"],
                                                               "blstats": env.single_observation_space["blstats"],
                                                               "message": env.single_observation_space["message"]}))


# ----------------------------------------------------------------------------- MiniHack
def test_minihack_keyroom_with_oni_observations():
    pytest.importorskip("minihack")
    assert "minihack/KeyRoom-S5-v0" in zoo.list_envs("minihack")
    env = make_single_env("minihack/KeyRoom-S5-v0", seed=0, observation="oni")
    check_env(env, skip_render_check=True)
    obs, _ = env.reset(seed=0)
    assert obs["crop"].shape == (3, 72, 72) and obs["blstats"].shape == (27,)
    assert make_encoder(env.observation_space)({k: torch.as_tensor(v)[None] for k, v in obs.items()}).shape == (1, 795)
    env.close()
    with zoo.make_env("minihack/KeyRoom-S5-v0", num_envs=2, seed=0, vectorization="sync") as env:
        obs = env.reset()
        assert obs["glyphs"].shape == (2, 21, 79)
        env.step(env.sample_actions())
