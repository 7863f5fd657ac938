"""The long-time-lag results table: one real (tiny) run, rendering, and section replacement."""

from lstmkit.experiments import longlag_results as lr


def test_run_setting_and_render(tmp_path):
    setting = lr.Setting("embedded Reber grammar", "reber", {}, "embedded_reber", "loss")
    rows = lr.run_setting(setting, budget=20, out=tmp_path, hidden=16, seed=0)
    assert [r["net"] for r in rows] == ["LSTM", "tanh RNN"]
    for r in rows:
        assert r["sequences"] > 0 and 0 <= r["test"]["correct"] <= 1
        assert r["solved"] == (r["sequences_to_solve"] is not None)
    text = lr.render(rows, 20, 16, "python -m lstmkit.experiments.longlag_results")
    assert text.startswith(lr.BEGIN) and text.rstrip().endswith(lr.END)
    assert "| embedded Reber grammar | LSTM |" in text
    assert "8,440" in text  # the 1997 paper's LSTM result beside ours


def test_write_section_keeps_the_rest_of_the_file(tmp_path):
    doc = tmp_path / "RESULTS.md"
    doc.write_text("# Results\n\n## Sentiment\n\nkeep me\n")
    lr.write_section(doc, f"{lr.BEGIN}\nfirst\n{lr.END}\n")
    lr.write_section(doc, f"{lr.BEGIN}\nsecond\n{lr.END}\n")
    text = doc.read_text()
    assert "keep me" in text and "second" in text and "first" not in text
    assert text.count(lr.BEGIN) == 1
