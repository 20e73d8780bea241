#!/usr/bin/env python3
"""Benchmarks of issue 12, several replicas on one PostgreSQL; run by
benches/replicas.sh after the release build (see benches/README.md).

Parts (no argument: all of them, in this order):
  lag      revocation lag: logouts on replica A, replica B polled until it
           refuses each token (401 token_revoked); B's
           vigile_revocation_lag_seconds histogram read before and after
  proxy    proxied req/s of one replica on PostgreSQL vs the same on redb,
           alternated rounds (wrk, nginx upstream, pre-issued tokens, as
           benches/load.py does)
  logins   logins/s on PostgreSQL vs redb, alternated rounds
  instructions  (only when asked) callgrind instructions per proxied
           request, PostgreSQL vs redb: deterministic
  startup  start-up of a replica (until /readyz answers 200) with 1M
           revocations in PostgreSQL, and with an empty database
  crash    kill -9 of replica A during registrations and logouts, TRIALS
           trials: every acknowledged registration must log in on replica B,
           every acknowledged logout's token must be refused by B and by A
           restarted

Everything runs on loopback, on free ports, in WORK_DIR (made by
replicas.sh, removed by it). PostgreSQL (Debian's package) runs from a
temporary cluster, as the `postgres` user when run as root, with its
default settings (fsync on).
"""

import concurrent.futures
import glob
import http.client
import json
import os
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import load  # noqa: E402  (benches/load.py: nginx upstream, wrk and its scripts, CPU meters)

VIGILE = load.VIGILE
SETUP = load.SETUP
ROUNDS = int(os.environ.get("ROUNDS", "5"))
DURATION = int(os.environ.get("DURATION", "5"))
CONNECTIONS = int(os.environ.get("CONNECTIONS", "32"))
LAG_LOGOUTS = int(os.environ.get("LAG_LOGOUTS", "300"))
TRIALS = int(os.environ.get("TRIALS", "20"))
REVOCATIONS = int(os.environ.get("REVOCATIONS", "1000000"))
PASSWORD = "Bench-replicas-2026"
# One worker thread, pinned to CPU 1; wrk and nginx on CPU 0 (as load.py).
PROXY_CPU, LOAD_CPU = "1", "0"


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(values, q):
    """The q-th percentile (nearest rank) of values."""
    s = sorted(values)
    return s[min(len(s) - 1, max(0, int(round(q / 100 * len(s) + 0.5)) - 1))]


