"""Sampling from a language model: options checked, banned tokens never drawn, greedy decoding."""

import pytest
import torch

from lstmkit.models.lm import LanguageModel, LMModelConfig
from lstmkit.models.lm_decode import check_sampling, sample_tokens
from lstmkit.utils.config import from_flat
from lstmkit.utils.errors import UserError

CPU = torch.device("cpu")


@pytest.mark.parametrize(
    "args, flag",
    [((-1, 1.0, 0), "--length"), ((1, -0.5, 0), "--temperature"), ((1, 1.0, -2), "--top-k")],
)
def test_bad_sampling_options_name_their_flag(args, flag):
    with pytest.raises(UserError, match=f"^{flag} must be >= 0, got -"):
        check_sampling(*args)


def test_greedy_samples_are_the_argmax_and_banned_tokens_never_come():
    torch.manual_seed(0)
    model = LanguageModel(from_flat(LMModelConfig, hidden_size=8, num_layers=1), 12).eval()
    greedy = list(sample_tokens(model, [4, 5], 6, 0.0, 0, None, (), CPU))
    ids, expected = [4, 5], []
    with torch.no_grad():
        for _ in range(6):
            expected.append(int(model(torch.tensor([ids]), None)[0][0, -1].argmax()))
            ids.append(expected[-1])
    assert greedy == expected
    drawn = set(sample_tokens(model, [4], 200, 1.0, 0, 3, tuple(range(10)), CPU))
    assert drawn <= {10, 11} and len(drawn) == 2
    a, b = (list(sample_tokens(model, [4], 20, 1.0, 3, 7, (), CPU)) for _ in range(2))
    assert a == b
