"""The one page ``avatar-cam serve`` hands a browser (inline: nothing to package).

Video mode: a receive-only video transceiver; the avatar plays in a <video>. Landmark
mode: an unordered, no-retransmit data channel of codec packets, decoded in the page
(the same format as ``codec``, basis from ``/basis.bin``) and drawn as the landmark
sketch; a browser has no renderer for the sender's face yet, and it shows the newest
packet without the Python receiver's jitter buffer.

Both modes carry a voice both ways: the page asks for the microphone (a refusal is said on
the page and the call goes on, listening only) and plays the avatar's voice in an
<audio> element; its ``getStats()`` audio counters are reported with the rest.

Live stats (fps, bitrate, latency) come from ``getStats()``; latency is the sender's
pipeline latency (capture to track, sent on the "stats" channel) plus half the round
trip, the jitter buffer and the decode time the browser reports. Each second the page
also POSTs its numbers to ``/stats``, which the server logs and tests read.
"""

from __future__ import annotations

import json
from typing import Any

from .. import mesh, raster

PAGE = r"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>avatar-cam</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,"><!-- no favicon request: every request needs the invitation -->
<style>
body { font: 15px system-ui, sans-serif; background: #111; color: #ddd; margin: 1.5em; }
video, canvas { background: #000; max-width: 100%; display: block; }
#stats { font-family: ui-monospace, monospace; white-space: pre; margin-top: .8em; }
.error { color: #f66; }
</style></head><body>
<h1>avatar-cam</h1>
<video id="video" autoplay playsinline muted></video>
<canvas id="sketch" width="480" height="480" hidden></canvas>
<audio id="voice" autoplay></audio>
<div id="mic"></div>
<div id="stats">connecting...</div>
<script>
"use strict";
const CONFIG = __CONFIG__;
const $ = (id) => document.getElementById(id);
const video = $("video"), canvas = $("sketch"), statsBox = $("stats");
const reportId = Math.random().toString(36).slice(2);
// The invitation this page was opened with goes along with every request it makes.
const INVITED = {"X-Avatar-Cam-Invite": new URLSearchParams(location.search).get("invite") || ""};
let serverStats = {}, last = null, lm = {packets: 0, bytes: 0, decoded: 0, bad: 0};
let micState = "asking";

async function openMic() {
  const say = (text, bad) => {
    $("mic").textContent = text; $("mic").className = bad ? "error" : "";
  };
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    micState = "unavailable";
    say("This browser gives no microphone here (it needs https or localhost): " +
        "you hear the avatar, it does not hear you.", true);
    return null;
  }
  try {
    const stream = await navigator.mediaDevices.getUserMedia({audio: true, video: false});
    micState = "on"; say("Microphone on: the avatar hears you.", false);
    return stream;
  } catch (e) {
    micState = e.name === "NotAllowedError" ? "refused" : "failed";
    say(micState === "refused"
      ? "Microphone permission refused: you hear the avatar, it does not hear you. " +
        "Allow the microphone for this page and reload to talk."
      : `No microphone (${e.name}: ${e.message}): ` +
        "you hear the avatar, it does not hear you.", true);
    return null;
  }
}

async function waitIce(pc) {
  if (pc.iceGatheringState === "complete") return;
  await new Promise((done) => {
    const check = () => { if (pc.iceGatheringState === "complete") done(); };
    pc.addEventListener("icegatheringstatechange", check);
    setTimeout(done, 3000);
  });
}

async function start() {
  const pc = new RTCPeerConnection({iceServers: []});
  const stats = pc.createDataChannel("stats");
  stats.onmessage = (e) => { try { serverStats = JSON.parse(e.data); } catch (_) {} };
  const mic = await openMic();
  if (mic) pc.addTransceiver(mic.getAudioTracks()[0], {direction: "sendrecv", streams: [mic]});
  else pc.addTransceiver("audio", {direction: "recvonly"});
  pc.ontrack = (e) => {
    if (e.track.kind === "audio") $("voice").srcObject = new MediaStream([e.track]);
    else video.srcObject = new MediaStream([e.track]);
  };
  if (CONFIG.mode === "video") {
    pc.addTransceiver("video", {direction: "recvonly"});
  } else {
    video.hidden = true; canvas.hidden = false;
    await loadBasis();
    const ch = pc.createDataChannel("landmarks", {ordered: false, maxRetransmits: 0});
    ch.binaryType = "arraybuffer";
    ch.onmessage = (e) => onPacket(new Uint8Array(e.data));
    requestAnimationFrame(draw);
  }
  await pc.setLocalDescription(await pc.createOffer());
  await waitIce(pc);
  const codec = new URLSearchParams(location.search).get("codec") || "";
  const resp = await fetch("offer", {method: "POST",
    headers: {"content-type": "application/json", ...INVITED},
    body: JSON.stringify({sdp: pc.localDescription.sdp, type: "offer", codec})});
  const answer = await resp.json();
  if (!resp.ok) throw new Error([answer.error || resp.statusText, answer.fix].filter(Boolean)
                                .join(" -- "));
  await pc.setRemoteDescription(answer);
  setInterval(() => report(pc), 1000);
}

async function report(pc) {
  const out = {id: reportId, mode: CONFIG.mode, videoWidth: video.videoWidth,
               videoHeight: video.videoHeight, state: pc.connectionState};
  let rtt = 0;
  const report = await pc.getStats();
  report.forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "video") {
      out.framesDecoded = s.framesDecoded || 0;
      out.fps = s.framesPerSecond || 0;
      out.bytes = s.bytesReceived || 0;
      const codec = s.codecId && report.get(s.codecId);
      out.codec = codec ? codec.mimeType : "";
      const emitted = s.jitterBufferEmittedCount || 0;
      out.jitterMs = emitted ? 1000 * s.jitterBufferDelay / emitted : 0;
      out.decodeMs = s.framesDecoded ? 1000 * s.totalDecodeTime / s.framesDecoded : 0;
    }
    if (s.type === "inbound-rtp" && s.kind === "audio") {
      out.audioPackets = s.packetsReceived || 0;
      out.audioSamples = s.totalSamplesReceived || 0;
      out.audioEnergy = s.totalAudioEnergy || 0;
    }
    if (s.type === "outbound-rtp" && s.kind === "audio") out.audioSent = s.packetsSent || 0;
    if (s.type === "candidate-pair" && s.nominated && s.currentRoundTripTime !== undefined) {
      rtt = 1000 * s.currentRoundTripTime;
    }
  });
  if (CONFIG.mode !== "video") {
    Object.assign(out, {bytes: lm.bytes, packets: lm.packets, decoded: lm.decoded,
                        malformed: lm.bad});
    if (latest) {  // lets a test check this decoder against the Python one
      const p = synthesize(latest);
      Object.assign(out, {lastSeq: latestSeq, q: latest, probe: [p[2], p[3], p[304], p[305]]});
    }
  }
  const now = performance.now();
  out.kbps = last ? 8 * (out.bytes - last.bytes) / (now - last.t) : 0;
  if (last && CONFIG.mode !== "video") {
    out.fps = 1000 * (lm.decoded - last.decoded) / (now - last.t);
  }
  last = {t: now, bytes: out.bytes, decoded: lm.decoded};
  out.rttMs = rtt;
  out.mic = micState;
  const sender = serverStats.pipeline_latency_ms || 0;
  const jit = out.jitterMs || 0, dec = out.decodeMs || 0;
  out.latencyMs = sender + rtt / 2 + jit + dec;
  const ms = (v) => v.toFixed(0);
  statsBox.textContent =
    `${CONFIG.mode}  ${(out.fps || 0).toFixed(1)} fps  ${out.kbps.toFixed(1)} kbit/s  ` +
    `latency ~${ms(out.latencyMs)} ms (sender ${ms(sender)}, rtt/2 ${ms(rtt / 2)}, ` +
    `jitter buffer ${ms(jit)}, decode ${ms(dec)})  ` +
    (CONFIG.mode === "video"
      ? `${out.videoWidth}x${out.videoHeight}, ${out.framesDecoded || 0} frames`
      : `${lm.decoded}/${lm.packets} packets decoded`) +
    `  voice in ${out.audioPackets || 0} packets, out ${out.audioSent || 0}`;
  fetch("stats", {method: "POST", headers: {"content-type": "application/json", ...INVITED},
                  body: JSON.stringify(out)});
}

