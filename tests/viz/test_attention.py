"""The attention heatmap of a translation: labels from either tokenizer kind, the </s> rows,
the BPE axis note; a PNG is written."""

import torch

from lstmkit.data.tokenize import fit_tokenizer
from lstmkit.models.seq2seq import Hypothesis
from lstmkit.viz import plots
from lstmkit.viz.attention import plot_attention, token_labels


def test_plot_attention_labels_rows_and_columns(tmp_path, monkeypatch):
    src_tok = fit_tokenizer(["zwei hunde"], "word")
    tgt_tok = fit_tokenizer(["two dogs", "two", "dogs"], "bpe", lowercase=False, vocab_size=40)
    tokens = tgt_tok.encode("two dogs")
    hyp = Hypothesis(tokens, -1.0, -1.0, torch.full((len(tokens) + 1, 2), 0.5))
    drawn = []
    real = plots.plot_heatmap
    monkeypatch.setattr(plots, "plot_heatmap", lambda *a, **k: drawn.append(k) or real(*a, **k))
    path = plot_attention(hyp, "zwei hunde", (src_tok, tgt_tok), ("de", "en"), tmp_path / "a.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (kw,) = drawn
    assert (
        kw["col_labels"] == ["zwei", "hunde"] == token_labels(src_tok, src_tok.encode("zwei hunde"))
    )
    assert kw["row_labels"][-1] == "</s>" and len(kw["row_labels"]) == len(tokens) + 1
    assert "".join(kw["row_labels"][:-1]).replace("-", "") == "twodogs"
    assert kw["xlabel"] == "source subwords (de)"
    assert kw["ylabel"] == "output subwords (en); -x continues the word before"
    assert kw["title"] == "zwei hunde\n→ two dogs"
    # a source of no tokens is one </s> column (the step the encoder still takes)
    plot_attention(
        hyp._replace(attention=torch.ones(len(tokens) + 1, 1)),
        "",
        (src_tok, tgt_tok),
        ("de", "en"),
        tmp_path / "b.png",
    )
    assert drawn[-1]["col_labels"] == ["</s>"]
