"""Tasks about where people and objects are (Weston et al. 2015, arXiv 1502.05698):

1 single supporting fact, 2 two supporting facts, 3 three supporting facts, 6 yes/no
questions, 7 counting, 8 lists/sets. Each function writes one story into ``story`` with
several questions, each asked only when the story so far determines its answer.
"""

from __future__ import annotations

import numpy as np

from attnkit.data.babi.world import LOCATIONS, NUMBERS, Story, World, pick

__all__ = ["single_fact", "two_facts", "three_facts", "yes_no", "counting", "lists"]


def _placed(world: World) -> list[str]:
    return [p for p in world.people if world.where[p] is not None]


def single_fact(story: Story, rng: np.random.Generator) -> None:
    """Task 1: people move; "where is mary" (the last move of that person)."""
    world = World(story, rng)
    for _ in range(5):
        for _ in range(2):
            world.move(pick(rng, world.people))
        person = pick(rng, _placed(world))
        story.ask(f"where is {person}", world.where[person], [world.where_fact[person]])


def two_facts(story: Story, rng: np.random.Generator) -> None:
    """Task 2: people move, pick up and drop objects; "where is the football" (who holds it
    and where they went, or where it was dropped)."""
    world = World(story, rng)
    asked = 0
    for _ in range(40):
        if asked == 5 or len(story.sentences) > 45:
            break
        for _ in range(int(rng.integers(1, 4))):
            world.random_action(get_p=0.35, drop_p=0.1)
        known = [o for o in world.objects if world.object_location(o) is not None]
        if known:
            obj = pick(rng, known)
            place, facts = world.object_location(obj)
            story.ask(f"where is the {obj}", place, facts)
            asked += 1


def three_facts(story: Story, rng: np.random.Generator) -> None:
    """Task 3: as task 2; "where was the football before the kitchen" (the object's place
    before it reached the kitchen, where it is now). As in the official generator
    (``WhereWasObject.lua``) the question is about the object's latest move on its known
    trail; before 2026-12-01 ours asked about any move of the trail, a harder task. Asked only
    when both places occur once on the trail, so the answer is unique."""
    world = World(story, rng)
    asked = 0
    for _ in range(60):
        if asked == 4 or len(story.sentences) > 45:
            break
        for _ in range(int(rng.integers(1, 4))):
            world.random_action(get_p=0.35, drop_p=0.1)
        options = []
        for obj, trail in world.trail.items():
            places = [place for place, _ in trail]
            k = len(trail) - 1
            if k >= 1 and places.count(places[k]) == 1 and places.count(places[k - 1]) == 1:
                options.append((obj, k))
        if options and rng.random() < 0.6:
            obj, k = pick(rng, options)
            trail = world.trail[obj]
            story.ask(f"where was the {obj} before the {trail[k][0]}", trail[k - 1][0],
                      (*trail[k - 1][1], *trail[k][1]))
            asked += 1


def yes_no(story: Story, rng: np.random.Generator) -> None:
    """Task 6: people move; "is mary in the kitchen" -> yes or no (half the time her place,
    else another). As in the official generator (``IsActorThere.lua``) the story has moves
    only; before 2026-12-01 ours also had pick-up and drop sentences, which name a person
    without placing them (a distractor the official task does not have)."""
    world = World(story, rng)
    for _ in range(5):
        for _ in range(2):
            world.move(pick(rng, world.people))
        placed = _placed(world)
        if not placed:
            continue
        person = pick(rng, placed)
        truth = world.where[person]
        place = truth if rng.random() < 0.5 else pick(rng, [p for p in LOCATIONS if p != truth])
        story.ask(f"is {person} in the {place}", "yes" if place == truth else "no",
                  [world.where_fact[person]])


def _carry_question(story: Story, rng: np.random.Generator, counting: bool) -> None:
    world = World(story, rng)
    for _ in range(5):
        for _ in range(int(rng.integers(1, 4))):
            world.random_action(get_p=0.5, drop_p=0.15)
        # ask about someone the story has shown handling objects (else "none" is a guess)
        handled = [p for p in world.people if world.carry_facts[p]]
        if not handled:
            continue
        person = pick(rng, handled)
        items = world.carried[person]
        if counting:
            story.ask(f"how many objects is {person} carrying", NUMBERS[len(items)],
                      world.carry_facts[person])
        else:
            story.ask(f"what is {person} carrying", ",".join(items) or "nothing",
                      world.carry_facts[person])


def counting(story: Story, rng: np.random.Generator) -> None:
    """Task 7: "how many objects is mary carrying" -> none, one, two, three."""
    _carry_question(story, rng, counting=True)


def lists(story: Story, rng: np.random.Generator) -> None:
    """Task 8: "what is mary carrying" -> nothing, or the objects in the order taken."""
    _carry_question(story, rng, counting=False)
