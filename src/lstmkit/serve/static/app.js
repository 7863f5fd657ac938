// The web inspector of `lstmkit serve`: plain JavaScript, no build step, nothing fetched but
// this server's own JSON endpoints (/v1/runs, /v1/RUN/inspect[/audio], /v1/RUN/generate).
"use strict";

const $ = (id) => document.getElementById(id);
let runs = [];

function headers(extra) {
  const h = Object.assign({}, extra || {});
  const token = $("token").value.trim();
  if (token) h["Authorization"] = "Bearer " + token;
  return h;
}

async function call(path, options) {
  const r = await fetch(path, Object.assign({}, options, { headers: headers(options && options.headers) }));
  if (r.status === 401 || r.status === 403) $("token-box").hidden = false;
  if (!r.ok) {
    let msg = r.status + " " + r.statusText;
    try { msg = (await r.json()).error || msg; } catch (e) { /* not JSON */ }
    throw new Error(msg);
  }
  return r;
}

function showError(e) {
  $("error").textContent = e ? String(e.message || e) : "";
  $("error").hidden = !e;
}

function current() {
  return runs.find((r) => r.name === $("run").value);
}

function chooseRun() {
  const run = current();
  if (!run) return;
  const audio = run.inputs === "audio";
  $("text-input").hidden = audio;
  $("audio-input").hidden = !audio;
  $("generate").hidden = !run.verbs.includes("generate");
  $("run-info").textContent = run.task + " · step " + run.step + " · sha256 " + run.checksum.slice(0, 12);
  $("run-info").title = run.path + "\nsha256 " + run.checksum + "\nlstmkit " + run.version;
  if (run.task === "lm" && $("text").value.startsWith("a gripping")) $("text").value = "the ";
}

async function loadRuns() {
  try {
    const r = await call("/v1/runs");
    runs = (await r.json()).runs;
    showError(null);
  } catch (e) {
    showError(e);
    return;
  }
  const sel = $("run");
  sel.textContent = "";
  for (const run of runs) {
    if (!run.verbs.includes("inspect")) continue;
    const o = document.createElement("option");
    o.value = run.name;
    o.textContent = run.name + " (" + run.task + ")";
    sel.appendChild(o);
  }
  chooseRun();
}

// colours: gates in [0, 1] from pale to blue; signed values (c, shares) red below 0, green above
function mix(a, b, t) {
  const pa = a.match(/\w\w/g).map((x) => parseInt(x, 16));
  const pb = b.match(/\w\w/g).map((x) => parseInt(x, 16));
  return "rgb(" + pa.map((v, k) => Math.round(v + (pb[k] - v) * t)).join(",") + ")";
}
function unitColor(v) { return mix("f4f6fb", "1f4e9c", Math.max(0, Math.min(1, v))); }
function signedColor(v, scale) {
  const t = Math.tanh(Math.abs(v) / (scale || 1));
  return mix("f4f6fb", v < 0 ? "c0392b" : "1e7d46", t);
}

function cell(value, color, title, attrs) {
  const td = document.createElement("td");
  td.className = "cell";
  td.style.background = color;
  td.title = title;
  for (const [k, v] of Object.entries(attrs)) td.dataset[k] = v;
  return td;
}

function row(label, cls, span) {
  const tr = document.createElement("tr");
  if (cls) tr.className = cls;
  const th = document.createElement("th");
  th.textContent = label;
  if (span) th.colSpan = span;
  tr.appendChild(th);
  return tr;
}

