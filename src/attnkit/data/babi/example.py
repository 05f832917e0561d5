"""One bAbI-style example: a story (sentences as word lists), a question, one answer label,
and the indices of the supporting sentences."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Example", "Sentence", "render"]

Sentence = list[str]  # lower-case words, no punctuation


@dataclass(frozen=True)
class Example:
    """A question about a story.

    Attributes:
        task: the task family, 1..20 (Weston et al. 2015 numbering).
        story: the statements before the question, oldest first (questions are not kept).
        question: the question's words.
        answer: one label; a list answer is its words joined by commas (``"apple,milk"``,
            ``"n,w"``), one class as in Sukhbaatar et al. (2015).
        supporting: indices into ``story`` of the facts the answer follows from.
    """

    task: int
    story: tuple[tuple[str, ...], ...]
    question: tuple[str, ...]
    answer: str
    supporting: tuple[int, ...]


def render(example: Example) -> str:
    """The example as text, one numbered line per sentence (for reports and debugging)."""
    lines = [f"{i + 1} {' '.join(words)}" for i, words in enumerate(example.story)]
    facts = " ".join(str(i + 1) for i in example.supporting)
    lines.append(f"{' '.join(example.question)}? {example.answer} [{facts}]")
    return "\n".join(lines)
