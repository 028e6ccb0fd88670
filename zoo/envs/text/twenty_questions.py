"""Twenty Questions: guess a hidden word by yes/no questions, answered by a rule-based oracle.

Only the paper's 10-word subset is tabulated so far (``text/twenty-questions-subset``); the full 157-word
game (``text/twenty-questions``) needs its word list and attribute table.
"""

from __future__ import annotations

from zoo.envs.text.oracles import AttributeOracle

#: attribute -> phrases in a question that ask about it (matched as whole normalised words, longest first)
TRIGGERS: dict[str, tuple[str, ...]] = {
    "animal": ("animal", "creature", "alive", "living", "living thing", "organism"),
    "mammal": ("mammal",),
    "pet": ("pet", "domesticated"),
    "food": ("food", "edible", "eat", "eaten", "eat it"),
    "fruit": ("fruit",),
    "plant": ("plant", "grow", "grows", "grown", "vegetable matter"),
    "yellow": ("yellow",),
    "vehicle": ("vehicle", "transport", "transportation", "drive", "driven", "ride"),
    "wheels": ("wheel", "wheels"),
    "clothing": ("clothing", "clothes", "wear", "worn", "wearable", "garment"),
    "soft": ("soft", "fabric", "cloth", "cotton"),
    "electronic": ("electronic", "electronics", "electric", "electricity", "battery", "plug", "plugged in",
                   "screen", "device"),
    "keys": ("keys", "keyboard"),
    "instrument": ("instrument", "musical", "music", "play music"),
    "furniture": ("furniture", "sit on", "sit"),
    "writing": ("write", "writing", "ink"),
    "tool": ("tool", "utensil"),
    "sharp": ("sharp", "blade", "cut", "cutting"),
    "sports": ("sport", "sports", "ball", "toy", "play with", "game", "kick"),
    "metal": ("metal", "metallic", "steel", "iron"),
    "wood": ("wood", "wooden"),
    "big": ("big", "large", "heavy", "bigger", "larger"),
    "small": ("small", "fit in", "pocket", "handheld", "hold it", "carry it", "light", "portable"),
    "indoors": ("indoors", "inside", "house", "home", "household", "room"),
    "outdoors": ("outdoors", "outside"),
    "legs": ("leg", "legs"),
    "man_made": ("man made", "manmade", "made by humans", "artificial", "manufactured", "object", "thing"),
}

#: one plain question per attribute (the weak policy's questions)
QUESTIONS: tuple[str, ...] = (
    "Is it an animal?", "Is it a mammal?", "Is it a pet?", "Is it food?", "Is it a fruit?", "Is it a plant?",
    "Is it yellow?", "Is it a vehicle?", "Does it have wheels?", "Is it clothing?", "Is it soft?",
    "Is it electronic?", "Does it have keys?", "Is it a musical instrument?", "Is it furniture?",
    "Is it used for writing?", "Is it a tool?", "Is it sharp?", "Is it used in sports?", "Is it made of metal?",
    "Is it made of wood?", "Is it big?", "Is it small?", "Is it found indoors?", "Is it found outdoors?",
    "Does it have legs?", "Is it man made?",
)

#: the paper's 10-word subset: word -> attributes (all others are answered No)
SUBSET: dict[str, frozenset[str]] = {w: frozenset(a.split()) for w, a in {
    "football": "sports small outdoors man_made",
    "dog": "animal mammal pet legs indoors outdoors",
    "banana": "food fruit plant yellow small",
    "truck": "vehicle wheels metal big outdoors man_made",
    "pants": "clothing soft legs man_made",
    "computer": "electronic keys indoors man_made",
    "piano": "instrument keys big wood legs indoors man_made",
    "chair": "furniture legs wood indoors man_made",
    "pen": "writing tool small indoors man_made",
    "scissors": "tool sharp metal small indoors man_made",
}.items()}

ALIASES: dict[str, tuple[str, ...]] = {
    "football": ("soccer ball",), "dog": ("puppy",), "truck": ("lorry",), "pants": ("trousers",),
    "computer": ("laptop", "pc"), "pen": ("ballpoint",),
}


def subset_oracle() -> AttributeOracle:
    return AttributeOracle(SUBSET, TRIGGERS, ALIASES)
