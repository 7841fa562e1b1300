"""Chapter 06's experiments: A3VSE and its baselines trained on sparse corpora, and measured.

:func:`fit_sparse` trains (or reloads) one model on a :class:`~xmrlib.data.sparse.SparseSplit`;
:class:`SparseRuns` caches the runs of one setting and their test metrics, with paired
bootstrap intervals (:mod:`xmrlib.evaluation.bootstrap`); :func:`sg_baseline_similarity` is the
paper's untrained ``s_g`` baseline and :func:`embed_domains` the points of its Figure 3 t-SNE
(Huang et al., ACM MM 2019). The model itself is :mod:`xmrlib.models.a3vse`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

from xmrlib.data.sparse import SparseLoader, global_tags, sparse_split, words
from xmrlib.evaluation import evaluate
from xmrlib.evaluation.bootstrap import paired_bootstrap, rsum_per_image
from xmrlib.models import build_model
from xmrlib.models.a3vse import A3VSE
from xmrlib.runs import locked_fit, run_data_identity, run_dir_for
from xmrlib.utils import resolve_device, seed_everything
from xmrlib.vocab import Vocabulary

#: Table 5 rows (the paper's method names) -> (model overrides, semantics kind or None)
ABLATIONS: dict[str, tuple[dict[str, Any], str | None]] = {
    "No s": ({"semantics": False, "adversarial": []}, None),
    "Swap s with s_g": ({}, "global"),
    "s, without attention": ({"attention": False}, "regional"),
    "s, without L_adv": ({"adversarial": []}, "regional"),
    "Without l_intra": ({"adversarial": ["cross", "trans"]}, "regional"),
    "Without l_cross": ({"adversarial": ["intra", "trans"]}, "regional"),
    "Without l_trans": ({"adversarial": ["intra", "cross"]}, "regional"),
    "Full model": ({}, "regional"),
}


def fit_sparse(model_name: str, model_config: dict[str, Any], split: Any, dev_data: Any,
               cfg: Any, semantics: str | None = "regional", steps_per_epoch: int | None = None,
               u_batch_size: int | None = None, device: str | torch.device = "auto",
               progress: bool = False, root: Any = None) -> Any:
    """Train (or reload) ``model_name`` on a :class:`~xmrlib.data.sparse.SparseSplit`.

    The same function trains A3VSE and the baselines, so all see the same pairs for the same
    number of steps. ``model_config`` holds the constructor arguments except ``vocab`` and
    ``img_dim``, which come from the split: the vocabulary is built from the annotated captions
    plus, with ``semantics`` (``"regional"``/``"global"``, A3VSE only), the un-annotated
    images' sequences. ``semantics=None`` trains on the annotated pairs alone (the baselines'
    protocol and the vanilla A3VSE, "No s"). The run folder is keyed like ``fit_or_load``
    (model, training config, data identity) plus the sparse setting, so a rerun reloads it.
    The model is initialised from ``cfg.seed`` (as ``fit_or_load`` does), so a run does not
    depend on what ran before it in the same process. Returns ``xmrlib.train.fit``'s result.
    """
    texts = split.annotated_captions() if semantics is None else split.vocabulary_texts(semantics)
    config = {**model_config, "vocab": Vocabulary.build(texts).to_dict(),
              "img_dim": int(split.data.images.shape[-1])}
    if model_name == A3VSE.name:
        config["semantics"] = semantics is not None
    elif semantics is not None:
        raise ValueError(f"semantics={semantics!r}: only A3VSE reads semantic sequences; "
                         f"baselines such as {model_name!r} train on the annotated pairs only")
    seed_everything(cfg.seed)
    model = build_model(model_name, **config)
    loader = SparseLoader(split, model.tokenize, cfg.batch_size, semantics, u_batch_size,
                          seed=cfg.seed, steps_per_epoch=steps_per_epoch)
    data_id = {**run_data_identity(split.data, dev_data), "sparse": split.identity(),
               "semantics": semantics, "steps_per_epoch": steps_per_epoch,
               "u_batch_size": u_batch_size}
    run_dir = run_dir_for(model_name, model.config, cfg, data_id, root)
    return locked_fit(model, loader, dev_data, cfg, run_dir, data_id, device, progress)


def sg_baseline_similarity(scenes: list[dict[str, Any]], captions: list[str],
                           seed: int = 0) -> np.ndarray:
    """The unsupervised s_g baseline (Sec. 4.2): score ``r = s_g . q`` with ``s_g`` the k-hot
    image-level tags of each image and ``q`` the k-hot tags a caption mentions (a tag matches
    when all its words, split at hyphens, occur in the caption). No training, no pairs. Ties
    (frequent: many images share a tag set) are broken by a seeded uniform jitter below 1e-3.
    Returns (n_img, n_cap)."""
    image_tags = [global_tags(scene) for scene in scenes]
    vocab = sorted({t for tags in image_tags for t in tags})
    col = {t: j for j, t in enumerate(vocab)}
    s_g = np.zeros((len(scenes), len(vocab)), dtype=np.float32)
    for i, tags in enumerate(image_tags):
        s_g[i, [col[t] for t in tags]] = 1.0
    q = np.zeros((len(captions), len(vocab)), dtype=np.float32)
    for j, caption in enumerate(captions):
        present = set(words(caption))
        for t in vocab:
            q[j, col[t]] = float(all(w in present for w in t.split("-")))
    jitter = np.random.default_rng(seed).uniform(0, 1e-3, (len(scenes), len(captions)))
    return s_g @ q.T + jitter.astype(np.float32)


#: legend names of the four kinds of points of :func:`embed_domains`
KIND_LABELS = {"v": "annotated images v", "vu": "un-annotated images v^u", "t": "captions t",
               "s": "semantic sequences s"}


@torch.no_grad()
def embed_domains(model: A3VSE, split: Any, n: int = 200, semantics: str = "regional",
                  seed: int = 0, device: str | torch.device = "auto") -> dict[str, np.ndarray]:
    """Embeddings of ``n`` annotated images (``v``), ``n`` of their captions (``t``, one each),
    ``n`` un-annotated images (``vu``) and their semantic sequences (``s``) for the t-SNE of
    Figure 3. Returns ``{"v", "t", "vu", "s"}`` -> (n, e) arrays."""
    dev = resolve_device(device)
    model = model.to(dev).eval()
    rng = np.random.default_rng(seed)
    ann = rng.choice(len(split.annotated), min(n, len(split.annotated)), replace=False)
    un = np.sort(rng.choice(len(split.unannotated), min(n, len(split.unannotated)),
                            replace=False))
    data = split.data

    def images(idx: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.asarray(data.images[idx], dtype=np.float32)).to(dev)
        r = torch.from_numpy(np.asarray(data.n_regions[idx], dtype=np.int64)).to(dev)
        return model.encode_images(x, r).float().cpu().numpy()

    def texts(strings: list[str]) -> np.ndarray:
        tokens, lengths = model.tokenize(strings)
        return model.encode_captions(tokens.to(dev), lengths.to(dev)).float().cpu().numpy()

    captions = [data.captions[split.caption_ids[i, 0]] for i in ann]
    sequences = split.semantic_sequences(semantics, images=split.unannotated[un])
    return {"v": images(split.annotated[ann]), "t": texts(captions),
            "vu": images(split.unannotated[un]), "s": texts(sequences)}


class SparseRuns:
    """The runs of chapter 06 under one set of settings, trained once and cached.

    ``a3vse_config`` / ``baseline_configs[name]`` are constructor arguments without ``vocab``
    and ``img_dim``; every run uses ``cfg`` (a ``TrainConfig``) and ``steps_per_epoch``, so all
    models and sparsity settings train for the same number of steps. ``metrics`` evaluates a
    run's best checkpoint on ``test`` with ``protocol`` (cached too).
    """

    def __init__(self, train: Any, dev: Any, test: Any, a3vse_config: dict[str, Any],
                 baseline_configs: dict[str, dict[str, Any]], cfg: Any,
                 steps_per_epoch: int | None = None, seed: int = 0, protocol: str = "1k",
                 device: str | torch.device = "auto") -> None:
        self.train, self.dev, self.test = train, dev, test
        self.a3vse_config, self.baseline_configs = a3vse_config, baseline_configs
        self.cfg, self.steps_per_epoch, self.seed = cfg, steps_per_epoch, seed
        self.protocol, self.device = protocol, device
        self._splits: dict[tuple[float, int], Any] = {}
        self._fits: dict[tuple, Any] = {}
        self._metrics: dict[tuple, dict[str, float]] = {}
        self._shares: dict[tuple, np.ndarray] = {}  # run key -> rsum_per_image on test (1k)
        self._siblings: dict[int, SparseRuns] = {}  # other seeds, see with_seed

    def with_seed(self, seed: int) -> "SparseRuns":
        """The same runs under another ``seed``: another sparse split, data order and
        initialisation (the training config's seed too); created once, ``self`` for its own."""
        if seed == self.seed:
            return self
        if seed not in self._siblings:
            self._siblings[seed] = SparseRuns(
                self.train, self.dev, self.test, self.a3vse_config, self.baseline_configs,
                dataclasses.replace(self.cfg, seed=seed), self.steps_per_epoch, seed,
                self.protocol, self.device)
        return self._siblings[seed]

    def split(self, fraction: float, captions: int) -> Any:
        """The sparse split (fraction of images, captions per image) of this seed."""
        key = (float(fraction), int(captions))
        if key not in self._splits:
            self._splits[key] = sparse_split(self.train, fraction, captions, self.seed,
                                             require_semantics=fraction < 1)
        return self._splits[key]

    def fit(self, model: str, fraction: float, captions: int, ablation: str = "Full model"
            ) -> Any:
        """Train (or reload) A3VSE (``model="a3vse"``, with a Table 5 ``ablation`` row) or a
        baseline on the annotated pairs of a setting."""
        key = self._key(model, fraction, captions, ablation)
        if key not in self._fits:
            split = self.split(fraction, captions)
            if model == A3VSE.name:
                overrides, semantics = ABLATIONS[ablation]
                config = {**self.a3vse_config, **overrides}
            else:
                config, semantics = self.baseline_configs[model], None
            self._fits[key] = fit_sparse(model, config, split, self.dev, self.cfg, semantics,
                                         self.steps_per_epoch, device=self.device)
        return self._fits[key]

    def metrics(self, model: str, fraction: float, captions: int,
                ablation: str = "Full model") -> dict[str, float]:
        """Test metrics of a run (``i2t_r1`` ... ``rsum``)."""
        key = self._key(model, fraction, captions, ablation)
        if key not in self._metrics:
            result = self.fit(model, fraction, captions, ablation)
            with torch.no_grad():
                metrics, sims = evaluate(result.model, self.test, protocol=self.protocol,
                                         device=self.device, return_sims=True)
            self._metrics[key] = {k: float(v) for k, v in metrics.items()}
            if self.protocol == "1k":  # one matrix over the whole split: keep what bootstraps need
                self._shares[key] = rsum_per_image(sims, self.test.captions_per_image)
        return self._metrics[key]

    @staticmethod
    def _key(model: str, fraction: float, captions: int, ablation: str = "Full model") -> tuple:
        """Cache key of a run (the ablation only names A3VSE runs)."""
        return (model, float(fraction), int(captions), ablation if model == A3VSE.name else "")

    def _rsum_shares(self, run: tuple) -> np.ndarray:
        """Each test image's share of rsum for a run (a tuple of :meth:`fit` arguments), from
        the evaluation :meth:`metrics` made (the 1K protocol) or a 1K evaluation of its own."""
        key = self._key(*run)
        if key not in self._shares:
            model = self.fit(*run).model  # trains outside no_grad if the run is new
            with torch.no_grad():
                _, sims = evaluate(model, self.test, protocol="1k", device=self.device,
                                   return_sims=True)
            self._shares[key] = rsum_per_image(sims, self.test.captions_per_image)
        return self._shares[key]

    def paired_bootstrap(self, run_a: tuple, run_b: tuple, n_boot: int = 2000
                         ) -> dict[str, float]:
        """Paired bootstrap over the test images of ``rsum``: run ``a`` minus run ``b`` (each a
        tuple of :meth:`fit` arguments). Both runs answer the same queries; resampling images
        (each with its captions, so that one image's queries stay together) gives the spread
        of the difference that is due to the test set, not to training."""
        return paired_bootstrap(self._rsum_shares(run_a), self._rsum_shares(run_b), n_boot,
                                self.seed)



def paper_row_id(table: str, method_prefix: str) -> str | None:
    """Row id of the first A3VSE-paper row of ``table`` whose method starts with the prefix."""
    from xmrlib.papers import paper_rows

    rows = paper_rows("a3vse2019", table)
    hits = rows[rows["method"].str.startswith(method_prefix)]
    return None if hits.empty else str(hits.iloc[0]["row_id"])