class Work:
    """The run's folder, processes and PostgreSQL cluster."""

    def __init__(self, root):
        self.dir = root
        os.chmod(self.dir, 0o755)  # the postgres user goes through it
        self.procs = []
        self.pg_bin = os.path.dirname(sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                                             key=lambda p: int(p.split("/")[4]))[-1])
        self.as_pg = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        self.pg_port = None
        # The bench's objects that load.py's helpers expect.
        self.bench = load.Bench.__new__(load.Bench)
        self.bench.dir = self.dir
        self.bench.procs = {}

    def path(self, *names):
        return os.path.join(self.dir, *names)

    def remember(self, pid):
        with open(self.path("pids"), "a") as f:
            f.write(f"{pid}\n")

    def spawn(self, cmd, log_name, cpu=None, env=None, cwd=None):
        out = open(self.path(log_name + ".log"), "a")
        if cpu:
            cmd = ["taskset", "-c", cpu] + cmd
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=cwd or self.dir,
                                env={**os.environ, "RUST_LOG": "warn", **(env or {})})
        self.procs.append(proc)
        self.remember(proc.pid)
        return proc

    def stop(self, proc, sig=signal.SIGINT):
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc in self.procs:
            self.procs.remove(proc)

    def stop_all(self):
        for proc in list(self.procs):
            self.stop(proc)
        if self.pg_port:
            subprocess.run(self.as_pg + [f"{self.pg_bin}/pg_ctl", "-D", self.path("pg", "data"), "-m", "fast",
                                         "stop"], capture_output=True)

    # --- PostgreSQL ---------------------------------------------------------

    def start_pg(self):
        pg = self.path("pg")
        os.makedirs(pg)
        if self.as_pg:
            subprocess.run(["chown", "postgres", pg], check=True)
        subprocess.run(self.as_pg + [f"{self.pg_bin}/initdb", "-D", f"{pg}/data", "-U", "vigile", "-A", "trust",
                                     "-E", "UTF8", "--no-locale"], check=True, capture_output=True)
        self.pg_port = free_port()
        opts = (f"-c listen_addresses=127.0.0.1 -c port={self.pg_port} -c unix_socket_directories={pg} "
                f"-c max_connections=200")
        subprocess.run(self.as_pg + [f"{self.pg_bin}/pg_ctl", "-D", f"{pg}/data", "-l", f"{pg}/postgres.log", "-w",
                                     "-o", opts, "start"], check=True, capture_output=True)
        version = self.sql("postgres", "SHOW server_version")
        log(f"PostgreSQL {version} on 127.0.0.1:{self.pg_port} (fsync {self.sql('postgres', 'SHOW fsync')})")
        return version

    def pin_pg(self, cpus):
        """Sets the CPU affinity of the cluster's processes (the postmaster,
        by its pid file, and its children)."""
        with open(self.path("pg", "data", "postmaster.pid")) as f:
            master = f.readline().strip()
        pids = [master]
        for entry in os.listdir("/proc"):
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if f.read().rsplit(")", 1)[1].split()[1] == master:
                        pids.append(entry)
            except (OSError, IndexError):
                continue
        for pid in pids:
            subprocess.run(["taskset", "-p", "-c", cpus, pid], capture_output=True)

    def sql(self, db, statement):
        out = subprocess.run([f"{self.pg_bin}/psql", "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1",
                              "-h", "127.0.0.1", "-p", str(self.pg_port), "-U", "vigile", "-d", db, "-c", statement],
                             capture_output=True, text=True, check=True)
        return out.stdout.strip()

    def database(self, name):
        self.sql("postgres", f"CREATE DATABASE {name}")
        return f"postgres://vigile@127.0.0.1:{self.pg_port}/{name}"


class Replica:
    """One gateway: its config, folder and process."""

    def __init__(self, work, name, url=None, upstream_port=None, threads=1):
        self.work, self.name, self.url = work, name, url
        self.port, self.admin = free_port(), free_port()
        self.folder = work.path(name)
        os.makedirs(self.folder, exist_ok=True)
        self.config = work.path(f"{name}.yaml")
        store = (f'{{kind: postgres, path: "{self.folder}/vigile.redb", url_env: VIGILE_BENCH_UNSET, '
                 f'url: "{url}"}}' if url else f'{{kind: redb, path: "{self.folder}/vigile.redb"}}')
        with open(self.config, "w") as f:
            f.write(f"""
server: {{listen: "127.0.0.1:{self.port}", threads: {threads}, grace_period: 1s}}
admin: {{listen: "127.0.0.1:{self.admin}"}}
store: {store}
tokens:
  secret_env: VIGILE_BENCH_UNSET
  secret_file: "{work.path('jwt.secret')}"
  access_ttl: 6h  # the pre-issued tokens live the whole run (a longer lifetime is refused)
accounts:
  login_throttle: {{max_failures: 1000000, window: 1s}}
  reset_throttle: {{max_requests: 1000000, max_requests_per_ip: 1000000, window: 1s}}
mailer: {{kind: log}}
routes:
  - {{name: stocks, prefix: /api/stocks/, upstream: stocks}}
upstreams:
  stocks: {{targets: ["127.0.0.1:{upstream_port}"]}}
""")
        self.proc = None

    def start(self, cpu=None, timeout=60.0):
        """Starts the gateway; the seconds until /readyz answers 200."""
        t0 = time.perf_counter()
        self.proc = self.work.spawn([VIGILE, "serve", "--config", self.config], self.name, cpu=cpu)
        deadline = t0 + timeout
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited: see {self.work.path(self.name + '.log')}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.admin}/readyz", timeout=1) as r:
                    if r.status == 200:
                        return time.perf_counter() - t0
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.005)
        raise RuntimeError(f"{self.name} not ready within {timeout} s")

    def stop(self, sig=signal.SIGINT):
        if self.proc:
            self.work.stop(self.proc, sig)
            self.proc = None

    def metrics(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin}/metrics", timeout=10) as r:
            return r.read().decode()

    def conn(self):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)


