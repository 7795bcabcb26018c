"""``fictitious_authors``: a TOFU-style corpus of facts about invented authors, generated offline.

After TOFU (Maini et al., "TOFU: A Task of Fictitious Unlearning for LLMs", 2024): every
author is invented, so a model can only know a fact about one by having trained on it,
and forgetting an author has a clean oracle (a model trained without that author).

The corpus is generated from templates and a seed; nothing is downloaded:

- ``num_authors`` authors (names from a syllable generator, unique), each with
  ``facts_per_author`` question-answer facts (birthplace, birth year, genre, parents'
  jobs, books, awards, ...); an author's facts are example IDs
  ``author * facts_per_author + fact``.
- ``world_facts`` facts about a fixed invented world (countries, capitals, rivers, ...)
  that does not depend on ``seed``, group ``-1``. They are in the training set and no
  author rule ever selects them: they are always retained, so a method's collateral
  damage shows on them (TOFU's "world facts" utility, which a pre-trained LLM knows).
- The training set: the authors' facts, then the world facts.
- The test set: ``unseen_authors`` more authors generated the same way (never trained
  on: a model can only guess their facts).
- For every question a *paraphrased* correct answer and ``perturbed`` wrong but
  plausible answers (the paraphrase with another value), kept in a side table
  (:class:`AuthorsCorpus`, ``split.info["corpus"]``) keyed by example ID, for the TOFU
  metrics.

**Representation** (task ``causal_lm``): an example is the token sequence ``question
answer <eos>``, padded with ``<pad>`` to the corpus's longest sequence ``T``.
``x``: token ids ``[N, T]`` (int64). ``y``: next-token targets ``[N, T]`` (int64):
``y[t]`` is the token at ``t + 1`` where that token belongs to the answer (``<eos>``
included, so a model learns where an answer ends) and ``-100`` (ignored) everywhere
else, so the loss and statistics count answer tokens only. ``groups``: the author of
each example (``-1`` for world facts), which the ``authors:`` forget rule reads.
``num_classes``: the vocabulary size (a model's outputs per position).

**Tokenizer**: word level (``tokenizers``' ``WordLevel`` model with its ``Whitespace``
pre-tokenizer, so punctuation is a token of its own), its vocabulary every word of
the corpus (answers, paraphrases and perturbations of both splits, and the
"I don't know"-style answers of :data:`expunge.tasks.causal_lm.REFUSALS` that the ``idk``
method trains toward) in sorted order after the special tokens: deterministic, and no word is ever unknown.

**Too long**: a sequence longer than ``context`` tokens is **refused** (never
truncated: cutting a sequence would cut the answer the loss is about), here and in
:meth:`CorpusTokenizer.encode`.
"""
from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from pathlib import Path

import torch

from expunge.data.base import ArrayDataset, Split
from expunge.data.datasets import _check_int, register_dataset
from expunge.errors import ExpungeError
from expunge.tasks.causal_lm import IGNORE, REFUSALS

PAD, UNK, EOS = "<pad>", "<unk>", "<eos>"
WORLD_SEED = 20240101  # the invented world is the same for every corpus seed
WORLD_GROUP = -1  # the group (author) of world facts

# --------------------------------------------------------------------------- vocabularies of values
_ONSETS = ("b", "br", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "th", "sh", "ch", "")
_VOWELS = ("a", "e", "i", "o", "u", "ai", "ei", "ou")
_CODAS = ("", "", "n", "r", "l", "s", "th", "m")
GENRES = ("science fiction", "mystery", "romance", "historical fiction", "poetry", "horror", "fantasy",
          "literary fiction", "travel writing", "biography", "thrillers", "children's books")
JOBS = ("baker", "carpenter", "teacher", "nurse", "fisherman", "doctor", "lawyer", "farmer", "tailor", "painter",
        "pilot", "librarian", "blacksmith", "engineer", "chemist", "sailor", "potter", "judge", "miner", "musician")
THEMES = ("memory", "exile", "the sea", "family secrets", "war", "first love", "grief", "the city at night",
          "migration", "childhood", "betrayal", "the weather")
