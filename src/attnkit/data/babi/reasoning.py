"""Tasks of inference over stated rules and maps (Weston et al. 2015, arXiv 1502.05698):

15 basic deduction, 16 basic induction, 17 positional reasoning, 18 size reasoning,
19 path finding, 20 agent's motivations.
"""

from __future__ import annotations

import numpy as np

from attnkit.data.babi.relations import DIRECTIONS, OPPOSITE
from attnkit.data.babi.world import GET_VERBS, LOCATIONS, MOVE_VERBS, Story, pick

__all__ = ["deduction", "induction", "positional", "size", "path_finding", "motivation",
           "SPECIES", "POSITIONS", "SIZES", "STEP", "MOTIVES"]

SPECIES = {"mouse": "mice", "sheep": "sheep", "wolf": "wolves", "cat": "cats"}
ANIMALS = ("lion", "swan", "frog", "rhino")
COLORS = ("white", "green", "yellow", "gray")
POSITIONS = {"above": (0, 1), "below": (0, -1), "to the left of": (-1, 0),
             "to the right of": (1, 0)}
SHAPES = ("red square", "blue square", "red sphere", "pink rectangle", "yellow square",
          "blue triangle")
#: the objects of task 18 (the official stories' six); each story draws its own size order
SIZES = ("chocolate", "box of chocolates", "box", "suitcase", "container", "chest")
STEP = {"north": (0, 1), "south": (0, -1), "east": (1, 0), "west": (-1, 0)}
#: motivation -> (where one goes, what one gets there)
MOTIVES = {"hungry": ("kitchen", "apple"), "thirsty": ("kitchen", "milk"),
           "tired": ("bedroom", "pajamas"), "bored": ("garden", "football")}


def deduction(story: Story, rng: np.random.Generator) -> None:
    """Task 15: "sheep are afraid of wolves. gertrude is a sheep"; "what is gertrude afraid
    of" -> wolf. As in the official generator (``Deduction.lua``): the four people are one
    of each of the four species (a random assignment), the eight statements are shuffled,
    and every person is asked about, in random order. Before 2026-12-02 ours drew each
    person's species independently and asked about three of the four."""
    kinds = list(SPECIES)
    fears = {k: pick(rng, [o for o in kinds if o != k]) for k in kinds}
    names = ("gertrude", "winona", "emily", "jessica")
    member = dict(zip(names, rng.permutation(kinds).tolist(), strict=True))
    lines = [("fear", k) for k in kinds] + [("is", n) for n in names]
    index = {}
    for k in rng.permutation(len(lines)).tolist():
        kind, who = lines[k]
        if kind == "fear":
            index[lines[k]] = story.say(SPECIES[who], "are afraid of", SPECIES[fears[who]])
        else:
            index[lines[k]] = story.say(who, "is a", member[who])
    for name in rng.permutation(names).tolist():
        kind = member[name]
        story.ask(f"what is {name} afraid of", fears[kind],
                  [index[("is", name)], index[("fear", kind)]])


def induction(story: Story, rng: np.random.Generator) -> None:
    """Task 16: "lily is a swan. lily is white. greg is a swan"; "what color is greg"
    (another of the same kind shows the color)."""
    color = dict(zip(ANIMALS, rng.permutation(COLORS).tolist(), strict=True))
    names = rng.permutation(("lily", "bernhard", "greg", "julius", "brian")).tolist()
    target, witness = names[0], names[1]
    kind_of = {n: pick(rng, ANIMALS) for n in names}
    kind_of[witness] = kind_of[target]
    told = rng.permutation(names[1:]).tolist()
    position = int(rng.integers(len(told) + 1))
    order = told[:position] + [target] + told[position:]
    facts = {}
    for name in order:
        facts[(name, "kind")] = story.say(name, "is a", kind_of[name])
        if name != target:
            facts[(name, "color")] = story.say(name, "is", color[kind_of[name]])
    story.ask(f"what color is {target}", color[kind_of[target]],
              [facts[(target, "kind")], facts[(witness, "kind")], facts[(witness, "color")]])


def positional(story: Story, rng: np.random.Generator) -> None:
    """Task 17: "the triangle is above the red square. the blue square is to the left of the
    red square"; "is the triangle to the right of the blue square" -> yes or no. A relation
    means one cell away in that direction on a grid (same column for above/below, same row
    for left/right)."""
    a, b, c = rng.choice(SHAPES, size=3, replace=False).tolist()
    rel_a, rel_c = rng.choice(list(POSITIONS), size=2, replace=False).tolist()
    spot = {b: (0, 0), a: POSITIONS[rel_a], c: POSITIONS[rel_c]}
    lines = [("the", a, "is", rel_a, "the", b), ("the", c, "is", rel_c, "the", b)]
    support = [story.say(*lines[k]) for k in rng.permutation(2).tolist()]
    for _ in range(4):
        x, y = (a, c) if rng.random() < 0.5 else (c, a)
        dx, dy = spot[x][0] - spot[y][0], spot[x][1] - spot[y][1]
        relation = pick(rng, [r for r, (ux, uy) in POSITIONS.items()
                              if (ux and dx) or (uy and dy)])
        ux, uy = POSITIONS[relation]
        yes = ux * dx > 0 or uy * dy > 0
        story.ask(f"is the {x} {relation} the {y}", "yes" if yes else "no", support)


