"""Guess My City: find the hidden home town by questions, answered by rules over an attribute table.

36 cities so far (the paper has 91). The oracle answers Yes / No / Invalid Question, so it never leaks the
name. Attribute definitions (so that answers are checkable): ``coastal``: on a sea, an ocean or a wide
estuary open to it; ``megacity``: metropolitan area above ten million people; ``tropical``: hot and humid all
year; ``desert``: arid climate; ``cold_winters``: coldest month averages below freezing; ``olympics``: hosted
the summer or winter Olympic Games; languages are the main ones spoken in the city.
"""

from __future__ import annotations

from zoo.envs.text.oracles import AttributeOracle

#: city -> (country, continents, flags, landmarks)
CITIES: dict[str, tuple[str, str, str, tuple[str, ...]]] = {
    "paris": ("france", "europe", "capital megacity olympics french", ("eiffel tower", "louvre")),
    "london": ("united kingdom", "europe", "capital megacity olympics english", ("big ben", "tower bridge",
                                                                                 "buckingham palace")),
    "berlin": ("germany", "europe", "capital olympics german", ("brandenburg gate",)),
    "madrid": ("spain", "europe", "capital spanish", ("prado",)),
    "rome": ("italy", "europe", "capital olympics italian", ("colosseum", "vatican")),
    "barcelona": ("spain", "europe", "coastal olympics spanish", ("sagrada familia",)),
    "vienna": ("austria", "europe", "capital german", ("schonbrunn",)),
    "moscow": ("russia", "europe", "capital megacity cold_winters olympics russian", ("kremlin", "red square")),
    "istanbul": ("turkey", "europe asia", "coastal megacity turkish", ("hagia sophia", "bosphorus")),
    "athens": ("greece", "europe", "capital coastal olympics greek", ("acropolis", "parthenon")),
    "lisbon": ("portugal", "europe", "capital coastal portuguese", ("belem tower",)),
    "tokyo": ("japan", "asia", "capital coastal megacity olympics japanese", ("shibuya crossing",)),
    "osaka": ("japan", "asia", "coastal megacity japanese", ("osaka castle",)),
    "beijing": ("china", "asia", "capital megacity cold_winters olympics chinese", ("forbidden city",
                                                                                   "great wall")),
    "shanghai": ("china", "asia", "coastal megacity chinese", ("the bund",)),
    "seoul": ("south korea", "asia", "capital megacity cold_winters olympics korean", ("gyeongbokgung",)),
    "mumbai": ("india", "asia", "coastal megacity tropical hindi", ("gateway of india",)),
    "delhi": ("india", "asia", "capital megacity hindi", ("red fort", "india gate")),
    "singapore": ("singapore", "asia", "capital coastal tropical english", ("marina bay sands", "merlion")),
    "dubai": ("united arab emirates", "asia", "coastal desert arabic", ("burj khalifa",)),
    "cairo": ("egypt", "africa", "capital megacity desert arabic", ("pyramids", "sphinx")),
    "lagos": ("nigeria", "africa", "coastal megacity tropical english", ()),
    "nairobi": ("kenya", "africa", "capital southern english swahili", ("nairobi national park",)),
    "johannesburg": ("south africa", "africa", "southern english", ()),
    "new york": ("united states", "north america", "coastal megacity english", ("statue of liberty",
                                                                                 "empire state building",
                                                                                 "central park",
                                                                                 "times square")),
    "los angeles": ("united states", "north america", "coastal megacity olympics english", ("hollywood",)),
    "chicago": ("united states", "north america", "cold_winters english", ("willis tower",)),
    "toronto": ("canada", "north america", "cold_winters english", ("cn tower",)),
    "vancouver": ("canada", "north america", "coastal olympics english", ("stanley park",)),
    "mexico city": ("mexico", "north america", "capital megacity olympics spanish", ("zocalo",)),
    "rio de janeiro": ("brazil", "south america", "coastal megacity tropical olympics southern portuguese",
                       ("christ the redeemer", "copacabana", "sugarloaf")),
    "sao paulo": ("brazil", "south america", "megacity southern portuguese", ("paulista avenue",)),
    "buenos aires": ("argentina", "south america", "capital coastal megacity southern spanish", ("obelisco",)),
    "lima": ("peru", "south america", "capital coastal megacity desert southern spanish", ()),
    "sydney": ("australia", "oceania", "coastal olympics southern english", ("opera house",
                                                                              "harbour bridge")),
    "melbourne": ("australia", "oceania", "coastal olympics southern english", ()),
}