def call(conn, method, path, body=None, token=None):
    """One request on a kept-alive connection: (status, parsed JSON or None)."""
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = "Bearer " + token
    conn.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
    r = conn.getresponse()
    data = r.read()
    try:
        return r.status, json.loads(data) if data else None
    except ValueError:
        return r.status, None


def register(replica, email, password=PASSWORD):
    c = replica.conn()
    try:
        return call(c, "POST", "/api/accounts/register/", {"email": email, "password": password,
                                                             "password_confirm": password,
                                                             "first_name": "Jean", "last_name": "Dupont"})[0]
    finally:
        c.close()


def login(replica, email, conn=None):
    c = conn or replica.conn()
    try:
        status, body = call(c, "POST", "/api/accounts/login/", {"email": email, "password": PASSWORD})
    finally:
        if conn is None:
            c.close()
    return body["access"] if status == 200 else None


def logins(replicas, email, count, workers=4):
    """count access tokens of as many sessions of email, logged in on the
    replicas in turn."""
    local = threading.local()

    def one(i):
        replica = replicas[i % len(replicas)]
        conns = getattr(local, "conns", None)
        if conns is None:
            conns = local.conns = {}
        c = conns.setdefault(replica.name, replica.conn())
        token = login(replica, email, c)
        if token is None:
            raise RuntimeError(f"login {i} on {replica.name} failed")
        return token

    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        return list(pool.map(one, range(count)))


def histogram(metrics_text, name):
    """{le: cumulative count} of a Prometheus histogram."""
    out = {}
    for le, count in re.findall(rf'^{name}_bucket{{le="([^"]+)"}} (\S+)$', metrics_text, re.M):
        out[float("inf") if le == "+Inf" else float(le)] = float(count)
    return out


