"""The Shapes caption language: facts of a scene written as varied English, read back exactly.

A caption states :class:`Facts` about a scene: two or more objects, each named by its colour
*and* its shape (so every colour-shape binding a caption relies on is stated), optionally with
its size and its place on the 3x3 grid; spatial relations between named objects (left of,
above and their converses); the number of objects; the background colour.

* :func:`sample_facts` picks what a caption of a scene says (which objects, which details);
* :func:`realise` writes facts as a caption with synonyms ("disc", "rhombus", "big", "beneath"),
  varied word order (a relation stated from either object, clause-initial relations,
  predicative colours "the circle at the top is red"), and filler words ("a picture of",
  "sits", "in total"), 8-16 words;
* :func:`parse` reads a caption of the language back to its facts. The language is built so
  that no word order is ambiguous: a position phrase belongs to the object named just before
  it; a relation phrase after an object relates that object to the next one, and a relation
  phrase that opens the caption or follows "and" relates the object after the next one to the
  next one ("to the left of a blue square sits a red circle"). Words outside the lexicon raise.
* :func:`facts_hold` checks facts against a scene: there must be distinct objects, one per
  named object, with the stated attributes and relations, and the count and background must
  be the scene's. Relations compare grid cells: "left of" means a smaller column, "above" a
  smaller row, whatever the rows (columns) are. "At the top" is row 0, "in the top left corner"
  is row 0 and column 0, "in the centre" is row 1 and column 1, and so on (:data:`POSITIONS`).

Every fact is carried by the region features of :mod:`xmrlib.data.shapes` (colour, shape,
size and grid cell of each object region; the background regions; the number of object
regions), which a linear probe per fact type checks (``benchmarks/bench_shapes.py``).
"""

from __future__ import annotations

import bisect
import itertools
import random
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

#: Canonical attribute values (the scene vocabulary of :mod:`xmrlib.data.shapes`).
COLOUR_NAMES = ("red", "orange", "yellow", "green", "blue", "purple")
SHAPE_NAMES = ("circle", "square", "triangle", "star", "diamond", "hexagon", "cross", "heart",
               "pentagon", "arrow", "moon", "ring")
SIZE_NAMES = ("small", "medium", "large")
BACKGROUND_NAMES = ("white", "grey", "black")
NUMBER_WORDS = {2: "two", 3: "three", 4: "four"}
#: Relations, as stated by a caption: subject RELATION landmark (canonical: left, above).
CONVERSE = {"left": "right", "right": "left", "above": "below", "below": "above"}

# Surface forms: canonical value -> [(words, weight)], the first being the most frequent.
_COLOUR_WORDS = {"red": [("red", 1)], "orange": [("orange", 1)], "yellow": [("yellow", 1)],
                 "green": [("green", 1)], "blue": [("blue", 1)],
                 "purple": [("purple", 4), ("violet", 1)]}
_SHAPE_WORDS = {"circle": [("circle", 6), ("disc", 2), ("disk", 1), ("dot", 1)],
                "square": [("square", 6), ("box", 1), ("block", 1), ("tile", 1)],
                "triangle": [("triangle", 1)], "star": [("star", 1)],
                "diamond": [("diamond", 3), ("rhombus", 1)], "hexagon": [("hexagon", 1)],
                "cross": [("cross", 1)], "heart": [("heart", 1)],
                "pentagon": [("pentagon", 1)], "arrow": [("arrow", 1)],
                "moon": [("moon", 2), ("crescent", 1)],
                "ring": [("ring", 4), ("donut", 1), ("doughnut", 1), ("hoop", 1)]}
_SIZE_WORDS = {"small": [("small", 6), ("little", 2), ("tiny", 1), ("smallish", 1)],
               "medium": [("medium", 6), ("midsize", 1), ("average", 1)],
               "large": [("large", 5), ("big", 4), ("huge", 1), ("giant", 1), ("enormous", 1)]}
_BACKGROUND_WORDS = {"white": [("white", 1)], "grey": [("grey", 3), ("gray", 2)],
                     "black": [("black", 3), ("dark", 1)]}
_REL_WORDS = {"left": [("to the left of", 5), ("left of", 3), ("on the left of", 1),
                       ("further left than", 1), ("more to the left than", 1)],
              "right": [("to the right of", 5), ("right of", 3), ("on the right of", 1),
                        ("further right than", 1), ("more to the right than", 1)],
              "above": [("above", 6), ("over", 2), ("higher than", 1), ("higher up than", 1),
                        ("further up than", 1)],
              "below": [("below", 5), ("under", 2), ("beneath", 2), ("underneath", 1),
                        ("lower than", 1), ("lower down than", 1), ("further down than", 1)]}
