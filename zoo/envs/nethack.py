"""The NetHack (NLE) and MiniHack suites, and ONI's observation pipeline.

``nethack/<task>`` serves NLE's tasks and ONI's four extended-action tasks (``nethack/*-extended``, see
:mod:`zoo.envs.nethack_extended`); ``minihack/<task>`` serves MiniHack's (the ``minihack`` extra). Every id takes
``observation="nle"`` (NLE's dict of arrays) or ``observation="oni"``: the tty rendered to RGB and cropped to
12x12 characters around the hero at 6x6 px (``crop``, uint8 (3, 72, 72), unscaled), blstats scaled and clipped
to +-5 (``blstats``, float32 (27,)) and the raw message bytes (``message``, uint8 (256,)). The ``-extended`` ids
default to ``"oni"``, the others to ``"nle"``. The pipeline runs inside each env, i.e. in the worker processes.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import warnings

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from zoo.envs.registry import Suite, register_suite
from zoo.errors import ConfigError

NETHACK_TASKS = {
    "score": "NetHackScore-v0",
    "staircase": "NetHackStaircase-v0",
    "staircase-pet": "NetHackStaircasePet-v0",
    "oracle": "NetHackOracle-v0",
    "gold": "NetHackGold-v0",
    "eat": "NetHackEat-v0",
    "scout": "NetHackScout-v0",
    "challenge": "NetHackChallenge-v0",
}
#: ONI's tasks (the reference's ``NetHack*ExtendedActions-v1``): task -> (goal, target level).
NETHACK_EXTENDED_TASKS = {
    "score-extended": ("score", None),
    "oracle-extended": ("oracle", None),
    "staircase-lvl3-extended": ("staircase", 3),
    "staircase-lvl4-extended": ("staircase", 4),
}
#: NLE's observations minus the bulky ``screen_descriptions`` and inventory strings;
#: pass ``observation_keys=`` for others.
NETHACK_DEFAULT_KEYS = ("glyphs", "chars", "colors", "specials", "blstats", "message",
                        "tty_chars", "tty_colors", "tty_cursor")
#: what the ONI pipeline reads from NLE.
ONI_SOURCE_KEYS = ("tty_chars", "tty_colors", "tty_cursor", "blstats", "message")
OBSERVATIONS = ("nle", "oni")


class NetHackSeeding(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Make NLE reproducible from gymnasium seeds.

    NLE ignores ``reset(seed=...)`` for the game itself and reseeds NetHack
    with true randomness. Here an explicit seed starts a generator that sets
    NetHack's core and disp RNGs (with anti-TAS reseeding off) at that reset
    and at every later one, so a seeded run replays exactly. Without any seed,
    NLE's own randomness is left alone.
    """

    def __init__(self, env: gym.Env):
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.Wrapper.__init__(self, env)
        self._rng: np.random.Generator | None = None

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        if self._rng is not None:
            core, disp = (int(x) for x in self._rng.integers(0, 2**62, size=2))
            self.env.unwrapped.seed(core, disp, reseed=False)
        # nle 1.3.0 crashes on an empty options dict (it expects 'wizkit_items')
        return self.env.reset(seed=seed, options=options or None)


# ----------------------------------------------------------------------------- ONI observation pipeline
#: NetHack's 16 colours (CLR_BLACK .. CLR_WHITE: black, red, green, brown, blue, magenta, cyan, gray, dark gray
#: (NO_COLOR), orange, bright green, yellow, bright blue, bright magenta, bright cyan, white) in VGA tones.
PALETTE = np.array([(0, 0, 0), (170, 0, 0), (0, 170, 0), (170, 85, 0), (0, 0, 170), (170, 0, 170), (0, 170, 170),
                    (170, 170, 170), (85, 85, 85), (255, 85, 85), (85, 255, 85), (255, 255, 85), (85, 85, 255),
                    (255, 85, 255), (85, 255, 255), (255, 255, 255)], dtype=np.float64)
#: tty_colors values: 0..15 a colour, 16..31 the same in reverse video (NLE's encoding).
NUM_TTY_COLORS = 32

