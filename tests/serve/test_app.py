"""The JSON endpoints of ``lstmkit serve`` (FastAPI's TestClient): answers against the Python
API and hand computations, the errors, the limits, the token and the OpenAPI schema."""

from __future__ import annotations

import hashlib
import json
import logging

import pytest
import torch

import lstmkit
from tests.serve.conftest import CKPT, tone


@pytest.fixture(scope="module")
def runs():
    return {name: lstmkit.load(CKPT / name, "cpu") for name in ("sentiment", "lm", "translation")}


def test_runs_name_task_version_and_the_weight_files_sha256(client):
    body = client.get("/v1/runs").json()
    assert [r["name"] for r in body["runs"]] == ["sentiment", "lm", "spoken-words", "translation"]
    for r in body["runs"]:
        digest = hashlib.sha256((CKPT / r["name"] / "model.safetensors").read_bytes()).hexdigest()
        meta = json.loads((CKPT / r["name"] / "model.json").read_text())
        assert r["checksum"] == digest and r["task"] == meta["task"]
        assert r["version"] == meta["lstmkit_version"]
    assert client.get("/health").json() == {"status": "ok", "runs": 4}


def test_predict_gives_what_the_python_api_gives(client, runs):
    texts = ["good fine movie", "bad awful film", "a movie"]
    r = client.post("/v1/sentiment/predict", json={"texts": texts})
    assert r.status_code == 200
    assert r.json()["results"] == runs["sentiment"].predict(texts)
    r = client.post("/v1/lm/predict", json={"texts": ["the cat sat"]})
    want = runs["lm"].predict(["the cat sat"])[0]
    assert r.json()["results"][0]["loss"] == pytest.approx(want["loss"], rel=1e-6)


def test_predict_audio_uploads(client, wav, served):
    s = served["spoken-words"]
    with open(wav, "rb") as f:
        r = client.post("/v1/spoken-words/predict/audio", files=[("files", ("mine.wav", f))])
    assert r.status_code == 200, r.text
    (got,) = r.json()["results"]
    with torch.no_grad():
        want = s.task.predict(s.model, [str(wav)], s.device)[0]
    assert got["input"] == "mine.wav"  # the upload's own name, not the server's temp path
    assert got["label"] == want["label"] and got["probabilities"] == want["probabilities"]


def test_generate_streams_the_tokens_of_run_generate(client, runs):
    body = {"prompt": "the ", "length": 12, "seed": 3, "temperature": 0.9}
    with client.stream("POST", "/v1/lm/generate", json=body) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        events = [e for e in r.read().decode().split("\n\n") if e]
    assert events[-1].startswith("event: end")
    pieces = [json.loads(e.removeprefix("data: "))["piece"] for e in events[:-1]]
    want = runs["lm"].generate(
        "the ", 12, seed=3, temperature=0.9, echo_prompt=False, on_unknown="unk", stream=True
    )
    assert pieces == list(want) and len(pieces) == 12
    whole = client.post("/v1/lm/generate", json={**body, "stream": False}).json()["text"]
    assert whole == "".join(pieces)


def test_translate_gives_what_the_python_api_gives(client, runs):
    r = client.post("/v1/translation/translate", json={"sentences": ["ein mann", ""]})
    assert r.json()["translations"] == runs["translation"].translate(["ein mann", ""])


def test_inspect_sentiment_shares_add_up_to_the_score(client, served):
    """The shares of the tokens add up to the predicted class's logit less the mean logit,
    less the bias part (the exact split of token_contributions), computed here from the
    model's own logits."""
    s = served["sentiment"]
    t = client.post("/v1/sentiment/inspect", json={"text": "good fine movie"}).json()
    assert t["steps"] == ["good", "fine", "movie"]
    (ids,), _ = s.task.data.encode(["good fine movie"])
    with torch.no_grad():
        z = s.model(torch.tensor([ids]), torch.tensor([len(ids)]))[0]
    cls = int(z.argmax())
    assert t["prediction"]["label"] == s.task.labels[cls]
    b = s.model.head.bias
    score = float(z[cls] - z.mean() - (b[cls] - b.mean()).detach())
    assert sum(t["shares"]) == pytest.approx(score, abs=1e-3)
    assert sum(t["attention"]) == pytest.approx(1, abs=1e-3)
    sizes = [abs(u["score"]) for u in t["units"]]
    assert sizes == sorted(sizes, reverse=True) and len(t["units"]) == 8  # 2 directions x 4
    assert all(len(u[g]) == 3 for u in t["units"] for g in "ifoc")