#: Position phrases: (row, column) constraint, ``None`` = any -> surface forms.
POSITIONS: dict[tuple[int | None, int | None], list[tuple[str, int]]] = {
    (0, None): [("at the top", 4), ("along the top", 1), ("in the top row", 1),
                ("near the top edge", 1)],
    (2, None): [("at the bottom", 4), ("along the bottom", 1), ("in the bottom row", 1),
                ("near the bottom edge", 1)],
    (1, None): [("in the middle row", 1)],
    (None, 0): [("on the left", 4), ("on the left side", 2), ("in the left column", 1),
                ("near the left edge", 1)],
    (None, 2): [("on the right", 4), ("on the right side", 2), ("in the right column", 1),
                ("near the right edge", 1)],
    (None, 1): [("in the middle column", 1)],
    (0, 0): [("in the top left corner", 4), ("in the upper left corner", 2)],
    (0, 2): [("in the top right corner", 4), ("in the upper right corner", 2)],
    (2, 0): [("in the bottom left corner", 4), ("in the lower left corner", 2)],
    (2, 2): [("in the bottom right corner", 4), ("in the lower right corner", 2)],
    (1, 1): [("in the centre", 3), ("in the center", 2), ("in the middle", 3),
             ("right in the middle", 1)],
    (0, 1): [("at the top centre", 1), ("at the top center", 1), ("at the top in the middle", 1)],
    (2, 1): [("at the bottom centre", 1), ("at the bottom center", 1),
             ("at the bottom in the middle", 1)],
    (1, 0): [("on the left in the middle", 1), ("in the middle of the left side", 1)],
    (1, 2): [("on the right in the middle", 1), ("in the middle of the right side", 1)],
}
_COUNT_NOUNS = [("shapes", 6), ("objects", 3), ("figures", 2), ("things", 1), ("items", 1),
                ("forms", 1), ("symbols", 1), ("elements", 1), ("pieces", 1), ("icons", 1)]
_BG_NOUNS = [("background", 8), ("backdrop", 2), ("canvas", 1), ("surface", 1), ("ground", 1)]
# Filler words (no facts), grouped by where the realiser puts them.
_OPENERS = [("", 40), ("a picture of", 3), ("an image of", 3), ("a drawing of", 2),
            ("a photo of", 1), ("an illustration of", 1), ("a simple picture of", 1),
            ("a sketch of", 1), ("a rendering of", 1), ("a diagram of", 1), ("a cartoon of", 1),
            ("a plain image of", 1), ("this image shows", 2), ("this picture shows", 1),
            ("the picture shows", 1), ("the image contains", 1), ("here we see", 1),
            ("we can see", 1), ("you can see", 1), ("there is", 2), ("here is", 1),
            ("in this picture there is", 1), ("the scene features", 1), ("a scene showing", 1),
            ("a view of", 1), ("an abstract picture of", 1), ("a geometric drawing of", 1),
            ("a computer drawing of", 1), ("a clip art image of", 1), ("a colourful picture of", 1),
            ("a colorful drawing of", 1), ("the drawing shows", 1), ("this diagram shows", 1),
            ("we are looking at", 1), ("there appears to be", 1), ("a close up of", 1),
            ("an artwork with", 1), ("a graphic with", 1), ("a neat drawing of", 1),
            ("a digital image of", 1), ("a toy picture of", 1), ("a children's drawing of", 1),
            ("a quick doodle of", 1), ("a tidy arrangement of", 1), ("a page showing", 1),
            ("a minimal picture of", 1), ("a flat graphic of", 1), ("a poster with", 1),
            ("an example image with", 1), ("one can see", 1), ("somebody drew", 1),
            ("someone has drawn", 1), ("a screen showing", 1), ("a slide with", 1)]
_COUNT_OPENERS = [("", 8), ("there are", 3), ("the picture has", 1), ("the image shows", 1),
                  ("we see", 1), ("a drawing of", 1), ("a picture of", 1), ("i see", 1),
                  ("the scene holds", 1), ("an image with", 1)]
_COUNT_LINKS = [("with", 5), ("including", 2), ("among them", 1), ("namely", 1)]
_VERBS = [("", 10), ("is", 5), ("sits", 2), ("is placed", 1), ("is drawn", 1), ("appears", 1),
          ("lies", 1), ("stands", 1), ("is located", 1), ("is positioned", 1), ("rests", 1),
          ("can be seen", 1), ("is shown", 1), ("is painted", 1), ("is set", 1), ("hovers", 1),
          ("floats", 1), ("is sitting", 1), ("is found", 1), ("is visible", 1), ("waits", 1),
          ("is resting", 1), ("is standing", 1), ("is lying", 1), ("is displayed", 1),
          ("is printed", 1), ("is arranged", 1)]
