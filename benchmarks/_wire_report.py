"""The wire benchmark's README section (``summary``) and its full tables (``detail``),
made from wire.json alone."""

from __future__ import annotations

from typing import Any

from _report import markdown_table, met, section


def summary(data: dict[str, Any]) -> str:
    """Issue 18's two targets: each against one packet per frame (the anchor) and the
    option chosen."""
    runs, t = data["runs"], data["targets"]
    lm = [r for r in runs if not r["two_way"] and not r["voice"] and r["loss"] == 0]
    call = [r for r in runs if r["two_way"] and r["loss"] == 0]
    picks = [("landmarks alone, anchor", next((r for r in lm if r["frames_per_message"] == 1),
                                              None), t["landmarks_kbps"]),
             ("landmarks alone, chosen", next((r for r in lm if r["frames_per_message"]
                                               == data["chosen_frames"]), None),
              t["landmarks_kbps"]),
             ("whole call with voice, anchor", next((r for r in call
                                                     if r["frames_per_message"] == 1), None),
              t["call_kbps_each_way"]),
             ("whole call with voice, chosen", next((r for r in call
                                                     if r["option"] == data["chosen_call"]),
                                                    None), t["call_kbps_each_way"])]
    base = {(r["voice"], r["two_way"]): r for r in runs
            if r["frames_per_message"] == 1 and r["loss"] == 0}
    rows = []
    for what, r, target in picks:
        if r is None:
            continue
        kbps = r["wire"]["a->b"]["kbps"]
        b = base.get((r["voice"], r["two_way"]))
        rows.append([what, r["option"], f"<= {target:g}", f"{kbps:.1f}",
                     "" if "anchor" in what else met(kbps <= target),
                     f"{r['latency_ms']['mean']:.0f} / {r['latency_ms']['p95']:.0f}",
                     f"{r['latency_ms']['mean'] - b['latency_ms']['mean']:+.0f} / "
                     f"{r['latency_ms']['p95'] - b['latency_ms']['p95']:+.0f}"
                     if b and b is not r else "",
                     f"{100 * r['receiver_shown'].get('ok', 0.0):.0f}%"])
    table = markdown_table(["", "option", "target kbit/s", "wire kbit/s (A->B)", "target met",
                            "latency mean / p95 ms", "vs 1 frame/msg", "shown from arrived"],
                           rows)
    return section("wire", data, "Real bytes on the wire (IP, UDP, DTLS, SCTP, STUN) of "
                   "landmark-only calls between two avatar-cam peers over a counting relay, "
                   "per frames-per-message bundling, voice and loss; every run, and the "
                   "computed (no network) rows, in the JSON.", table)