def test_inspect_lm_gates_are_the_lstm_equations_by_hand(client, served):
    """The i, f, o, c traces of the 1-layer character LM, recomputed step by step from its
    weights: gates = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh (order i|f|g|o), c_t = f c_{t-1} +
    i g, h_t = o tanh(c_t)."""
    s = served["lm"]
    text = "the "
    t = client.post("/v1/lm/inspect", json={"text": text}).json()
    enc, ids = s.model.encoder, s.task.encode_prompt(text, "unk")
    x = s.model.embedding.weight[ids].detach()
    H = enc.hidden_size
    h, c = torch.zeros(H), torch.zeros(H)
    want = {g: [] for g in "ifoc"}
    with torch.no_grad():
        for xt in x:
            gates = enc.weight_ih_l0 @ xt + enc.bias_ih_l0 + enc.weight_hh_l0 @ h + enc.bias_hh_l0
            i, f, g, o = gates.chunk(4)
            i, f, g, o = i.sigmoid(), f.sigmoid(), g.tanh(), o.sigmoid()
            c = f * c + i * g
            h = o * c.tanh()
            for name, v in zip("ifoc", (i, f, o, c), strict=True):
                want[name].append(v.clone())
    assert len(t["units"]) == H
    for u in t["units"]:
        for g in "ifoc":
            hand = [float(v[u["unit"]]) for v in want[g]]
            assert u[g] == pytest.approx(hand, abs=1e-4)
    # ranked by the last h's part of the predicted next token's logit
    w = s.model.decoder.weight.detach()
    logits = s.model.decoder(h.unsqueeze(0)).detach()[0]
    k = int(logits.argmax())
    part = (w[k] - w.mean(0)) * h
    assert t["units"][0]["score"] == pytest.approx(float(part[t["units"][0]["unit"]]), abs=1e-4)
    assert abs(t["units"][0]["score"]) == pytest.approx(float(part.abs().max()), abs=1e-4)


def test_inspect_audio_frames(client, wav):
    with open(wav, "rb") as f:
        r = client.post("/v1/spoken-words/inspect/audio", files={"file": ("t.wav", f)})
    t = r.json()
    assert r.status_code == 200 and t["kind"] == "frames" and t["units"]
    assert all(len(u["c"]) == len(t["steps"]) for u in t["units"])


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "field"),
    [
        ("post", "/v1/nope/predict", {"texts": ["x"]}, 404, None),
        ("post", "/v1/sentiment/generate", {}, 404, None),
        ("post", "/v1/sentiment/predict", {"texts": "good"}, 422, "body.texts"),
        ("post", "/v1/sentiment/predict", {"texts": [1]}, 422, "body.texts.0"),
        ("post", "/v1/sentiment/predict", {"texts": []}, 422, "body.texts"),
        ("post", "/v1/sentiment/predict", {"text": ["x"]}, 422, "body.texts"),
        ("post", "/v1/sentiment/predict", {"texts": ["ok", "x" * 10_001]}, 413, "texts[1]"),
        ("post", "/v1/lm/generate", {"length": -1}, 422, "body.length"),
        ("post", "/v1/lm/generate", {"temperature": 0}, 422, "body.temperature"),
        ("post", "/v1/lm/predict", {"texts": ["a"]}, 400, None),  # 1 token: nothing to score
        ("post", "/v1/spoken-words/predict", {"texts": ["a"]}, 400, "texts"),
        ("post", "/v1/sentiment/inspect", {"text": "  "}, 422, "text"),
    ],
)
def test_bad_requests_are_4xx_json_naming_the_field(client, method, path, body, status, field):
    r = getattr(client, method)(path, json=body)
    assert r.status_code == status, r.text
    err = r.json()
    assert err["error"] and err["field"] == field
    if field:
        assert field in err["error"]


