"""Text games (``text/<game>`` ids): observations and actions are strings; questions are answered by a
rule-based oracle, or by an LLM server through :class:`HTTPOracle`."""

from zoo.envs.text.games import GAMES, QuestionGame, TextGameEnv, TextVecEnv, make_game
from zoo.envs.text.oracles import ANSWERS, INVALID, NO, YES, AttributeOracle, HTTPOracle, Oracle, OracleError

__all__ = ["GAMES", "QuestionGame", "TextGameEnv", "TextVecEnv", "make_game", "ANSWERS", "YES", "NO", "INVALID",
           "AttributeOracle", "HTTPOracle", "Oracle", "OracleError"]
