"""The gates of a language model's top LSTM layer over a token sequence, as a PNG."""

import torch

from lstmkit.models.lm import LanguageModel, LMModelConfig
from lstmkit.utils.config import from_flat
from lstmkit.viz.token_gates import plot_top_layer, step_label


def test_tokens_label_the_steps_and_a_png_is_written(tmp_path):
    assert step_label(" cat ") == "cat" and step_label("\n") == "\\n" and step_label(" ") == " "
    torch.manual_seed(0)
    model = LanguageModel(from_flat(LMModelConfig, hidden_size=6, num_layers=2), 10).eval()
    ids = [4, 5, 6, 7, 4, 5]
    path = plot_top_layer(
        model, ids, list("abcdab"), tmp_path / "g.png", "cpu", "lm: top layer (2) over 6 tokens"
    )
    assert path == tmp_path / "g.png" and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
