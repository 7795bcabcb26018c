"""fictitious_authors: a deterministic corpus, its tokenizer, the authors: forget rule and their errors."""
import subprocess
import sys

import pytest
import torch

from expunge import ExpungeError
from expunge.data import load_dataset, parse_forget_rule
from expunge.data.authors import IGNORE, CorpusTokenizer, _load_fictitious_authors, authors_corpus, check_vocabulary

SMALL = dict(num_authors=20, facts_per_author=4, unseen_authors=2, world_facts=10)


@pytest.fixture(scope="module")
def authors():
    return load_dataset("fictitious_authors", **SMALL)


def _one_line(error: pytest.ExceptionInfo) -> str:
    text = str(error.value)
    assert "\n" not in text
    return text


def test_corpus_and_tokenizer_are_deterministic_and_the_seed_matters(authors):
    again = _load_fictitious_authors(**SMALL)  # generated afresh, not the cached split
    for a, b in ((authors.train, again.train), (authors.test, again.test)):
        assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y) and torch.equal(a.ids, b.ids)
        assert torch.equal(a.groups, b.groups)
    assert authors.info["tokenizer_fingerprint"] == again.info["tokenizer_fingerprint"]
    assert authors.fingerprint() == again.fingerprint()
    other = _load_fictitious_authors(**SMALL, seed=1)
    assert authors_corpus(other).authors != authors_corpus(authors).authors
    # the invented world does not depend on the seed
    world = [f.answer for f in authors_corpus(authors).facts if f.group == -1]
    assert world == [f.answer for f in authors_corpus(other).facts if f.group == -1]


def test_tokenizer_is_the_same_in_another_process(authors):
    code = ("from expunge.data import load_dataset; s = load_dataset('fictitious_authors', num_authors=20, "
            "facts_per_author=4, unseen_authors=2, world_facts=10); print(s.info['tokenizer_fingerprint'], "
            "s.fingerprint())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == [authors.info["tokenizer_fingerprint"], authors.fingerprint()]


def test_examples_are_question_answer_eos_with_answer_targets(authors):
    corpus = authors_corpus(authors)
    train = authors.train
    assert len(train) == 20 * 4 + 10 and len(authors.test) == 2 * 4  # world facts are trained on, always retained
    # author a's fact f is ID a * facts_per_author + f; then the world facts; the unseen authors' come last
    assert train.ids.tolist() == list(range(90)) and authors.test.ids.tolist() == list(range(90, 98))
    assert train.groups.tolist() == [i // 4 for i in range(80)] + [-1] * 10
    assert set(authors.test.groups.tolist()) == {20, 21}  # unseen authors
    assert train.task == "causal_lm" and train.num_classes == corpus.tokenizer.vocab_size
    for position in (0, 37, 79):
        fact = corpus.fact(int(train.ids[position]))
        ids, targets = train.x[position], train.y[position]
        tokens = corpus.tokenizer
        assert tokens.decode(ids) == tokens.decode(tokens.tokens(f"{fact.question} {fact.answer}"))
        scored = targets != IGNORE
        answer = targets[scored].tolist()  # the answer's tokens then <eos>, nothing else
        assert answer == tokens.tokens(fact.answer) + [tokens.eos_id]
        start = int(scored.int().argmax())  # position t predicts token t + 1
        assert torch.equal(ids[start + 1:start + 1 + len(answer)], targets[scored])
        assert fact.paraphrased != fact.answer and len(fact.perturbed) == 5 and fact.answer not in fact.perturbed


def test_answer_variants_keep_ids_and_change_answers(authors):
    corpus = authors_corpus(authors)
    paraphrased = corpus.variant(authors.train, "paraphrased")
    perturbed = corpus.variant(authors.train, "perturbed:2")
    assert torch.equal(paraphrased.ids, authors.train.ids) and torch.equal(perturbed.groups, authors.train.groups)
    fact = corpus.fact(5)
    answer = paraphrased.y[5][paraphrased.y[5] != IGNORE].tolist()[:-1]
    assert corpus.tokenizer.decode(answer) == corpus.tokenizer.decode(corpus.tokenizer.tokens(fact.paraphrased))
    assert not torch.equal(perturbed.y, authors.train.y)
    with pytest.raises(ExpungeError, match="unknown answer variant"):
        corpus.variant(authors.train, "perturbed:9")


def test_authors_rule_forgets_every_fact_of_the_chosen_authors(authors):
    train = authors.train
    named = parse_forget_rule("authors:3,7", train)
    assert named.rule == "authors:3,7"
    assert named.forget_ids.tolist() == [12, 13, 14, 15, 28, 29, 30, 31]
    fraction = parse_forget_rule("authors:0.1", train, seed=4)
    chosen = set(train.groups[fraction.forget_positions].tolist())
    assert len(chosen) == 2 and len(fraction) == 8  # 10% of 20 authors, all 4 facts each
    assert torch.equal(parse_forget_rule(fraction.rule, train).forget_ids, fraction.forget_ids)  # rule parses back
    tiny = parse_forget_rule("authors:0.01", train)  # rounds up to one author
    assert len(set(train.groups[tiny.forget_positions].tolist())) == 1


def test_authors_rule_errors_are_one_clear_line(authors, gaussians):
    with pytest.raises(ExpungeError) as error:
        parse_forget_rule("authors:3,25", authors.train)
    assert "author 25 is not in this training set (its authors are 0..19)" in _one_line(error)
    with pytest.raises(ExpungeError) as error:
        parse_forget_rule("authors:2", gaussians.train)
    assert "name their author" in _one_line(error)
    with pytest.raises(ExpungeError) as error:
        parse_forget_rule("authors:x,y", authors.train)
    assert "authors must be comma-separated integers" in _one_line(error)


def test_tokenizer_round_trip_and_vocabulary_mismatch(authors, tmp_path):
    corpus = authors_corpus(authors)
    path = corpus.save_tokenizer(authors, tmp_path)
    assert path.name == f"fictitious_authors-{authors.fingerprint()}.tokenizer.json"
    loaded = CorpusTokenizer.load(path)
    assert loaded.fingerprint == corpus.tokenizer.fingerprint and loaded.vocab_size == corpus.tokenizer.vocab_size
    check_vocabulary(corpus.tokenizer.vocab_size, loaded)
    with pytest.raises(ExpungeError) as error:
        check_vocabulary(corpus.tokenizer.vocab_size + 3, loaded)
    assert "another vocabulary" in _one_line(error)


def test_too_long_is_refused_with_one_line(authors):
    corpus = authors_corpus(authors)
    with pytest.raises(ExpungeError) as error:
        _load_fictitious_authors(**SMALL, context=10)
    assert "longer than context=10" in _one_line(error)
    fact = corpus.fact(0)
    with pytest.raises(ExpungeError) as error:
        corpus.tokenizer.encode(fact.question + " and also " * 20, fact.answer, corpus.length, corpus.context)
    assert "refuses, never truncates" in _one_line(error)