def size(story: Story, rng: np.random.Generator) -> None:
    """Task 18: "the football fits inside the suitcase. the box is bigger than the football";
    "does the suitcase fit in the football" -> no. The official generator's world: the
    chocolate is the smallest object and the box of chocolates the next, while the four
    containers get a fresh random size order in every story (all bigger than the box of
    chocolates). A story states a chain of two relations, then 2-7 relations between other
    random pairs that are not yet stated (keeping some pair exactly two statements apart),
    in shuffled order, and asks about every pair whose shortest chain of statements has
    exactly two links, each question supported by those two statements."""
    sizes = {"chocolate": 0.5, "box of chocolates": 1.0}
    sizes.update({thing: 1.0 + float(rng.random()) for thing in SIZES if thing not in sizes})
    order = sorted(SIZES, key=sizes.get, reverse=True)  # biggest first
    edges: list[tuple[str, str]] = []  # (bigger, smaller), as stated
    chain = sorted(rng.choice(len(order), size=3, replace=False).tolist())
    edges += [(order[chain[0]], order[chain[1]]), (order[chain[1]], order[chain[2]])]
    for _ in range(int(rng.integers(2, 8))):
        for _ in range(100):
            i, j = sorted(rng.choice(len(order), size=2, replace=False).tolist())
            edge = (order[i], order[j])
            if edge not in edges and _two_link_pairs(edges + [edge]):
                edges.append(edge)
                break
    said = {}
    for k in rng.permutation(len(edges)).tolist():
        big, small = edges[k]
        if rng.random() < 0.5:
            said[edges[k]] = story.say("the", small, "fits inside the", big)
        else:
            said[edges[k]] = story.say("the", big, "is bigger than the", small)
    for (big, small), links in _two_link_pairs(edges).items():
        support = [said[edge] for edge in links]
        x, y = (big, small) if rng.random() < 0.5 else (small, big)
        if rng.random() < 0.5:
            story.ask(f"does the {x} fit in the {y}", "yes" if x == small else "no", support)
        else:
            story.ask(f"is the {x} bigger than the {y}", "yes" if x == big else "no", support)


def _two_link_pairs(edges: list[tuple[str, str]]) -> dict[tuple[str, str], tuple]:
    """(bigger, smaller) pairs whose shortest chain of stated edges has exactly two links,
    each with one such chain, in a fixed order."""
    direct = set(edges)
    pairs = {}
    for a, b in edges:
        for c, d in edges:
            if b == c and (a, d) not in direct and (a, d) not in pairs:
                pairs[(a, d)] = ((a, b), (c, d))
    return pairs


def path_finding(story: Story, rng: np.random.Generator) -> None:
    """Task 19: "the kitchen is north of the hallway. the den is east of the hallway";
    "how do you go from the den to the kitchen" -> "w,n". The map is a tree of five
    places on a grid, so the two-step path is unique."""
    places = rng.choice((*LOCATIONS, "den"), size=5, replace=False).tolist()
    start, middle, end = places[:3]
    d1 = pick(rng, DIRECTIONS)
    d2 = pick(rng, [d for d in DIRECTIONS if d != OPPOSITE[d1]])
    spot = {start: (0, 0)}
    spot[middle] = (STEP[d1][0], STEP[d1][1])
    spot[end] = (spot[middle][0] + STEP[d2][0], spot[middle][1] + STEP[d2][1])
    edges = [(start, d1, middle), (middle, d2, end)]
    for extra in places[3:]:
        while True:
            anchor, d = pick(rng, list(spot)), pick(rng, DIRECTIONS)
            cell = (spot[anchor][0] + STEP[d][0], spot[anchor][1] + STEP[d][1])
            if cell not in spot.values():
                break
        spot[extra] = cell
        edges.append((anchor, d, extra))
    index = {}
    for k in rng.permutation(len(edges)).tolist():
        src, d, dst = edges[k]  # dst is d of src
        if rng.random() < 0.5:
            index[k] = story.say("the", dst, "is", d, "of the", src)
        else:
            index[k] = story.say("the", src, "is", OPPOSITE[d], "of the", dst)
    story.ask(f"how do you go from the {start} to the {end}", f"{d1[0]},{d2[0]}",
              [index[0], index[1]])


def motivation(story: Story, rng: np.random.Generator) -> None:
    """Task 20: "sumit is tired. sumit went back to the bedroom. sumit grabbed the pajamas
    there"; "where will sumit go", "why did sumit go to the bedroom", "why did sumit get the
    pajamas"."""
    people = rng.choice(("sumit", "yann", "antoine", "jason"), size=3, replace=False).tolist()
    motive = {p: pick(rng, list(MOTIVES)) for p in people}
    stage = {p: 0 for p in people}
    stated: dict[str, int] = {}
    while any(s < 3 for s in stage.values()):
        person = pick(rng, [p for p in people if stage[p] < 3])
        place, thing = MOTIVES[motive[person]]
        if stage[person] == 0:
            stated[person] = story.say(person, "is", motive[person])
            if rng.random() < 0.7:
                story.ask(f"where will {person} go", place, [stated[person]])
        elif stage[person] == 1:
            i = story.say(person, " ".join(pick(rng, MOVE_VERBS)), "the", place)
            if rng.random() < 0.7:
                story.ask(f"why did {person} go to the {place}", motive[person],
                          [stated[person], i])
        else:
            i = story.say(person, " ".join(pick(rng, GET_VERBS)), "the", thing, "there")
            if rng.random() < 0.7:
                story.ask(f"why did {person} get the {thing}", motive[person],
                          [stated[person], i])
        stage[person] += 1