_PARTICIPLES = [("", 10), ("sitting", 2), ("placed", 1), ("drawn", 1), ("lying", 1),
                ("standing", 1), ("located", 1), ("positioned", 1), ("resting", 1), ("shown", 1),
                ("painted", 1), ("floating", 1), ("hovering", 1), ("printed", 1),
                ("displayed", 1), ("arranged", 1), ("waiting", 1), ("set", 1)]
_INVERTED_VERBS = [("is", 4), ("sits", 2), ("there is", 2), ("we see", 1), ("you can see", 1),
                   ("lies", 1), ("is drawn", 1), ("stands", 1), ("appears", 1), ("rests", 1),
                   ("is painted", 1), ("there is also", 1)]
_POS_VERBS = [("", 8), ("that is", 1), ("which is", 1), ("placed", 1), ("drawn", 1),
              ("sitting", 1), ("lying", 1), ("located", 1), ("found", 1), ("seen", 1)]
_CHAIN_VERBS = [("", 4), ("which is", 2), ("that is", 1), ("which sits", 1), ("which lies", 1),
                ("that sits", 1)]
_CONJ = [("and", 12), ("with", 3), ("plus", 1), ("as well as", 1), ("along with", 1),
         ("together with", 1), ("and also", 1)]
_DECOR = [("", 40), ("bright", 1), ("solid", 1), ("flat", 1), ("simple", 1), ("plain", 1),
          ("shiny", 1), ("filled", 1), ("neat", 1), ("crisp", 1), ("vivid", 1), ("painted", 1),
          ("cartoon", 1), ("lone", 1), ("single", 1)]
_BG_PREPS = [("on", 6), ("against", 2), ("set against", 1), ("in front of", 1), ("upon", 1)]
_BG_ADJS = [("", 10), ("plain", 2), ("solid", 1), ("flat", 1), ("uniform", 1), ("empty", 1),
            ("clean", 1), ("bare", 1), ("simple", 1), ("smooth", 1), ("blank", 1), ("matte", 1)]
_COUNT_SUFFIXES = [("in total", 3), ("in all", 2), ("altogether", 1), ("overall", 1),
                   ("all together", 1), ("in the picture", 1), ("in the image", 1),
                   ("in the scene", 1)]
_PRED_VERBS = [("is", 6), ("looks", 1), ("appears", 1), ("is coloured", 1), ("is colored", 1),
               ("is painted", 1), ("seems", 1)]


def _words(table: list[tuple[str, int]]) -> set[str]:
    """The words of a table of surface forms."""
    return {w for form, _ in table for w in form.split()}


_FILLERS = set().union(*map(_words, (
    _OPENERS, _COUNT_OPENERS, _COUNT_LINKS, _VERBS, _PARTICIPLES, _INVERTED_VERBS, _POS_VERBS,
    _CHAIN_VERBS, _DECOR, _BG_PREPS, _BG_ADJS, _COUNT_SUFFIXES, _PRED_VERBS))) | {"a", "an", "the"}


# ----------------------------------------------------------------------------- facts

@dataclass(frozen=True)
class Mention:
    """A named object: colour and shape always, size and grid place (row/col) when stated."""

    colour: str
    shape: str
    size: str | None = None
    row: int | None = None
    col: int | None = None


@dataclass(frozen=True)
class Facts:
    """What one caption states. ``relations`` are ``(subject, relation, landmark)`` mention
    indices with relation in :data:`CONVERSE`'s keys."""

    mentions: tuple[Mention, ...]
    relations: tuple[tuple[int, str, int], ...] = ()
    count: int | None = None
    background: str | None = None

    def canonical(self) -> tuple:
        """Order-free form (mentions as a set, relations as left/above between mentions)."""
        rels = set()
        for a, rel, b in self.relations:
            if rel in ("right", "below"):
                a, rel, b = b, CONVERSE[rel], a
            rels.add((self.mentions[a], rel, self.mentions[b]))
        return (frozenset(self.mentions), frozenset(rels), self.count, self.background)


