"""``lstmkit generate``: sample text from a trained language model, token by token.

The model and its vocabulary come from the checkpoint alone (the training files are not read).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from lstmkit.infer.inputs import checkpoint_field, device_field
from lstmkit.infer.load import load_for
from lstmkit.utils.errors import UserError
from lstmkit.utils.meta import help_meta as _help


@dataclass(frozen=True)
class GenerateConfig:
    """Options of ``lstmkit generate``."""

    checkpoint: str = checkpoint_field("a run folder of `lstmkit train lm`")
    prompt: str = field(
        default="",
        metadata=_help("text to continue, read as the start of a line (empty: a new line)"),
    )
    length: int = field(default=500, metadata=_help("tokens to generate"))
    temperature: float = field(
        default=1.0,
        metadata=_help("divide the logits by T: < 1 safer, > 1 wilder; 0 always takes the best"),
    )
    top_k: int = field(
        default=0, metadata=_help("sample among the K most likely tokens only; 0: all")
    )
    seed: int = field(
        default=-1,
        metadata=_help("random seed; the same seed gives the same text; -1: random", signed=True),
    )
    on_unknown: str = field(
        default="error",
        metadata=_help(
            "prompt tokens outside the vocabulary: error (name them), unk (read as <unk>) or "
            "drop (leave them out); unk and drop say how many on stderr",
            choices=("error", "unk", "drop"),
        ),
    )
    echo_prompt: bool = field(default=True, metadata=_help("print the prompt before the text"))
    device: str = device_field()


def generate(cfg: GenerateConfig) -> Iterator[str]:
    """The pieces of text to print, in order: the prompt (if echoed), then one per token as
    soon as it is sampled. Options are checked before anything is yielded."""
    if cfg.length < 0:
        raise UserError(f"--length must be >= 0, got {cfg.length}")
    task, model, _, dev = load_for("generate", cfg.checkpoint, cfg.device)
    return generate_pieces(
        task,
        model,
        dev,
        cfg.prompt,
        cfg.length,
        temperature=cfg.temperature,
        top_k=cfg.top_k,
        seed=None if cfg.seed < 0 else cfg.seed,
        on_unknown=cfg.on_unknown,
        echo_prompt=cfg.echo_prompt,
    )


def generate_pieces(
    task,
    model,
    device,
    prompt: str,
    length: int,
    *,
    temperature: float,
    top_k: int,
    seed: int | None,
    on_unknown: str,
    echo_prompt: bool,
) -> Iterator[str]:
    """What :func:`generate` yields, from a loaded language-model task and model (``lstmkit
    generate`` and ``Run.generate`` of the Python API share it). The prompt and the sampling
    options are checked before anything is yielded."""
    prompt_ids = task.encode_prompt(prompt, on_unknown)
    tokens = task.generate(
        model,
        prompt_ids,
        length,
        temperature=temperature,
        top_k=top_k,
        seed=seed,
        device=device,
    )
    first = next(tokens, None)  # runs the option checks of task.generate before any output
    return _pieces(task, task.echo(prompt) if echo_prompt else "", first, tokens)


def _pieces(task, prompt: str, first: int | None, rest: Iterator[int]) -> Iterator[str]:
    if prompt:
        yield prompt
    if first is None:
        return
    yield task.piece(first)
    for token in rest:
        yield task.piece(token)