def histogram_quantile(before, after, q):
    """The q quantile (0..1) of the observations between two scrapes, by
    linear interpolation within the bucket (as Prometheus does), and the
    bucket's upper bound."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    total = counts[-1]
    if total == 0:
        return None, None, 0
    rank = q * total
    lower, prev = 0.0, 0.0
    for bound, cum in zip(bounds, counts):
        if cum >= rank:
            if bound == float("inf"):
                return lower, bound, total
            return lower + (bound - lower) * (rank - prev) / max(cum - prev, 1e-9), bound, total
        lower, prev = bound, cum
    return None, None, total


# --- parts ------------------------------------------------------------------


def run_lag(work, upstream_port, results):
    url = work.database("lag")
    a = Replica(work, "lag-a", url, upstream_port)
    b = Replica(work, "lag-b", url, upstream_port)
    a.start()
    b.start()
    if register(a, "lag@bench.example.com") != 201:
        raise RuntimeError("registration on A failed")
    t = time.perf_counter()
    tokens = logins([a, b], "lag@bench.example.com", LAG_LOGOUTS)
    log(f"lag: {len(tokens)} sessions opened in {time.perf_counter() - t:.1f} s")
    ca, cb = a.conn(), b.conn()
    for token in tokens:  # B has seen (and cached) every token before its logout
        status, _ = call(cb, "GET", "/api/stocks/", token=token)
        assert status == 200, status
    before = histogram(b.metrics(), "vigile_revocation_lag_seconds")
    lags, spans, polls, rtts = [], [], [], []
    for i, token in enumerate(tokens):
        time.sleep(random.uniform(0.002, 0.01))
        sent_logout = time.perf_counter()
        status, _ = call(ca, "POST", "/api/accounts/logout/", {}, token=token)
        acked = time.perf_counter()
        if status != 200:
            raise RuntimeError(f"logout {i} on A: {status}")
        n = 0
        while True:
            sent = time.perf_counter()
            status, body = call(cb, "GET", "/api/stocks/", token=token)
            now = time.perf_counter()
            n += 1
            rtts.append(now - sent)
            if status == 401 and body and body.get("code") == "token_revoked":
                break
            if status != 200:
                raise RuntimeError(f"B answered {status} {body} for token {i}")
            if now - acked > 10:
                raise RuntimeError(f"B still accepts token {i} 10 s after its logout on A")
        lags.append(now - acked)
        spans.append(now - sent_logout)
        polls.append(n)
    time.sleep(0.2)
    after = histogram(b.metrics(), "vigile_revocation_lag_seconds")
    ca.close()
    cb.close()
    a.stop()
    b.stop()
    h50, b50, hn = histogram_quantile(before, after, 0.50)
    h99, b99, _ = histogram_quantile(before, after, 0.99)
    res = {
        "n": len(lags), "p50_ms": pct(lags, 50) * 1e3, "p99_ms": pct(lags, 99) * 1e3, "max_ms": max(lags) * 1e3,
        "span_p50_ms": pct(spans, 50) * 1e3, "span_p99_ms": pct(spans, 99) * 1e3, "span_max_ms": max(spans) * 1e3,
        "first_poll": sum(1 for n in polls if n == 1), "poll_rtt_ms": statistics.median(rtts) * 1e3,
        "hist_n": hn, "hist_p50_ms": h50 * 1e3 if h50 is not None else None, "hist_p50_le": b50,
        "hist_p99_ms": h99 * 1e3 if h99 is not None else None, "hist_p99_le": b99,
    }
    res["lags_ms"] = [round(x * 1e3, 3) for x in lags]
    res["spans_ms"] = [round(x * 1e3, 3) for x in spans]
    results["lag"] = res
    print("\n## Revocation lag, logout on A until B refuses the token\n")
    print(f"{res['n']} logouts, one at a time, each of its own session; B polled back to back on one kept-alive "
          f"connection (median poll round trip {res['poll_rtt_ms']:.2f} ms); already refused at the first poll: "
          f"{res['first_poll']}.\n")
    print("| measure | n | p50 (ms) | p99 (ms) | max (ms) |")
    print("|---|---|---|---|---|")
    print(f"| client: logout 2xx on A -> 401 token_revoked on B | {res['n']} | {res['p50_ms']:.2f} | "
          f"{res['p99_ms']:.2f} | {res['max_ms']:.2f} |")
    print(f"| client: logout sent to A -> 401 token_revoked on B (includes the logout itself) | {res['n']} | "
          f"{res['span_p50_ms']:.2f} | {res['span_p99_ms']:.2f} | {res['span_max_ms']:.2f} |")
    if h50 is not None:
        print(f"| B's vigile_revocation_lag_seconds (commit -> applied; interpolated, bucket bound) | {hn:.0f} | "
              f"{h50 * 1e3:.2f} (le {b50 * 1e3:g}) | {h99 * 1e3:.2f} (le {b99 * 1e3:g}) | - |")


def proxy_contenders(work, upstream_port):
    """The redb and the PostgreSQL replica of the proxy and logins parts,
    each store with the same 100,100 revoked sessions; tokens.txt holds
    10,000 tokens both accept (same key)."""
    redb = Replica(work, "proxy-redb", None, upstream_port)
    pg = Replica(work, "proxy-pg", work.database("proxy"), upstream_port)
    for replica, out in ((redb, work.dir), (pg, work.path("pg-setup"))):
        subprocess.run([SETUP, "--config", replica.config, "--out", out, "--tokens", "10000",
                        "--revoked-tokens", "100", "--revoked-sessions", "100000"], check=True, cwd=work.dir)
    return {"redb": redb, "postgres": pg}


def run_proxy(work, contenders, results):
    runs = {name: [] for name in contenders}
    for r in range(ROUNDS):
        order = list(contenders) if r % 2 == 0 else list(reversed(contenders))
        for name in order:
            replica = contenders[name]
            replica.start(cpu=PROXY_CPU)
            work.bench.wrk(replica.port, 1)  # warm-up
            cpu0 = load.cpu_split(replica.proc.pid)
            res = work.bench.wrk(replica.port, DURATION, connections=CONNECTIONS)
            cpu1 = load.cpu_split(replica.proc.pid)
            res["cpu_us"] = (sum(cpu1) - sum(cpu0)) * 1e6 / max(res["requests"], 1)
            res["rss"] = load.rss_mib(replica.proc.pid)
            bad = res["s401"] + res["other"] + res["errors"]
            if bad:
                log(f"  {name}: {bad} answers were not 200")
            res["bad"] = bad
            replica.stop()
            runs[name].append(res)
            log(f"proxy round {r + 1} {name:8} {res['rps']:9.0f} req/s  p99 {res['p99_us']} us  "
                f"CPU {res['cpu_us']:.1f} us/req")
    ratios = [p["rps"] / d["rps"] for p, d in zip(runs["postgres"], runs["redb"])]
    results["proxy"] = {"runs": runs, "ratios": ratios}
    print(f"\n## Proxied req/s, one replica on PostgreSQL vs redb ({ROUNDS} rounds x {DURATION} s, "
          f"{CONNECTIONS} connections, 1 worker thread on CPU 1, wrk, nginx and PostgreSQL on CPU 0, medians)\n")
    print("| store | req/s | p50 (us) | p99 (us) | CPU us/req | RSS MiB | non-200 |")
    print("|---|---|---|---|---|---|---|")
    for name, rs in runs.items():
        print(f"| {name} | {statistics.median(x['rps'] for x in rs):.0f} | "
              f"{statistics.median(x['p50_us'] for x in rs):.0f} | {statistics.median(x['p99_us'] for x in rs):.0f} | "
              f"{statistics.median(x['cpu_us'] for x in rs):.1f} | {statistics.median(x['rss'] for x in rs):.1f} | "
              f"{sum(x['bad'] for x in rs)} |")
    med = statistics.median(x["rps"] for x in runs["postgres"]) / statistics.median(x["rps"] for x in runs["redb"])
    print(f"\npostgres / redb: {med:.2f} (ratio of medians); paired {statistics.median(ratios):.2f} "
          f"(rounds: {', '.join(f'{x:.2f}' for x in ratios)})")


def run_logins(work, contenders, results):
    script = work.path("login.lua")
    with open(script, "w") as f:
        f.write(load.LOGIN_SCRIPT)
    runs = {name: [] for name in contenders}
    for r in range(ROUNDS):
        order = list(contenders) if r % 2 == 0 else list(reversed(contenders))
        for name in order:
            replica = contenders[name]
            replica.start(cpu=PROXY_CPU)
            if r < 2:  # first start of each: the storm's account
                # load.py's LOGIN_SCRIPT logs in with this address and password.
                register(replica, "storm@bench.example.com", "Bench-storm-2026")
            out = subprocess.run(["taskset", "-c", LOAD_CPU, "wrk", "-t1", "-c16", f"-d{DURATION}s", "-s", script,
                                  f"http://127.0.0.1:{replica.port}/api/accounts/login/"],
                                 capture_output=True, text=True, check=True).stdout
            replica.stop()
            line = next(x for x in out.splitlines() if x.startswith("LOGINS "))
            v = {k: int(x) for k, x in (kv.split("=") for kv in line.split()[1:])}
            rate = v["ok"] / (v["duration_us"] / 1e6)
            runs[name].append({"rate": rate, "ok": v["ok"], "requests": v["requests"]})
            log(f"logins round {r + 1} {name:8} {rate:6.1f} logins/s ({v['ok']} of {v['requests']} answered 200)")
    ratios = [p["rate"] / d["rate"] for p, d in zip(runs["postgres"], runs["redb"])]
    results["logins"] = {"runs": runs, "ratios": ratios}
    print(f"\n## Logins/s, PostgreSQL vs redb ({ROUNDS} rounds x {DURATION} s, wrk -c16 and PostgreSQL on CPU 0, the gateway on "
          f"CPU 1, medians)\n")
    print("| store | logins/s | logins answered 200 / sent |")
    print("|---|---|---|")
    for name, rs in runs.items():
        print(f"| {name} | {statistics.median(x['rate'] for x in rs):.1f} | "
              f"{sum(x['ok'] for x in rs)} / {sum(x['requests'] for x in rs)} |")
    med = statistics.median(x["rate"] for x in runs["postgres"]) / statistics.median(x["rate"] for x in runs["redb"])
    print(f"\npostgres / redb: {med:.2f} (ratio of medians); paired {statistics.median(ratios):.2f} "
          f"(rounds: {', '.join(f'{x:.2f}' for x in ratios)})")


def run_instructions(work, contenders, results):
    """Instructions per proxied request under callgrind, redb vs postgres
    (deterministic, unlike time on a shared machine), as load.py's
    `instructions` mode: 1,000 keep-alive requests with tokens seen before,
    after 1,000 of warm-up. Whatever the store's own threads do meanwhile
    (postgres: the follower's catch-up every sync_interval) is counted too."""
    with open(work.path("tokens.txt")) as f:
        tokens = f.read().split()
    n = 1000

    def drive(port):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        for i in range(n):
            status, _ = call(c, "GET", "/api/stocks/", token=tokens[i % len(tokens)])
            assert status == 200, status
        c.close()

    rows = []
    for name, replica in contenders.items():
        out = work.path(f"callgrind-{name}.out")
        replica.proc = work.spawn(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", VIGILE, "serve",
                                   "--config", replica.config], replica.name + "-callgrind")
        load.wait_port(replica.port, timeout=120)
        t = time.perf_counter()
        drive(replica.port)  # warm-up
        subprocess.run(["callgrind_control", "-z", str(replica.proc.pid)], capture_output=True)
        t = time.perf_counter()
        drive(replica.port)
        seconds = time.perf_counter() - t
        subprocess.run(["callgrind_control", "-d", str(replica.proc.pid)], capture_output=True)
        time.sleep(1)
        replica.stop()
        dump = sorted(glob.glob(out + ".*"), key=os.path.getmtime)[-1]
        totals = subprocess.run(["callgrind_annotate", dump], capture_output=True, text=True).stdout
        total = int(re.search(r"([\d,]+) \(100\.0%\)\s+PROGRAM TOTALS", totals).group(1).replace(",", ""))
        rows.append((name, total / n, seconds))
        log(f"instructions {name}: {total / n:,.0f} per request ({seconds:.1f} s under callgrind)")
    results["instructions"] = rows
    print(f"\n## Instructions per proxied request (callgrind, {n} keep-alive requests, tokens seen before)\n")
    print("| store | instructions/request | vs redb | measured over (s) |")
    print("|---|---|---|---|")
    for name, per, seconds in rows:
        print(f"| {name} | {per:,.0f} | {per / rows[0][1]:.3f} | {seconds:.1f} |")


