"""bAbI-style question answering tasks from our own deterministic generator.

**This is not the official bAbI data.** The 20 task families follow the task definitions of
Weston et al. (2015), "Towards AI-Complete Question Answering: A Set of Prerequisite Toy
Tasks", arXiv 1502.05698, but stories, vocabulary, sentence templates and answer
distributions are ours (a small simulated world of people, places and objects), so error
rates are comparable with published bAbI numbers only in kind, not digit for digit.

- :func:`generate` ``(task, count, seed)`` returns ``count`` examples, the same for the same
  arguments on any machine (numpy's PCG64 seeded by ``(seed, task)``);
- :func:`splits` gives train / valid / test lists for a set of tasks (valid is the last tenth
  of the generated training examples, as Sukhbaatar et al. 2015 hold out 10% of training);
- :class:`Vocabulary` and :func:`encode` turn examples into padded tensors for a memory
  network.

All 20 families are generated: 1 single, 2 two, 3 three supporting facts; 4 two-, 5 three-
argument relations; 6 yes/no; 7 counting; 8 lists/sets; 9 simple negation; 10 indefinite
knowledge; 11 basic, 13 compound coreference; 12 conjunction; 14 time reasoning; 15 basic
deduction; 16 basic induction; 17 positional, 18 size reasoning; 19 path finding; 20
agent's motivations. Differences from the official set, by design: list answers (tasks 8,
19) are one comma-joined label; task 17 reads "above" as "one cell directly above"; stories
are shorter than the longest official ones (task 3 stories stay under about 60 sentences).
Which question a story asks follows the official generator (facebookarchive/bAbI-tasks,
``lua/babi/tasks``) for tasks 3 (the object's latest move), 6 (moves only), 11 and 13 (the
person or pair just told); every generated question has exactly one answer that a
rule-based reader of the story finds (``tests/data/test_babi_solver.py``).
"""

from attnkit.data.babi.encoding import EncodedSet, Vocabulary, encode, position_encoding
from attnkit.data.babi.example import Example, render
from attnkit.data.babi.tasks import TASKS, generate, splits

__all__ = ["TASKS", "generate", "splits", "Example", "render", "Vocabulary", "encode",
           "EncodedSet", "position_encoding"]