def test_malformed_json_and_bad_uploads(client, tmp_path):
    r = client.post(
        "/v1/sentiment/predict",
        content=b'{"texts": [',
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 422 and r.json()["field"].startswith("body")
    (tmp_path / "x.wav").write_bytes(b"not audio at all")
    with open(tmp_path / "x.wav", "rb") as f:
        r = client.post("/v1/spoken-words/predict/audio", files=[("files", ("x.wav", f))])
    assert r.status_code == 400 and r.json()["field"] == "files[0]"


def test_audio_duration_and_body_size_limits(app_of, tmp_path):
    from fastapi.testclient import TestClient

    long = tone(tmp_path / "long.wav", seconds=3.0)
    with TestClient(app_of(max_audio_seconds=1.0, max_request_bytes=200_000)) as c:
        with open(long, "rb") as f:
            r = c.post("/v1/spoken-words/predict/audio", files=[("files", ("long.wav", f))])
        assert r.status_code == 413 and r.json()["field"] == "files[0]"
        assert "3.0 s" in r.json()["error"]
        r = c.post("/v1/sentiment/predict", json={"texts": ["a " * 150_000]})
        assert r.status_code == 413 and "--max-request-bytes" in r.json()["error"]

        def chunks():  # no Content-Length: counted as it arrives
            for _ in range(50):
                yield b"x" * 10_000

        r = c.post(
            "/v1/sentiment/predict", content=chunks(), headers={"content-type": "application/json"}
        )
        assert r.status_code == 413
        assert c.post("/v1/sentiment/predict", json={"texts": ["good"]}).status_code == 200


def test_internal_error_is_500_with_the_id_of_its_log_line_and_serving_goes_on(
    app_of, served, caplog, monkeypatch
):
    from fastapi.testclient import TestClient

    def broken(items):
        raise RuntimeError("boom")

    with TestClient(app_of(), raise_server_exceptions=False) as c:
        monkeypatch.setattr(served["sentiment"].batcher, "fn", broken)
        with caplog.at_level(logging.ERROR, logger="lstmkit.serve"):
            r = c.post("/v1/sentiment/predict", json={"texts": ["good"]})
        assert r.status_code == 500
        eid = r.json()["id"]
        assert eid and any(eid in rec.getMessage() for rec in caplog.records)
        assert "boom" not in r.text  # the traceback stays in the log
        monkeypatch.undo()
        assert c.post("/v1/sentiment/predict", json={"texts": ["good"]}).status_code == 200


def test_bearer_token_guards_all_but_health_and_the_page(app_of):
    from fastapi.testclient import TestClient

    with TestClient(app_of(token="s3cret")) as c:
        assert c.get("/health").status_code == 200
        assert c.get("/").status_code == 200
        assert c.get("/v1/runs").status_code == 401
        r = c.post(
            "/v1/sentiment/predict", json={"texts": ["a"]}, headers={"Authorization": "Bearer nope"}
        )
        assert r.status_code == 403
        ok = {"Authorization": "Bearer s3cret"}
        assert c.get("/v1/runs", headers=ok).status_code == 200
        assert c.post("/v1/sentiment/predict", json={"texts": ["a"]}, headers=ok).status_code == 200


def test_token_from_the_environment(app_of, monkeypatch):
    from fastapi.testclient import TestClient

    monkeypatch.setenv("LSTMKIT_SERVE_TOKEN", "envtok")
    with TestClient(app_of()) as c:
        assert c.get("/v1/runs").status_code == 401
        assert c.get("/v1/runs", headers={"Authorization": "Bearer envtok"}).status_code == 200


def test_too_many_streams_is_503(app_of):
    from fastapi.testclient import TestClient

    with TestClient(app_of(max_streams=1)) as c:
        with c.stream(
            "POST", "/v1/lm/generate", json={"prompt": "a", "length": 50, "seed": 1}
        ) as first:
            r = c.post("/v1/lm/generate", json={"prompt": "a", "length": 5})
            assert r.status_code == 503 and r.headers["retry-after"] == "1"
            first.read()
        assert c.post("/v1/lm/generate", json={"prompt": "a", "length": 5}).status_code == 200


def _resolve(spec, schema):
    ref = schema.get("$ref")
    if ref:
        node = spec
        for part in ref.removeprefix("#/").split("/"):
            node = node[part]
        return node
    return schema


def test_every_route_of_the_openapi_schema_has_its_request_and_response_schemas(client):
    spec = client.app.openapi()
    paths = spec["paths"]
    assert {
        "/health",
        "/v1/runs",
        "/v1/{run}/predict",
        "/v1/{run}/predict/audio",
        "/v1/{run}/generate",
        "/v1/{run}/translate",
        "/v1/{run}/transcribe",
        "/v1/{run}/inspect",
        "/v1/{run}/inspect/audio",
    } <= set(paths)
    for path, ops in paths.items():
        for method, op in ops.items():
            ok = op["responses"]["200"]["content"]
            schema = _resolve(spec, ok["application/json"]["schema"])
            assert schema.get("properties"), (path, method)
            if method == "post":
                content = op["requestBody"]["content"]
                (kind,) = content
                body = _resolve(spec, content[kind]["schema"])
                assert body.get("properties"), (path, method)
                for code in ("404", "422"):
                    err = op["responses"][code]["content"]["application/json"]["schema"]
                    assert "error" in _resolve(spec, err)["properties"]
    sse = paths["/v1/{run}/generate"]["post"]["responses"]["200"]["content"]
    assert "text/event-stream" in sse
    inspect = _resolve(spec, {"$ref": "#/components/schemas/InspectResponse"})
    assert {"steps", "units", "prediction", "attention"} <= set(inspect["properties"])


def test_no_page_that_loads_scripts_from_a_cdn(client):
    # FastAPI's Swagger and ReDoc pages fetch their JavaScript from cdn.jsdelivr.net
    assert client.get("/docs").status_code == 404 and client.get("/redoc").status_code == 404
    assert client.get("/openapi.json").status_code == 200
    page = client.get("/").text + client.get("/static/app.js").text
    assert "http://" not in page.replace("http://127.0.0.1", "") and "https://" not in page
