#!/usr/bin/env python3
"""BENCHMARKS.md from the raw records of bench/run.sh (one `key=value ...` line per measurement).

Ratios are computed per round (the configurations of one round ran minutes apart on the same machine) and the
median of those per-round ratios is shown with its spread (min..max), so a busy machine skews both sides alike.
The text after the `<!-- analysis -->` line of the existing report (the hand-written reading of the figures) is
kept.
"""
import argparse
import glob
import os
import platform
import statistics
import sys

KINDS = {"ceiling": "(a) ceiling: kernel DNAT+SNAT, no encryption",
         "orig": "(b) original: strongSwan (kernel-libipsec) + iptables",
         "relay": "(c) iotrelay relay, strongSwan as AWS side",
         "both": "(d) iotrelay on both ends (AWS side: gateway mode)",
         "base": "(d) with the base build (BENCH_BASE_SIDECAR) on both ends"}
SUITES = {"gcm": "AES-GCM-128", "cbc": "AES-CBC-128 + HMAC-SHA1"}
MARK = "<!-- analysis -->"


def parse(path):
    recs = []
    with open(path) as f:
        for line in f:
            r = {}
            for kv in line.split():
                if "=" in kv:
                    k, v = kv.split("=", 1)
                    try:
                        r[k] = float(v) if "." in v or v.lstrip("-").isdigit() else v
                    except ValueError:
                        r[k] = v
            if r:
                recs.append(r)
    return recs


def label(cfg):
    kind, _, suite = cfg.partition("-")
    return KINDS.get(kind, kind) + (", " + SUITES.get(suite, suite) if suite else "")


def med(xs):
    return statistics.median(xs) if xs else None


def spread(xs, fmt):
    if not xs:
        return "-"
    if len(xs) == 1:
        return fmt(xs[0])
    return "%s (%s..%s)" % (fmt(med(xs)), fmt(min(xs)), fmt(max(xs)))


def kpps(x):
    return "%.1fk" % (x / 1000.0)


def ratio(x):
    return "%.2fx" % x


def round_ratios(mine, ref):
    """Per round (the keys of both), mine / ref, for the rounds where ref delivered something."""
    return [mine[k] / ref[k] for k in mine if ref.get(k)]


def header(p, first, per_size, sizes):
    """A table's header: the first column, then two columns per payload size (`per_size` formats both with it)."""
    p("| %s | " % first + " | ".join(per_size % (s, s) for s in sizes) + " |")
    p("|---|" + "---|---|" * len(sizes))


def pps_table(p, up, sizes, series, limited=frozenset()):
    """One row per configuration: per size the median packets/s (min..max) of `series(cfg, size)` and the payload
    Mbit/s of that median; `>= ` before both where the sender set the rate (`limited`)."""
    header(p, "configuration", "%d B pps | %d B Mbit/s", sizes)
    for cfg in up:
        cells = []
        for s in sizes:
            xs = series(cfg, s)
            m = med(xs)
            mark = ">= " if (cfg, s) in limited else ""
            cells.append(mark + spread(xs, kpps))
            cells.append(mark + "%.0f" % (m * s * 8 / 1e6) if m else "-")
        p("| %s | %s |" % (label(cfg), " | ".join(cells)))