def relation_holds(rel: str, a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Does ``a rel b`` hold between two scene objects (grid cells)?"""
    return {"left": a["col"] < b["col"], "right": a["col"] > b["col"],
            "above": a["row"] < b["row"], "below": a["row"] > b["row"]}[rel]


def _fits(m: Mention, obj: dict[str, Any]) -> bool:
    return (obj["colour"] == m.colour and obj["shape"] == m.shape
            and (m.size is None or obj["size"] == m.size)
            and (m.row is None or obj["row"] == m.row) and (m.col is None or obj["col"] == m.col))


def facts_hold(facts: Facts, scene: dict[str, Any]) -> bool:
    """Exact truth of ``facts`` in ``scene``: an injective assignment of the mentions to objects
    that fit them and satisfy every relation, and the stated count and background."""
    objs = scene["objects"]
    if facts.count is not None and facts.count != len(objs):
        return False
    if facts.background is not None and facts.background != scene["background"]:
        return False
    candidates = [[i for i, o in enumerate(objs) if _fits(m, o)] for m in facts.mentions]
    assignment: list[int] = []

    def extend(t: int) -> bool:
        if t == len(candidates):
            return all(relation_holds(rel, objs[assignment[a]], objs[assignment[b]])
                       for a, rel, b in facts.relations)
        for i in candidates[t]:
            if i not in assignment:
                assignment.append(i)
                if extend(t + 1):
                    return True
                assignment.pop()
        return False

    return extend(0)


# ----------------------------------------------------------------------------- sampling

#: What a caption states, by the number of objects in the scene: how many objects it names
#: (probabilities of 2, 3, 4) and how often it adds each detail.
MENTION_PROBS = {2: (1.0, 0.0, 0.0), 3: (0.3, 0.7, 0.0), 4: (0.2, 0.6, 0.2)}
DETAIL_PROBS = {"size": 0.5, "position": 0.3, "relation": 0.8, "second_relation": 0.3,
                "count": 0.4, "background": 0.4}
#: Caption length bounds in words, and the distribution of a caption's length budget over
#: ``MIN_WORDS .. MAX_WORDS`` (relative weights).
MIN_WORDS, MAX_WORDS = 8, 16
LENGTH_PROBS = (1, 2, 4, 6, 7, 7, 6, 4, 3)
#: Relative chance that a detail is the one dropped from a caption over its length budget.
DROP_WEIGHTS = {"size": 0.5, "position": 2.0, "relation": 1.0, "count": 2.0, "background": 3.0,
                "mention": 0.5}
#: Chances of leaving out optional fillers in the successive rewrites of a caption that is
#: over its length budget (before a detail is dropped).
TERSENESS = (0.0, 0.5, 1.0)


def _position_options(obj: dict[str, Any]) -> list[tuple[int | None, int | None]]:
    r, c = obj["row"], obj["col"]
    return [key for key in ((r, None), (None, c), (r, c)) if key in POSITIONS]


def sample_facts(scene: dict[str, Any], rng: WordRandom) -> Facts:
    """Facts that hold in ``scene``: 2-4 of its objects with some details (see
    :data:`MENTION_PROBS`, :data:`DETAIL_PROBS`)."""
    objs = scene["objects"]
    k = len(objs)
    u, s = rng.random(), 2
    for p in MENTION_PROBS[min(max(k, 2), 4)][:-1]:
        if u < p:
            break
        u, s = u - p, s + 1
    s = min(k, s)
    idx = rng.sample(range(k), s)
    mentions = []
    for i in idx:
        o = objs[i]
        size = o["size"] if rng.random() < DETAIL_PROBS["size"] else None
        row = col = None
        if rng.random() < DETAIL_PROBS["position"]:
            opts = _position_options(o)
            row, col = rng.choice(opts)
        mentions.append(Mention(o["colour"], o["shape"], size, row, col))
    relations: list[tuple[int, str, int]] = []
    n_rel = int(rng.random() < DETAIL_PROBS["relation"])
    if n_rel and s >= 3 and rng.random() < DETAIL_PROBS["second_relation"]:
        n_rel = 2
    pairs = [(a, b) for a in range(s) for b in range(a + 1, s)]
    for a, b in rng.sample(pairs, n_rel):
        holds = [r for r in ("left", "right", "above", "below")
                 if relation_holds(r, objs[idx[a]], objs[idx[b]])]
        relations.append((a, rng.choice(holds), b))
    count = k if rng.random() < DETAIL_PROBS["count"] else None
    background = scene["background"] if rng.random() < DETAIL_PROBS["background"] else None
    return Facts(tuple(mentions), tuple(relations), count, background)


# ----------------------------------------------------------------------------- realising

def _draw(rng: WordRandom, weights: list[float]) -> int:
    """An index drawn with probability proportional to ``weights``."""
    cum = list(itertools.accumulate(weights))
    return min(bisect.bisect_right(cum, rng.random() * cum[-1]), len(cum) - 1)


class WordRandom(random.Random):
    """Python's generator plus ``terse``: the chance that an optional filler (a table whose
    first form is empty) is left out, whatever its weights; at 1 every choice of words is
    the shortest (:func:`_pick`)."""

    terse: float = 0.0


_CUMULATIVE: dict[int, tuple[list[str], list[float], float, int, str]] = {}


def _pick(rng: WordRandom, table: list[tuple[str, int]]) -> str:
    """A surface form of ``table`` drawn with its weights; with ``rng.terse`` = 1 the shortest
    form of every table (the empty one of an optional filler)."""
    try:
        forms, cum, total, last, shortest = _CUMULATIVE[id(table)]
    except KeyError:
        cum = list(itertools.accumulate(w for _, w in table))
        forms, total, last = [f for f, _ in table], cum[-1], len(table) - 1
        shortest = min((f for f, w in table if w > 0), key=lambda f: len(f.split()))
        _CUMULATIVE[id(table)] = (forms, cum, total, last, shortest)
    if rng.terse and rng.random() < rng.terse:
        if rng.terse >= 1.0 or not forms[0]:
            return shortest
    i = bisect.bisect_right(cum, rng.random() * total)
    return forms[i if i < last else last]


def _article(next_word: str, rng: WordRandom, definite: float = 0.2) -> str:
    """"the" with probability ``definite``, else "a" or "an" as ``next_word`` sounds."""
    if rng.random() < definite:
        return "the"
    return "an" if next_word[0] in "aeiou" and not next_word.startswith("uni") else "a"


def _position_words(m: Mention, rng: WordRandom) -> str:
    if m.row is None and m.col is None:
        return ""
    return _pick(rng, POSITIONS[(m.row, m.col)])


def _noun_phrase(m: Mention, rng: WordRandom) -> str:
    """``a [size] [decoration] colour shape [position]``."""
    words = ([_pick(rng, _SIZE_WORDS[m.size])] if m.size else []) + [
        _pick(rng, _DECOR), _pick(rng, _COLOUR_WORDS[m.colour]), _pick(rng, _SHAPE_WORDS[m.shape])]
    words = [w for w in words if w]
    phrase = f"{_article(words[0], rng)} {' '.join(words)}"
    pos = _position_words(m, rng)
    if pos:
        phrase = _join(phrase, _pick(rng, _POS_VERBS), pos)
    return phrase


def _predicative(m: Mention, rng: WordRandom) -> str:
    """``the [size] shape [position] is colour``."""
    words = ([_pick(rng, _SIZE_WORDS[m.size])] if m.size else []) + [
        _pick(rng, _SHAPE_WORDS[m.shape])]
    return _join("the", " ".join(words), _position_words(m, rng), _pick(rng, _PRED_VERBS),
                 _pick(rng, _COLOUR_WORDS[m.colour]))


def _join(*parts: str) -> str:
    return " ".join(p for p in parts if p)


def _chains(facts: Facts) -> tuple[list[list[Any]], list[int]]:
    """Relations grouped into chains ``[m0, rel, m1, rel, m2]`` (converses used to orient
    them) and the mentions in no relation."""
    left = list(facts.relations)
    chains: list[list[Any]] = []
    while left:
        a, rel, b = left.pop(0)
        chain: list[Any] = [a, rel, b]
        grown = True
        while grown:
            grown = False
            for t, (x, r, y) in enumerate(left):
                if x == chain[-1] or y == chain[-1]:
                    nxt, r2 = (y, r) if x == chain[-1] else (x, CONVERSE[r])
                    chain += [r2, nxt]
                elif x == chain[0] or y == chain[0]:
                    prv, r2 = (y, CONVERSE[r]) if x == chain[0] else (x, r)
                    chain = [prv, r2] + chain
                else:
                    continue
                left.pop(t)
                grown = True
                break
        chains.append(chain)
    used = {m for c in chains for m in c[::2]}
    return chains, [i for i in range(len(facts.mentions)) if i not in used]


def _chain_words(chain: list[Any], facts: Facts, rng: WordRandom,
                 inverted: bool, finite: bool) -> str:
    """A relation chain ``[m0, r1, m1, r2, m2 ...]`` as words. Plain: "m0 r1 m1 r2 m2".
    ``inverted``: "conv(r1) m0 [verb] m1 r2 m2" (the relation first; the chain goes on from m1)."""
    ms = facts.mentions
    if rng.random() < 0.5:                           # state the chain from its other end
        chain = chain[::-1]
        chain[1::2] = [CONVERSE[r] for r in chain[1::2]]
    if inverted:
        words = _join(_pick(rng, _REL_WORDS[CONVERSE[chain[1]]]),
                      _noun_phrase(ms[chain[0]], rng), _pick(rng, _INVERTED_VERBS),
                      _noun_phrase(ms[chain[2]], rng))
    else:
        words = _join(_noun_phrase(ms[chain[0]], rng),
                      _pick(rng, _VERBS if finite else _PARTICIPLES),
                      _pick(rng, _REL_WORDS[chain[1]]), _noun_phrase(ms[chain[2]], rng))
    for t in range(3, len(chain), 2):
        words = _join(words, _pick(rng, _CHAIN_VERBS), _pick(rng, _REL_WORDS[chain[t]]),
                      _noun_phrase(ms[chain[t + 1]], rng))
    return words


def _list_words(items: list[str], rng: WordRandom, conj: str | None = None) -> str:
    """"A and B", "A, B and C" (the comma is decoration: tokenisers drop it)."""
    if len(items) == 1:
        return items[0]
    return _join(", ".join(items[:-1]), conj or _pick(rng, _CONJ), items[-1])


def _background_words(bg: str, rng: WordRandom) -> str:
    """``on a [plain] grey background``."""
    words = _join(_pick(rng, _BG_ADJS), _pick(rng, _BACKGROUND_WORDS[bg]), _pick(rng, _BG_NOUNS))
    return _join(_pick(rng, _BG_PREPS), _article(words, rng, definite=0.15), words)


def _count_words(count: int, rng: WordRandom) -> str:
    return _join(NUMBER_WORDS[count], _pick(rng, _COUNT_NOUNS))


def _body(facts: Facts, rng: WordRandom, inverted_first: bool, predicative: bool,
          finite: bool) -> str:
    """The objects and relations: relation chains, then the objects in no relation.
    ``finite``: the body is a sentence ("a circle sits above ..."), else a noun phrase
    ("a picture of a circle sitting above ...")."""
    chains, free = _chains(facts)
    if predicative and not chains:                   # "the circle is red and the star is blue"
        return _list_words([_predicative(facts.mentions[i], rng)
                            for i in rng.sample(free, len(free))], rng, conj="and")
    text = ""
    for n, t in enumerate(rng.sample(range(len(chains)), len(chains))):
        inverted = (inverted_first or n > 0) and rng.random() < 0.3
        clause = _chain_words(list(chains[t]), facts, rng, inverted, finite)
        # a clause-initial relation must open the caption or follow "and"
        text = clause if n == 0 else _join(text, "and" if inverted else _pick(rng, _CONJ),
                                           clause)
    if free:
        items = _list_words([_noun_phrase(facts.mentions[i], rng)
                             for i in rng.sample(free, len(free))], rng)
        text = _join(text, _pick(rng, _CONJ), items) if text else items
    return text


def realise(facts: Facts, rng: WordRandom) -> str:
    """One caption stating exactly ``facts`` (frame, word order and synonyms drawn from
    ``rng``). Frames: "[opener] body [background] [count]", "[there are] three shapes
    [background] with body", "on a grey background body [count]"."""
    bg = _background_words(facts.background, rng) if facts.background else ""
    count = _count_words(facts.count, rng) if facts.count else ""
    frame = rng.random()
    if count and frame < 0.35:
        head = _join(_pick(rng, _COUNT_OPENERS), count)
        if bg and rng.random() < 0.7:
            head, bg = _join(head, bg), ""
        text = _join(head, _pick(rng, _COUNT_LINKS), _body(facts, rng, False, False, False))
        return _join(text, bg)
    if bg and frame < 0.6:
        text = _join(bg, _body(facts, rng, False, rng.random() < 0.3, True))
        bg = ""
    else:
        opener = _pick(rng, _OPENERS)
        text = _join(opener, _body(facts, rng, not opener, not opener and rng.random() < 0.3,
                                   not opener))
    if bg:
        text = _join(text, bg)
    if count:
        text = (_join(text, "with", count, _pick(rng, _COUNT_SUFFIXES)) if rng.random() < 0.6
                else f"{text}, {count} {_pick(rng, _COUNT_SUFFIXES)}")
    return text


