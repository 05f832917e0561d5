"""The simulated world behind the bAbI-style tasks: people who move between locations and
pick up, drop and pass objects, with every statement recorded as a sentence.

The simulator keeps the truth (where everyone and everything is) and, for each piece of it,
the indices of the sentences that establish it for a reader: an object's location is known
only once somebody has been seen holding it; a person's location only once a sentence placed
them. Questions are asked only about what the story so far determines.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from attnkit.data.babi.example import Example, Sentence

__all__ = ["PEOPLE", "LOCATIONS", "OBJECTS", "MOVE_VERBS", "GET_VERBS", "DROP_VERBS",
           "NUMBERS", "Story", "World", "pick"]

PEOPLE = ("mary", "john", "sandra", "daniel")
PRONOUN = {"mary": "she", "sandra": "she", "john": "he", "daniel": "he"}
LOCATIONS = ("bathroom", "hallway", "kitchen", "garden", "office", "bedroom")
OBJECTS = ("football", "apple", "milk")
MOVE_VERBS = (("moved", "to"), ("went", "to"), ("journeyed", "to"), ("travelled", "to"),
              ("went", "back", "to"))
GET_VERBS = (("picked", "up"), ("got",), ("grabbed",), ("took",))
DROP_VERBS = (("dropped",), ("discarded",), ("put", "down"), ("left",))
NUMBERS = ("none", "one", "two", "three", "four")


def pick(rng: np.random.Generator, options):
    """One element of ``options``, uniformly."""
    return options[int(rng.integers(len(options)))]


@dataclass
class Story:
    """The statements so far and the examples asked about them."""

    task: int
    sentences: list[Sentence] = field(default_factory=list)
    examples: list[Example] = field(default_factory=list)

    def say(self, *words: str) -> int:
        """Append a statement; return its index."""
        self.sentences.append([w for part in words for w in part.split()])
        return len(self.sentences) - 1

    def ask(self, question: str, answer: str, supporting) -> None:
        """Record a question about the story so far."""
        support = tuple(sorted(set(int(i) for i in supporting)))
        if not support or support[-1] >= len(self.sentences):
            raise AssertionError(f"supporting facts {support} outside the story")
        self.examples.append(Example(self.task, tuple(tuple(s) for s in self.sentences),
                                     tuple(question.split()), answer, support))


class World:
    """People, locations and objects, with the sentences that established each fact.

    ``where[p]``: the person's location (None until a sentence places them) and
    ``where_fact[p]`` the sentence that did. ``holder[o]``: who carries the object, and
    ``object_at[o]``: where it lies when nobody does (None until known).
    """

    def __init__(self, story: Story, rng: np.random.Generator, people=PEOPLE,
                 locations=LOCATIONS, objects=OBJECTS) -> None:
        self.story, self.rng = story, rng
        self.people, self.locations, self.objects = list(people), list(locations), list(objects)
        self.where: dict[str, str | None] = {p: None for p in self.people}
        self.where_fact: dict[str, int] = {}
        self.holder: dict[str, str | None] = {o: None for o in self.objects}
        self.get_fact: dict[str, int] = {}
        # the hidden starting place of each object, and once known, where it lies
        self.hidden = {o: pick(rng, self.locations) for o in self.objects}
        self.object_at: dict[str, str | None] = {o: None for o in self.objects}
        self.object_fact: dict[str, tuple[int, ...]] = {}
        self.carried: dict[str, list[str]] = {p: [] for p in self.people}
        self.carry_facts: dict[str, list[int]] = {p: [] for p in self.people}
        # (location, supporting facts) each object was known to be at, oldest first
        self.trail: dict[str, list[tuple[str, tuple[int, ...]]]] = {o: [] for o in self.objects}

    def _object_moved(self, obj: str, place: str, facts: tuple[int, ...]) -> None:
        trail = self.trail[obj]
        if not trail or trail[-1][0] != place:
            trail.append((place, facts))

    def move(self, person: str, place: str | None = None, *, words=None) -> int:
        """``person`` goes to ``place`` (random other place if None)."""
        if place is None:
            place = pick(self.rng, [loc for loc in self.locations if loc != self.where[person]])
        verb = " ".join(pick(self.rng, MOVE_VERBS))
        i = self.story.say(*(words or (person,)), verb, "the", place)
        self.where[person], self.where_fact[person] = place, i
        for obj in self.carried[person]:
            self._object_moved(obj, place, (self.get_fact[obj], i))
        return i

    def can_get(self, person: str) -> list[str]:
        """Objects ``person`` may pick up now: free and lying where they stand (placed)."""
        here = self.where[person]
        if here is None:
            return []
        return [o for o in self.objects if self.holder[o] is None and
                (self.object_at[o] or self.hidden[o]) == here]

    def get(self, person: str, obj: str) -> int:
        i = self.story.say(person, " ".join(pick(self.rng, GET_VERBS)), "the", obj)
        self.holder[obj], self.object_at[obj] = person, None
        self.get_fact[obj] = i
        self.carried[person].append(obj)
        self.carry_facts[person].append(i)
        self._object_moved(obj, self.where[person], (self.where_fact[person], i))
        return i

    def drop(self, person: str, obj: str) -> int:
        i = self.story.say(person, " ".join(pick(self.rng, DROP_VERBS)), "the", obj)
        self.holder[obj] = None
        self.object_at[obj] = self.hidden[obj] = self.where[person]
        self.object_fact[obj] = (self.where_fact[person], i)
        self.carried[person].remove(obj)
        self.carry_facts[person].append(i)
        return i

    def give(self, person: str, other: str, obj: str) -> int:
        verb = pick(self.rng, ("gave", "handed", "passed"))
        i = self.story.say(person, verb, "the", obj, "to", other)
        self.holder[obj] = other
        self.get_fact[obj] = i
        self.carried[person].remove(obj)
        self.carried[other].append(obj)
        self.carry_facts[person].append(i)
        self.carry_facts[other].append(i)
        return i

    def object_location(self, obj: str) -> tuple[str, tuple[int, ...]] | None:
        """Where ``obj`` is and the facts that say so, or None if the story does not tell."""
        person = self.holder[obj]
        if person is not None:
            return self.where[person], (self.get_fact[obj], self.where_fact[person])
        if self.object_at[obj] is not None and obj in self.object_fact:
            return self.object_at[obj], self.object_fact[obj]
        return None

    def random_action(self, *, get_p: float = 0.3, drop_p: float = 0.15) -> int:
        """One random statement: a move, or a pick-up or drop where possible."""
        person = pick(self.rng, self.people)
        draw = self.rng.random()
        if draw < get_p and self.can_get(person):
            return self.get(person, pick(self.rng, self.can_get(person)))
        if draw < get_p + drop_p and self.carried[person]:
            return self.drop(person, pick(self.rng, self.carried[person]))
        return self.move(person)