def revoked_in_memory(replica):
    m = re.search(r"^vigile_revoked_sessions (\S+)$", replica.metrics(), re.M)
    return int(float(m.group(1))) if m else None


def run_startup(work, upstream_port, results):
    rows = []
    for label, db, fill in (("empty database", "startup_empty", 0), (f"{REVOCATIONS:,} revocations", "startup_full",
                                                                     REVOCATIONS)):
        replica = Replica(work, db, work.database(db), upstream_port, threads=2)
        replica.start()  # creates the schema
        replica.stop()
        if fill:
            t = time.perf_counter()
            # 16-byte session ids (md5 of the row number), in force for 6 h;
            # seq and recorded_at take their defaults.
            work.sql(db, f"INSERT INTO revocations (session_id, until) SELECT decode(md5(i::text), 'hex'), "
                         f"extract(epoch FROM now())::bigint + 21600 FROM generate_series(1, {fill}) AS i")
            work.sql(db, "VACUUM ANALYZE revocations")
            log(f"startup: {fill:,} revocations written in {time.perf_counter() - t:.1f} s")
        times, rss, held = [], [], []
        for _ in range(3):
            times.append(replica.start())
            rss.append(load.rss_mib(replica.proc.pid))
            held.append(revoked_in_memory(replica))
            replica.stop()
        rows.append((label, statistics.median(times), max(times), statistics.median(rss), held[-1]))
        log(f"startup {label}: {', '.join(f'{x:.2f}' for x in times)} s")
    results["startup"] = rows
    print("\n## Start-up of a replica on PostgreSQL (launch until /readyz answers 200; 3 starts, 2 worker threads, "
          "unpinned)\n")
    print("| database | start-up median (s) | slowest (s) | RSS (MiB) | revocations held in memory |")
    print("|---|---|---|---|---|")
    for label, med, worst, r, h in rows:
        print(f"| {label} | {med:.2f} | {worst:.2f} | {r:.1f} | {h:,} |")