# ----------------------------------------------------------------------------- parsing

def _phrase_table() -> dict[tuple[str, ...], tuple[str, Any]]:
    table: dict[tuple[str, ...], tuple[str, Any]] = {}
    for rel, forms in _REL_WORDS.items():
        for words, _ in forms:
            table[tuple(words.split())] = ("rel", rel)
    for key, forms in POSITIONS.items():
        for words, _ in forms:
            table[tuple(words.split())] = ("pos", key)
    for bg, forms in _BACKGROUND_WORDS.items():
        for words, _ in forms:
            for noun, _ in _BG_NOUNS:
                table[(words, noun)] = ("bg", bg)
    for n, word in NUMBER_WORDS.items():
        for noun, _ in _COUNT_NOUNS:
            table[(word, noun)] = ("count", n)
    for words, _ in _CONJ:
        table[tuple(words.split())] = ("conj", words)
    for kind, forms in (("colour", _COLOUR_WORDS), ("shape", _SHAPE_WORDS), ("size", _SIZE_WORDS)):
        for value, surface in forms.items():
            for words, _ in surface:
                table[(words,)] = (kind, value)
    return table


_TABLE = _phrase_table()
_LONGEST = max(len(k) for k in _TABLE)


def _chunks(caption: str) -> list[tuple[str, Any]]:
    """Typed chunks of a caption (longest phrase first); filler words are dropped."""
    tokens = caption.lower().replace(",", " ").replace(".", " ").split()
    out: list[tuple[str, Any]] = []
    i = 0
    while i < len(tokens):
        for n in range(min(_LONGEST, len(tokens) - i), 0, -1):
            hit = _TABLE.get(tuple(tokens[i:i + n]))
            if hit is not None:
                out.append(hit)
                i += n
                break
        else:
            if tokens[i] not in _FILLERS:
                raise ValueError(f"caption outside the Shapes grammar: {caption!r} "
                                 f"(unknown word {tokens[i]!r})")
            out.append(("filler", tokens[i]))
            i += 1
    return out


