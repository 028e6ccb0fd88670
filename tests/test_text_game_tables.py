"""The question games' tables: the full Twenty Questions word list and attributes, and the 91 Guess My City rows."""

from __future__ import annotations

from collections import Counter

import pytest

from zoo.envs.text.games import Episode, QuestionGame
from zoo.envs.text.guess_my_city import CITIES, LANGUAGES, city_oracle, city_questions
from zoo.envs.text.oracles import INVALID, NO, YES, AttributeOracle, normalize
from zoo.envs.text.twenty_questions import (
    ALIASES, CATEGORIES, QUESTIONS, SUBSET, TRIGGERS, WORDS, full_oracle, subset_oracle,
)


def _names(oracle: AttributeOracle) -> Counter:
    return Counter(name for secret in oracle.secrets for name in set(oracle.names_of(secret)))


def _answers(oracle: AttributeOracle, question: str) -> dict[str, str]:
    """Every secret's answer to ``question`` (what ``oracle.answer`` says, with the question parsed once)."""
    named, asked = oracle.guessed(question), oracle.attributes_asked(question)
    assert named is not None or asked, question
    if named is not None:
        return {s: YES if s == named else NO for s in oracle.secrets}
    return {s: YES if asked[0] in attributes else NO for s, attributes in oracle.secrets.items()}


# ---------------------------------------------------------------- Twenty Questions, 157 words

def test_full_word_list_has_the_papers_size_and_contains_the_subset():
    assert len(CATEGORIES) == 17
    words = [w for ws in CATEGORIES.values() for w in ws]
    assert len(words) == len(set(words)) == len(WORDS) == 157
    assert set(WORDS) == set(words)
    for word, attributes in SUBSET.items():
        assert WORDS[word] == attributes  # the subset's rows, unchanged
    for word, attributes in WORDS.items():
        assert attributes and attributes <= set(TRIGGERS), word


def test_every_plain_question_asks_exactly_its_attribute():
    oracle = full_oracle()
    assert len(QUESTIONS) == len(TRIGGERS) and len(set(QUESTIONS)) == len(QUESTIONS)
    for question, attribute in zip(QUESTIONS, TRIGGERS):
        assert oracle.attributes_asked(question)[0] == attribute, question
        # a question that names a word is a guess of it; only "keys" names one (the word "key")
        assert oracle.guessed(question) == ("key" if attribute == "keys" else None), question
    assert set().union(*WORDS.values()) == set(TRIGGERS)  # every attribute is some word's


def test_no_name_or_alias_collides_and_aliases_name_known_words():
    oracle = full_oracle()
    assert set(ALIASES) <= set(WORDS)
    collisions = [name for name, count in _names(oracle).items() if count > 1]
    assert not collisions
    for word in WORDS:  # every name of a word guesses that word
        for name in oracle.names_of(word):
            assert oracle.guessed(f"Is it a {name}?") == word, name
    phrases = Counter(normalize(p) for ps in TRIGGERS.values() for p in ps)
    assert max(phrases.values()) == 1  # a phrase asks about one attribute


def test_attribute_questions_tell_most_words_apart():
    oracle = full_oracle()
    answers = [_answers(oracle, q) for q in QUESTIONS]
    for word in ("dog", "pen", "tomato"):  # the shortcut agrees with the oracle
        assert [a[word] for a in answers] == [oracle.answer(word, q) for q in QUESTIONS]
    signatures = {tuple(a[w] for a in answers) for w in WORDS}
    assert len(signatures) >= 150
    assert len(set(WORDS.values())) >= 150


TWENTY_QUESTIONS = [
    ("tomato", "Is it a vegetable?", YES), ("tomato", "Is it red?", YES), ("tomato", "Is it a fruit?", NO),
    ("apple", "Is it a vegetable?", NO), ("carrot", "Does it grow underground?", YES),
    ("spinach", "Does it have leaves?", YES), ("orange", "Is it a citrus fruit?", YES),
    ("banana", "Is it a citrus fruit?", NO), ("tiger", "Does it have stripes?", YES),
    ("lion", "Does it have stripes?", NO), ("cow", "Is it a farm animal?", YES), ("cat", "Is it a pet?", YES),
    ("elephant", "Is it big?", YES), ("airplane", "Can it fly?", YES), ("boat", "Can it fly?", NO),
    ("train", "Does it run on rails?", YES), ("ship", "Does it go on water?", YES),
    ("refrigerator", "Is it a kitchen appliance?", YES), ("knife", "Is it sharp?", YES),
    ("spoon", "Do you eat with it?", YES), ("violin", "Does it have strings?", YES),
    ("trumpet", "Is it a wind instrument?", YES), ("guitar", "Is it a wind instrument?", NO),
    ("necklace", "Is it jewelry?", YES), ("ring", "Is it worn on your finger?", YES),
    ("hat", "Do you wear it on your head?", YES), ("shoes", "Is it clothing?", YES),
    ("lego", "Is it a toy?", YES), ("kite", "Is it a toy?", YES), ("football", "Is it a toy?", NO),
    ("ocean", "Is it salty?", YES), ("river", "Does it flow?", YES), ("mountain", "Is it man made?", NO),
    ("shovel", "Is it used for gardening?", YES), ("hammer", "Is it a tool?", YES),
    ("painting", "Is it art?", YES), ("bed", "Can you sleep on it?", YES), ("pillow", "Is it furniture?", NO),
    # guesses by name, alias and plural
    ("smartphone", "Is it a phone?", YES), ("television", "Is it a TV?", YES), ("couch", "Is it a sofa?", YES),
    ("stuffed animal", "Is it a teddy bear?", YES), ("bear", "Is it a teddy bear?", NO),
    ("bear", "Is it a bear?", YES), ("golf ball", "Is it a golf ball?", YES), ("football", "Is it a ball?", YES),
    ("football", "Is it a soccer ball?", YES), ("sharpie", "Is it a permanent marker?", YES),
    ("marker", "Is it a permanent marker?", NO), ("peas", "Is it a pea?", YES), ("gloves", "Is it a glove?", YES),
    ("rock", "What is it?", INVALID),
]


