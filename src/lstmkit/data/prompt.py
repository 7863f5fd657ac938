"""A language model's text at use time: a prompt's token ids, where generation starts, and the
text of each generated token, for a :class:`~lstmkit.data.tokenize.TextTokenizer`."""

from __future__ import annotations

import sys

from lstmkit.data.tokenize import BOS, EOS, PAD, UNK, TextTokenizer
from lstmkit.utils.errors import UserError

ON_UNKNOWN = ("error", "unk", "drop")
WORD_KINDS = ("word", "whitespace")
"""Tokenizers whose tokens are words: ``<eos>`` ends a line, a space separates tokens."""


def encode_prompt(tok: TextTokenizer, prompt: str, on_unknown: str = "error") -> list[int]:
    """Token ids of ``prompt``; tokens outside the vocabulary raise an error naming them
    (``error``), become ``<unk>`` (``unk``) or are left out (``drop``), counted on stderr."""
    if on_unknown not in ON_UNKNOWN:
        raise UserError(f"--on-unknown must be one of {', '.join(ON_UNKNOWN)}")
    if tok.kind == "char":
        pieces = list(prompt.lower() if tok.lowercase else prompt)
        ids = [tok.stoi.get(c, UNK) for c in pieces]
    elif tok.kind in WORD_KINDS:
        lines = prompt.split("\n")
        pieces, ids = [], []
        for k, line in enumerate(lines):
            words = tok.split(line)
            pieces += words
            ids += [UNK if w == tok.unk_token else tok.stoi.get(w, UNK) for w in words]
            if k < len(lines) - 1:
                pieces.append("\n")
                ids.append(EOS)
    else:
        ids = tok.encode(prompt)
        pieces = tok.split(prompt)
    unknown = [p for p, i in zip(pieces, ids, strict=True) if i == UNK and p != tok.unk_token]
    if unknown:
        shown = ", ".join(dict.fromkeys(show_token(u) for u in unknown))
        if on_unknown == "error":
            raise UserError(
                f"--prompt: {len(unknown)} token(s) not in the model's vocabulary: {shown}; "
                "pass --on-unknown unk (read as <unk>) or drop (leave them out)"
            )
        what = "read as <unk>" if on_unknown == "unk" else "left out"
        print(
            f"generate: {len(unknown)} prompt token(s) not in the vocabulary {what}: {shown}",
            file=sys.stderr,
            flush=True,
        )
        if on_unknown == "drop":
            ids = [i for i in ids if i != UNK]
    return ids


def start_ids(tok: TextTokenizer, prompt_ids: list[int]) -> list[int]:
    """What generation conditions on: a line end, then the prompt.

    A language model trained on streams has a state that is almost always warm (it is reset
    only at pass starts), so a bare zero state is a situation it has hardly seen: from one,
    "ROMEO:" continued greedily as "SLABELT:" on tinyshakespeare, and after a line end as a new
    line of verse. So the prompt is read as the start of a line of the text.
    """
    line_end = EOS if tok.kind in WORD_KINDS else tok.stoi.get("\n")
    if line_end is None:
        if prompt_ids:
            return prompt_ids
        raise UserError("--prompt: give a prompt (this vocabulary has no line end)")
    if prompt_ids[:1] == [line_end]:
        return prompt_ids
    return [line_end, *prompt_ids]


def echo(tok: TextTokenizer, prompt: str) -> str:
    """The prompt as printed before the generated text (words get a separating space)."""
    if tok.kind in WORD_KINDS and prompt and not prompt[-1].isspace():
        return prompt + " "
    return prompt


def never_drawn(tok: TextTokenizer) -> tuple[int, ...]:
    """Tokens generation never samples: ``<pad>``, ``<unk>`` and ``<s>``, and for characters
    also ``</s>``, which a character stream never holds (its lines end with ``\n``)."""
    return (PAD, UNK, BOS, EOS) if tok.kind == "char" else (PAD, UNK, BOS)


def piece(tok: TextTokenizer, token: int) -> str:
    """Text of one generated token, as printed while streaming; the end-of-line token
    (``</s>``/``<eos>``) is a line end, never its literal name."""
    if token == EOS:
        return "\n"
    if tok.kind == "char":
        return tok.itos[token]
    if tok.kind in WORD_KINDS:
        return tok.itos[token] + " "
    return tok.decode([token])


def show_token(token: str) -> str:
    """A token as an error message names it: control and space characters as code points,
    other non-ASCII characters with theirs."""
    if len(token) == 1 and not token.isprintable() or token.isspace():
        return f"U+{ord(token[0]):04X}" if len(token) == 1 else repr(token)
    if len(token) == 1 and ord(token) > 127:
        return f"{token!r} (U+{ord(token):04X})"
    return repr(token)