function drawTrace(t) {
  $("prediction-label").textContent = t.prediction.label;
  const probs = $("probabilities");
  probs.textContent = "";
  for (const [label, p] of Object.entries(t.prediction.probabilities)) {
    const div = document.createElement("div");
    div.className = "prob";
    const name = document.createElement("span");
    name.textContent = label;
    const track = document.createElement("span");
    track.className = "track";
    const bar = document.createElement("span");
    bar.className = "bar";
    bar.style.display = "block";
    bar.style.width = (100 * p).toFixed(1) + "%";
    track.appendChild(bar);
    const num = document.createElement("span");
    num.textContent = (100 * p).toFixed(1) + "%";
    div.append(name, track, num);
    probs.appendChild(div);
  }
  $("ranked-by").textContent = "layer " + t.layer + "; units ranked by " + t.ranked_by;
  const table = $("gates");
  table.textContent = "";
  const head = document.createElement("thead");
  const hr = row(t.kind === "frames" ? "frame" : "token", "", 2);
  t.steps.forEach((s, k) => {
    const th = document.createElement("th");
    th.textContent = t.kind === "frames" ? (k % 10 === 0 ? s : "") : s;
    th.title = "step " + k + ": " + s;
    hr.appendChild(th);
  });
  head.appendChild(hr);
  table.appendChild(head);
  const body = document.createElement("tbody");
  const scale = (xs) => Math.max(1e-6, ...xs.map(Math.abs));
  if (t.shares) {
    const tr = row("share of the score", "summary", 2);
    const s = scale(t.shares);
    t.shares.forEach((v, k) =>
      tr.appendChild(cell(v, signedColor(v, s / 2), t.steps[k] + ": share " + v.toFixed(4),
        { row: "share", step: k, value: v })));
    body.appendChild(tr);
  }
  if (t.attention) {
    const tr = row("attention", "summary", 2);
    const s = scale(t.attention);
    t.attention.forEach((v, k) =>
      tr.appendChild(cell(v, unitColor(v / s), t.steps[k] + ": attention " + v.toFixed(4),
        { row: "attention", step: k, value: v })));
    body.appendChild(tr);
  }
  for (const u of t.units) {
    ["i", "f", "o", "c"].forEach((g, n) => {
      const tr = document.createElement("tr");
      if (n === 0) {
        tr.className = "unit-first";
        const th = document.createElement("th");
        th.className = "unit";
        th.rowSpan = 4;
        th.textContent = "unit " + u.name;
        const score = document.createElement("small");
        score.textContent = (u.score >= 0 ? " +" : " ") + u.score.toFixed(3);
        th.appendChild(score);
        th.title = "ranked by " + t.ranked_by + ": " + u.score.toFixed(4);
        tr.appendChild(th);
      }
      const gth = document.createElement("th");
      gth.textContent = g;
      tr.appendChild(gth);
      const cs = g === "c" ? scale(u.c) : 1;
      u[g].forEach((v, k) =>
        tr.appendChild(cell(v, g === "c" ? signedColor(v, cs / 1.5) : unitColor(v),
          "unit " + u.name + ", " + g + " at " + t.steps[k] + " (step " + k + "): " + v.toFixed(4),
          { unit: u.unit, gate: g, step: k, value: v })));
      body.appendChild(tr);
    });
  }
  table.appendChild(body);
  $("cut").hidden = !t.cut;
  $("cut").textContent = t.cut ? t.cut + " more steps are not shown" : "";
  $("result").hidden = false;
}

async function inspect(ev) {
  ev.preventDefault();
  const run = current();
  if (!run) return;
  $("submit").disabled = true;
  try {
    let r;
    if (run.inputs === "audio") {
      const f = $("audio").files[0];
      if (!f) throw new Error("choose a recording first");
      const form = new FormData();
      form.append("file", f);
      r = await call("/v1/" + encodeURIComponent(run.name) + "/inspect/audio", { method: "POST", body: form });
    } else {
      r = await call("/v1/" + encodeURIComponent(run.name) + "/inspect", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ text: $("text").value }),
      });
    }
    $("generated").hidden = true;
    drawTrace(await r.json());
    showError(null);
  } catch (e) {
    showError(e);
  } finally {
    $("submit").disabled = false;
  }
}

// the streamed tokens of /generate (server-sent events over a POST: read with fetch)
async function generate() {
  const run = current();
  const out = $("generated");
  out.textContent = "";
  out.hidden = false;
  $("result").hidden = false;
  try {
    const r = await call("/v1/" + encodeURIComponent(run.name) + "/generate", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ prompt: $("text").value, length: 200, temperature: 0.8 }),
    });
    const reader = r.body.getReader();
    const dec = new TextDecoder();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += dec.decode(value, { stream: true });
      let k;
      while ((k = buf.indexOf("\n\n")) >= 0) {
        const ev = buf.slice(0, k);
        buf = buf.slice(k + 2);
        const data = ev.split("\n").find((l) => l.startsWith("data: "));
        if (data && !ev.startsWith("event: end")) out.textContent += JSON.parse(data.slice(6)).piece;
      }
    }
    showError(null);
  } catch (e) {
    showError(e);
  }
}

$("run").addEventListener("change", chooseRun);
$("form").addEventListener("submit", inspect);
$("generate").addEventListener("click", generate);
$("token").addEventListener("change", loadRuns);
loadRuns();
