"""A small task shipped with the tests: keyword → topic classification.

Under the offline LM (which answers with the outputs of the demonstration whose inputs share the
most words with the current inputs), an unoptimized module answers from a hash of its inputs —
almost never a topic — while a module holding the training examples as demos answers with the
topic of the training text that shares the most words: right on every held-out example.
"""

from __future__ import annotations

SIGNATURE = "text -> topic"

_TOPICS: dict[str, list[str]] = {
    "sports": [
        "the striker scored a goal in the football match",
        "the team won the basketball game in overtime",
        "the tennis player served an ace at the tournament",
    ],
    "weather": [
        "heavy rain and thunder storm expected tomorrow",
        "sunny skies with a warm breeze this afternoon",
        "snow and freezing wind forecast for the weekend",
    ],
    "cooking": [
        "bake the bread dough in a hot oven",
        "simmer the tomato sauce with garlic and basil",
        "whisk the eggs with sugar for the cake batter",
    ],
    "finance": [
        "the stock market fell as interest rates rose",
        "the bank raised its savings account interest",
        "investors sold shares after weak quarterly earnings",
    ],
}

_HELD_OUT: dict[str, list[str]] = {
    "sports": [
        "the goalkeeper saved a penalty in the football match",
        "fans cheered the team game",
    ],
    "weather": ["thunder storm and rain tonight", "freezing snow forecast with wind"],
    "cooking": ["bake the cake in the oven", "simmer garlic in the sauce"],
    "finance": ["interest rates and the stock market", "shares fell after earnings"],
}


def _examples(table: dict[str, list[str]]) -> list[tuple[dict[str, str], dict[str, str]]]:
    rows = [(text, topic) for topic, texts in table.items() for text in texts]
    # Interleave topics so that any prefix covers several of them.
    rows.sort(key=lambda row: table[row[1]].index(row[0]))
    return [({"text": text}, {"topic": topic}) for text, topic in rows]


TRAINSET = _examples(_TOPICS)
HELD_OUT = _examples(_HELD_OUT)
