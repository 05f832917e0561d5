"""The task registry (number -> name, story writer) and the deterministic sampling of
examples and splits."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from attnkit._validate import check_int
from attnkit.data.babi import actors, reasoning, relations, tracking
from attnkit.data.babi.example import Example
from attnkit.data.babi.world import Story

__all__ = ["TASKS", "generate", "splits"]

StoryWriter = Callable[[Story, np.random.Generator], None]

#: task number -> (name, story writer), numbered as in Weston et al. 2015
TASKS: dict[int, tuple[str, StoryWriter]] = {
    1: ("single supporting fact", tracking.single_fact),
    2: ("two supporting facts", tracking.two_facts),
    3: ("three supporting facts", tracking.three_facts),
    4: ("two argument relations", relations.two_arg),
    5: ("three argument relations", relations.three_arg),
    6: ("yes/no questions", tracking.yes_no),
    7: ("counting", tracking.counting),
    8: ("lists/sets", tracking.lists),
    9: ("simple negation", actors.negation),
    10: ("indefinite knowledge", actors.indefinite),
    11: ("basic coreference", actors.coreference),
    12: ("conjunction", actors.conjunction),
    13: ("compound coreference", actors.compound_coreference),
    14: ("time reasoning", relations.time_reasoning),
    15: ("basic deduction", reasoning.deduction),
    16: ("basic induction", reasoning.induction),
    17: ("positional reasoning", reasoning.positional),
    18: ("size reasoning", reasoning.size),
    19: ("path finding", reasoning.path_finding),
    20: ("agent's motivations", reasoning.motivation),
}

# Separate streams for training (train + valid) and test data.
_STREAM = {"train": 0, "test": 1}


def generate(task: int, count: int, seed: int = 0, *, stream: str = "train") -> list[Example]:
    """``count`` examples of ``task``: stories are written one after another, each with a few
    questions, until ``count`` questions exist (the last story may be cut short).

    Args:
        task: 1..20 (see :data:`TASKS`).
        count: number of examples (questions), >= 0.
        seed: the random seed; the same arguments give the same examples.
        stream: ``"train"`` or ``"test"`` (independent streams of the same seed).
    """
    check_int(task, "task", minimum=1, maximum=len(TASKS))
    check_int(count, "count", minimum=0)
    check_int(seed, "seed", minimum=0)
    if stream not in _STREAM:
        raise ValueError(f"stream: expected 'train' or 'test', got {stream!r}")
    rng = np.random.default_rng([seed, task, _STREAM[stream]])
    writer = TASKS[task][1]
    examples: list[Example] = []
    while len(examples) < count:
        story = Story(task)
        writer(story, rng)
        examples.extend(story.examples)
    return examples[:count]


def splits(tasks: Sequence[int], train_count: int, test_count: int, seed: int = 0,
           valid_fraction: float = 0.1) -> dict[str, list[Example]]:
    """Train, valid and test examples of every task in ``tasks``.

    ``train_count`` examples per task are generated and the last ``valid_fraction`` of them
    (whole questions) is held out as valid, so "1k" means 900 train + 100 valid, as in
    Sukhbaatar et al. (2015); ``test_count`` per task come from the independent test stream.
    """
    if not 0.0 <= valid_fraction < 1.0:
        raise ValueError(f"valid_fraction: expected a number in [0, 1), got {valid_fraction}")
    out: dict[str, list[Example]] = {"train": [], "valid": [], "test": []}
    for task in tasks:
        examples = generate(task, train_count, seed)
        cut = train_count - int(round(valid_fraction * train_count))
        out["train"] += examples[:cut]
        out["valid"] += examples[cut:]
        out["test"] += generate(task, test_count, seed, stream="test")
    return out
