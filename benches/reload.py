#!/usr/bin/env python3
"""Benchmark of issue 13, item 5: reloads during a load run; run by
benches/reload.sh after the release build (see benches/README.md).

The load is load.py's (imported): nginx as the upstream, `wrk -t1 -c32`
over keep-alive, every request with a valid token on the protected route
`stocks` (/api/stocks/), vigile with one worker thread pinned to CPU 1, wrk,
nginx and the reload commands on CPU 0.

Two configurations, A and B, keep the route `stocks` and differ in the
rest: A has a route `orders` (upstream `orders`, TCP health check) that B
has not, B has a route `billing` (upstream `billing`, whose one target
refuses connections, health-checked) that A has not, and the upstream
`catalog` changes its targets and timeouts and loses its health check.
The upstream of `stocks` is, by variant:

  kept     the same in A and B, with an HTTP health check every second: a
           reload keeps its pool (health, idle connections, check task)
  changed  A: HTTP health check, read_timeout 30s; B: no health check,
           read_timeout 20s: every reload builds a new pool (first health
           check before the swap when it has one) and drops the old one
           with its idle upstream connections

Reloads: `vigile reload --config A|B` (alternating files), or for the
variant `sighup` (stocks changed as above) the file in force rewritten (a
rename over it) and `kill -HUP`. RELOADS of them, evenly spread over the
DURATION seconds of wrk. Each round runs, one after the other: a run
without reloads, then a run of each variant, each preceded by its own run
without reloads (none kept none changed none sighup); vigile is restarted
for every run, so its counters start at 0.

Checked per run: every wrk response 200 and no socket error (connect,
read, write, timeout: a connection the gateway closed or reset is a read
error), every `vigile reload` exited 0, and the admin /metrics say
`vigile_config_reloads_total{result="ok"}` = RELOADS, no error, and
`vigile_config_info` names the last file's hash. Reported: medians of p50,
p99, p99.9 and max latency and req/s by kind of run, and the p99 of each
reload run over the run without reloads just before it (median of these
paired ratios, and every one).
"""

import hashlib
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import load  # noqa: E402  (benches/load.py: nginx upstream, wrk script, store and tokens)

ROUNDS = int(os.environ.get("ROUNDS", "3"))
DURATION = int(os.environ.get("DURATION", "20"))
RELOADS = int(os.environ.get("RELOADS", "20"))
CONNECTIONS = int(os.environ.get("CONNECTIONS", "32"))
VARIANTS = os.environ.get("VARIANTS", "kept,changed,sighup").split(",")
PROXY_CPU, LOAD_CPU = "1", "0"

# load.py's script, with p99.9 and the maximum too.
WRK_SCRIPT = load.WRK_SCRIPT.replace("p99_us=%d", "p99_us=%d p999_us=%d max_us=%d").replace(
    "latency:percentile(99),", "latency:percentile(99), latency:percentile(99.9), latency.max,")