def _mentions(chunks: list[tuple[str, Any]], caption: str) -> list[tuple[str, Any]]:
    """Drop fillers; merge ``size? colour shape`` into a mention, and ``size? shape [position]
    colour`` too (predicative: "the small circle at the top is red"); attach every other
    position phrase to the mention just before it."""
    def bad(why: str) -> ValueError:
        return ValueError(f"caption outside the Shapes grammar: {caption!r} ({why})")

    chunks = [c for c in chunks if c[0] != "filler"]
    merged: list[tuple[str, Any]] = []
    i = 0
    while i < len(chunks):
        kind, value = chunks[i]
        if kind in ("size", "colour", "shape"):
            size = colour = None
            if chunks[i][0] == "size":
                size, i = chunks[i][1], i + 1
            if i < len(chunks) and chunks[i][0] == "colour":
                colour, i = chunks[i][1], i + 1
            if i >= len(chunks) or chunks[i][0] != "shape":
                raise bad("an attribute without a shape after it")
            shape, i = chunks[i][1], i + 1
            row = col = None
            if colour is None:                       # predicative: the shape [pos] is colour
                if i < len(chunks) and chunks[i][0] == "pos":
                    (row, col), i = chunks[i][1], i + 1
                if i >= len(chunks) or chunks[i][0] != "colour":
                    raise bad(f"the {shape} has no colour")
                colour, i = chunks[i][1], i + 1
            merged.append(("mention", Mention(colour, shape, size, row, col)))
        elif kind == "pos":
            if not merged or merged[-1][0] != "mention":
                raise bad("a position that follows no object")
            m = merged[-1][1]
            if m.row is not None or m.col is not None:
                raise bad("two positions for one object")
            merged[-1] = ("mention", replace(m, row=value[0], col=value[1]))
            i += 1
        else:
            merged.append((kind, value))
            i += 1
    return merged


