"""Evaluation of image-text retrieval: the public names of its modules, in one namespace.

One module per concern: :mod:`.ranking` (ranks of the ground truth, top-k), :mod:`.recall`
(R@K, medr, meanr, rsum), :mod:`.protocols` (1K, 5K, 5-fold 1K), :mod:`.scoring` (a model
over a split: :func:`evaluate`), :mod:`.binding` (Shapes' swapped-binding twins),
:mod:`.chance` (random ranking), :mod:`.oracle` (the truth oracle) and :mod:`.bootstrap`
(paired bootstrap intervals).
"""

from xmrlib.evaluation.binding import binding_accuracy, binding_ceiling, binding_chance
from xmrlib.evaluation.bootstrap import paired_bootstrap, rsum_per_image
from xmrlib.evaluation.chance import random_ranking_expectation, simulate_random_ranking
from xmrlib.evaluation.oracle import oracle_recall
from xmrlib.evaluation.protocols import PROTOCOLS, protocol_folds
from xmrlib.evaluation.ranking import ranks, retrieval_ranks, topk_for_caption, topk_for_image
from xmrlib.evaluation.recall import METRIC_KEYS, RECALL_KEYS, average_folds, recall_metrics
from xmrlib.evaluation.scoring import (encode_dataset, evaluate, similarity_matrix,
                                       sims_metrics)

__all__ = ["ranks", "retrieval_ranks", "topk_for_caption", "topk_for_image", "recall_metrics",
           "average_folds", "protocol_folds", "encode_dataset", "similarity_matrix", "evaluate",
           "sims_metrics",
           "binding_accuracy", "binding_chance", "binding_ceiling", "random_ranking_expectation",
           "simulate_random_ranking", "oracle_recall", "rsum_per_image", "paired_bootstrap",
           "PROTOCOLS", "METRIC_KEYS", "RECALL_KEYS"]