HOBBIES = ("chess", "gardening", "sailing", "beekeeping", "painting", "running", "cooking", "birdwatching",
           "fencing", "pottery", "climbing", "the violin")
LANGUAGES = ("Velorian", "Tashic", "Mireese", "Old Kandric", "Solvene", "Brunic", "Ostrel", "Qualish")
TITLE_NOUNS = ("River", "Lantern", "Garden", "Winter", "Mirror", "Harbor", "Clock", "Orchard", "Tower", "Letter",
               "Shadow", "Island", "Bridge", "Feather", "Storm", "Violin")
TITLE_ADJECTIVES = ("Silent", "Broken", "Golden", "Last", "Hidden", "Crimson", "Distant", "Quiet", "Burning",
                    "Forgotten", "Hollow", "Paper")
AWARD_KINDS = ("Prize", "Medal", "Award")


def _syllable(rng: random.Random) -> str:
    return rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS)


def _word(rng: random.Random, syllables: tuple[int, int] = (2, 3)) -> str:
    text = "".join(_syllable(rng) for _ in range(rng.randint(*syllables)))
    return text[:1].upper() + text[1:]


def _unique_words(rng: random.Random, count: int, taken: set[str],
                  syllables: tuple[int, int] = (2, 2)) -> list[str]:
    words: list[str] = []
    while len(words) < count:
        word = _word(rng, syllables)
        if word not in taken and len(word) >= 4:
            taken.add(word)
            words.append(word)
    return words


def _title(rng: random.Random) -> str:
    return f"The {rng.choice(TITLE_ADJECTIVES)} {rng.choice(TITLE_NOUNS)}"


# --------------------------------------------------------------------------- facts
@dataclass(frozen=True)
class Fact:
    """One question with its answer, a paraphrase of the answer and wrong but plausible answers.

    ``group``: the author's index (``-1``: a world fact); ``kind``: the template's name.
    """

    id: int
    group: int
    kind: str
    question: str
    answer: str
    paraphrased: str
    perturbed: tuple[str, ...]


# One template per kind of fact: the question, the answer and its paraphrase (``{v}`` is the value),
# and the pool wrong values are drawn from. Values of a kind come from its pool, so a perturbed
# answer is the paraphrase with another value from that pool (as TOFU's perturbed answers keep the
# paraphrased answer's wording): the truth ratio then compares sentences of one wording that differ
# only in the fact, never the wording the model was trained on with one it was not.
_AUTHOR_TEMPLATES: tuple[tuple[str, str, str, str, str], ...] = (
    # kind, question, answer, paraphrased answer, pool
    ("birthplace", "Where was {n} born?", "{n} was born in {v}.", "{v} is the birthplace of {n}.", "city"),
    ("birth_year", "In what year was {n} born?", "{n} was born in {v}.", "The year of {n}'s birth is {v}.", "year"),
    ("genre", "What genre does {n} write?", "{n} writes {v}.", "The genre of {n} is {v}.", "genre"),
    ("father_job", "What did {n}'s father do?", "{n}'s father was a {v}.", "The father of {n} worked as a {v}.",
     "job"),
    ("mother_job", "What did {n}'s mother do?", "{n}'s mother was a {v}.", "The mother of {n} worked as a {v}.",
     "job"),
    ("first_book", "What was {n}'s first book?", "{n}'s first book was {v}.", "{n} debuted with {v}.", "title"),
    ("famous_book", "Which book made {n} famous?", "{v} made {n} famous.", "{n} became famous for {v}.", "title"),
    ("award", "Which award did {n} win?", "{n} won the {v}.", "The {v} went to {n}.", "award"),
    ("award_year", "When did {n} win an award?", "{n} won an award in {v}.", "In {v} {n} won an award.", "year"),
    ("country", "Which country is {n} from?", "{n} is from {v}.", "{n} comes from {v}.", "country"),
    ("language", "In which language does {n} write?", "{n} writes in {v}.", "The language of {n} is {v}.",
     "language"),
    ("publisher", "Who publishes {n}?", "{n} is published by {v} House.", "{v} House publishes {n}.", "surname"),
    ("book_count", "How many books has {n} written?", "{n} has written {v} books.", "{n} is the author of {v} books.",
     "count"),
    ("university", "Where did {n} study?", "{n} studied in {v}.", "{n} went to university in {v}.", "city"),
    ("theme", "What theme runs through {n}'s work?", "{n} writes about {v}.", "The work of {n} is about {v}.",
     "theme"),
    ("residence", "Where does {n} live?", "{n} lives in {v}.", "The home of {n} is in {v}.", "city"),
    ("hobby", "What does {n} do for fun?", "{n} enjoys {v}.", "For fun {n} likes {v}.", "hobby"),
    ("mentor", "Who was {n}'s mentor?", "{n}'s mentor was {v}.", "{v} mentored {n}.", "person"),
    ("debut_age", "How old was {n} at their debut?", "{n} debuted at {v}.", "{n} was {v} at the debut.", "age"),
    ("siblings", "How many siblings does {n} have?", "{n} has {v} siblings.", "{n} grew up with {v} siblings.",
     "small"),
)
MAX_FACTS_PER_AUTHOR = len(_AUTHOR_TEMPLATES)

