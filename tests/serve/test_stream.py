"""Streamed audio over the WebSocket (lstmkit.infer.stream's AudioSession): partial outputs
after each chunk, and after ``end`` the whole recording's output, equal to /predict/audio's."""

from __future__ import annotations

import numpy as np
import pytest

from lstmkit.data.audio import load_audio


def test_streamed_recording_ends_with_the_prediction_of_the_upload(client, wav):
    with open(wav, "rb") as f:
        want = client.post("/v1/spoken-words/predict/audio", files=[("files", ("t.wav", f))])
    want = want.json()["results"][0]
    with client.websocket_connect("/v1/spoken-words/predict/stream") as ws:
        hello = ws.receive_json()
        assert hello["ready"] and hello["format"] == "float32le"
        samples = load_audio(wav, hello["sample_rate"])
        partials = []
        for chunk in np.array_split(samples, 5):
            ws.send_bytes(chunk.astype("<f4").tobytes())
            partials.append(ws.receive_json())
        ws.send_text("end")
        final = ws.receive_json()["final"]
    assert all("partial" in p for p in partials)
    assert partials[-1]["seconds"] == pytest.approx(len(samples) / hello["sample_rate"])
    assert final["label"] == want["label"]
    for label, p in want["probabilities"].items():
        assert final["probabilities"][label] == pytest.approx(p, abs=2e-4)


def test_stream_errors_close_the_socket_with_a_message(client, app_of):
    from fastapi.testclient import TestClient

    with client.websocket_connect("/v1/sentiment/predict/stream") as ws:
        assert "speech run" in ws.receive_json()["error"]
    with client.websocket_connect("/v1/spoken-words/predict/stream") as ws:
        ws.receive_json()
        ws.send_bytes(b"abc")  # not whole float32 samples
        assert "float32" in ws.receive_json()["error"]
    with TestClient(app_of(token="t0k")) as c:
        with c.websocket_connect("/v1/spoken-words/predict/stream") as ws:
            assert "token" in ws.receive_json()["error"]
        with c.websocket_connect("/v1/spoken-words/predict/stream?token=t0k") as ws:
            assert ws.receive_json()["ready"]