#: per-entry blstats scales (nle >= 0.9 layout, 27 entries), the reference's hand-chosen values; 0 drops an entry.
_BLSTATS_SCALES = {
    0: 1 / 79, 1: 1 / 21,  # x, y
    2: 0.0, 3: 1 / 10, 4: 1 / 10, 5: 1 / 10, 6: 1 / 10, 7: 1 / 10, 8: 1 / 10,  # str 3..25, str 3..125, dex .. cha
    9: 0.0, 10: 1 / 10, 11: 1 / 10, 12: 0.0, 13: 1 / 1000,  # score, hp, max hp, depth, gold
    14: 1 / 10, 15: 1 / 10, 16: 1 / 10, 17: 0.0, 18: 1 / 10, 19: 1 / 100,  # energy, max energy, AC, HD, XL, XP
    20: 1 / 1000, 21: 1.0, 22: 1 / 10,  # time, hunger state, carrying capacity
    23: 0.0, 24: 0.0, 25: 0.0, 26: 0.0,  # dungeon number, level number, condition bits, alignment
}
BLSTATS_SCALE = np.array([_BLSTATS_SCALES[i] for i in range(27)], dtype=np.float32)
BLSTATS_CLIP = 5.0


def scale_blstats(blstats: np.ndarray) -> np.ndarray:
    """``clip(blstats * BLSTATS_SCALE, -5, 5)`` as float32; 26-entry blstats (nle < 0.9) use the first 26 scales."""
    blstats = np.asarray(blstats)
    n = blstats.shape[-1]
    if n not in (26, 27):
        raise ConfigError(f"blstats must have 27 entries (nle >= 0.9) or 26 (older), got shape {blstats.shape}")
    out = blstats.astype(np.float32) * BLSTATS_SCALE[:n]
    np.maximum(out, -BLSTATS_CLIP, out=out)  # np.clip's wrapper costs more than the clipping here
    return np.minimum(out, BLSTATS_CLIP, out=out)


def _default_font() -> str:
    """matplotlib's copy of DejaVu Sans Mono (matplotlib is a zoo dependency), found without importing it."""
    spec = importlib.util.find_spec("matplotlib")
    path = os.path.join(os.path.dirname(spec.origin), "mpl-data", "fonts", "ttf", "DejaVuSansMono.ttf") if spec else ""
    if not os.path.exists(path):
        raise FileNotFoundError("the ONI observation draws characters with matplotlib's DejaVuSansMono.ttf, which is "
                                "missing: reinstall matplotlib, or pass font_path= to glyph_table")
    return path


def _area_weights(n_out: int, n_in: int) -> np.ndarray:
    """``(n_out, n_in)`` box-filter weights that resample ``n_in`` pixels to ``n_out`` (rows sum to 1)."""
    lo, hi = np.arange(n_out)[:, None] * n_in / n_out, (np.arange(n_out)[:, None] + 1) * n_in / n_out
    overlap = np.clip(np.minimum(hi, np.arange(1, n_in + 1)) - np.maximum(lo, np.arange(n_in)), 0.0, None)
    return overlap / overlap.sum(axis=1, keepdims=True)


@functools.lru_cache(maxsize=8)
def glyph_table(cell: int = 6, font_size: int = 9, font_path: str | None = None) -> np.ndarray:
    """Every (character, tty colour) pair drawn as a ``cell`` x ``cell`` RGB tile: uint8 ``(256 * 32, 3, cell,
    cell)``, indexed by ``char * 32 + colour``.

    Each printable latin-1 character is drawn once in a monospace font (matplotlib's DejaVu Sans Mono by
    default, the family of the reference's Hack) at ``font_size`` px into its own advance-by-line-height cell,
    box-resampled to ``cell`` px and tinted by the palette; reverse-video colours (16..31) swap glyph and
    background. Built once per process (about 50 ms plus PIL's import) and read-only, as it is shared.
    """
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype(font_path or _default_font(), font_size)
    width = max(1, round(font.getlength("M")))
    ascent, descent = font.getmetrics()
    height = ascent + descent
    rows, cols = _area_weights(cell, height), _area_weights(cell, width)
    coverage = np.zeros((256, cell, cell))
    for code in range(256):
        char = chr(code)
        if char.isspace() or not char.isprintable():
            continue
        image = Image.new("L", (width, height))
        ImageDraw.Draw(image).text((0, 0), char, fill=255, font=font)
        coverage[code] = rows @ (np.asarray(image, dtype=np.float64) / 255.0) @ cols.T
    ink = coverage[:, None, None] * PALETTE[None, :, :, None, None]  # (256, 16, 3, cell, cell)
    reverse = (1.0 - coverage[:, None, None]) * PALETTE[None, :, :, None, None]
    table = np.concatenate([ink, reverse], axis=1)  # (256, 32, 3, cell, cell)
    table = np.round(table).astype(np.uint8).reshape(256 * NUM_TTY_COLORS, 3, cell, cell)
    table.flags.writeable = False
    return table