// ---- landmark-only: the codec of avatar_cam/webrtc/codec.py, version 1 ----
let B = null, known = new Map(), latest = null, latestSeq = -1;

async function loadBasis() {
  const resp = await fetch("basis.bin", {headers: INVITED});
  if (!resp.ok) throw new Error(`the landmark basis: ${resp.status}`);
  const buf = await resp.arrayBuffer();
  const u8 = new Uint8Array(buf);
  const hlen = new DataView(buf).getUint32(4, true);
  const meta = JSON.parse(new TextDecoder().decode(u8.subarray(8, 8 + hlen)));
  const f = new Float32Array(buf.slice(8 + hlen));
  const D = 3 * 478;
  B = {meta, neutral: f.subarray(0, D), mean: f.subarray(D, 2 * D), comps: f.subarray(2 * D)};
  const p = (i, a) => B.neutral[3 * i + a];
  B.iod = Math.hypot(p(33, 0) - p(263, 0), p(33, 1) - p(263, 1));
  B.c = [0, 1, 2].map((a) => CONFIG.rigid.reduce((s, i) => s + p(i, a), 0) / CONFIG.rigid.length);
}

function reader(u8, start) {
  let pos = 0; const n = 8 * (u8.length - start);
  const bit = () => { if (pos >= n) throw "truncated"; const i = start + (pos >> 3);
    const b = (u8[i] >> (7 - (pos & 7))) & 1; pos++; return b; };
  const bits = (k) => { let v = 0; for (let i = 0; i < k; i++) v = 2 * v + bit(); return v; };
  const eg = (k) => { let z = 0; while (bit() === 0) { if (++z > 24) throw "long"; }
    const u = 2 ** (z + k) + bits(z + k) - 2 ** k; return u % 2 === 0 ? u / 2 : -(u + 1) / 2; };
  return {eg};
}