def parse(caption: str) -> Facts:
    """The facts a caption of the Shapes language states (ValueError outside the language)."""
    chunks = _mentions(_chunks(caption), caption)
    mentions: list[Mention] = []
    index: list[int | None] = []                      # chunk -> mention index
    for kind, value in chunks:
        index.append(len(mentions) if kind == "mention" else None)
        if kind == "mention":
            mentions.append(value)
    if not mentions:
        raise ValueError(f"caption outside the Shapes grammar: {caption!r} (names no object)")
    relations = []
    count = background = None
    for t, (kind, value) in enumerate(chunks):
        prev = chunks[t - 1][0] if t > 0 else None
        if kind == "rel":
            if prev == "mention" and t + 1 < len(chunks) and chunks[t + 1][0] == "mention":
                relations.append((index[t - 1], value, index[t + 1]))
            elif (prev in (None, "conj") and t + 2 < len(chunks)
                  and chunks[t + 1][0] == chunks[t + 2][0] == "mention"):
                relations.append((index[t + 2], value, index[t + 1]))
            else:
                raise ValueError(f"caption outside the Shapes grammar: {caption!r} "
                                 "(a relation without an object on each side)")
        elif kind == "count":
            if count is not None:
                raise ValueError(f"caption outside the Shapes grammar: {caption!r} (two counts)")
            count = value
        elif kind == "bg":
            if background is not None:
                raise ValueError(f"caption outside the Shapes grammar: {caption!r} "
                                 "(two backgrounds)")
            background = value
    return Facts(tuple(mentions), tuple(relations), count, background)


# ----------------------------------------------------------------------------- captions

def caption_length(caption: str) -> int:
    """Words of a caption as the book's tokeniser counts them (:func:`xmrlib.vocab.tokenize`)."""
    from xmrlib.vocab import tokenize

    return len(tokenize(caption))