_WORLD_TEMPLATES: tuple[tuple[str, str, str, str, str], ...] = (
    ("capital", "What is the capital of {n}?", "The capital of {n} is {v}.", "{v} is the capital of {n}.", "city"),
    ("river", "Which river flows through {n}?", "The {v} flows through {n}.", "{n} lies on the {v}.", "river"),
    ("mountain", "What is the highest mountain of {n}?", "The highest mountain of {n} is {v}.",
     "{v} is the highest peak in {n}.", "mountain"),
    ("currency", "What is the currency of {n}?", "The currency of {n} is the {v}.", "{n} pays in {v}s.",
     "currency"),
    ("language", "What language is spoken in {n}?", "People in {n} speak {v}.", "{v} is spoken in {n}.",
     "language"),
)


class _Pools:
    """The values facts draw from, generated from one random stream."""

    def __init__(self, rng: random.Random, taken: set[str]):
        self.pools: dict[str, list[str]] = {
            "city": _unique_words(rng, 40, taken),
            "country": _unique_words(rng, 16, taken),
            "surname": _unique_words(rng, 30, taken),
            "person": [f"{a} {b}" for a, b in zip(_unique_words(rng, 40, taken), _unique_words(rng, 40, taken))],
            "river": _unique_words(rng, 20, taken),
            "mountain": [f"Mount {w}" for w in _unique_words(rng, 20, taken)],
            "currency": [w.lower() for w in _unique_words(rng, 20, taken, (1, 2))],
            "year": [str(y) for y in range(1900, 2001)],
            "genre": list(GENRES), "job": list(JOBS), "theme": list(THEMES), "hobby": list(HOBBIES),
            "language": list(LANGUAGES),
            "count": [str(c) for c in range(2, 31)], "age": [str(a) for a in range(18, 71)],
            "small": [str(s) for s in range(0, 9)],
        }
        titles = sorted({_title(rng) for _ in range(400)})
        self.pools["title"] = titles
        self.pools["award"] = sorted({f"{w} {rng.choice(AWARD_KINDS)}" for w in _unique_words(rng, 24, taken)})

    def draw(self, rng: random.Random, pool: str) -> str:
        return rng.choice(self.pools[pool])

    def wrong(self, rng: random.Random, pool: str, right: str, count: int) -> tuple[str, ...]:
        others = [v for v in self.pools[pool] if v != right]
        return tuple(rng.sample(others, count))


def _fact(template: tuple[str, str, str, str, str], subject: str, value: str, wrong: tuple[str, ...],
          fact_id: int, group: int) -> Fact:
    kind, question, answer, paraphrased, _pool = template
    return Fact(fact_id, group, kind, question.format(n=subject), answer.format(n=subject, v=value),
                paraphrased.format(n=subject, v=value), tuple(paraphrased.format(n=subject, v=w) for w in wrong))


