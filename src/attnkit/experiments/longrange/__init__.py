"""``attnkit longrange``: why attention replaced the fixed vector, and what the Transformer
changed, measured on real English text.

The question (issue 12). Bahdanau et al. 2014 (arXiv:1409.0473, Figure 2) showed that an
encoder-decoder that squeezes the source into one fixed-length vector degrades as sentences
grow, and that attention removes the decline. Vaswani et al. 2017 (arXiv:1706.03762, Table 1)
argued that self-attention connects any two positions in one step (a recurrent layer needs
as many steps as the distance) and runs a layer's positions in parallel. This experiment
measures both claims on one controlled task.

Task and data (:mod:`.data`). Windows of real English text, 5 to 100 characters long, from
the English side of the gettext corpus (:func:`attnkit.data.load_corpus`, "fr"): each window
starts at a sentence and runs on into the following sentences, so long windows are
consecutive real sentences cut at the window's end. Tokens are characters (the 96 most
frequent of the train split; the rest are UNK). The model reads the window and writes it back
(``copy``) or backwards (``reverse``): a transduction that needs every source token. Training
windows come from the train split, the validation curve from valid, every reported figure
from test.

Models (:mod:`.model`), from attnkit's own models, at matched parameter counts (each RNN gets
the hidden size whose count is closest to the Transformer's): ``rnn-none`` (fixed vector,
Cho et al. 2014), ``rnn-attention`` (Bahdanau's additive attention), ``rnn-luong`` (Luong et
al. 2015, general score, input feeding), ``transformer`` (pre-norm, 2+2 layers, d_model 64).
Each trains with :class:`attnkit.train.Trainer` for the same wall-clock budget (``--minutes``
per model and task; teacher forcing, AdamW, warmup then a linear decay over the budget) on
batches of the same number of source tokens, and is scored with greedy decoding.

What the report holds (:mod:`.report`; ``metrics.json``, ``README.md``, ``report.html`` and
the PNG figures in the ``--out`` directory):

- token accuracy and exact match by source length (the shape of Bahdanau's Figure 2), and
  the issue's goal: copy at >= 40 tokens, rnn-attention and transformer >= 95%, rnn-none
  < 50% (``metrics["goal"]``, with ``met`` true or false as measured);
- accuracy by the distance ``d = (L - j) + i`` between output token ``i`` and the source token
  ``j`` it copies (source and output laid out as one sequence);
- gradient flow (:mod:`.probes`): the norm of ``d loss_i / d e_j`` by distance, at
  initialization and after training;
- training time and parallelism: seconds per training step (and per epoch, derived) by
  sequence length at a fixed token count, and the sequential steps per layer (``L`` for a
  recurrent layer, 1 for self-attention).

Commands::

    attnkit longrange                      # the default: copy, 4 models x 2 min, ~10 min on 2 cores
    attnkit longrange --task both          # copy and reverse (twice as long)
    attnkit longrange --quick              # smoke run, about 1.5 minutes
    attnkit longrange --models rnn-none transformer --minutes 5 --out runs/lr5
    attnkit longrange --threads 1          # on a machine shared with other work

Step times are measured in the same process as the training; on a machine shared with
other work they say less than on free cores (the report records the load average), and
torch's default of one thread per core can be many times slower there than ``--threads 1``
(the threads wait on each other). The budget is wall-clock time, so every model is
measured under the same conditions only when the load stays steady through the run.
"""

from attnkit.experiments.longrange.config import (
    MODEL_KINDS,
    PRESETS,
    TASKS,
    LongRangeConfig,
    preset,
)

__all__ = ["MODEL_KINDS", "TASKS", "PRESETS", "LongRangeConfig", "preset"]