def _drop_detail(facts: Facts, rng: WordRandom) -> Facts | None:
    """``facts`` without one of its details (a size, a position, a relation, the count, the
    background, or an object beyond two that is in no relation); None if nothing is left."""
    options: list[tuple[str, int]] = []
    for i, m in enumerate(facts.mentions):
        if m.size is not None:
            options.append(("size", i))
        if m.row is not None or m.col is not None:
            options.append(("position", i))
    options += [("relation", t) for t in range(len(facts.relations))]
    options += [("count", 0)] if facts.count is not None else []
    options += [("background", 0)] if facts.background is not None else []
    in_relation = {x for a, _, b in facts.relations for x in (a, b)}
    if len(facts.mentions) > 2:
        options += [("mention", i) for i in range(len(facts.mentions)) if i not in in_relation]
    if not options:
        return None
    kind, i = options[_draw(rng, [DROP_WEIGHTS[kind] for kind, _ in options])]
    if kind in ("size", "position"):
        m = facts.mentions[i]
        m = replace(m, size=None) if kind == "size" else replace(m, row=None, col=None)
        return replace(facts, mentions=facts.mentions[:i] + (m,) + facts.mentions[i + 1:])
    if kind == "relation":
        return replace(facts, relations=facts.relations[:i] + facts.relations[i + 1:])
    if kind in ("count", "background"):
        return replace(facts, **{kind: None})
    shift = [a - (a > i) for a in range(len(facts.mentions))]
    return Facts(facts.mentions[:i] + facts.mentions[i + 1:],
                 tuple((shift[a], r, shift[b]) for a, r, b in facts.relations),
                 facts.count, facts.background)


def caption_of(scene: dict[str, Any], rng: WordRandom) -> tuple[Facts, str]:
    """One caption of ``scene`` and its facts. The facts are drawn by :func:`sample_facts` and
    written by :func:`realise`; a caption longer than its length budget (drawn from
    :data:`LENGTH_PROBS`) is rewritten with fewer filler words (:data:`TERSENESS`), and when
    even the tersest is too long a detail is dropped (an annotator who runs out of words
    leaves something out)."""
    budget = MIN_WORDS + _draw(rng, list(LENGTH_PROBS))
    facts = sample_facts(scene, rng)
    for _ in range(200):
        rng.terse = TERSENESS[-1]                    # can these facts fit at all?
        n = caption_length(realise(facts, rng))
        if n <= budget:
            for rng.terse in TERSENESS:
                text = realise(facts, rng)
                n = caption_length(text)
                if n <= budget:
                    break
        rng.terse = 0.0
        if MIN_WORDS <= n <= budget:
            return facts, text
        if n > budget:
            shorter = _drop_detail(facts, rng)
            if shorter is None:                      # nothing left to drop: allow a word more
                budget = min(budget + 1, MAX_WORDS)
            facts = shorter or facts
    raise RuntimeError(f"no caption of {MIN_WORDS}-{budget} words for scene {scene}")


def make_captions(scene: dict[str, Any], rng: np.random.Generator, n: int = 5) -> list[str]:
    """``n`` different captions of ``scene`` (:func:`caption_of`); one draw from ``rng`` seeds
    the word choices (Python's generator: the grammar draws hundreds of small choices)."""
    words_rng = WordRandom(int(rng.integers(2**63)))
    caps: list[str] = []
    for _ in range(50 * n):
        text = caption_of(scene, words_rng)[1]
        if text not in caps:
            caps.append(text)
            if len(caps) == n:
                return caps
    raise RuntimeError(f"no {n} different captions for scene {scene}")


def _scene_index(scenes: list[dict[str, Any]]) -> dict[tuple[str, str], np.ndarray]:
    """(colour, shape) -> sorted indices of the scenes holding such an object."""
    index: dict[tuple[str, str], list[int]] = {}
    for i, sc in enumerate(scenes):
        for key in {(o["colour"], o["shape"]) for o in sc["objects"]}:
            index.setdefault(key, []).append(i)
    return {k: np.asarray(v, dtype=np.int64) for k, v in index.items()}


def caption_truth(scenes: list[dict[str, Any]], captions: list[str]) -> np.ndarray:
    """Boolean ``(n_scenes, n_captions)``: is caption ``j`` true of scene ``i``? Exact: every
    caption is parsed and checked with :func:`facts_hold` on the scenes that hold all the
    colour-shape pairs it names (the others cannot make it true)."""
    index = _scene_index(scenes)
    empty = np.zeros(0, dtype=np.int64)
    truth = np.zeros((len(scenes), len(captions)), dtype=bool)
    cache: dict[str, Facts] = {}
    for j, caption in enumerate(captions):
        facts = cache.get(caption) or cache.setdefault(caption, parse(caption))
        cands = None
        for m in facts.mentions:
            hit = index.get((m.colour, m.shape), empty)
            cands = hit if cands is None else np.intersect1d(cands, hit, assume_unique=True)
        for i in cands:
            truth[i, j] = facts_hold(facts, scenes[i])
    return truth