def token_status(conn, token):
    status, body = call(conn, "GET", "/api/stocks/", token=token)
    return status, (body or {}).get("code")


def run_crash(work, upstream_port, results):
    url = work.database("crash")
    a = Replica(work, "crash-a", url, upstream_port, threads=2)
    b = Replica(work, "crash-b", url, upstream_port, threads=2)
    a.start()
    b.start()
    per_trial = 80  # sessions per trial: enough that logouts still run at the kill
    register(b, "crash@bench.example.com")
    t = time.perf_counter()
    pool = logins([b], "crash@bench.example.com", per_trial * TRIALS)
    log(f"crash: {len(pool)} sessions opened in {time.perf_counter() - t:.1f} s")
    rows = []
    for trial in range(TRIALS):
        if a.proc is None:
            a.start()
        tokens = pool[trial * per_trial:(trial + 1) * per_trial]
        stop = threading.Event()
        lock = threading.Lock()
        acked_regs, acked_logouts, unacked = [], [], {"register": 0, "logout": 0}
        queue = list(tokens)

        def registrations(tid):
            c = a.conn()
            i = 0
            while not stop.is_set():
                email = f"t{trial}-w{tid}-{i}@crash.example.com"
                i += 1
                try:
                    status, _ = call(c, "POST", "/api/accounts/register/",
                                     {"email": email, "password": PASSWORD, "password_confirm": PASSWORD,
                                      "first_name": "Jean", "last_name": "Dupont"})
                except (OSError, http.client.HTTPException):
                    with lock:
                        unacked["register"] += 1
                    return
                if status == 201:
                    with lock:
                        acked_regs.append(email)

        def logouts():
            c = a.conn()
            while not stop.is_set():
                with lock:
                    if not queue:
                        return
                    token = queue.pop()
                try:
                    status, _ = call(c, "POST", "/api/accounts/logout/", {}, token=token)
                except (OSError, http.client.HTTPException):
                    with lock:
                        unacked["logout"] += 1
                    return
                if status == 200:
                    with lock:
                        acked_logouts.append(token)
                time.sleep(random.uniform(0.01, 0.05))

        workers = [threading.Thread(target=registrations, args=(i,)) for i in range(4)]
        workers += [threading.Thread(target=logouts) for _ in range(2)]
        for w in workers:
            w.start()
        delay = random.uniform(0.3, 1.3)
        time.sleep(delay)
        a.proc.send_signal(signal.SIGKILL)  # the replica, mid-write
        a.proc.wait()
        stop.set()
        for w in workers:
            w.join()
        a.work.procs.remove(a.proc)
        a.proc = None
        # On B: every acknowledged logout refused (B follows the database:
        # allowed up to 3 s to hear of the last ones), every acknowledged
        # registration logs in.
        cb = b.conn()
        pending = list(acked_logouts)
        deadline = time.perf_counter() + 3
        waited = 0
        while pending and time.perf_counter() < deadline:
            pending = [tk for tk in pending if token_status(cb, tk) != (401, "token_revoked")]
            if pending:
                waited += 1
                time.sleep(0.05)
        lost_logouts_b = len(pending)
        lost_regs = 0
        for email in acked_regs:
            if login(b, email, cb) is None:
                lost_regs += 1
                log(f"  LOST registration {email}")
        # A restarted: it has every revocation before it answers.
        a.start()
        ca = a.conn()
        lost_logouts_a = sum(1 for tk in acked_logouts if token_status(ca, tk) != (401, "token_revoked"))
        ca.close()
        cb.close()
        row = {"trial": trial + 1, "kill_after_s": delay, "regs": len(acked_regs), "logouts": len(acked_logouts),
               "unacked_regs": unacked["register"], "unacked_logouts": unacked["logout"],
               "lost_regs": lost_regs, "lost_logouts_b": lost_logouts_b, "lost_logouts_a": lost_logouts_a,
               "b_waited": waited}
        row["logouts_running"] = len(queue) > 0
        rows.append(row)
        log(f"crash trial {trial + 1}: killed after {delay:.2f} s; acked {row['regs']} registrations, "
            f"{row['logouts']} logouts; in flight {row['unacked_regs']}+{row['unacked_logouts']}; lost: "
            f"{lost_regs} registrations, {lost_logouts_b} logouts on B, {lost_logouts_a} on A restarted")
    a.stop()
    b.stop()
    results["crash"] = rows
    total = {k: sum(r[k] for r in rows) for k in rows[0] if k not in ("trial", "kill_after_s")}
    print(f"\n## Kill -9 of replica A during write load ({TRIALS} trials; 4 clients registering and 2 logging out, "
          f"on A; SIGKILL 0.3-1.3 s in; checked on B and on A restarted)\n")
    print(f"Trials with logouts still being sent at the kill: {total['logouts_running']} of {len(rows)}; trials in "
          f"which B had to be asked again (had not applied every acknowledged logout yet at the first check): "
          f"{sum(1 for r in rows if r['b_waited'])}. Writes in flight at the kill have no answer and are not "
          f"counted (they may or may not have committed).\n")
    print("| acknowledged registrations | acknowledged logouts | in flight at the kill (reg + logout) | "
          "registrations lost | logouts lost on B | logouts lost on A restarted |")
    print("|---|---|---|---|---|---|")
    print(f"| {total['regs']} | {total['logouts']} | {total['unacked_regs']} + {total['unacked_logouts']} | "
          f"{total['lost_regs']} | {total['lost_logouts_b']} | {total['lost_logouts_a']} |")