def detail(data: dict[str, Any]) -> str:
    """Every run and the computed rows, with what they mean (printed by a measuring run)."""
    runs = data["runs"]
    base = {(r["voice"], r["loss"], r["two_way"]): r for r in runs
            if r["frames_per_message"] == 1 and r.get("opus_kbps") in (None, data["opus_kbps"])}
    rows = []
    for r in runs:
        w = r["wire"]
        b = base.get((r["voice"], r["loss"], r["two_way"]))
        extra = r["latency_ms"]["mean"] - b["latency_ms"]["mean"] if b else float("nan")
        extra95 = r["latency_ms"]["p95"] - b["latency_ms"]["p95"] if b else float("nan")
        rows.append([("two-way: " if r["two_way"] else "") + r["option"],
                     f"{w['a->b']['kbps']:.1f}", f"{w['b->a']['kbps']:.1f}",
                     f"{w['a->b']['packets_per_s']:.0f} / {w['b->a']['packets_per_s']:.0f}",
                     f"{r['overhead_bytes_per_message']:.0f}"
                     if "overhead_bytes_per_message" in r else "",
                     " / ".join(f"{x:.0f}" for x in r["sender_fps"]),
                     f"{r['latency_ms']['mean']:.0f} / {r['latency_ms']['p95']:.0f}",
                     f"{extra:+.0f} / {extra95:+.0f}" if b else "",
                     f"{100 * r['receiver_shown'].get('ok', 0.0):.0f}%"])
    head = ["option", "A->B kbit/s (wire)", "B->A kbit/s (wire)", "datagrams/s A->B / B->A",
            "overhead B/msg", "sender fps", "latency mean / p95 ms", "vs 1 frame/msg ms",
            "shown ok"]
    m = data["machine"]
    lm_target, call_target = (data["targets"]["landmarks_kbps"],
                              data["targets"]["call_kbps_each_way"])
    driver = "tracked live" if data["track"] else \
        "the demo footage's MediaPipe landmarks, replayed"
    notes = [
        "",
        f"Real bytes on the wire (IPv4 + UDP + DTLS + SCTP, STUN included) counted by a "
        f"relay on 127.0.0.1 between two avatar-cam peers, {data['seconds']:.0f} s a run "
        f"after {data['warmup_s']:.0f} s; the live landmark pipeline on the demo driver "
        f"({driver}), voice = "
        f"{data['voice_source']} as the microphone, Opus {data['opus_kbps']} kbit/s. One-way rows: "
        "A sends, B->A is what B answers (SCTP SACKs, STUN); two-way rows: both send, each "
        "way. Latency: capture -> arrival in the receiver's decoder, of the frames that "
        "arrived themselves (LandmarkReceiver.arrivals leaves out those rebuilt from "
        "redundancy). Overhead: wire bytes of A's SCTP "
        "datagrams less the messages' payload, per message. 'vs 1 frame/msg': latency "
        "mean / p95 against the one-packet-per-frame run with the same voice, loss and "
        "direction(s) (the mean: a bundle's frames wait 0..n-1 periods, so the median "
        "jumps between those steps). Shown ok: the receiver's frames played from a frame "
        "that had arrived (not extrapolated, held or concealed), over the window.",
        f"Chosen: {data['chosen_frames']} frames per message (the fewest whose landmarks "
        f"alone are <= {lm_target:.0f} kbit/s on the wire, A->B); for a whole "
        f"call: {data['chosen_call'] or 'none of the two-way options fits'}. Targets: landmarks "
        f"<= {lm_target:.0f} kbit/s, a whole call with voice <= "
        f"{call_target:.0f} kbit/s each way. Receiver quality at 5 % loss: "
        "bandwidth.py.",
        f"Machine: {m['cpu']}, {m['cores']} cores (shared; load {m['load_average_1min']}), "
        "no GPU.",
    ]
    c = data["computed"]
    crow = [[f"{r['frames_per_message']} frame(s)/msg, RED {r['red']}", f"{r['message_bytes']:.1f}",
             f"{r['payload_kbps']:.1f}", f"{r['wire_kbps_computed']:.1f}",
             f"{r['error_iod']:.4f}", f"{r['error_iod_at_loss']:.4f}",
             f"{100 * r['frames_lost_at_loss']:.1f}%",
             f"{r['error_iod_at_loss_delay_raised']:.4f} ({r['playout_delay_ms_raised']:.0f} ms)"]
            for r in c["rows"]]
    computed = markdown_table(
        ["computed (no network)", "message bytes", "payload kbit/s",
         f"wire kbit/s (+{c['overhead_bytes_per_message']:.0f} B/msg measured)",
         "landmark error (IOD)", f"error at {c['loss']:.0%} msg loss",
         "frames lost for good", "error at loss, least playout delay raised"], crow)
    return (markdown_table(head, rows) + "\n" + "\n".join(notes) + "\n\n" + computed
            + "\n\nComputed rows: the same tracked landmarks through the codec, "
            "``Bundler`` and jitter buffer, each message lost at random (seeded); "
            "'RED first packet only' is a codec change not made (sizes and errors as it "
            "would give them); 'least playout delay raised': PlayoutConfig(delay_ms=n "
            "periods + 20 ms) at the receiver, which today starts at 50 ms and, for bundles, "
            "extrapolates between messages. Error against the sender instant shown.")
