"""`lstmkit train lm` says what it read once: its own line (files, characters, lines, the token
unit, tokens, words and <unk> per split), not again as the trainer's generic data line."""

from __future__ import annotations

from lstmkit.cli.main import cli_main


def test_the_data_summary_prints_once(tmp_path, capsys):
    text = "".join(f"to be or not to be, line {i}\n" for i in range(200))
    (tmp_path / "t.txt").write_text(text, encoding="utf-8")
    args = ["train", "lm", "--train", str(tmp_path / "t.txt"), "--hidden-size", "8"]
    args += ["--num-layers", "1", "--embed-size", "4", "--seq-len", "16", "--batch-size", "4"]
    args += ["--steps", "2", "--eval-every", "2", "--device", "cpu", "--threads", "1"]
    capsys.readouterr()
    assert cli_main([*args, "--out", str(tmp_path / "run")]) == 0  # progress on: the header
    seen = capsys.readouterr()
    printed = seen.out + seen.err
    assert printed.count("5,690 characters") == 1, printed
    assert "train_files_characters" not in printed  # the same numbers, dumped a second time
    assert "tokens train 5,121, valid 569" in printed
    log = (tmp_path / "run" / "train.jsonl").read_text()
    assert '"train_files_characters": 5690' in log  # still logged for tools
