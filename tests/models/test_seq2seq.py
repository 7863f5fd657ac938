"""The encoder-decoder: attention shapes and masking, padding invariance, decoders, loss."""

import pytest
import torch
import torch.nn.functional as F

from lstmkit.data.tokenize import EOS
from lstmkit.models.seq2seq import (
    Attention,
    Memory,
    Seq2Seq,
    Seq2SeqConfig,
    beam_search,
    greedy_decode,
    label_smoothed_loss,
    max_lengths,
)
from lstmkit.utils.config import from_flat
from lstmkit.utils.errors import UserError

SMALL = dict(embed_size=12, enc_hidden_size=8, dec_hidden_size=16, attention_size=10)


def _model(**kw) -> Seq2Seq:
    torch.manual_seed(0)
    return Seq2Seq(from_flat(Seq2SeqConfig, {**SMALL, **kw}), 30, 25).eval()


def _padded_batch():
    g = torch.Generator().manual_seed(1)
    lens = torch.tensor([7, 4, 1])
    src = torch.randint(4, 30, (3, 7), generator=g)
    for i, n in enumerate(lens):
        src[i, n:] = 0
    tgt = torch.randint(4, 25, (3, 5), generator=g)
    return src, lens, tgt


@pytest.mark.parametrize("kind", ["general", "dot", "bahdanau"])
def test_attention_shapes_and_padding_mask(kind):
    torch.manual_seed(0)
    att = Attention(kind, 8, 8, 6)
    values = torch.randn(2, 5, 8)
    mask = torch.tensor([[True] * 5, [True, True, False, False, False]])
    context, weights = att(torch.randn(2, 8), Memory(values, att.keys(values), mask))
    assert context.shape == (2, 8) and weights.shape == (2, 5)
    assert torch.allclose(weights.sum(-1), torch.ones(2))
    assert (weights[1, 2:] == 0).all()
    # what sits at padded positions cannot change the result
    noisy = values.clone()
    noisy[1, 2:] = 100.0
    query = torch.ones(2, 8)
    c1, w1 = att(query, Memory(values, att.keys(values), mask))
    c2, w2 = att(query, Memory(noisy, att.keys(noisy), mask))
    assert torch.allclose(c1[1], c2[1], atol=1e-6) and torch.allclose(w1[1], w2[1])


def test_dot_attention_needs_matching_sizes():
    with pytest.raises(UserError, match="--attention dot needs the decoder size"):
        _model(attention="dot", dec_hidden_size=10)


@pytest.mark.parametrize(
    "kw",
    [
        {"attention": "general"},
        {"attention": "dot"},
        {"attention": "bahdanau", "input_feed": False, "tie_embeddings": False},
        {"enc_num_layers": 2, "dec_num_layers": 2, "enc_layer_norm": True, "dec_peephole": True},
        {"enc_coupled": True, "dec_layer_norm": True, "dec_zoneout_h": 0.1, "enc_proj_size": 4},
    ],
)
def test_padding_does_not_change_results(kw):
    """A sentence alone (no padding) gives the same logits as inside a padded batch."""
    m = _model(**kw)
    src, lens, tgt = _padded_batch()
    with torch.no_grad():
        batch = m(src, lens, tgt)
        assert batch.shape == (3, 5, 25)
        for i, n in enumerate(lens.tolist()):
            alone = m(src[i : i + 1, :n], lens[i : i + 1], tgt[i : i + 1])
            torch.testing.assert_close(alone[0], batch[i], atol=1e-5, rtol=1e-5)


def test_padding_does_not_change_decoding():
    m = _model()
    src, lens, _ = _padded_batch()
    together = beam_search(m, src, lens, beam=3)
    for i, n in enumerate(lens.tolist()):
        alone = beam_search(m, src[i : i + 1, :n], lens[i : i + 1], beam=3)[0]
        assert alone.tokens == together[i].tokens
        assert alone.score == pytest.approx(together[i].score, abs=1e-4)
        assert alone.attention.shape == together[i].attention.shape == (alone.attention.shape[0], n)


@pytest.mark.parametrize("attention", ["general", "bahdanau"])
def test_beam_one_equals_greedy(attention):
    m = _model(attention=attention)
    src, lens, _ = _padded_batch()
    greedy = greedy_decode(m, src, lens)
    beam = beam_search(m, src, lens, beam=1)
    for g, b in zip(greedy, beam, strict=True):
        assert g.tokens == b.tokens
        assert g.logprob == pytest.approx(b.logprob, abs=1e-4)
        torch.testing.assert_close(g.attention, b.attention)


def test_greedy_matches_teacher_forcing_and_respects_max_length():
    """The greedy tokens are the argmax of the teacher-forced model fed its own output."""
    m = _model()
    src, lens, _ = _padded_batch()
    hyps = greedy_decode(m, src, lens, max_len_ratio=0.5)
    limits = max_lengths(lens, 0.5).tolist()
    for i, h in enumerate(hyps):
        n = int(lens[i])
        assert len(h.tokens) <= limits[i] and EOS not in h.tokens
        prefix = torch.tensor([[2, *h.tokens]])
        with torch.no_grad():
            logits = m(src[i : i + 1, :n], lens[i : i + 1], prefix)
        expected = logits[0].argmax(-1).tolist()
        assert expected[: len(h.tokens)] == h.tokens
        logp = torch.log_softmax(logits[0], -1)
        steps = h.attention.shape[0]
        chosen = (h.tokens + [EOS])[:steps]
        assert h.logprob == pytest.approx(float(logp[range(steps), chosen].sum()), abs=1e-4)


def test_beam_search_finds_at_least_the_greedy_score():
    m = _model()
    src, lens, _ = _padded_batch()
    greedy = greedy_decode(m, src, lens)
    beam = beam_search(m, src, lens, beam=5, len_penalty=0.0)
    for g, b in zip(greedy, beam, strict=True):
        assert b.score >= g.logprob - 1e-4  # alpha 0: the score is the log-probability


def test_length_normalisation():
    m = _model()
    src, lens, _ = _padded_batch()
    for h in beam_search(m, src, lens, beam=4, len_penalty=1.0):
        steps = h.attention.shape[0]
        assert h.score == pytest.approx(h.logprob / steps, rel=1e-5)


def test_label_smoothing_equation():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 7)
    target = torch.tensor([[4, 5, 0], [6, 0, 0]])
    eps = 0.1
    logp = torch.log_softmax(logits, -1)
    keep = target != 0
    manual = -(1 - eps) * logp.gather(-1, target.unsqueeze(-1)).squeeze(-1) - eps * logp.mean(-1)
    assert float(label_smoothed_loss(logits, target, eps)) == pytest.approx(
        float(manual[keep].mean()), rel=1e-5
    )
    nll = F.nll_loss(logp.view(-1, 7), target.view(-1), ignore_index=0)
    assert float(label_smoothed_loss(logits, target, 0.0)) == pytest.approx(float(nll))


def test_tied_embeddings_share_the_matrix():
    m = _model(tie_embeddings=True)
    assert m.out is None
    x = torch.randn(2, SMALL["embed_size"])
    expected = x @ m.tgt_embed.weight.T + m.out_bias
    torch.testing.assert_close(m.logits(x), expected)


def test_decoder_variants_and_recurrent_dropout_train():
    m = _model(dec_recurrent_dropout=0.2, enc_recurrent_dropout=0.2, dec_num_layers=2).train()
    src, lens, tgt = _padded_batch()
    loss = label_smoothed_loss(m(src, lens, tgt), tgt, 0.1)
    loss.backward()
    assert all(p.grad is not None for p in m.cells.parameters())