assert WRK_SCRIPT.count("p999_us") == 1 and "latency.max" in WRK_SCRIPT


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Run:
    """The folder (WORK_DIR, made and removed by reload.sh) and processes."""

    def __init__(self):
        # Free ports, not load.py's fixed ones: another benchmark may run.
        for name in ("upstream", "vigile", "admin"):
            load.PORTS[name] = free_port()
        self.dead = free_port()  # nothing listens there: connections refused
        self.bench = load.Bench()
        os.rmdir(self.bench.dir)
        self.bench.dir = os.environ["WORK_DIR"]
        self.pids = open(self.path("pids"), "a")

    def path(self, name):
        return self.bench.path(name)

    def noted(self, proc):
        """Writes proc's id down for reload.sh's clean-up."""
        self.pids.write(f"{proc.pid}\n")
        self.pids.flush()
        return proc

    def start(self, name, cmd, cpu, port, env=None):
        proc = self.bench.start(name, cmd, cpu, port, env=env)
        return self.noted(proc)

    def stop_all(self):
        self.bench.stop_all()

    # --- configurations -------------------------------------------------

    def configs(self):
        """Writes head.yaml's common part once (load.py's, with its store and
        tokens), then A and B of each variant."""
        self.bench.setup_vigile()  # vigile.yaml, the store, tokens.txt
        with open(self.path("vigile.yaml")) as f:
            head = f.read().split("\nroutes:\n")[0] + "\n"
        nginx = f"127.0.0.1:{load.PORTS['upstream']}"
        dead = f"127.0.0.1:{self.dead}"
        stocks = {
            "kept": ({"targets": [nginx], "health_check": "{path: /health, interval: 1s}"},) * 2,
            "changed": ({"targets": [nginx], "health_check": "{path: /health, interval: 1s}", "read_timeout": "30s"},
                        {"targets": [nginx], "read_timeout": "20s"}),
        }
        stocks["sighup"] = stocks["changed"]

        def upstream(fields):
            inner = ", ".join(f"{k}: {v if k != 'targets' else '[' + ', '.join(chr(34) + t + chr(34) for t in v) + ']'}"
                              for k, v in fields.items())
            return "{" + inner + "}"

        files = {}
        for variant, (sa, sb) in stocks.items():
            a = head + f"""routes:
  - {{name: stocks, prefix: /api/stocks/, upstream: stocks}}
  - {{name: orders, prefix: /api/orders/, upstream: orders}}
  - {{name: catalog, prefix: /api/catalog/, upstream: catalog, auth: none}}
upstreams:
  stocks: {upstream(sa)}
  orders: {{targets: ["{nginx}"], health_check: {{interval: 1s}}}}
  catalog: {{targets: ["{nginx}"], connect_timeout: 1s, read_timeout: 10s, health_check: {{path: /health, interval: 2s}}}}
"""
            b = head + f"""routes:
  - {{name: catalog, prefix: /api/catalog/, upstream: catalog, auth: none}}
  - {{name: stocks, prefix: /api/stocks/, upstream: stocks}}
  - {{name: billing, prefix: /api/billing/, upstream: billing, methods: [GET]}}
upstreams:
  billing: {{targets: ["{dead}"], health_check: {{interval: 1s}}}}
  catalog: {{targets: ["{nginx}", "{dead}"], connect_timeout: 2s, read_timeout: 5s}}
  stocks: {upstream(sb)}
"""
            pair = []
            for label, text in (("a", a), ("b", b)):
                name = self.path(f"{variant}-{label}.yaml")
                with open(name, "w") as f:
                    f.write(text)
                subprocess.run([load.VIGILE, "check-config", "--config", name], check=True,
                               stdout=subprocess.DEVNULL)
                pair.append(name)
            files[variant] = pair
        return files

    # --- one run ----------------------------------------------------------

    def metrics(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{load.PORTS['admin']}/metrics", timeout=10) as r:
            return r.read().decode()

    def wrk(self, duration):
        script = self.path("reload.lua")
        with open(script, "w") as f:
            f.write(WRK_SCRIPT)
        env = {**os.environ, "TOKENS": self.path("tokens.txt"), "REVOKED": self.path("revoked.txt"),
               "REVOKED_EVERY": "0"}
        return self.noted(subprocess.Popen(
            ["taskset", "-c", LOAD_CPU, "wrk", "-t1", f"-c{CONNECTIONS}", f"-d{duration}s", "--latency",
             "-s", script, f"http://127.0.0.1:{load.PORTS['vigile']}/api/stocks/"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env))

    def reloads(self, variant, files, proc, outcome):
        """RELOADS reloads, evenly spread over the run, alternating B and A."""
        step = (DURATION - 1.0) / RELOADS
        start = time.monotonic() + 0.5
        in_force = self.path("sighup.yaml")
        for i in range(RELOADS):
            time.sleep(max(0.0, start + i * step - time.monotonic()))
            target = files[(i + 1) % 2]  # B, A, B, ...: the last one is A
            t = time.monotonic()
            if variant == "sighup":
                with open(in_force + ".new", "w") as f, open(target) as src:
                    f.write(src.read())
                os.replace(in_force + ".new", in_force)
                proc.send_signal(signal.SIGHUP)
                code = 0
            else:
                code = subprocess.run(["taskset", "-c", LOAD_CPU, load.VIGILE, "reload", "--config", target],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True).returncode
            outcome["seconds"].append(time.monotonic() - t)
            outcome["codes"].append(code)
            outcome["last"] = target

    def one(self, variant, files):
        """One wrk run on the A of files; variant None: without reloads."""
        first = files[0]
        config = first
        if variant == "sighup":
            config = self.path("sighup.yaml")
            with open(config, "w") as f, open(first) as src:
                f.write(src.read())
        proc = self.start("vigile", [load.VIGILE, "serve", "--config", config], PROXY_CPU,
                          load.PORTS["vigile"], env={"RUST_LOG": "warn"})
        load.wait_port(load.PORTS["admin"])
        warm = self.wrk(1)  # warm-up
        assert warm.wait() == 0
        before = self.metrics()
        cpu0 = sum(load.cpu_split(proc.pid))
        wrk = self.wrk(DURATION)
        outcome = {"seconds": [], "codes": [], "last": first}
        if variant:
            self.reloads(variant, files, proc, outcome)
        out = wrk.communicate()[0]
        time.sleep(0.2)  # a SIGHUP reload still running
        cpu1 = sum(load.cpu_split(proc.pid))
        after = self.metrics()
        self.bench.stop("vigile")
        line = next(l for l in out.splitlines() if l.startswith("RESULT "))
        res = {k: int(v) for k, v in (kv.split("=") for kv in line.split()[1:])}
        res["rps"] = res["requests"] / (res["duration_us"] / 1e6)
        res["cpu_us"] = (cpu1 - cpu0) * 1e6 / max(res["requests"], 1)  # reloads included
        # wrk's own lines, as a cross-check of the script's counts.
        m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
        res["socket_errors"] = sum(map(int, m.groups())) if m else 0
        m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        res["non2xx"] = int(m.group(1)) if m else 0
        res["failed"] = res["s401"] + res["other"] + res["errors"] + res["socket_errors"] + res["non2xx"]

        def counter(text, pattern):
            m = re.search(pattern, text, re.M)
            return float(m.group(1)) if m else 0.0

        res["reload_ok"] = int(counter(after, r'^vigile_config_reloads_total\{result="ok"\} (\S+)$'))
        res["reload_error"] = int(counter(after, r'^vigile_config_reloads_total\{result="error"\} (\S+)$'))
        opened = r'^vigile_upstream_connections_total\{(?=[^}]*event="opened")(?=[^}]*upstream="stocks")[^}]*\} (\S+)$'
        res["opened"] = int(counter(after, opened) - counter(before, opened))
        with open(outcome["last"], "rb") as f:
            sha = hashlib.sha256(f.read()).hexdigest()
        res["sha_ok"] = f'vigile_config_info{{sha256="{sha}"}} 1' in after
        res["codes_ok"] = all(c == 0 for c in outcome["codes"])
        res["reload_s"] = outcome["seconds"]
        res["expected"] = RELOADS if variant else 0
        res["reloads_ok"] = (res["codes_ok"] and res["reload_ok"] == res["expected"] and res["reload_error"] == 0
                             and res["sha_ok"] and len(outcome["codes"]) == res["expected"])
        with open(self.path("vigile.log")) as f:
            # Expected: the open-file cap (ulimit) at start, and billing's
            # target, which refuses connections, marked unhealthy.
            res["log_lines"] = [l.rstrip() for l in f if ("WARN" in l or "ERROR" in l)
                                and "open-file limit" not in l and f"127.0.0.1:{self.dead}" not in l]
        return res


def main():
    for tool in (load.VIGILE, load.SETUP):
        if not os.path.exists(tool):
            sys.exit(f"{tool} is missing: run benches/reload.sh (it builds it)")
    run = Run()
    results = {"none": [], **{v: [] for v in VARIANTS}}
    pairs = {v: [] for v in VARIANTS}
    try:
        print(f"# vigile reload benchmark, {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs, "
              f"{ROUNDS} rounds x {DURATION} s, {CONNECTIONS} connections, {RELOADS} reloads per reload run")
        run.bench.start_upstream()
        run.noted(run.bench.procs["upstream"])
        run.files = run.configs()
        for r in range(ROUNDS):
            for variant in VARIANTS:
                base = run.one(None, run.files[variant])
                res = run.one(variant, run.files[variant])
                results["none"].append(base)
                results[variant].append(res)
                pairs[variant].append((base, res))
                for name, x in (("none", base), (variant, res)):
                    extra = ""
                    if x["expected"]:
                        extra = (f"  reloads ok {x['reload_ok']}/{x['expected']} error {x['reload_error']}"
                                 f" exit codes {'all 0' if x['codes_ok'] else 'NOT all 0'}"
                                 f" sha {'ok' if x['sha_ok'] else 'WRONG'}"
                                 f" reload median {statistics.median(x['reload_s']) * 1000:.0f} ms"
                                 f" max {max(x['reload_s']) * 1000:.0f} ms")
                    log(f"round {r + 1} {name:8} {x['rps']:8.0f} req/s  p50 {x['p50_us']:6} us  p99 {x['p99_us']:6} us"
                        f"  p99.9 {x['p999_us']:6} us  max {x['max_us']:7} us  CPU {x['cpu_us']:5.1f} us/req  failed {x['failed']}"
                        f"  upstream conns opened {x['opened']}{extra}")
                    for l in x["log_lines"][:5]:
                        log(f"    log: {l}")
    finally:
        run.stop_all()
    report(results, pairs)


def report(results, pairs):
    print(f"\n## Reloads under load: {ROUNDS} rounds x {DURATION} s, wrk -t1 -c{CONNECTIONS}, "
          f"{RELOADS} reloads per reload run, medians\n")
    print("| run | runs | req/s | p50 (us) | p99 (us) | p99.9 (us) | max (us) | vigile CPU us/req | requests | "
          "failed or reset | reloads ok | reload time, median / max (ms) | stocks upstream connections opened | "
          "p99 vs without (paired) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, runs in results.items():
        if not runs:
            continue
        med = lambda k: statistics.median(x[k] for x in runs)  # noqa: E731
        requests = sum(x["requests"] for x in runs)
        failed = sum(x["failed"] for x in runs)
        if name == "none":
            reloads, times, ratio = "-", "-", "-"
        else:
            reloads = f"{sum(x['reload_ok'] for x in runs)}/{sum(x['expected'] for x in runs)}" + (
                "" if all(x["reloads_ok"] for x in runs) else " (NOT all)")
            all_s = [s for x in runs for s in x["reload_s"]]
            times = f"{statistics.median(all_s) * 1000:.0f} / {max(all_s) * 1000:.0f}"
            if name == "sighup":
                times = "- (signal)"
            ratios = [b["p99_us"] / a["p99_us"] for a, b in pairs[name]]
            ratio = f"{statistics.median(ratios):.2f} ({', '.join(f'{x:.2f}' for x in ratios)})"
        print(f"| {name} | {len(runs)} | {med('rps'):.0f} | {med('p50_us'):.0f} | {med('p99_us'):.0f} | "
              f"{med('p999_us'):.0f} | {med('max_us'):.0f} | {med('cpu_us'):.1f} | {requests} | {failed} | {reloads} | {times} | "
              f"{med('opened'):.0f} | {ratio} |")
    all_reload = [(a, b) for v in pairs.values() for a, b in v]
    if all_reload:
        ratios = [b["p99_us"] / a["p99_us"] for a, b in all_reload]
        failed = sum(b["failed"] + a["failed"] for a, b in all_reload)
        cpu = [b["cpu_us"] / a["cpu_us"] for a, b in all_reload]
        print(f"\nAll reload runs: vigile CPU per request over the run without reloads just before, median "
              f"{statistics.median(cpu):.2f} ({', '.join(f'{x:.2f}' for x in cpu)})")
        print(f"\nAll reload runs: p99 over the run without reloads just before, median of {len(ratios)} "
              f"pairs {statistics.median(ratios):.2f} (max {max(ratios):.2f}); failed or reset requests {failed}; "
              f"every reload ok: {'yes' if all(b['reloads_ok'] for _, b in all_reload) else 'NO'}")


if __name__ == "__main__":
    main()
