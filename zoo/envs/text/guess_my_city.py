"""Guess My City: find the hidden home town by questions, answered by rules over an attribute table.

91 cities, as many as the paper's. The paper's list (ArCHer's ``CITY_LIST``) has many cities whose facts are hard
to check; this table keeps its well-known ones and adds others so that every continent is covered. The oracle
answers Yes / No / Invalid Question, so it never leaks the name. Attribute definitions (so that answers are
checkable): ``capital``: a national capital (Cape Town is one of South Africa's three); ``coastal``: on a sea, an
ocean or a wide estuary open to it; ``megacity``: metropolitan area above ten million people; ``tropical``: hot
and humid all year; ``desert``: arid climate; ``cold_winters``: coldest month averages below freezing;
``olympics``: hosted the summer or winter Olympic Games; ``southern``: south of the equator (Quito, just);
languages are the main ones spoken in the city; landmarks are famous sights whose names name no city.
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
    "osaka": ("japan", "asia", "coastal megacity japanese", ("dotonbori",)),
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
    "nairobi": ("kenya", "africa", "capital southern english swahili", ("karura forest",)),
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
    # Europe
    "kyiv": ("ukraine", "europe", "capital cold_winters ukrainian", ("maidan", "pechersk lavra")),
    "budapest": ("hungary", "europe", "capital hungarian", ("chain bridge",)),
    "amsterdam": ("netherlands", "europe", "capital olympics dutch", ("rijksmuseum", "anne frank house")),
    "stockholm": ("sweden", "europe", "capital coastal cold_winters olympics swedish", ("vasa museum",)),
    "warsaw": ("poland", "europe", "capital cold_winters polish", ("palace of culture and science",)),
    "oslo": ("norway", "europe", "capital coastal cold_winters olympics norwegian", ("holmenkollen",
                                                                                      "vigeland park")),
    "helsinki": ("finland", "europe", "capital coastal cold_winters olympics finnish swedish", ()),
    "dublin": ("ireland", "europe", "capital coastal english", ("guinness storehouse",)),
    "st petersburg": ("russia", "europe", "coastal cold_winters russian", ("hermitage",)),
    "venice": ("italy", "europe", "coastal italian", ("rialto bridge", "grand canal")),
    "prague": ("czech republic", "europe", "capital czech", ("charles bridge",)),
    "brussels": ("belgium", "europe", "capital french dutch", ("atomium", "manneken pis")),
    # Asia
    "jakarta": ("indonesia", "asia", "capital coastal megacity tropical southern indonesian", ("monas",)),
    "karachi": ("pakistan", "asia", "coastal megacity desert urdu", ("mazar e quaid",)),
    "bangkok": ("thailand", "asia", "capital megacity tropical thai", ("grand palace", "wat arun")),
    "tehran": ("iran", "asia", "capital megacity persian", ("azadi tower", "milad tower")),
    "kolkata": ("india", "asia", "megacity tropical bengali", ("victoria memorial", "howrah bridge")),
    "chennai": ("india", "asia", "coastal megacity tropical tamil", ("marina beach",)),
    "dhaka": ("bangladesh", "asia", "capital megacity tropical bengali", ("ahsan manzil",)),
    "guangzhou": ("china", "asia", "megacity chinese", ()),
    "hanoi": ("vietnam", "asia", "capital vietnamese", ("hoan kiem lake",)),
    "harbin": ("china", "asia", "cold_winters chinese", ("ice and snow world", "saint sophia cathedral")),
    "busan": ("south korea", "asia", "coastal korean", ("haeundae beach",)),
    "kyoto": ("japan", "asia", "japanese", ("fushimi inari", "golden pavilion")),
    "manila": ("philippines", "asia", "capital coastal megacity tropical filipino english", ("intramuros",
                                                                                            "rizal park")),
    "kuala lumpur": ("malaysia", "asia", "capital tropical malay", ("petronas towers",)),
    "baghdad": ("iraq", "asia", "capital desert arabic", ()),
    # Africa
    "casablanca": ("morocco", "africa", "coastal arabic french", ("hassan ii mosque",)),
    "marrakesh": ("morocco", "africa", "arabic", ("jemaa el fnaa", "koutoubia")),
    "kinshasa": ("democratic republic of the congo", "africa", "capital megacity tropical southern french lingala",
                 ()),
    "addis ababa": ("ethiopia", "africa", "capital amharic", ()),
    "alexandria": ("egypt", "africa", "coastal desert arabic", ("qaitbay citadel",)),
    "cape town": ("south africa", "africa", "capital coastal southern english afrikaans xhosa",
                  ("table mountain", "robben island")),
    "accra": ("ghana", "africa", "capital coastal tropical english", ()),
    "dakar": ("senegal", "africa", "capital coastal french wolof", ("african renaissance monument",)),
    "dar es salaam": ("tanzania", "africa", "coastal tropical southern swahili english", ()),
    # North America
    "san francisco": ("united states", "north america", "coastal english", ("golden gate bridge", "alcatraz")),
    "montreal": ("canada", "north america", "cold_winters olympics french english", ("mount royal",)),
    "havana": ("cuba", "north america", "capital coastal tropical spanish", ("malecon",)),
    "miami": ("united states", "north america", "coastal tropical english spanish", ("south beach",)),
    "washington": ("united states", "north america", "capital english", ("white house", "lincoln memorial")),
    "las vegas": ("united states", "north america", "desert english", ("bellagio",)),
    "atlanta": ("united states", "north america", "olympics english", ()),
    # South America
    "bogota": ("colombia", "south america", "capital megacity spanish", ("monserrate", "gold museum")),
    "santiago": ("chile", "south america", "capital southern spanish", ("la moneda",)),
    "brasilia": ("brazil", "south america", "capital southern portuguese", ()),
    "medellin": ("colombia", "south america", "spanish", ()),
    "caracas": ("venezuela", "south america", "capital spanish", ()),
    "montevideo": ("uruguay", "south america", "capital coastal southern spanish", ()),
    "quito": ("ecuador", "south america", "capital southern spanish", ("mitad del mundo",)),
    "cusco": ("peru", "south america", "southern spanish", ("sacsayhuaman",)),
    # Oceania
    "auckland": ("new zealand", "oceania", "coastal southern english", ("sky tower",)),
    "wellington": ("new zealand", "oceania", "capital coastal southern english", ("te papa",)),
    "brisbane": ("australia", "oceania", "coastal southern english", ("story bridge",)),
    "perth": ("australia", "oceania", "coastal southern english", ("kings park",)),
}

ALIASES: dict[str, tuple[str, ...]] = {
    "new york": ("new york city", "nyc"), "rio de janeiro": ("rio",), "delhi": ("new delhi",),
    "mexico city": ("ciudad de mexico",), "sao paulo": ("sampa",),
    "kyiv": ("kiev",), "st petersburg": ("saint petersburg", "leningrad"), "kolkata": ("calcutta",),
    "chennai": ("madras",), "dhaka": ("dacca",), "guangzhou": ("canton",), "busan": ("pusan",),
    "bangkok": ("krung thep",), "kuala lumpur": ("kl",), "marrakesh": ("marrakech",),
    "washington": ("washington dc", "washington d c"), "havana": ("la habana",),
    "bogota": ("santa fe de bogota",), "cusco": ("cuzco",), "kinshasa": ("leopoldville",),
}

COUNTRY_NAMES: dict[str, tuple[str, ...]] = {
    "united kingdom": ("uk", "britain", "great britain", "england"),
    "united states": ("usa", "america", "united states of america"),
    "south korea": ("korea",), "united arab emirates": ("uae", "emirates"),
    "netherlands": ("holland", "the netherlands"), "czech republic": ("czechia",), "iran": ("persia",),
    "democratic republic of the congo": ("congo", "dr congo", "drc", "democratic republic of congo"),
    "philippines": ("the philippines",),
}

LANGUAGES = ("english", "french", "german", "spanish", "italian", "russian", "turkish", "greek", "portuguese",
             "japanese", "chinese", "korean", "hindi", "arabic", "swahili", "ukrainian", "hungarian", "dutch",
             "swedish", "polish", "norwegian", "finnish", "czech", "indonesian", "urdu", "thai", "persian",
             "bengali", "tamil", "vietnamese", "filipino", "malay", "lingala", "amharic", "afrikaans", "xhosa",
             "wolof")
#: other words for a language
LANGUAGE_NAMES: dict[str, tuple[str, ...]] = {"chinese": ("speak chinese", "mandarin"), "persian": ("farsi",),
                                              "filipino": ("tagalog",)}
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
        triggers[language] = (language, *LANGUAGE_NAMES.get(language, ()))
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
