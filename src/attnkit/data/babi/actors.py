"""Tasks about people's whereabouts told in harder language (Weston et al. 2015,
arXiv 1502.05698):

9 simple negation, 10 indefinite knowledge, 11 basic coreference, 12 conjunction,
13 compound coreference.
"""

from __future__ import annotations

import numpy as np

from attnkit.data.babi.world import LOCATIONS, MOVE_VERBS, PEOPLE, PRONOUN, Story, pick

__all__ = ["negation", "indefinite", "coreference", "conjunction", "compound_coreference"]

_THEN = ("then", "after that", "afterwards", "following that")


def _other(rng: np.random.Generator, place: str | None) -> str:
    return pick(rng, [p for p in LOCATIONS if p != place])


def _verb(rng: np.random.Generator) -> str:
    return " ".join(pick(rng, MOVE_VERBS))


def negation(story: Story, rng: np.random.Generator) -> None:
    """Task 9: "sandra is no longer in the office" / "john is in the hallway";
    "is sandra in the office" -> yes or no (asked about the place last named for her)."""
    last: dict[str, tuple[str, bool, int]] = {}
    for _ in range(5):
        for _ in range(2):
            person, place = pick(rng, PEOPLE), pick(rng, LOCATIONS)
            positive = bool(rng.random() < 0.75)
            if positive:
                i = story.say(person, pick(rng, ("is in the", "went to the", "moved to the")),
                              place)
            else:
                i = story.say(person, pick(rng, ("is not in the", "is no longer in the")),
                              place)
            last[person] = (place, positive, i)
        person = pick(rng, sorted(last))
        place, positive, i = last[person]
        if positive and rng.random() < 1 / 3:
            asked, answer = _other(rng, place), "no"
        else:
            asked, answer = place, "yes" if positive else "no"
        story.ask(f"is {person} in the {asked}", answer, [i])


def indefinite(story: Story, rng: np.random.Generator) -> None:
    """Task 10: "julie is either in the school or the office"; "is julie in the office"
    -> yes, no or maybe."""
    last: dict[str, tuple[tuple[str, ...], int]] = {}
    for _ in range(5):
        for _ in range(2):
            person = pick(rng, PEOPLE)
            if rng.random() < 0.5:
                first, second = rng.choice(LOCATIONS, size=2, replace=False).tolist()
                i = story.say(person, "is either in the", first, "or the", second)
                last[person] = ((first, second), i)
            else:
                place = pick(rng, LOCATIONS)
                i = story.say(person, _verb(rng), "the", place)
                last[person] = ((place,), i)
        person = pick(rng, sorted(last))
        places, i = last[person]
        asked = pick(rng, places) if rng.random() < 0.6 else _other(rng, places[0])
        if asked not in places:
            answer = "no"
        else:
            answer = "yes" if len(places) == 1 else "maybe"
        story.ask(f"is {person} in the {asked}", answer, [i])


def coreference(story: Story, rng: np.random.Generator) -> None:
    """Task 11: "daniel went to the hallway. after that he journeyed to the garden";
    "where is daniel". Each move is told as in the official stories: a sentence that names
    the person, then one that refers to them with a pronoun and moves them on, so the
    pronoun always names the person of the sentence just before (no chains of pronouns).
    As in the official generator (facebookarchive/bAbI-tasks, ``BasicCoreference.lua``), the
    question after each pair asks about the person of that pair, so the answer stands in the
    pronoun sentence just before the question (before 2026-12-01 we asked about any person
    moved so far, which needed older pronoun pairs resolved: a harder task than the
    official one)."""
    for _ in range(5):
        person, place = pick(rng, PEOPLE), pick(rng, LOCATIONS)
        named = story.say(person, _verb(rng), "the", place)
        place = _other(rng, place)
        i = story.say(pick(rng, _THEN), PRONOUN[person], _verb(rng), "the", place)
        story.ask(f"where is {person}", place, (named, i))


def conjunction(story: Story, rng: np.random.Generator) -> None:
    """Task 12: "mary and jeff went to the kitchen"; "where is mary"."""
    where: dict[str, tuple[str, int]] = {}
    for _ in range(5):
        for _ in range(2):
            first, second = rng.choice(PEOPLE, size=2, replace=False).tolist()
            place = pick(rng, LOCATIONS)
            i = story.say(first, "and", second, _verb(rng), "the", place)
            where[first] = where[second] = (place, i)
        person = pick(rng, sorted(where))
        story.ask(f"where is {person}", where[person][0], [where[person][1]])


def compound_coreference(story: Story, rng: np.random.Generator) -> None:
    """Task 13: "daniel and sandra journeyed to the office. then they went to the garden";
    "where is daniel". As in the official stories, each move of a pair is told in two
    sentences: one names both, the next says "they" (the pair of the sentence before). As in
    the official generator (``CompoundCoreference.lua``) the question after each pair asks
    about one of that pair (before 2026-12-01: anyone moved so far)."""
    for _ in range(5):
        pair = rng.choice(PEOPLE, size=2, replace=False).tolist()
        place = pick(rng, LOCATIONS)
        named = story.say(pair[0], "and", pair[1], _verb(rng), "the", place)
        place = _other(rng, place)
        i = story.say(pick(rng, _THEN), "they", _verb(rng), "the", place)
        story.ask(f"where is {pick(rng, pair)}", place, (named, i))