def main():
    parts = sys.argv[1:] or ["lag", "proxy", "logins", "startup", "crash"]
    for part in parts:
        if part not in ("lag", "proxy", "logins", "instructions", "startup", "crash"):
            sys.exit(f"unknown part {part}: lag | proxy | logins | instructions | startup | crash")
    for tool in (VIGILE, SETUP):
        if not os.path.exists(tool):
            sys.exit(f"{tool} is missing: run benches/replicas.sh (it builds it)")
    root = os.environ.get("WORK_DIR") or tempfile.mkdtemp(prefix="vigile-replicas-bench-")
    work = Work(root)
    results = {}
    try:
        cpu = open("/proc/cpuinfo").read().split("model name")[1].split(":")[1].splitlines()[0].strip()
        with open(work.path("jwt.secret"), "w") as f:
            f.write(load.SECRET)
        version = work.start_pg()
        print(f"# vigile replicas benchmark (issue 12), {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs, "
              f"{cpu}, PostgreSQL {version}")
        # nginx, as load.py runs it (its port from load.PORTS).
        load.PORTS["upstream"] = free_port()
        load.LOAD_CPU = LOAD_CPU
        work.bench.start_upstream()
        work.remember(work.bench.procs["upstream"].pid)
        upstream = load.PORTS["upstream"]
        if "lag" in parts:
            run_lag(work, upstream, results)
        if "proxy" in parts or "logins" in parts or "instructions" in parts:
            contenders = proxy_contenders(work, upstream)
            # The database (idle on the proxy path, busy on logins) runs
            # with wrk and nginx, off the gateway's CPU.
            work.pin_pg(LOAD_CPU)
            if "proxy" in parts:
                run_proxy(work, contenders, results)
            if "logins" in parts:
                run_logins(work, contenders, results)
            if "instructions" in parts:
                run_instructions(work, contenders, results)
            work.pin_pg("0-" + str(os.cpu_count() - 1))
        if "startup" in parts:
            run_startup(work, upstream, results)
        if "crash" in parts:
            run_crash(work, upstream, results)
    finally:
        work.bench.stop_all()
        work.stop_all()
        with open(os.path.join(tempfile.gettempdir(), "vigile-replicas-bench.json"), "w") as f:
            json.dump(results, f, indent=1, default=str)


if __name__ == "__main__":
    main()
