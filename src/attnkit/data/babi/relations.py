"""Tasks about relations between things (Weston et al. 2015, arXiv 1502.05698):

4 two-argument relations, 5 three-argument relations, 14 time reasoning.
"""

from __future__ import annotations

import numpy as np

from attnkit.data.babi.world import LOCATIONS, MOVE_VERBS, Story, World, pick

__all__ = ["two_arg", "three_arg", "time_reasoning", "DIRECTIONS", "OPPOSITE"]

DIRECTIONS = ("north", "south", "east", "west")
OPPOSITE = {"north": "south", "south": "north", "east": "west", "west": "east"}
GIVERS = ("fred", "jeff", "bill", "mary")
TIMES = ("yesterday", "this morning", "this afternoon", "this evening")
TIME_PLACES = ("school", "park", "cinema", "office", "kitchen", "bedroom")


def two_arg(story: Story, rng: np.random.Generator) -> None:
    """Task 4: "the office is north of the bedroom. the bedroom is north of the bathroom";
    "what is north of the bedroom" or "what is the bedroom north of"."""
    first, middle, last = rng.choice(LOCATIONS, size=3, replace=False).tolist()
    d1 = pick(rng, DIRECTIONS)  # first is d1 of middle
    d2 = pick(rng, [d for d in DIRECTIONS if d != OPPOSITE[d1]])  # middle is d2 of last
    facts = [(first, d1, middle), (middle, d2, last)]
    order = rng.permutation(2)
    index = {}
    for k in order.tolist():
        a, d, b = facts[k]
        index[k] = story.say("the", a, "is", d, "of the", b)
    k = int(rng.integers(2))
    a, d, b = facts[k]
    if rng.random() < 0.5:
        story.ask(f"what is {d} of the {b}", a, [index[k]])
    else:
        story.ask(f"what is the {a} {d} of", b, [index[k]])


def three_arg(story: Story, rng: np.random.Generator) -> None:
    """Task 5: people move and pass objects ("fred gave the football to jeff"); "who gave the
    football to jeff", "who did fred give the football to", "what did fred give to jeff",
    "who received the football" (each about the most recent matching hand-over)."""
    world = World(story, rng, people=GIVERS)
    gives: list[tuple[str, str, str, int]] = []
    asked = 0
    for _ in range(60):
        if asked == 5 or len(story.sentences) > 45:
            break
        for _ in range(int(rng.integers(1, 3))):
            person = pick(rng, world.people)
            others = [p for p in world.people if p != person and world.where[p] is not None
                      and world.where[p] == world.where[person]]
            if world.carried[person] and others and rng.random() < 0.7:
                obj, other = pick(rng, world.carried[person]), pick(rng, others)
                gives.append((person, obj, other, world.give(person, other, obj)))
            elif world.can_get(person) and rng.random() < 0.6:
                world.get(person, pick(rng, world.can_get(person)))
            else:
                world.move(person, pick(rng, LOCATIONS[:3] if rng.random() < 0.8 else LOCATIONS))
        if not gives or rng.random() < 0.4:
            continue
        giver, obj, taker, _ = gives[int(rng.integers(max(0, len(gives) - 2), len(gives)))]
        kind = int(rng.integers(4))
        if kind == 0:
            match = [g for g in gives if g[1] == obj and g[2] == taker][-1]
            story.ask(f"who gave the {obj} to {taker}", match[0], [match[3]])
        elif kind == 1:
            match = [g for g in gives if g[0] == giver and g[1] == obj][-1]
            story.ask(f"who did {giver} give the {obj} to", match[2], [match[3]])
        elif kind == 2:
            match = [g for g in gives if g[0] == giver and g[2] == taker][-1]
            story.ask(f"what did {giver} give to {taker}", match[1], [match[3]])
        else:
            match = [g for g in gives if g[1] == obj][-1]
            story.ask(f"who received the {obj}", match[2], [match[3]])
        asked += 1


def time_reasoning(story: Story, rng: np.random.Generator) -> None:
    """Task 14: "yesterday julie went to the park. julie went to the school this morning";
    "where was julie before the school" (the place at the time slot just before)."""
    people = rng.choice(("julie", "fred", "bill", "mary"), size=2, replace=False).tolist()
    plans = {p: rng.choice(TIME_PLACES, size=4, replace=False).tolist() for p in people}
    events = [(p, t) for p in people for t in range(4)]
    order = rng.permutation(len(events)).tolist()
    said: dict[tuple[str, int], int] = {}
    for n, k in enumerate(order):
        person, t = events[k]
        verb = " ".join(pick(rng, MOVE_VERBS))
        place = plans[person][t]
        if rng.random() < 0.5:
            i = story.say(TIMES[t], person, verb, "the", place)
        else:
            i = story.say(person, verb, "the", place, TIMES[t])
        said[(person, t)] = i
        options = [(p, t) for (p, t) in said if t > 0 and (p, t - 1) in said]
        if n >= 2 and options and rng.random() < 0.5:
            person, t = pick(rng, options)
            story.ask(f"where was {person} before the {plans[person][t]}",
                      plans[person][t - 1], [said[(person, t)], said[(person, t - 1)]])