def render_crop(tty_chars: np.ndarray, tty_colors: np.ndarray, row: int, col: int, table: np.ndarray,
                size: int = 12) -> np.ndarray:
    """The ``size`` x ``size`` characters of the tty whose cell ``(size // 2, size // 2)`` is tty ``(row, col)``,
    drawn with ``table`` (:func:`glyph_table`): uint8 ``(3, size * cell, size * cell)``; off-screen cells are
    black. One gather over the table, no per-character Python loop."""
    height, width = tty_chars.shape
    top, left = row - size // 2, col - size // 2
    r0, r1, c0, c1 = max(top, 0), min(top + size, height), max(left, 0), min(left + size, width)
    index = np.zeros((size, size), np.intp)  # entry 0: NUL in black, an empty tile
    if r0 < r1 and c0 < c1:
        index[r0 - top:r1 - top, c0 - left:c1 - left] = (
            tty_chars[r0:r1, c0:c1].astype(np.intp) * NUM_TTY_COLORS + (tty_colors[r0:r1, c0:c1] & (NUM_TTY_COLORS - 1)))
    cell = table.shape[-1]
    # one tile row (``cell`` bytes) per element, so that the interleaving copy moves whole rows
    rows = table.view(np.dtype((np.void, cell)))[..., 0]  # (256 * 32, 3, cell)
    tiles = np.ascontiguousarray(rows[index].transpose(2, 0, 3, 1))  # (3, size, cell, size)
    return tiles.view(np.uint8).reshape(3, size * cell, size * cell)


