"""Models built from attnkit attention: Transformer, GPT, BERT-style encoder, RNN seq2seq,
memory networks, SNAIL and a prototypical network, decomposable attention and its BiGRU
baseline; the vision models live in :mod:`attnkit.models.vision`.

Each model is a small file with a typed config dataclass. The sequence-to-sequence models
(:class:`Transformer`, :class:`RNNSeq2Seq`) share one decoding protocol
(``start_decoding`` / ``decode_step`` / ``reorder_state``) used by
:mod:`attnkit.train.decoding`.
"""

from attnkit.models.bert import BertConfig, BertEncoder, BertOutput, mean_pool
from attnkit.models.bert_hf import hf_parameter_names, minilm_path
from attnkit.models.bigru_pair import BiGRUPairClassifier, BiGRUPairConfig
from attnkit.models.decomposable import DecomposableAttention, DecomposableConfig
from attnkit.models.gpt import GPT, GPTConfig
from attnkit.models.memn2n import MemN2N, MemN2NConfig
from attnkit.models.protonet import ProtoNet
from attnkit.models.rnn_seq2seq import (
    ATTENTION_KINDS,
    RNNDecodeState,
    RNNSeq2Seq,
    RNNSeq2SeqConfig,
    build_rnn_seq2seq,
)
from attnkit.models.snail import SNAIL, SnailConfig
from attnkit.models.transformer import Transformer, TransformerConfig, TransformerDecodeState

__all__ = [
    "Transformer", "TransformerConfig", "TransformerDecodeState",
    "GPT", "GPTConfig",
    "BertEncoder", "BertConfig", "BertOutput", "mean_pool", "minilm_path",
    "hf_parameter_names",
    "RNNSeq2Seq", "RNNSeq2SeqConfig", "RNNDecodeState", "build_rnn_seq2seq", "ATTENTION_KINDS",
    "MemN2N", "MemN2NConfig", "SNAIL", "SnailConfig", "ProtoNet",
    "DecomposableAttention", "DecomposableConfig", "BiGRUPairClassifier", "BiGRUPairConfig",
]