def cpu_table(p, recs, up, sizes):
    """CPU per delivered datagram: per configuration, size and round the probe that delivered most at <= 1 % loss,
    its CPU time (the whole machine's, and the relay's and the AWS side's processes) over what was received."""
    clk = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    probes = {}  # (cfg, size) -> {round: record}
    for r in recs:
        if r.get("ok") == 1 and isinstance(r.get("cpu_busy"), float) and r.get("received"):
            k, rnd = (r["cfg"], int(r["size"])), int(r["round"])
            if r["received"] > probes.setdefault(k, {}).get(rnd, {}).get("received", 0):
                probes[k][rnd] = r
    if not probes:
        return
    us = lambda r, key: r[key] * 1e6 / clk / r["received"] if isinstance(r.get(key), float) else None
    p("")
    p("## CPU per delivered datagram")
    p("")
    p("The paced probe that delivered most at <= 1 % loss, per round (so almost no work was spent on datagrams "
      "that were dropped): CPU time over the datagrams received, median (min..max) over the rounds. `machine` is "
      "every core's busy time (/proc/stat: sender, receiver, relays, and the kernel's forwarding and softirq work, "
      "plus whatever else runs on the machine); `relay` and `AWS side` are the processes in those namespaces "
      "(iotrelay or charon, all threads). `cores busy` is the machine's busy time per second of sending. Where the "
      "whole machine is the limit, delivered datagrams per second scale with the inverse of the machine's CPU per "
      "datagram, so `ceiling / this` is the most of the ceiling a configuration can reach on any number of cores "
      "that both use fully.")
    p("")
    p("| configuration | size | machine us/datagram | relay us/datagram | AWS side us/datagram | cores busy | "
      "ceiling / this (CPU per datagram) |")
    p("|---|---|---|---|---|---|---|")
    fmt = lambda x: "%.1f" % x
    for cfg in up:
        for s in sizes:
            rounds = probes.get((cfg, s), {})
            if not rounds:
                continue
            cells = []
            for key in ("cpu_busy", "cpu_relay", "cpu_aws1"):
                xs = [v for v in (us(r, key) for r in rounds.values()) if v is not None and v > 0]
                cells.append(spread(xs, fmt))
            cells.append(spread([r["cpu_busy"] / clk / r["secs"] for r in rounds.values() if r.get("secs")], fmt))
            ceil = probes.get(("ceiling", s), {})
            rs = [us(ceil[k], "cpu_busy") / us(r, "cpu_busy") for k, r in rounds.items()
                  if k in ceil and us(r, "cpu_busy") and us(ceil[k], "cpu_busy")]
            cells.append(spread(rs, ratio) if cfg != "ceiling" else "1")
            p("| %s | %d | %s |" % (label(cfg), s, " | ".join(cells)))