class ONIObservation(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """ONI's observation of an NLE env: ``{"crop", "blstats", "message"}`` (see the module docstring).

    The crop is centred on the hero's tty cell, row ``y + 1`` (the message line is tty row 0) and column ``x``
    of blstats; with an even ``crop_size`` the hero sits at cell ``(crop_size // 2, crop_size // 2)``.
    """

    def __init__(self, env: gym.Env, crop_size: int = 12, cell: int = 6, font_size: int = 9):
        gym.utils.RecordConstructorArgs.__init__(self, crop_size=crop_size, cell=cell, font_size=font_size)
        gym.ObservationWrapper.__init__(self, env)
        for name, value in (("crop_size", crop_size), ("cell", cell), ("font_size", font_size)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        inner = env.observation_space
        missing = [k for k in ("tty_chars", "tty_colors", "blstats", "message")
                   if not isinstance(inner, spaces.Dict) or k not in inner.spaces]
        if missing:
            raise ConfigError(f"the ONI observation needs NLE's {missing} observations; build the env with "
                              f"observation_keys including {list(ONI_SOURCE_KEYS)}")
        self.crop_size = crop_size
        self.table = glyph_table(cell, font_size)
        n_blstats = inner["blstats"].shape[0]
        side = crop_size * cell
        self.observation_space = spaces.Dict({
            "crop": spaces.Box(0, 255, (3, side, side), np.uint8),
            "blstats": spaces.Box(-BLSTATS_CLIP, BLSTATS_CLIP, (n_blstats,), np.float32),
            "message": spaces.Box(0, 255, inner["message"].shape, np.uint8),
        })

    def observation(self, observation: dict) -> dict:
        blstats = observation["blstats"]
        crop = render_crop(observation["tty_chars"], observation["tty_colors"], int(blstats[1]) + 1,
                           int(blstats[0]), self.table, self.crop_size)
        return {"crop": crop, "blstats": scale_blstats(blstats), "message": np.array(observation["message"])}


def _observation_mode(observation: str | None, default: str) -> str:
    mode = default if observation is None else observation
    if mode not in OBSERVATIONS:
        raise ConfigError(f"observation must be one of {OBSERVATIONS} ('oni': crop/blstats/message), got {mode!r}")
    return mode


def _source_keys(mode: str, kwargs: dict, default: tuple[str, ...] | None) -> None:
    """Set ``kwargs["observation_keys"]`` for the observation mode (ONI reads a fixed set)."""
    if mode == "oni":
        if "observation_keys" in kwargs:
            raise ConfigError("observation='oni' builds its own observation (crop, blstats, message) and takes no "
                              "observation_keys; drop them, or pass observation='nle' for NLE's arrays")
        kwargs["observation_keys"] = ONI_SOURCE_KEYS
    elif default is not None:
        kwargs.setdefault("observation_keys", default)


def _wrap(env: gym.Env, mode: str) -> gym.Env:
    env = NetHackSeeding(env)
    return ONIObservation(env) if mode == "oni" else env


def _make_nethack(task: str, seed: int | None = None, observation: str | None = None, **kwargs) -> gym.Env:
    import nle  # noqa: F401  (registers the NetHack ids)

    if task in NETHACK_EXTENDED_TASKS:
        from zoo.envs.nethack_extended import NetHackExtended

        mode = _observation_mode(observation, "oni")
        _source_keys(mode, kwargs, NETHACK_DEFAULT_KEYS)
        goal, level = NETHACK_EXTENDED_TASKS[task]
        return _wrap(NetHackExtended(goal, level, **kwargs), mode)
    mode = _observation_mode(observation, "nle")
    _source_keys(mode, kwargs, NETHACK_DEFAULT_KEYS)
    return _wrap(gym.make(NETHACK_TASKS[task], **kwargs), mode)


register_suite(Suite(
    name="nethack", description="NetHack Learning Environment tasks and ONI's extended-action tasks, dict "
                                "observations, observation='oni' for ONI's crop/blstats/message (nethack/<task>)",
    requires=("nle",), extra="nethack", tasks=lambda: [*NETHACK_TASKS, *NETHACK_EXTENDED_TASKS],
    make_single=_make_nethack, info_keys=("success",), default_vectorization="process",
))

# ----------------------------------------------------------------------------- MiniHack
_MINIHACK_PREFIX = "MiniHack-"
#: MiniHack ids left out: their level files are downloaded by a script, which zoo never does at run time.
_MINIHACK_EXCLUDED = ("Boxoban",)


# minihack 1.0.2 imports pkg_resources (hence setuptools<81 in its extra), which warns on every import
warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning, module="minihack")


def _import_minihack() -> None:
    import minihack  # noqa: F401  (registers the MiniHack ids)


def _minihack_tasks() -> list[str]:
    _import_minihack()
    return [i[len(_MINIHACK_PREFIX):] for i in gym.registry
            if i.startswith(_MINIHACK_PREFIX) and not any(x in i for x in _MINIHACK_EXCLUDED)]


def _make_minihack(task: str, seed: int | None = None, observation: str | None = None, **kwargs) -> gym.Env:
    _import_minihack()
    mode = _observation_mode(observation, "nle")
    _source_keys(mode, kwargs, None)
    return _wrap(gym.make(_MINIHACK_PREFIX + task, **kwargs), mode)


register_suite(Suite(
    name="minihack", description="MiniHack tasks on NLE (minihack/<task>, e.g. minihack/KeyRoom-S5-v0), "
                                 "observation='oni' as for nethack/",
    requires=("minihack", "nle"), extra="minihack", tasks=_minihack_tasks, make_single=_make_minihack,
    default_vectorization="process",
))