ALIASES: dict[str, tuple[str, ...]] = {
    "new york": ("new york city", "nyc"), "rio de janeiro": ("rio",), "delhi": ("new delhi",),
    "mexico city": ("ciudad de mexico",), "sao paulo": ("sampa",),
}

COUNTRY_NAMES: dict[str, tuple[str, ...]] = {
    "united kingdom": ("uk", "britain", "great britain", "england"),
    "united states": ("usa", "america", "united states of america"),
    "south korea": ("korea",), "united arab emirates": ("uae", "emirates"),
}

LANGUAGES = ("english", "french", "german", "spanish", "italian", "russian", "turkish", "greek", "portuguese",
             "japanese", "chinese", "korean", "hindi", "arabic", "swahili")
CONTINENTS = ("europe", "asia", "africa", "north america", "south america", "oceania")

_FLAG_TRIGGERS: dict[str, tuple[str, ...]] = {
    "capital": ("capital",),
    "coastal": ("coast", "coastal", "ocean", "sea", "seaside", "beach", "beaches", "port"),
    "megacity": ("megacity", "ten million", "10 million", "more than ten million", "very big", "very large",
                 "huge", "one of the biggest", "one of the largest"),
    "big_city": ("big", "large", "city", "million"),
    "tropical": ("tropical", "humid", "rainforest"),
    "desert": ("desert", "arid", "dry"),
    "cold_winters": ("cold", "snow", "snowy", "freezing", "cold winters"),
    "olympics": ("olympics", "olympic", "olympic games"),
    "southern": ("southern hemisphere", "south of the equator"),
    "northern": ("northern hemisphere", "north of the equator"),
}


def _attributes(city: str) -> frozenset[str]:
    country, continents, flags, landmarks = CITIES[city]
    attributes = {f"country {country}", "big_city", *flags.split(), *landmarks}
    attributes |= {f"continent {c}" for c in (continents.split(" ") if " america" not in continents
                                              else [continents])}
    if "southern" not in attributes:
        attributes.add("northern")
    return frozenset(attributes)


def _triggers() -> dict[str, tuple[str, ...]]:
    triggers = dict(_FLAG_TRIGGERS)
    for country in {c for c, *_ in CITIES.values()}:
        triggers[f"country {country}"] = (country, *COUNTRY_NAMES.get(country, ()))
    demonyms = {"europe": ("european",), "asia": ("asian",), "africa": ("african",)}
    for continent in CONTINENTS:
        triggers[f"continent {continent}"] = (continent, *demonyms.get(continent, ()))
    for language in LANGUAGES:
        triggers[language] = (language, f"speak {language}", "mandarin") if language == "chinese" else (language,)
    for _, _, _, landmarks in CITIES.values():
        for landmark in landmarks:
            triggers[landmark] = (landmark,)
    return triggers


def city_oracle() -> AttributeOracle:
    return AttributeOracle({city: _attributes(city) for city in CITIES}, _triggers(), ALIASES)


def city_questions() -> tuple[str, ...]:
    """One plain question per attribute: continents, countries, flags, languages, landmarks."""
    flags = {"capital": "Is it a capital city?", "coastal": "Is it on the coast?", "megacity":
             "Does it have more than ten million people?", "tropical": "Is it tropical?", "desert":
             "Is it in a desert?", "cold_winters": "Does it have cold winters?", "olympics":
             "Has it hosted the Olympics?", "southern": "Is it in the southern hemisphere?"}
    countries = sorted({country for country, *_ in CITIES.values()})
    landmarks = sorted({landmark for *_, marks in CITIES.values() for landmark in marks})
    return (*(f"Is it in {c}?" for c in CONTINENTS), *flags.values(), *(f"Is it in {c}?" for c in countries),
            *(f"Do people speak {language} there?" for language in LANGUAGES),
            *(f"Is the {landmark} there?" for landmark in landmarks))
