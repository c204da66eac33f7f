"""Numbers written in words or in digits, read alike.

Design choices:
- `numerals` writes each run of English number words in digits ("thirty-nine" -> "39", "one thousand pounds"
  -> "1000 pounds"), so "3 inches" and "three inches" compare equal. Only cardinals up to the thousands: what
  a detail question about a novel asks for (a height, a sum, a count of days).
- `numbers` is the set of the numbers a text states, after `numerals`: the reader's support check asks that
  every number an answer adds is one its evidence states ("thirty-six" is not "thirty-nine").
"""
from __future__ import annotations

import re

NUMBERS = {w: i for i, w in enumerate("zero one two three four five six seven eight nine ten eleven twelve thirteen "
                                      "fourteen fifteen sixteen seventeen eighteen nineteen".split())}
NUMBERS |= {w: 10 * i for i, w in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split(), 2)}
NUMBERS |= {"hundred": 100, "thousand": 1000}
NUMBER_RUN = re.compile(r"\b(?:{0})(?:[\s-]+(?:{0}))*\b".format("|".join(NUMBERS)))


def numerals(text: str) -> str:
    """`text` lowercased, each run of number words written in digits: "thirty-nine" -> "39", "one thousand
    pounds" -> "1000 pounds", so "3 inches" answers "three inches"."""
    def value(run: str) -> str:
        total = current = 0
        for w in re.split(r"[\s-]+", run):
            n = NUMBERS[w]
            if n == 100:
                current = max(current, 1) * 100
            elif n == 1000:
                total, current = total + max(current, 1) * 1000, 0
            else:
                current += n
        return str(total + current)

    return NUMBER_RUN.sub(lambda m: value(m.group()), text.lower())


def numbers(text: str) -> set[str]:
    """The numbers `text` states, as digit strings: {"39", "1000"}."""
    return set(re.findall(r"\d+", numerals(text)))