function onPacket(u8) {
  lm.packets++; lm.bytes += u8.length;
  try {
    if (u8.length < 7 || u8.length > 96) throw "length";
    if ((u8[0] & 0xf0) !== 0xa0 || (u8[0] & 0x0f) !== 1) throw "version";
    const flags = u8[1];
    if (flags & ~7 || u8[2] !== CONFIG.basis_tag) throw "flags";
    const seq = (u8[3] << 8) | u8[4], r = reader(u8, 7), key = flags & 1;
    const vals = (key ? B.meta.order_key : B.meta.order_delta).map((k) => r.eg(k));
    const prev = flags & 4 ? B.meta.order_delta.map((k) => r.eg(k)) : null;
    const add = (a, b) => a.map((v, i) => v + b[i]);
    let q = null;
    if (key) q = vals;
    else if (known.has((seq - 1) & 0xffff)) q = add(known.get((seq - 1) & 0xffff), vals);
    else if (prev && known.has((seq - 2) & 0xffff)) {
      const q1 = add(known.get((seq - 2) & 0xffff), prev);
      known.set((seq - 1) & 0xffff, q1); q = add(q1, vals);
    }
    if (q === null) return;
    known.set(seq, q); known.delete((seq - 64) & 0xffff);
    latest = q; latestSeq = seq; lm.decoded++;
  } catch (_) { lm.bad++; }
}

function synthesize(q) {
  const m = B.meta, k = m.k, D = 3 * 478, x = q.map((v, i) => v * m.steps[i]);
  const w = [x[0], x[1], x[2]], th = Math.hypot(...w), s = Math.exp(x[3]);
  let R = [[1, 0, 0], [0, 1, 0], [0, 0, 1]];
  if (th > 1e-12) {
    const [a, b, c] = w.map((v) => v / th), co = Math.cos(th), si = Math.sin(th), t = 1 - co;
    R = [[co + t * a * a, t * a * b - si * c, t * a * c + si * b],
         [t * a * b + si * c, co + t * b * b, t * b * c - si * a],
         [t * a * c - si * b, t * b * c + si * a, co + t * c * c]];
  }
  const out = new Float32Array(2 * 478);
  for (let i = 0; i < 478; i++) {
    const d = [0, 1, 2].map((a) => {
      let v = B.mean[3 * i + a];
      for (let j = 0; j < k; j++) v += x[7 + j] * B.comps[j * D + 3 * i + a];
      return B.neutral[3 * i + a] + v * B.iod - B.c[a];
    });
    for (let a = 0; a < 2; a++) {
      const rotated = R[a][0] * d[0] + R[a][1] * d[1] + R[a][2] * d[2];
      out[2 * i + a] = s * rotated + B.c[a] + x[4 + a] * B.iod;
    }
  }
  return out;
}

function draw() {
  requestAnimationFrame(draw);
  if (!latest) return;
  const g = canvas.getContext("2d"), p = synthesize(latest);
  const sx = canvas.width / B.meta.size[0], sy = canvas.height / B.meta.size[1];
  g.fillStyle = "#000"; g.fillRect(0, 0, canvas.width, canvas.height);
  g.lineWidth = 2;
  for (const [lines, bgr] of CONFIG.parts) {
    g.strokeStyle = `rgb(${bgr[2]},${bgr[1]},${bgr[0]})`;
    for (const line of lines) {
      g.beginPath();
      line.forEach((i, n) => (n ? g.lineTo : g.moveTo).call(g, p[2 * i] * sx, p[2 * i + 1] * sy));
      g.stroke();
    }
  }
}

start().catch((e) => {
  statsBox.textContent = "error: " + e.message;
  statsBox.className = "error";
});
</script></body></html>
"""


def render_page(mode: str, basis_tag: int | None) -> str:
    """The page for ``mode`` (video | landmarks); ``basis_tag`` for landmark packets."""
    config: dict[str, Any] = {
        "mode": mode,
        "basis_tag": basis_tag,
        "rigid": list(mesh.RIGID),
        "parts": [[[list(line) for line in lines], list(colour)]
                  for _, lines, colour in raster.PARTS],
    }
    # "</" cannot occur in this JSON (numbers and fixed words), so it cannot end the script.
    return PAGE.replace("__CONFIG__", json.dumps(config))