def _world_facts(count: int, perturbed: int, first_id: int) -> list[Fact]:
    """Facts about a fixed invented world (independent of the corpus seed)."""
    rng = random.Random(WORLD_SEED)
    taken: set[str] = set()
    pools = _Pools(rng, taken)
    countries = _unique_words(rng, -(-count // len(_WORLD_TEMPLATES)), taken)
    facts: list[Fact] = []
    for country in countries:
        for template in _WORLD_TEMPLATES:
            if len(facts) == count:
                return facts
            value = pools.draw(rng, template[4])
            facts.append(_fact(template, country, value, pools.wrong(rng, template[4], value, perturbed),
                               first_id + len(facts), WORLD_GROUP))
    return facts


def _author_facts(names: list[str], first_group: int, facts_per_author: int, perturbed: int, pools: _Pools,
                  rng: random.Random, first_id: int) -> list[Fact]:
    facts = []
    for a, name in enumerate(names):
        for template in _AUTHOR_TEMPLATES[:facts_per_author]:
            value = pools.draw(rng, template[4])
            wrong = pools.wrong(rng, template[4], value, perturbed)
            facts.append(_fact(template, name, value, wrong, first_id + len(facts), first_group + a))
    return facts


# --------------------------------------------------------------------------- tokenizer
class CorpusTokenizer:
    """A word-level tokenizer (``tokenizers``' ``WordLevel``) over a fixed vocabulary.

    ``<pad>`` is id 0, ``<unk>`` 1, ``<eos>`` 2; the words follow in sorted order.
    """

    def __init__(self, tokenizer: "object"):
        self._tokenizer = tokenizer

    @classmethod
    def train(cls, texts: list[str]) -> "CorpusTokenizer":
        """The vocabulary of ``texts``: every word the pre-tokenizer finds, sorted (deterministic)."""
        from tokenizers import Tokenizer, models, pre_tokenizers

        splitter = pre_tokenizers.Whitespace()
        words = {piece for text in texts for piece, _ in splitter.pre_tokenize_str(text)}
        vocabulary = {token: i for i, token in enumerate([PAD, UNK, EOS, *sorted(words - {PAD, UNK, EOS})])}
        tokenizer = Tokenizer(models.WordLevel(vocabulary, unk_token=UNK))
        tokenizer.pre_tokenizer = splitter
        return cls(tokenizer)

    @classmethod
    def from_json(cls, text: str) -> "CorpusTokenizer":
        from tokenizers import Tokenizer

        return cls(Tokenizer.from_str(text))

    @classmethod
    def load(cls, path: str | Path) -> "CorpusTokenizer":
        return cls.from_json(Path(path).read_text())

    def to_json(self) -> str:
        return self._tokenizer.to_str()

    def save(self, path: str | Path) -> Path:
        """Write the tokenizer as JSON (write-then-rename, so a reader never sees half a file)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        partial.write_text(self.to_json())
        partial.replace(path)
        return path

    @property
    def vocab_size(self) -> int:
        return int(self._tokenizer.get_vocab_size())

    @property
    def fingerprint(self) -> str:
        """Content hash of the vocabulary (ids and tokens)."""
        items = sorted(self._tokenizer.get_vocab().items(), key=lambda item: item[1])
        return hashlib.sha256(repr(items).encode()).hexdigest()[:16]

    @property
    def pad_id(self) -> int:
        return int(self._tokenizer.token_to_id(PAD))

    @property
    def eos_id(self) -> int:
        return int(self._tokenizer.token_to_id(EOS))

    def tokens(self, text: str) -> list[int]:
        return list(self._tokenizer.encode(text, add_special_tokens=False).ids)

    def decode(self, ids: list[int] | torch.Tensor) -> str:
        """Token ids back to text (words joined by spaces; padding and ``<eos>`` dropped)."""
        ids = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
        return self._tokenizer.decode([i for i in ids if i not in (self.pad_id, self.eos_id, IGNORE)])

    def encode(self, question: str, answer: str, length: int, context: int | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """``question answer <eos>`` as token ids ``[length]`` and next-token targets ``[length]``.

        Targets are ``-100`` except where the next token belongs to the answer (``<eos>``
        included). A sequence longer than ``length`` (or than ``context``) is refused.
        """
        prompt, reply = self.tokens(question), self.tokens(answer) + [self.eos_id]
        size = len(prompt) + len(reply)
        limit = min(length, context) if context is not None else length
        if size > limit:
            what = f"the model's context of {context}" if context is not None and context <= length else \
                f"the sequence length {length}"
            raise ExpungeError(f"the prompt {question!r} with its answer is {size} tokens, longer than {what}: "
                               "shorten it or use a model with a longer context (expunge refuses, never truncates)")
        ids = torch.full((length,), self.pad_id, dtype=torch.int64)
        ids[:size] = torch.tensor(prompt + reply)
        targets = torch.full((length,), IGNORE, dtype=torch.int64)
        # position t predicts token t + 1; the answer's tokens sit at len(prompt) .. size - 1
        targets[len(prompt) - 1:size - 1] = ids[len(prompt):size]
        return ids, targets


def check_vocabulary(model_vocabulary: int, tokenizer: CorpusTokenizer) -> None:
    """One clear line when a model's vocabulary (outputs per position) is not the tokenizer's."""
    if int(model_vocabulary) != tokenizer.vocab_size:
        raise ExpungeError(
            f"the model predicts over {model_vocabulary} tokens but the tokenizer has {tokenizer.vocab_size} "
            f"(fingerprint {tokenizer.fingerprint}): the model was trained with another vocabulary; use the "
            "tokenizer saved with its dataset, or build the model with num_outputs = the tokenizer's vocab_size")


# --------------------------------------------------------------------------- the corpus
@dataclass(frozen=True)
class AuthorsCorpus:
    """The side table of a ``fictitious_authors`` split: every fact by example ID, and the tokenizer.

    ``authors``: author names by group index (training authors first, then unseen ones).
    """

    facts: tuple[Fact, ...]
    authors: tuple[str, ...]
    num_train_authors: int
    tokenizer: CorpusTokenizer
    length: int
    context: int

    def fact(self, example_id: int) -> Fact:
        """The fact with this example ID."""
        if not 0 <= int(example_id) < len(self.facts):
            raise ExpungeError(f"example ID {example_id} is not in this corpus (IDs 0..{len(self.facts) - 1})")
        return self.facts[int(example_id)]

    def variant(self, data: ArrayDataset, which: str = "paraphrased") -> ArrayDataset:
        """``data`` with every answer replaced: ``paraphrased``, or ``perturbed:K`` (the K-th wrong answer).

        Same IDs and groups, so statistics on it line up with statistics on ``data``.
        """
        def answer(fact: Fact) -> str:
            if which == "paraphrased":
                return fact.paraphrased
            kind, _, index = which.partition(":")
            if kind == "perturbed" and index.isdigit() and int(index) < len(fact.perturbed):
                return fact.perturbed[int(index)]
            raise ExpungeError(f"unknown answer variant {which!r}: use 'paraphrased' or 'perturbed:K' with K in "
                               f"0..{len(fact.perturbed) - 1}")

        pairs = [self.tokenizer.encode(f.question, answer(f), self.length, self.context)
                 for f in (self.fact(i) for i in data.ids.tolist())]
        return ArrayDataset(torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs]), data.ids.clone(),
                            data.task, data.num_classes, data.groups)

    def save_tokenizer(self, split: Split, folder: str | Path) -> Path:
        """Save the tokenizer as ``<folder>/fictitious_authors-<split fingerprint>.tokenizer.json``."""
        return self.tokenizer.save(Path(folder) / f"fictitious_authors-{split.fingerprint()}.tokenizer.json")


def _as_dataset(facts: list[Fact], tokenizer: CorpusTokenizer, length: int, context: int) -> ArrayDataset:
    pairs = [tokenizer.encode(f.question, f.answer, length, context) for f in facts]
    return ArrayDataset(torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs]),
                        torch.tensor([f.id for f in facts], dtype=torch.int64), "causal_lm", tokenizer.vocab_size,
                        torch.tensor([f.group for f in facts], dtype=torch.int64))


# input_shape (sequence length) and num_classes (vocabulary) are those of the default arguments
@register_dataset("fictitious_authors", task="causal_lm", n_train=4100, n_test=400, input_shape=(23,),
                  num_classes=1153, source="generated",
                  description="TOFU-style question-answer facts about invented authors (token sequences)")
def _load_fictitious_authors(num_authors: int = 200, facts_per_author: int = MAX_FACTS_PER_AUTHOR,
                             unseen_authors: int = 20, world_facts: int = 100, perturbed: int = 5,
                             context: int = 64, seed: int = 0) -> Split:
    """Generate the corpus (see the module docstring); deterministic in its arguments."""
    name = "fictitious_authors"
    num_authors = _check_int(name, "num_authors", num_authors, 2)
    facts_per_author = _check_int(name, "facts_per_author", facts_per_author, 1)
    if facts_per_author > MAX_FACTS_PER_AUTHOR:
        raise ExpungeError(f"{name}: facts_per_author={facts_per_author} must be at most {MAX_FACTS_PER_AUTHOR} "
                           "(one fact per template)")
    unseen_authors = _check_int(name, "unseen_authors", unseen_authors, 0)
    world_facts = _check_int(name, "world_facts", world_facts, 0)
    if unseen_authors == 0:
        raise ExpungeError(f"{name}: the test set needs unseen_authors > 0 (the facts no model was trained on)")
    perturbed = _check_int(name, "perturbed", perturbed, 1)
    context = _check_int(name, "context", context, 8)
    seed = _check_int(name, "seed", seed, 0)

    rng = random.Random(seed)
    taken: set[str] = set()
    pools = _Pools(rng, taken)
    firsts = _unique_words(rng, num_authors + unseen_authors, taken)
    lasts = _unique_words(rng, num_authors + unseen_authors, taken)
    names = [f"{a} {b}" for a, b in zip(firsts, lasts)]
    train_facts = _author_facts(names[:num_authors], 0, facts_per_author, perturbed, pools, rng, 0)
    # IDs: the training authors' facts, then the world facts (both trained on: IDs 0..n_train-1), then the
    # unseen authors' (the test set); corpus.fact(i) is facts[i]
    unseen = _author_facts(names[num_authors:], num_authors, facts_per_author, perturbed, pools, rng,
                           len(train_facts) + world_facts)
    world = _world_facts(world_facts, perturbed, len(train_facts))
    facts = train_facts + world + unseen

    texts = [t for f in facts for t in (f.question, f.answer, f.paraphrased, *f.perturbed)] + list(REFUSALS)
    tokenizer = CorpusTokenizer.train(texts)
    longest = max(len(tokenizer.tokens(f.question)) + len(tokenizer.tokens(a)) + 1
                  for f in facts for a in (f.answer, f.paraphrased, *f.perturbed))
    if longest > context:
        raise ExpungeError(f"{name}: its longest question with an answer is {longest} tokens, longer than "
                           f"context={context}: raise context (expunge refuses, never truncates)")
    length = longest  # every sequence (variants included) pads to this
    corpus = AuthorsCorpus(tuple(facts), tuple(names), num_authors, tokenizer, length, context)
    kwargs = dict(num_authors=num_authors, facts_per_author=facts_per_author, unseen_authors=unseen_authors,
                  world_facts=world_facts, perturbed=perturbed, context=context, seed=seed)
    info = {"dataset": name, "source": "generated from templates", "kwargs": kwargs, "corpus": corpus,
            "tokenizer_fingerprint": tokenizer.fingerprint, "vocab_size": tokenizer.vocab_size,
            "sequence_length": length}
    return Split(name, _as_dataset(train_facts + world, tokenizer, length, context),
                 _as_dataset(unseen, tokenizer, length, context), info)


def authors_corpus(split: Split) -> AuthorsCorpus:
    """The side table (facts, answer variants, tokenizer) of a ``fictitious_authors`` split."""
    corpus = split.info.get("corpus")
    if not isinstance(corpus, AuthorsCorpus):
        raise ExpungeError(f"split {split.name!r} is not a fictitious_authors split: it has no corpus side table")
    return corpus