@pytest.mark.parametrize("secret,question,answer", TWENTY_QUESTIONS)
def test_full_twenty_questions_answers(secret, question, answer):
    assert full_oracle().answer(secret, question) == answer


def test_subset_answers_of_the_plain_questions_are_the_full_games():
    full, subset = full_oracle(), subset_oracle()
    for question in QUESTIONS:
        if subset.guessed(question) is None and full.guessed(question) is None:
            full_answers, subset_answers = _answers(full, question), _answers(subset, question)
            assert {w: full_answers[w] for w in SUBSET} == subset_answers, question


def test_the_full_game_plays_with_its_rule_table():
    game = QuestionGame("twenty-questions", tuple(WORDS), rules=full_oracle(), questions=QUESTIONS)
    episode = Episode(game, "watering can")
    _, reward, done = episode.step("Is it used for gardening?")
    assert (reward, done) == (-1.0, False) and episode.lines == ["Is it used for gardening? Yes."]
    _, reward, done = episode.step(game.guess("watering can"))
    assert (reward, done) == (0.0, True)
    vocabulary = game.vocabulary()
    assert "Is it a stuffed animal?" in vocabulary and "Is it a vegetable?" in vocabulary


# ---------------------------------------------------------------- Guess My City, 91 cities

def test_city_table_has_the_papers_size_and_covers_every_continent():
    assert len(CITIES) == 91
    continents = Counter(c for _, cs, _, _ in CITIES.values()
                         for c in (cs.split() if " america" not in cs else [cs]))
    assert min(continents.values()) >= 6 and len(continents) == 6
    flags = {"capital", "coastal", "megacity", "tropical", "desert", "cold_winters", "olympics", "southern"}
    for city, (_, _, city_flags, _) in CITIES.items():
        assert set(city_flags.split()) <= flags | set(LANGUAGES), city
        assert set(city_flags.split()) & set(LANGUAGES), city  # at least one language
    oracle = city_oracle()
    assert len({oracle.secrets[c] for c in CITIES}) == 91


def test_city_names_do_not_collide_and_landmarks_answer_for_their_city_only():
    oracle = city_oracle()
    assert not [name for name, count in _names(oracle).items() if count > 1]
    for city, (*_, landmarks) in CITIES.items():
        for landmark in landmarks:
            answers = _answers(oracle, f"Is the {landmark} there?")
            assert [c for c in CITIES if answers[c] == YES] == [city], landmark
    questions = city_questions()
    assert len(set(questions)) == len(questions)
    for question in questions:
        assert oracle.attributes_asked(question) or oracle.guessed(question), question


CITY_QUESTIONS = [
    ("jakarta", "Is it in the southern hemisphere?", YES), ("jakarta", "Do people speak Indonesian there?", YES),
    ("kinshasa", "Is it in the Congo?", YES), ("kinshasa", "Do people speak French?", YES),
    ("cape town", "Is it in Africa?", YES), ("cape town", "Can you see Table Mountain?", YES),
    ("cairo", "Is the table mountain there?", NO), ("casablanca", "Is it in Morocco?", YES),
    ("casablanca", "Is it a capital city?", NO), ("nairobi", "Is it in Morocco?", NO),
    ("montevideo", "Is it in Uruguay?", YES), ("bogota", "Is it in Colombia?", YES),
    ("quito", "Is it in Ecuador?", YES), ("brasilia", "Is it a capital city?", YES),
    ("sao paulo", "Is it a capital city?", NO), ("auckland", "Is it in New Zealand?", YES),
    ("wellington", "Is it a capital city?", YES), ("auckland", "Is it a capital city?", NO),
    ("perth", "Is it in Oceania?", YES), ("oslo", "Has it hosted the Olympics?", YES),
    ("oslo", "Does it have cold winters?", YES), ("amsterdam", "Is it in Holland?", YES),
    ("amsterdam", "Do people speak Dutch there?", YES), ("kyiv", "Is it Kiev?", YES),
    ("st petersburg", "Is it Saint Petersburg?", YES), ("kolkata", "Is it Calcutta?", YES),
    ("chennai", "Is it Madras?", YES), ("tehran", "Do people speak Farsi?", YES),
    ("baghdad", "Is it a desert city?", YES), ("havana", "Is it tropical?", YES),
    ("montreal", "Do people speak French there?", YES), ("san francisco", "Is the Golden Gate Bridge there?", YES),
    ("washington", "Is it Washington DC?", YES), ("miami", "Does it snow there?", NO),
    ("kyoto", "Is it in Japan?", YES), ("kyoto", "Is it on the coast?", NO),
]


@pytest.mark.parametrize("secret,question,answer", CITY_QUESTIONS)
def test_new_city_answers(secret, question, answer):
    assert city_oracle().answer(secret, question) == answer