def ike_section(p, recs):
    """IKE responder under traffic (bench/ike.sh): per phase the handshakes per second, per second of the
    responder's CPU, and the established traffic's delivered rate and latency beside them."""
    rs = [r for r in recs if r.get("what") == "ike"]
    if not rs:
        return
    p("")
    p("## IKE responder under traffic")
    p("")
    p("The AWS side of (d) (iotrelay as responder, `startupAction: Add`) with one more tunnel, whose peer is "
      "bench/ikeload: initiators of our own engine over real UDP, each handshake IKE_SA_INIT + IKE_AUTH up to the "
      "first CHILD_SA installed (aes128gcm16-prfsha256-ecp256, ESP aes128gcm16), then DELETE, flat out, one in "
      "flight (an IotRelay holds at most two tunnels: the relay's and this one). The engine admits a burst of 8 "
      "Diffie-Hellman computations per tunnel, then one per 500 ms (COOKIE demands, then silence), so the wall "
      "rate is that budget, by design. The responder's cost per IKE SA is the `ike` phase's: handshakes over its "
      "CPU time (all threads) in the phase, and `net` of what it spent idle for as long; beside traffic the "
      "forwarding's CPU varies more than the handshakes take. Traffic: 64 B datagrams paced through tunnel1 to "
      "the device, and an echo ping at 1000/s.")
    p("")
    p("| phase | IKE SAs/s | responder CPU ms | SAs per responder CPU-s | failures | traffic delivered/s (of) | "
      "ping p50 / p99 | handshake-lane drops / cookies / refused |")
    p("|---|---|---|---|---|---|---|---|")
    def cpu_rate(phase):
        r = next((r for r in rs if r.get("phase") == phase), {})
        return r.get("aws_cpu_secs", 0) / r["secs"] if r.get("secs") else 0
    idle = cpu_rate("idle")
    num = lambda r, k: r.get(k) if isinstance(r.get(k), float) else None
    for r in rs:
        ph = r.get("phase")
        if ph == "up":
            if r.get("ok") != 1:
                p("| lab | did not come up (%s) | | | | | | |" % r.get("note", "?"))
            continue
        hs, cpu, secs = num(r, "ike_handshakes"), num(r, "aws_cpu_secs"), num(r, "secs")
        rate = "%.1f" % r["ike_rate"] if num(r, "ike_rate") is not None else "-"
        per_cpu = "%.0f" % (hs / cpu) if hs and cpu and ph == "ike" else "-"
        if hs and cpu and secs and ph == "ike" and cpu > idle * secs:
            per_cpu += " (net %.0f)" % (hs / (cpu - idle * secs))
        cpu_ms = "%.1f" % (cpu * 1e3) if cpu is not None else "-"
        if r.get("ok") == 0:
            rate = "**none** (%s)" % r.get("ike_last_failure", r.get("note", "?"))
        fails = "%d" % r["ike_failures"] if num(r, "ike_failures") is not None else "-"
        traffic = "%.1fk (%.1fk)" % (r["t_delivered"] / 1e3, r["t_rate"] / 1e3) if num(r, "t_delivered") else "-"
        lat = ("%.0f / %.0f us" % (r["lat_p50_us"], r["lat_p99_us"])) if num(r, "lat_p99_us") is not None else "-"
        ctr = "%d / %d / %d" % (r.get("aws_hs_lane_drops", 0), r.get("aws_cookies", 0),
                                r.get("aws_half_open_refused", 0))
        p("| %s | %s | %s | %s | %s | %s | %s | %s |" % (ph, rate, cpu_ms, per_cpu, fails, traffic, lat, ctr))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("results")
    for a in ("date", "load-start", "load-end", "secs", "rounds", "probe-secs", "quick", "commit"):
        ap.add_argument("--" + a, default="")
    ap.add_argument("--out", default="", help="the existing report, whose analysis section is kept")
    a = ap.parse_args()
    recs = parse(a.results)
    up = [r["cfg"] for r in recs if r.get("what") == "up"]
    down = [r["cfg"] for r in recs if r.get("what") == "down"]
    sizes = sorted({int(r["size"]) for r in recs if "size" in r})
    best = {}  # (cfg, size) -> {round: pps}
    peak = {}  # (cfg, size) -> [most delivered by any probe of a round], in round order
    limited = set()  # (cfg, size) where the sender, not the path, set the rate in some round
    sat = {}   # (cfg, size) -> [records]
    lat = {}   # cfg -> [records]
    for r in recs:
        w = r.get("what")
        if w == "best":
            best.setdefault((r["cfg"], int(r["size"])), {})[int(r["round"])] = r["pps"]
            if isinstance(r.get("peak"), float):
                peak.setdefault((r["cfg"], int(r["size"])), []).append(r["peak"])
            if r.get("note") == "sender-limited":
                limited.add((r["cfg"], int(r["size"])))
        elif w == "saturation":
            sat.setdefault((r["cfg"], int(r["size"])), []).append(r)
        elif w == "latency":
            lat.setdefault(r["cfg"], []).append(r)
    out = []
    p = out.append
    p("# Benchmarks")
    p("")
    p("Written by `make bench` (`bench/run.sh`, then `bench/report.py`); everything above the analysis section is "
      "regenerated on every run. Benchmarks report, they never fail a build.")
    p("")
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "?")
    except OSError:
        pass
    p("| | |")
    p("|---|---|")
    p("| command | `%s` |" % ("make bench" + (" (BENCH_QUICK=1: a smoke run)" if a.quick == "1" else "")))
    p("| date | %s, commit %s |" % (a.date, a.commit))
    p("| machine | %s, %d cores, kernel %s |" % (cpu, os.cpu_count() or 0, platform.release()))
    loads = [r["loadavg"] for r in recs if r.get("what") == "load"]
    p("| load average (1, 5, 15 min) | start %s; after each round %s; end %s |"
      % (a.load_start, "; ".join(str(l).replace(",", " ") for l in loads), a.load_end))
    p("| method | %s rounds; in each round every configuration in turn (the order rotates), per payload size one "
      "saturation probe and up to a few paced probes of %s s each; %d s in all |" % (a.rounds, a.probe_secs,
                                                                                   int(float(a.secs or 0))))
    if down:
        p("| did not come up | %s |" % ", ".join(down))
    p("")
    p("The machine is shared (other builds run beside the bench: see the load average): absolute figures move by "
      "large factors between runs; the ratios between configurations of the same round are what count.")
    p("")
    p("## Delivered at <= 1 % loss")
    p("")
    p("UDP payload datagrams per second that reached the device with at most 1 % lost (the highest paced rate "
      "that met it), median over the rounds (min..max), and payload Mbit/s of the median.")
    p("")
    pps_table(p, up, sizes, lambda cfg, s: list(best.get((cfg, s), {}).values()), limited)
    p("")
    if limited:
        p("`>=`: the load generator, not the path, was the limit in at least one round (nothing was lost flat out): "
          "the path can carry more, so a ratio to it is an upper bound.")
        p("")
    if peak:
        p("Most delivered by any probe (at whatever loss), median over the rounds: what the path carries when "
          "pushed, as the issue's first measurement reported it.")
        p("")
        pps_table(p, up, sizes, lambda cfg, s: peak.get((cfg, s), []))
        p("")
    p("## Ratios (per round, median and spread)")
    p("")
    p("Each round's iotrelay figure divided by the same round's ceiling or original (same suite), then the median "
      "(min..max) over the rounds; `-` where the reference delivered nothing in every round.")
    ratios = {}
    peak_by_round = {k: dict(enumerate(v)) for k, v in peak.items()}
    for title, metric in (("at <= 1 % loss", best), ("most delivered", peak_by_round)):
        p("")
        p("%s:" % title)
        p("")
        header(p, "iotrelay configuration", "%d B / ceiling | %d B / original", sizes)
        for cfg in up:
            kind, _, suite = cfg.partition("-")
            if kind not in ("relay", "both", "base"):
                continue
            cells = []
            for s in sizes:
                for base in ("ceiling", "orig-" + suite):
                    mine, ref = metric.get((cfg, s), {}), metric.get((base, s), {})
                    rs = round_ratios(mine, ref)
                    ratios[(title, cfg, s, base.split("-")[0])] = med(rs)
                    cells.append(spread(rs, ratio))
            p("| %s | %s |" % (label(cfg), " | ".join(cells)))
    bases = [c for c in up if c.startswith("base-") and "both-" + c[5:] in up]
    if bases:
        p("")
        p("This build against the base build (BENCH_BASE_SIDECAR), each round's (d) figure divided by the same "
          "round's base figure, median (min..max):")
        p("")
        header(p, "suite", "%d B at <= 1 %% loss | %d B most delivered", sizes)
        for b in bases:
            cells = []
            for s in sizes:
                for metric in (best, peak_by_round):
                    mine, ref = metric.get(("both-" + b[5:], s), {}), metric.get((b, s), {})
                    cells.append(spread(round_ratios(mine, ref), ratio))
            p("| %s | %s |" % (SUITES.get(b[5:], b[5:]), " | ".join(cells)))
    p("")
    p("## Targets")
    p("")
    p("| target | at <= 1 % loss | most delivered |")
    p("|---|---|---|")

    def target(text, cfg, size, base, want):
        cells = []
        for title in ("at <= 1 % loss", "most delivered"):
            got = ratios.get((title, cfg, size, base))
            if got is None:
                cells.append("reference delivered 0" if (cfg, size) in best else "not measured")
            else:
                cells.append("%.2fx %s" % (got, "met" if got >= want else "**not met**"))
        p("| %s | %s |" % (text, " | ".join(cells)))
    target("(d) GCM 1400 B >= 0.8x ceiling", "both-gcm", 1400, "ceiling", 0.8)
    target("(d) GCM 64 B >= 0.5x ceiling", "both-gcm", 64, "ceiling", 0.5)
    target("(d) CBC+SHA1 1400 B >= 0.5x ceiling", "both-cbc", 1400, "ceiling", 0.5)
    target("(d) CBC+SHA1 64 B >= 0.5x ceiling", "both-cbc", 64, "ceiling", 0.5)
    for suite in ("gcm", "cbc"):
        for s in sizes:
            target("(c) %s %d B >= 1.5x original" % (suite.upper(), s), "relay-" + suite, s, "orig", 1.5)
    p("")
    p("## Where the datagrams went at saturation")
    p("")
    p("The sender flat out for one probe (medians over the rounds). `rcvbuf` is the kernel's UDP `RcvbufErrors` "
      "(/proc/net/snmp) in that namespace: datagrams dropped because the socket's receive buffer was full (the "
      "relay's forward socket; the AWS side's UDP 4500 socket). `lane` is the relay's own ingress-lane drop "
      "counter, `ipsec0 drops` what kernel-libipsec's TUN device dropped because charon did not read it in time, "
      "`backlog` the kernel's per-CPU backlog drops (not per namespace).")
    p("")
    cols = [("offered pps", "offered"), ("sent", "sent"), ("relay host rcvbuf", "RcvbufErrors_relay"), ("relay host ipsec0 drops", "tun_drops_relay"),
            ("relay fwd in", "relay_fwd_in"), ("relay lane drops", "relay_lane_drops"),
            ("relay fwd drops", "relay_fwd_drops"), ("relay ESP out", "relay_esp_out"),
            ("AWS side rcvbuf", "RcvbufErrors_aws1"), ("AWS ipsec0 drops", "tun_drops_aws1"), ("AWS ESP in", "aws_esp_in"),
            ("AWS ESP drops", "aws_esp_drops"), ("AWS lane drops", "aws_lane_drops"),
            ("AWS to device", "aws_to_device"), ("device rcvbuf", "RcvbufErrors_vpc"),
            ("backlog", "backlog_drops"), ("received", "received"), ("delivered pps", "delivered")]
    p("| configuration | size | " + " | ".join(c[0] for c in cols) + " |")
    p("|---|---|" + "---|" * len(cols))
    for cfg in up:
        for s in sizes:
            rs = sat.get((cfg, s), [])
            if not rs:
                continue
            cells = []
            for _, k in cols:
                xs = [r[k] for r in rs if isinstance(r.get(k), float)]
                cells.append("%d" % med(xs) if xs else "-")
            p("| %s | %d | %s |" % (cfg, s, " | ".join(cells)))
    cpu_table(p, recs, up, sizes)
    p("")
    p("## Latency, bring-up, memory")
    p("")
    p("| configuration | round trip p50 | p99 | answered | bring-up (process start -> first echo) | relay RSS idle / "
      "peak |")
    p("|---|---|---|---|---|---|")
    for cfg in up:
        ls = lat.get(cfg, [])
        p50 = [r["p50_us"] for r in ls if isinstance(r.get("p50_us"), float)]
        p99 = [r["p99_us"] for r in ls if isinstance(r.get("p99_us"), float)]
        ans = "%d of %d" % (sum(r.get("answered", 0) for r in ls), sum(r.get("sent", 0) for r in ls)) if ls else "-"
        upr = next((r for r in recs if r.get("what") == "up" and r["cfg"] == cfg), {})
        bring = "%.0f ms" % upr["bringup_ms"] if isinstance(upr.get("bringup_ms"), float) else "-"
        if isinstance(upr.get("child_ms"), float):
            bring += " (CHILD_SA installed after %.0f ms)" % upr["child_ms"]
        idle = next((r for r in recs if r.get("what") == "rss" and r["cfg"] == cfg and r["when"] == "idle"), None)
        load = next((r for r in recs if r.get("what") == "rss" and r["cfg"] == cfg and r["when"] == "loaded"), None)
        rss = "%.1f / %.1f MiB" % (idle["rss_kib"] / 1024, load["hwm_kib"] / 1024) if idle and load else "-"
        p("| %s | %s | %s | %s | %s | %s |" % (label(cfg), spread(p50, lambda x: "%.0f us" % x),
                                              spread(p99, lambda x: "%.0f us" % x), ans, bring, rss))
    rate = next((r.get("rate") for r in recs if r.get("what") == "latency"), None)
    p("")
    p("Round trips: 64-octet datagrams at %s/s from the IoT server through the relay to the device's echo and "
      "back. Bring-up: one sample per configuration, when its lab is built (the configurations come up one after "
      "the other, not under load): from the process start to the first echo through the tunnel (a datagram every "
      "5 ms), and for iotrelay from its first log line to `CHILD_SA installed` in its log." % ("%d" % rate if rate else "?"))
    for r in recs:
        if r.get("what") == "rss" and r.get("when") == "load":
            idle = next((x for x in recs if x.get("what") == "rss" and x.get("cfg") == r["cfg"]
                         and x.get("when") == "idle"), {})
            p("")
            p("Relay memory under load (`%s`): %s tunnels up, %d forwards, %d sessions held, %d datagrams of 64 "
              "octets sent at %s/s: RSS idle %.1f MiB, after %.1f MiB, peak %.1f MiB." % (
                  r["cfg"], "%d" % r["tunnels_up"] if isinstance(r.get("tunnels_up"), float) else "?",
                  r.get("forwards", 0), r.get("sessions", 0), r.get("sent", 0),
                  "%.0f" % r["rate"] if isinstance(r.get("rate"), float) else "?",
                  idle.get("rss_kib", 0) / 1024, r.get("rss_kib", 0) / 1024, r.get("hwm_kib", 0) / 1024))
            if isinstance(r.get("anon_kib"), float) and isinstance(r.get("file_kib"), float):
                p("After the load, %.1f MiB of the RSS is the process's own memory (anonymous: heap, stacks) and %.1f "
                  "MiB pages of its executable and libraries mapped from their files (shared, reclaimable)."
                  % (r["anon_kib"] / 1024, r["file_kib"] / 1024))
    ike_section(p, recs)
    perfs = sorted(f for f in glob.glob(a.results + ".perf.*") if not f.startswith(a.results + ".perf.aws."))
    if perfs:
        p("")
        p("## Where the relay's CPU goes at saturation")
        p("")
        p("`perf record -F 999 -p <pid>` for 2 s while the sender runs flat out (configuration (d)), the relay and "
          "the AWS side's iotrelay at the same time; first the share of each binary (`[kernel.kallsyms]` is the "
          "kernel working on the process's behalf: its syscalls, the UDP, IP and TUN paths), then self time per "
          "symbol, lines above 0.8 %.")
        for f in perfs:
            tail = f[len(a.results) + len(".perf."):]
            cfg, size = tail.rsplit(".", 1)
            for side, name in (("", "relay"), (".aws", "AWS side")):
                prof = "%s.perf%s.%s" % (a.results, side, tail)
                if not os.path.exists(prof):
                    continue
                p("")
                p("%s, %s B, %s:" % (label(cfg), size, name))
                p("")
                p("```")
                dso = "%s.dso%s.%s" % (a.results, side, tail)
                if os.path.exists(dso):
                    with open(dso) as fh:
                        p("by binary: " + "; ".join(" ".join(l.split()) for l in fh if l.strip()))
                with open(prof) as fh:
                    for line in list(fh)[:20]:
                        # perf pads every line to the terminal width with empty columns
                        p(" ".join(line.split()).replace(" - -", ""))
                p("```")
    p("")
    p(MARK)
    keep = ""
    if a.out and os.path.exists(a.out):
        with open(a.out) as f:
            text = f.read()
        if MARK in text:
            keep = text.split(MARK, 1)[1].lstrip("\n")
    sys.stdout.write("\n".join(out) + "\n" + keep)


if __name__ == "__main__":
    main()
