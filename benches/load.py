#!/usr/bin/env python3
"""Side-by-side load benchmark, run by benches/load.sh after the release build.

Contenders, one after the other with the same load, alternated round by round
(A B C D A B C D ...), medians reported:
  direct   wrk straight to the upstream (nginx, `return 200` with ~100 bytes of JSON)
  pingora  a bare Pingora pass-through (benches/bare_proxy.rs), no auth
  haproxy  HAProxy with http_auth_bearer + jwt_verify (HS256) + exp check + revoked-sid map
  vigile   the gateway, HS256, 100k revoked sessions loaded

Every request carries a different valid token, drawn from 10,000 pre-issued
ones, over keep-alive connections. The proxies run pinned to CPU 1, wrk and
nginx to CPU 0, each proxy with one worker thread.

Modes: proxy (the comparison), revoked (1% revoked tokens must all get 401),
storm (proxied latency during a login storm), migrated (the same storm made
of first logins of accounts imported from Django: PBKDF2 at 1,000,000
iterations, then the rehash to argon2id), timing (known vs unknown emails
on login and password-forgotten), scale (1M accounts + 1M revocations: RSS
and start-up time), instructions (callgrind instructions per proxied request,
pingora vs vigile: deterministic), tls (each proxy terminating TLS with the
same self-signed pair: full handshakes/s with wrk and `Connection: close`,
keep-alive req/s over HTTP/1.1 with wrk, and HTTP/2 with h2load, many streams
on few connections: req/s and p99; the server's CPU per request of each;
handshakes again with the server held to half a CPU by a cgroup quota,
QUOTA_SHARE, so that the server and not the load generator bounds the rate),
h2-instructions (callgrind instructions per HTTP/2 request over TLS,
pingora, haproxy and vigile). No argument: all but instructions, migrated,
tls and h2-instructions.
"""

import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RELEASE = os.path.join(ROOT, "target", "release")
VIGILE = os.path.join(RELEASE, "vigile")
BARE = os.path.join(RELEASE, "examples", "bare_proxy")
SETUP = os.path.join(RELEASE, "examples", "bench_setup")

ROUNDS = int(os.environ.get("ROUNDS", "5"))
DURATION = int(os.environ.get("DURATION", "5"))
CONNECTIONS = int(os.environ.get("CONNECTIONS", "32"))
SECRET = "benchsecretbenchsecretbenchsecret0123456789"
BODY = '{"service":"stocks","items":[{"sku":"A-100","qty":12},{"sku":"B-200","qty":7}],"ok":true}'

PORTS = {"upstream": 17000, "pingora": 17001, "haproxy": 17002, "vigile": 17003, "admin": 17004}
# The same proxies' TLS listeners (mode tls).
TLS_PORTS = {"vigile": 17005, "haproxy": 17006, "pingora": 17007}
# Worker threads of each proxy. With 1 (the default) the proxy has CPU 1 to
# itself and wrk and nginx share CPU 0; with more, everything shares both.
WORKERS = int(os.environ.get("WORKERS", "1"))
PROXY_CPU = "1" if WORKERS == 1 else "0,1"
LOAD_CPU = "0" if WORKERS == 1 else "0,1"

WRK_SCRIPT = r"""
local tokens, revoked = {}, {}
local every = tonumber(os.getenv("REVOKED_EVERY") or "0")
local limit = tonumber(os.getenv("TOKEN_COUNT") or "0")
for line in io.lines(os.getenv("TOKENS")) do
  if limit == 0 or #tokens < limit then tokens[#tokens + 1] = line end
end
if every > 0 then for line in io.lines(os.getenv("REVOKED")) do revoked[#revoked + 1] = line end end
local n = 0
sent_revoked = 0
statuses = {}
request = function()
  n = n + 1
  local t
  if every > 0 and n % every == 0 then
    sent_revoked = sent_revoked + 1
    t = revoked[(sent_revoked % #revoked) + 1]
  else
    t = tokens[(n % #tokens) + 1]
  end
  local headers = { ["Authorization"] = "Bearer " .. t }
  if os.getenv("CLOSE") == "1" then headers["Connection"] = "close" end
  return wrk.format("GET", "/api/stocks/", headers)
end
response = function(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end
local threads = {}
function setup(thread) table.insert(threads, thread) end
function done(summary, latency, requests)
  local s200, s401, other, sent = 0, 0, 0, 0
  for _, t in ipairs(threads) do
    local s = t:get("statuses")
    for code, count in pairs(s) do
      if code == 200 then s200 = s200 + count elseif code == 401 then s401 = s401 + count else other = other + count end
    end
    sent = sent + t:get("sent_revoked")
  end
  io.write(string.format("RESULT requests=%d duration_us=%d p50_us=%d p99_us=%d s200=%d s401=%d other=%d sent_revoked=%d errors=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    s200, s401, other, sent, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
"""

LOGIN_SCRIPT = r"""
-- With FIRST set, each request is the first login of another account
-- imported from Django (migrated<FIRST>, migrated<FIRST + 1>, ...).
local first = os.getenv("FIRST")
local n = tonumber(first or "0")
request = function()
  local email = "storm@bench.example.com"
  if first then
    email = string.format("migrated%d@bench.example.com", n)
    n = n + 1
  end
  return wrk.format("POST", "/api/accounts/login/", { ["Content-Type"] = "application/json" },
    string.format('{"email":"%s","password":"Bench-storm-2026"}', email))
end
local threads = {}
codes = {}
response = function(status) codes[status] = (codes[status] or 0) + 1 end
function setup(thread) table.insert(threads, thread) end
function done(summary, latency, requests)
  local ok = 0
  for _, t in ipairs(threads) do ok = ok + (t:get("codes")[200] or 0) end
  io.write(string.format("LOGINS ok=%d requests=%d duration_us=%d\n", ok, summary.requests, summary.duration))
end
"""


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def wait_port(port, timeout=30.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def cpu_split(pid):
    """User and system CPU seconds of a process (all its threads)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / ticks, int(fields[12]) / ticks


def thread_cpu(pid):
    """CPU ticks (user + system) per thread name of a process."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                text = f.read()
        except OSError:
            continue
        name = text[text.index("(") + 1:text.rindex(")")]
        fields = text.rsplit(")", 1)[1].split()
        out[name] = out.get(name, 0) + int(fields[11]) + int(fields[12])
    return out


def load_cpu_seconds():
    """User and system CPU seconds of the load generators that have ended."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def cpu_seconds(pid):
    return sum(cpu_split(pid))


# The share of one CPU a server gets in the "half a CPU" measures of mode
# tls, enforced by a cgroup CPU quota over a short period.
QUOTA_SHARE = float(os.environ.get("QUOTA_SHARE", "0.5"))
QUOTA_PERIOD_US = 10000


class CpuQuota:
    """A process held to QUOTA_SHARE of one CPU by the kernel's CFS quota
    (cgroup v2 `cpu.max`, or v1 `cpu.cfs_quota_us`), so that the server and
    not the load generator is what bounds a rate. Needs root and a mounted
    cpu controller; `available` says whether it could be set up."""

    def __init__(self):
        self.group = None
        self.procs_home = None
        v2, v1 = "/sys/fs/cgroup", "/sys/fs/cgroup/cpu"
        try:
            if os.path.exists(f"{v2}/cgroup.controllers"):
                if "cpu" not in open(f"{v2}/cgroup.subtree_control").read().split():
                    with open(f"{v2}/cgroup.subtree_control", "w") as f:
                        f.write("+cpu")
                group = f"{v2}/vigile-bench"
                os.makedirs(group, exist_ok=True)
                with open(f"{group}/cpu.max", "w") as f:
                    f.write(f"{int(QUOTA_SHARE * QUOTA_PERIOD_US)} {QUOTA_PERIOD_US}")
                self.procs_home = f"{v2}/cgroup.procs"
            elif os.path.exists(f"{v1}/cpu.cfs_quota_us"):
                group = f"{v1}/vigile-bench"
                os.makedirs(group, exist_ok=True)
                with open(f"{group}/cpu.cfs_period_us", "w") as f:
                    f.write(str(QUOTA_PERIOD_US))
                with open(f"{group}/cpu.cfs_quota_us", "w") as f:
                    f.write(str(int(QUOTA_SHARE * QUOTA_PERIOD_US)))
                self.procs_home = f"{v1}/cgroup.procs"
            else:
                log("no cgroup cpu controller: the half-a-CPU measures are left out")
                return
            # A process can be moved in and out (a kernel may refuse).
            probe = subprocess.Popen(["sleep", "5"])
            try:
                with open(f"{group}/cgroup.procs", "w") as f:
                    f.write(str(probe.pid))
                with open(self.procs_home, "w") as f:
                    f.write(str(probe.pid))
            finally:
                probe.kill()
                probe.wait()
            self.group = group
        except OSError as e:
            log(f"cannot set a CPU quota ({e}): the half-a-CPU measures are left out")
            for leftover in ("/sys/fs/cgroup/vigile-bench", "/sys/fs/cgroup/cpu/vigile-bench"):
                try:
                    os.rmdir(leftover)
                except OSError:
                    pass

    @property
    def available(self):
        return self.group is not None

    def hold(self, pid):
        with open(f"{self.group}/cgroup.procs", "w") as f:
            f.write(str(pid))

    def release(self, pid):
        try:
            with open(self.procs_home, "w") as f:
                f.write(str(pid))
        except OSError:
            pass  # the process has ended

    def remove(self):
        if self.group:
            try:
                os.rmdir(self.group)
            except OSError as e:
                log(f"cannot remove {self.group}: {e}")


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class Bench:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="vigile-bench-")
        self.procs = {}

    def path(self, name):
        return os.path.join(self.dir, name)

    def start(self, name, cmd, cpu, port, env=None, log_name=None):
        out = open(self.path((log_name or name) + ".log"), "w")
        proc = subprocess.Popen(["taskset", "-c", cpu] + cmd, stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, **(env or {})}, cwd=self.dir)
        self.procs[name] = proc
        wait_port(port)
        return proc

    def stop(self, name):
        proc = self.procs.pop(name, None)
        if proc:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def stop_all(self):
        for name in list(self.procs):
            self.stop(name)

    # --- contenders ---------------------------------------------------------

    def start_upstream(self):
        conf = self.path("nginx.conf")
        with open(conf, "w") as f:
            f.write(f"""
worker_processes 1;
daemon off;
master_process off;
pid {self.path('nginx.pid')};
error_log {self.path('nginx-error.log')} warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  keepalive_requests 10000000;
  keepalive_timeout 300s;
  server {{
    listen 127.0.0.1:{PORTS['upstream']} reuseport backlog=4096;
    location / {{ default_type application/json; return 200 '{BODY}'; }}
  }}
}}
""")
        os.makedirs(self.path("nginx-tmp"), exist_ok=True)
        self.start("upstream", ["nginx", "-p", self.path("nginx-tmp"), "-c", conf], LOAD_CPU, PORTS["upstream"])

    def make_pair(self):
        """A self-signed pair for localhost (tls.pem, tls.key), and the two
        in one file for HAProxy (tls-haproxy.pem)."""
        if os.path.exists(self.path("tls.pem")):
            return
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                        "-nodes", "-days", "2", "-keyout", self.path("tls.key"), "-out", self.path("tls.pem"),
                        "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                       check=True, capture_output=True)
        with open(self.path("tls-haproxy.pem"), "w") as f:
            f.write(open(self.path("tls.pem")).read() + open(self.path("tls.key")).read())

    def write_vigile_config(self, name="vigile.yaml", store="store/vigile.redb"):
        self.make_pair()
        with open(self.path("jwt.secret"), "w") as f:
            f.write(SECRET)
        conf = self.path(name)
        with open(conf, "w") as f:
            f.write(f"""
server:
  listen: "127.0.0.1:{PORTS['vigile']}"
  threads: {WORKERS}
  grace_period: 1s
  tls: {{listen: "127.0.0.1:{TLS_PORTS['vigile']}", cert_file: "{self.path('tls.pem')}", key_file: "{self.path('tls.key')}"}}
admin: {{listen: "127.0.0.1:{PORTS['admin']}"}}
store: {{path: "{self.path(store)}"}}
tokens:
  secret_env: VIGILE_BENCH_UNSET
  secret_file: "{self.path('jwt.secret')}"
  access_ttl: 6h  # the pre-issued tokens live the whole run (a longer lifetime is refused)
accounts:
  login_throttle: {{max_failures: 1000000, window: 1s}}
  reset_throttle: {{max_requests: 1000000, max_requests_per_ip: 1000000, window: 1s}}
routes:
  - {{name: stocks, prefix: /api/stocks/, upstream: stocks}}
upstreams:
  stocks: {{targets: ["127.0.0.1:{PORTS['upstream']}"]}}
""")
        return conf

    def setup_vigile(self):
        conf = self.write_vigile_config()
        subprocess.run([SETUP, "--config", conf, "--out", self.dir, "--tokens", "10000",
                        "--revoked-tokens", "100", "--revoked-sessions", "100000"], check=True, cwd=self.dir)

    def start_contender(self, name):
        if name == "direct":
            return None
        if name == "pingora":
            return self.start("pingora", [BARE, "--listen", f"127.0.0.1:{PORTS['pingora']}",
                                          "--upstream", f"127.0.0.1:{PORTS['upstream']}", "--threads", str(WORKERS),
                                          "--tls-listen", f"127.0.0.1:{TLS_PORTS['pingora']}",
                                          "--tls-cert", self.path("tls.pem"), "--tls-key", self.path("tls.key")],
                              PROXY_CPU, PORTS["pingora"])
        if name == "haproxy":
            conf = self.path("haproxy.cfg")
            deny = "content-type application/json string '{\"code\":\"token_not_valid\"}'"
            with open(conf, "w") as f:
                f.write(f"""
global
  nbthread {WORKERS}
  maxconn 4000
defaults
  mode http
  timeout connect 2s
  timeout client 60s
  timeout server 60s
  http-reuse always
frontend fe
  bind 127.0.0.1:{PORTS['haproxy']}
  bind 127.0.0.1:{TLS_PORTS['haproxy']} ssl crt {self.path('tls-haproxy.pem')} alpn h2,http/1.1
  http-request set-var(txn.bearer) http_auth_bearer
  http-request return status 401 {deny} unless {{ var(txn.bearer) -m found }}
  http-request set-var(txn.alg) var(txn.bearer),jwt_header_query('$.alg')
  http-request return status 401 {deny} unless {{ var(txn.alg) -m str HS256 }}
  http-request return status 401 {deny} unless {{ var(txn.bearer),jwt_verify("HS256","{SECRET}") -m int 1 }}
  http-request set-var(txn.exp) var(txn.bearer),jwt_payload_query('$.exp','int')
  http-request set-var(txn.now) date()
  http-request return status 401 {deny} if {{ var(txn.exp),sub(txn.now) -m int lt 0 }}
  http-request set-var(txn.sid) var(txn.bearer),jwt_payload_query('$.sid')
  http-request return status 401 content-type application/json string '{{"code":"token_revoked"}}' if {{ var(txn.sid),map({self.path('revoked.map')}) -m found }}
  default_backend be
backend be
  server s1 127.0.0.1:{PORTS['upstream']}
""")
            return self.start("haproxy", ["haproxy", "-db", "-f", conf], PROXY_CPU, PORTS["haproxy"])
        if name == "vigile":
            proc = self.start("vigile", [VIGILE, "serve", "--config", self.path("vigile.yaml")], PROXY_CPU,
                              PORTS["vigile"], env={"RUST_LOG": "warn"})
            wait_port(PORTS["admin"])
            return proc
        raise ValueError(name)

    def wrk(self, port, duration, revoked_every=0, connections=CONNECTIONS, extra_env=None, scheme="http"):
        script = self.path("tokens.lua")
        with open(script, "w") as f:
            f.write(WRK_SCRIPT)
        env = {**os.environ, "TOKENS": self.path("tokens.txt"), "REVOKED": self.path("revoked.txt"),
               "REVOKED_EVERY": str(revoked_every), **(extra_env or {})}
        out = subprocess.run(["taskset", "-c", LOAD_CPU, "wrk", "-t1", f"-c{connections}", f"-d{duration}s",
                              "--latency", "-s", script, f"{scheme}://127.0.0.1:{port}/api/stocks/"],
                             capture_output=True, text=True, env=env, check=True).stdout
        line = next(l for l in out.splitlines() if l.startswith("RESULT "))
        result = {k: int(v) for k, v in (kv.split("=") for kv in line.split()[1:])}
        result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
        return result


def port_of(name):
    return PORTS["upstream"] if name == "direct" else PORTS[name]


def run_proxy(bench):
    contenders = os.environ.get("CONTENDERS", "direct,pingora,haproxy,vigile").split(",")
    results = {c: [] for c in contenders}
    for r in range(ROUNDS):
        for name in contenders:
            proc = bench.start_contender(name)
            bench.wrk(port_of(name), 1)  # warm-up
            cpu0 = cpu_split(proc.pid) if proc else (0.0, 0.0)
            threads0 = thread_cpu(proc.pid) if proc and os.environ.get("THREADS") else {}
            tracer = None
            if proc and os.environ.get("PERF"):
                tracer = subprocess.Popen(["perf", "record", "-q", "-e", "cpu-clock", "-p", str(proc.pid),
                                           "-o", bench.path(f"perf-{name}.data")],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                time.sleep(0.5)
            if proc and os.environ.get("STRACE"):
                tracer = subprocess.Popen(["strace", "-c", "-f", "-p", str(proc.pid), "-o", bench.path(f"strace-{name}.txt")],
                                          stderr=subprocess.DEVNULL)
                time.sleep(0.5)
            res = bench.wrk(port_of(name), DURATION)
            if tracer:
                tracer.send_signal(signal.SIGINT)
                tracer.wait()
            if tracer and os.environ.get("PERF"):
                log(f"  {name}: {res['requests']} requests, perf data in {bench.path(f'perf-{name}.data')}")
            elif tracer:
                with open(bench.path(f"strace-{name}.txt")) as f:
                    log(f"  {name} syscalls for {res['requests']} requests:\n" + f.read())
            cpu1 = cpu_split(proc.pid) if proc else (0.0, 0.0)
            if threads0:
                with open(f"/proc/{proc.pid}/stat") as f:
                    minflt = int(f.read().rsplit(")", 1)[1].split()[7])
                log(f"  {name} minor faults so far: {minflt}")
                busy = {t: n - threads0.get(t, 0) for t, n in thread_cpu(proc.pid).items()}
                log(f"  {name} CPU ticks by thread: {dict(sorted(busy.items(), key=lambda kv: -kv[1]))}")
            per_req = 1e6 / max(res["requests"], 1)
            res["cpu_us_per_req"] = (sum(cpu1) - sum(cpu0)) * per_req if proc else None
            res["user_us_per_req"] = (cpu1[0] - cpu0[0]) * per_req if proc else None
            res["rss_mib"] = rss_mib(proc.pid) if proc else None
            bad = res["s401"] + res["other"] + res["errors"]
            if bad:
                log(f"  {name}: {bad} responses were not 200 (401={res['s401']} other={res['other']} errors={res['errors']})")
            results[name].append(res)
            cpu = f"  CPU {res['cpu_us_per_req']:5.1f} us/req (user {res['user_us_per_req']:5.1f})" if proc else ""
            log(f"round {r + 1} {name:8} {res['rps']:10.0f} req/s  p50 {res['p50_us']:6} us  p99 {res['p99_us']:6} us{cpu}")
            bench.stop(name)
    med = {}
    for name, runs in results.items():
        med[name] = {
            "rps": statistics.median(x["rps"] for x in runs),
            "p50": statistics.median(x["p50_us"] for x in runs),
            "p99": statistics.median(x["p99_us"] for x in runs),
            "cpu": statistics.median(x["cpu_us_per_req"] for x in runs) if runs[0]["cpu_us_per_req"] is not None else None,
            "user": statistics.median(x["user_us_per_req"] for x in runs) if runs[0]["user_us_per_req"] is not None else None,
            "rss": statistics.median(x["rss_mib"] for x in runs) if runs[0]["rss_mib"] is not None else None,
        }
    print(f"\n## Proxy comparison: {ROUNDS} rounds x {DURATION} s, {CONNECTIONS} connections, {WORKERS} worker thread(s) per proxy, medians\n")
    print("| contender | req/s | p50 (us) | p99 (us) | CPU us/req (user) | RSS MiB | req/s vs pingora | req/s vs haproxy | p99 vs pingora |")
    print("|---|---|---|---|---|---|---|---|---|")
    base = {k: med.get(k, {"rps": float("nan"), "p99": float("nan")}) for k in ("pingora", "haproxy")}
    for name in contenders:
        m = med[name]
        cpu = f"{m['cpu']:.1f} ({m['user']:.1f})" if m["cpu"] is not None else "-"
        rss = f"{m['rss']:.1f}" if m["rss"] is not None else "-"
        print(f"| {name} | {m['rps']:.0f} | {m['p50']:.0f} | {m['p99']:.0f} | {cpu} | {rss} | "
              f"{m['rps'] / base['pingora']['rps']:.2f} | {m['rps'] / base['haproxy']['rps']:.2f} | "
              f"{m['p99'] / base['pingora']['p99']:.2f} |")
    # This machine's speed drifts between rounds: the ratio within each round
    # (contenders measured back to back) is steadier than a ratio of medians.
    print("\nPaired ratios (median over rounds of the ratio within each round):\n")
    for name in contenders:
        for ref in ("pingora", "haproxy"):
            if name == ref or ref not in results or name == "direct":
                continue
            rps = [a["rps"] / b["rps"] for a, b in zip(results[name], results[ref])]
            cpu = [b["cpu_us_per_req"] / a["cpu_us_per_req"] for a, b in zip(results[name], results[ref])
                   if a["cpu_us_per_req"] and b["cpu_us_per_req"]]
            line = f"- {name} vs {ref}: req/s {statistics.median(rps):.2f}"
            if cpu:
                line += f", CPU per request (inverse) {statistics.median(cpu):.2f}"
            print(line + f"  (rounds: {', '.join(f'{x:.2f}' for x in rps)})")
    return med


def h2load(port, duration, token, path):
    """HTTP/2 over TLS: 4 connections of 32 streams each, one token; req/s
    and p99 (from h2load's per-request log)."""
    log_file = path("h2load.log")
    load = ["taskset", "-c", LOAD_CPU, "h2load", "-t1", "-c4", "-m32", "-H", f"authorization: Bearer {token}"]
    url = f"https://127.0.0.1:{port}/api/stocks/"
    # Warm-up apart, so that the server's CPU time over the measured run is
    # that of the requests it counts.
    subprocess.run(load + ["-n2000", url], capture_output=True, check=True)
    out = subprocess.run(load + [f"-D{duration}", f"--log-file={log_file}", url],
                         capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"finished in [^,]+, ([\d.]+) req/s", out).group(1))
    ok = int(re.search(r"status codes: (\d+) 2xx", out).group(1))
    done = int(re.search(r"requests: \d+ total, \d+ started, (\d+) done", out).group(1))
    durations = sorted(int(line.split()[2]) for line in open(log_file) if len(line.split()) >= 3)
    p99 = durations[int(len(durations) * 0.99)] if durations else 0
    if ok != done:
        log(f"  h2load: {done - ok} of {done} answers were not 2xx")
    return {"rps": rps, "p99_us": p99, "requests": done}


def run_tls(bench):
    """Each proxy terminating TLS with the same pair: full handshakes per
    second (a new connection per request), keep-alive HTTP/1.1 req/s, and
    HTTP/2 req/s and p99 (h2load); each with the server's CPU time per
    request and how busy it was. Handshakes are measured twice: with CPU 1
    to the server, and with the server held to QUOTA_SHARE of a CPU: wrk's
    side of a full handshake costs it more than the server's side costs a
    server, so with a CPU each the rate is the load generator's.
    (Keep-alive HTTP/1.1 and HTTP/2 keep the server's CPU busy without it.)"""
    contenders = os.environ.get("CONTENDERS", "pingora,haproxy,vigile").split(",")
    token = open(bench.path("tokens.txt")).readline().strip()
    quota = CpuQuota()
    measures = ("handshakes", "h1", "h2") + (("handshakes_q",) if quota.available else ())
    results = {c: {m: [] for m in measures} for c in contenders}

    def timed(pid, run):
        """`run()`'s result with the server's CPU per request (us) and the
        load generator's (us, wrk only)."""
        cpu_before, load_before = cpu_seconds(pid), load_cpu_seconds()
        res = run()
        done = res["requests"]
        res["cpu_us"] = 1e6 * (cpu_seconds(pid) - cpu_before) / max(done, 1)
        res["busy"] = res["cpu_us"] * res["rps"] / 1e6
        res["load_cpu_us"] = 1e6 * (load_cpu_seconds() - load_before) / max(done, 1)
        return res

    try:
        for r in range(ROUNDS):
            for name in contenders:
                bench.start_contender(name)
                port = TLS_PORTS[name]
                bench.wrk(port, 1, scheme="https")  # warm-up
                pid = bench.procs[name].pid
                handshakes = lambda: bench.wrk(port, DURATION, scheme="https", extra_env={"CLOSE": "1"})
                http2 = lambda: h2load(port, DURATION, token, bench.path)
                got = {"handshakes": timed(pid, handshakes)}
                time.sleep(1)  # the closed connections' sockets settle
                got["h1"] = timed(pid, lambda: bench.wrk(port, DURATION, scheme="https"))
                got["h2"] = timed(pid, http2)
                if quota.available:
                    quota.hold(pid)
                    try:
                        got["handshakes_q"] = timed(pid, handshakes)
                    finally:
                        quota.release(pid)
                for m in measures:
                    results[name][m].append(got[m])
                bad = sum(x.get("s401", 0) + x.get("other", 0) + x.get("errors", 0)
                          for m, x in got.items() if not m.startswith("h2"))
                if bad:
                    log(f"  {name}: {bad} answers over TLS were not 200 (or errors)")
                hs, h1, h2 = got["handshakes"], got["h1"], got["h2"]
                line = (f"round {r + 1} {name:8} handshakes {hs['rps']:6.0f}/s ({hs['cpu_us']:.0f} us CPU each, "
                        f"busy {hs['busy']:.2f}, wrk {hs['load_cpu_us']:.0f})  "
                        f"h1 {h1['rps']:6.0f} req/s ({h1['cpu_us']:.1f} us, busy {h1['busy']:.2f})  "
                        f"h2 {h2['rps']:6.0f} req/s ({h2['cpu_us']:.1f} us, busy {h2['busy']:.2f}) p99 {h2['p99_us']} us")
                if quota.available:
                    line += f"  | {QUOTA_SHARE:g} CPU: handshakes {got['handshakes_q']['rps']:6.0f}/s"
                log(line)
                bench.stop(name)
    finally:
        quota.remove()
    med = lambda name, k, f: statistics.median(x[f] for x in results[name][k])
    print(f"\n## TLS: {ROUNDS} rounds x {DURATION} s, {WORKERS} worker thread(s) per proxy, medians\n")
    print("CPU 1 to the server, the load on CPU 0 (server CPU per request in us, share of its CPU busy):\n")
    print("| contender | handshakes/s (CPU us each, busy) | HTTP/1.1 keep-alive req/s (CPU us, busy, p99 us) "
          "| HTTP/2 req/s (CPU us, busy, p99 us) |" + (f" handshakes/s at {QUOTA_SHARE:g} CPU |" if quota.available else ""))
    print("|---|---|---|---|" + ("---|" if quota.available else ""))
    for name in contenders:
        cells = [f"{med(name, 'handshakes', 'rps'):.0f} ({med(name, 'handshakes', 'cpu_us'):.0f}, "
                 f"{med(name, 'handshakes', 'busy'):.2f})"]
        for k in ("h1", "h2"):
            cells.append(f"{med(name, k, 'rps'):.0f} ({med(name, k, 'cpu_us'):.1f}, {med(name, k, 'busy'):.2f}, "
                         f"{med(name, k, 'p99_us'):.0f})")
        if quota.available:
            cells.append(f"{med(name, 'handshakes_q', 'rps'):.0f}")
        print(f"| {name} | " + " | ".join(cells) + " |")
    print("\nPaired ratios (median over rounds of the ratio within each round):\n")
    for name in contenders:
        for ref in ("haproxy", "pingora"):
            if name == ref or ref not in results:
                continue
            parts = []
            for k in measures:
                ratios = [a["rps"] / b["rps"] for a, b in zip(results[name][k], results[ref][k]) if b["rps"]]
                parts.append(f"{k} {statistics.median(ratios):.2f}" if ratios else f"{k} -")
            p99 = [a["p99_us"] / max(b["p99_us"], 1) for a, b in zip(results[name]["h2"], results[ref]["h2"])]
            parts.append(f"h2 p99 {statistics.median(p99):.2f}")
            for k in ("handshakes", "h1", "h2"):
                per_cpu = [b["cpu_us"] / a["cpu_us"] for a, b in zip(results[name][k], results[ref][k])
                           if a["cpu_us"]]
                if per_cpu:
                    parts.append(f"{k} per CPU second {statistics.median(per_cpu):.2f}")
            print(f"- {name} vs {ref}: " + ", ".join(parts))


def run_revoked(bench):
    print("\n## Revoked mode: 1% of requests carry a token of a revoked session\n")
    print("| contender | req/s | revoked sent | 401 | 200 | other | all revoked refused |")
    print("|---|---|---|---|---|---|---|")
    for name in ["haproxy", "vigile"]:
        bench.start_contender(name)
        res = bench.wrk(port_of(name), DURATION, revoked_every=100)
        bench.stop(name)
        # Requests still in flight when wrk stops are sent but not counted.
        ok = res["s401"] >= res["sent_revoked"] - CONNECTIONS and res["s401"] <= res["sent_revoked"] and res["other"] == 0
        print(f"| {name} | {res['rps']:.0f} | {res['sent_revoked']} | {res['s401']} | {res['s200']} | {res['other']} | {'yes' if ok else 'NO'} |")


def admin_get(path):
    with urllib.request.urlopen(f"http://127.0.0.1:{PORTS['admin']}{path}", timeout=10) as r:
        return r.read().decode()


def post_json(path, body):
    req = urllib.request.Request(f"http://127.0.0.1:{PORTS['vigile']}{path}", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.status


def hash_seconds():
    metrics = admin_get("/metrics")
    total = float(re.search(r"^vigile_password_hash_seconds_sum (\S+)$", metrics, re.M).group(1))
    count = float(re.search(r"^vigile_password_hash_seconds_count (\S+)$", metrics, re.M).group(1))
    return total, count


def login_storm(bench, seconds, first=None):
    """Starts a wrk that logs in as fast as it can; returns the process. With
    `first`, first logins of the Django accounts from migrated<first> on."""
    script = bench.path("login.lua")
    with open(script, "w") as f:
        f.write(LOGIN_SCRIPT)
    env = {**os.environ, **({"FIRST": str(first)} if first is not None else {})}
    # A first login waits behind 15 others of half a second each: past wrk's
    # 2 s timeout, which would drop it and send another.
    timeout = ["--timeout", "60s"] if first is not None else []
    return subprocess.Popen(["taskset", "-c", LOAD_CPU, "wrk", "-t1", "-c16", f"-d{seconds}s", *timeout, "-s", script,
                             f"http://127.0.0.1:{PORTS['vigile']}/api/accounts/login/"],
                            stdout=subprocess.PIPE, text=True, env=env)


def storm_result(proc):
    out = proc.communicate()[0]
    line = next(l for l in out.splitlines() if l.startswith("LOGINS "))
    return {k: int(x) for k, x in (kv.split("=") for kv in line.split()[1:])}


def logins_per_second(proc):
    v = storm_result(proc)
    return v["ok"] / (v["duration_us"] / 1e6)


def run_storm(bench):
    bench.start_contender("vigile")
    post_json("/api/accounts/register/", {"email": "storm@bench.example.com", "password": "Bench-storm-2026",
                                          "first_name": "Jean", "last_name": "Dupont"})
    # argon2 alone: one login at a time.
    before = hash_seconds()
    for _ in range(10):
        post_json("/api/accounts/login/", {"email": "storm@bench.example.com", "password": "Bench-storm-2026"})
    after = hash_seconds()
    argon2 = (after[0] - before[0]) / (after[1] - before[1])
    # Logins alone, as many as the hashing threads can do.
    alone = [logins_per_second(login_storm(bench, DURATION)) for _ in range(3)]
    # Proxied latency, quiet and during a storm.
    quiet = [bench.wrk(PORTS["vigile"], DURATION, connections=8)["p99_us"] for _ in range(3)]
    storm, during = [], []
    for _ in range(3):
        proc = login_storm(bench, DURATION + 2)
        time.sleep(1)
        storm.append(bench.wrk(PORTS["vigile"], DURATION, connections=8)["p99_us"])
        during.append(logins_per_second(proc))
    bench.stop("vigile")
    ideal = 1 / argon2  # vigile is pinned to one CPU
    q, s, a, d = (statistics.median(x) for x in (quiet, storm, alone, during))
    print("\n## Login storm (vigile pinned to 1 CPU; proxied load: 8 connections; logins: 16 connections)\n")
    print("| argon2 alone (ms) | ideal logins/s (1 CPU) | logins/s, storm alone | vs ideal | proxied p99 quiet (us) | proxied p99 during storm (us) | ratio | logins/s during proxied load |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| {argon2 * 1000:.1f} | {ideal:.1f} | {a:.1f} | {a / ideal:.2f} | {q:.0f} | {s:.0f} | {s / q:.2f} | {d:.1f} |")


def rehashed():
    """First logins of Django accounts done so far (the gateway's counter)."""
    m = re.search(r'^vigile_password_rehash_total\{from="pbkdf2_sha256"\} (\S+)$', admin_get("/metrics"), re.M)
    return float(m.group(1)) if m else 0.0


def drain():
    """Waits for the logins still queued when a storm's wrk stopped."""
    deadline = time.time() + 60
    last = rehashed()
    while time.time() < deadline:
        time.sleep(1.5)
        now = rehashed()
        if now == last:
            return
        last = now


def run_migrated(bench):
    """The storm benchmark, each login the first one of an account imported
    from Django (pbkdf2_sha256 at 1,000,000 iterations, rehashed to argon2id
    in the login's write): the proxied p99 must stay within 2x the quiet one.
    First logins/s are counted by the gateway (vigile_password_rehash_total)
    while the proxied load runs: under that load each one waits behind 15
    others on a CPU the proxy comes first on, longer than wrk's run."""
    accounts = int(os.environ.get("MIGRATED_ACCOUNTS", "3000"))
    subprocess.run([SETUP, "--config", bench.path("vigile.yaml"), "--out", bench.path("migrated-out"),
                    "--tokens", "0", "--revoked-tokens", "0", "--revoked-sessions", "0",
                    "--django-accounts", str(accounts)], check=True, cwd=bench.dir)
    bench.start_contender("vigile")
    first = 0
    # One first login at a time: PBKDF2 + the argon2id rehash.
    alone = []
    for _ in range(5):
        code, ms = timed_post("/api/accounts/login/", {"email": f"migrated{first}@bench.example.com",
                                                       "password": "Bench-storm-2026"})
        assert code == 200, code
        alone.append(ms)
        first += 1

    def storm_while(measure):
        """Runs `measure` during a storm of first logins; returns its result
        and the first logins/s done meanwhile."""
        nonlocal first
        proc = login_storm(bench, DURATION + 2, first)
        time.sleep(1)
        start, before = time.time(), rehashed()
        out = measure()
        rate = (rehashed() - before) / (time.time() - start)
        first += storm_result(proc)["requests"] + 16  # and those in flight when wrk stopped
        drain()
        return out, rate

    _, storm_alone = storm_while(lambda: time.sleep(DURATION))
    quiet, storm, during = [], [], []
    for _ in range(ROUNDS):
        quiet.append(bench.wrk(PORTS["vigile"], DURATION, connections=8)["p99_us"])
        p99, rate = storm_while(lambda: bench.wrk(PORTS["vigile"], DURATION, connections=8)["p99_us"])
        storm.append(p99)
        during.append(rate)
    if first > accounts:
        log(f"WARNING: {first} logins for {accounts} accounts: raise MIGRATED_ACCOUNTS")
    total = rehashed()
    bench.stop("vigile")
    q, s, d = (statistics.median(x) for x in (quiet, storm, during))
    a = statistics.median(alone)
    print(f"\n## First logins of migrated accounts ({ROUNDS} rounds; vigile pinned to 1 CPU; proxied load: "
          "8 connections; logins: 16 connections, each the first of a pbkdf2_sha256 account at 1,000,000 iterations)\n")
    print("| first login alone (ms) | ideal first logins/s (1 CPU) | first logins/s, storm alone | "
          "proxied p99 quiet (us) | proxied p99 during storm (us) | ratio | first logins/s during proxied load | "
          "accounts rehashed |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| {a:.0f} | {1000 / a:.2f} | {storm_alone:.2f} | {q:.0f} | {s:.0f} | {s / q:.2f} | {d:.2f} | {total:.0f} |")
    print(f"\nRounds (quiet / storm p99, us): {', '.join(f'{x:.0f}/{y:.0f}' for x, y in zip(quiet, storm))}")


def timed_post(path, body):
    req = urllib.request.Request(f"http://127.0.0.1:{PORTS['vigile']}{path}", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            code = r.status
    except urllib.error.HTTPError as e:
        code = e.code
    return code, (time.perf_counter() - start) * 1000


def run_timing(bench):
    """Known vs unknown emails on login and password-forgotten, in random order."""
    import random
    bench.start_contender("vigile")
    post_json("/api/accounts/register/", {"email": "known@bench.example.com", "password": "Bench-timing-2026",
                                          "first_name": "Jean", "last_name": "Dupont"})
    jobs = []
    for i in range(60):
        jobs += [("login, known email, wrong password", "/api/accounts/login/",
                  {"email": "known@bench.example.com", "password": f"wrong-{i}"}),
                 ("login, unknown email", "/api/accounts/login/",
                  {"email": f"nobody{i}@bench.example.com", "password": f"wrong-{i}"}),
                 ("password-forgotten, known email", "/api/accounts/password-forgotten/",
                  {"email": "known@bench.example.com"}),
                 ("password-forgotten, unknown email", "/api/accounts/password-forgotten/",
                  {"email": f"nobody{i}@bench.example.com"})]
    random.shuffle(jobs)
    results = {}
    for name, path, body in jobs:
        time.sleep(0.05)  # lets the reset worker finish its mail
        results.setdefault(name, []).append(timed_post(path, body))
    bench.stop("vigile")
    print("\n## Timing of known vs unknown emails (60 requests each, random order)\n")
    print("| request | statuses | median (ms) |")
    print("|---|---|---|")
    for name, runs in results.items():
        codes = ",".join(str(c) for c in sorted({c for c, _ in runs}))
        print(f"| {name} | {codes} | {statistics.median(t for _, t in runs):.2f} |")


def run_instructions(bench):
    """Instructions per proxied request under callgrind: deterministic, unlike
    time on a shared machine. Note: valgrind lacks SHA-NI, so SHA-256 runs its
    software fallback there (about 24k instructions per token check)."""
    import http.client
    with open(bench.path("tokens.txt")) as f:
        tokens = f.read().split()
    n = 1000

    def drive(port, first):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        for i in range(first, first + n):
            conn.request("GET", "/api/stocks/", headers={"Authorization": "Bearer " + tokens[i % len(tokens)]})
            response = conn.getresponse()
            response.read()
            assert response.status == 200, response.status

    rows = []
    # vigile twice: tokens it has seen before (every client after its first
    # request), and tokens it has never seen (the full signature check).
    for name, label, measured_from in [("pingora", "pingora", 0), ("vigile", "vigile, tokens seen before", 0),
                                       ("vigile", "vigile, new tokens", n)]:
        out = bench.path(f"callgrind-{name}-{measured_from}.out")
        if name == "pingora":
            cmd = [BARE, "--listen", f"127.0.0.1:{PORTS['pingora']}", "--upstream", f"127.0.0.1:{PORTS['upstream']}",
                   "--threads", "1", "--timeouts", "crw"]
        else:
            cmd = [VIGILE, "serve", "--config", bench.path("vigile.yaml")]
        proc = bench.start(name, ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"] + cmd, "0,1",
                           PORTS[name], env={"RUST_LOG": "warn"})
        drive(PORTS[name], 0)  # warm-up
        subprocess.run(["callgrind_control", "-z", str(proc.pid)], capture_output=True)
        drive(PORTS[name], measured_from)
        subprocess.run(["callgrind_control", "-d", str(proc.pid)], capture_output=True)
        time.sleep(1)
        bench.stop(name)
        rows.append((label, callgrind_total(out) / n))
    print_instructions(f"Instructions per proxied request (callgrind, {n} keep-alive requests)", rows)


def callgrind_total(out):
    """The instructions counted in the newest dump of callgrind output `out`."""
    import glob
    dump = sorted(glob.glob(out + ".*"), key=os.path.getmtime)[-1]
    totals = subprocess.run(["callgrind_annotate", dump], capture_output=True, text=True).stdout
    return int(re.search(r"([\d,]+) \(100\.0%\)\s+PROGRAM TOTALS", totals).group(1).replace(",", ""))


def print_instructions(title, rows):
    """`rows` (contender, instructions per request), the first the reference."""
    print(f"\n## {title}\n")
    print("| contender | instructions/request | vs pingora |")
    print("|---|---|---|")
    for name, per in rows:
        print(f"| {name} | {per:,.0f} | {per / rows[0][1]:.2f} |")


def run_h2_instructions(bench):
    """Instructions per HTTP/2 request over TLS under callgrind (h2load, 4
    connections x 32 streams, one token): deterministic, unlike req/s."""
    token = open(bench.path("tokens.txt")).readline().strip()
    n = 5000
    rows = []
    for name in ("pingora", "haproxy", "vigile"):
        out = bench.path(f"callgrind-h2-{name}.out")
        if name == "pingora":
            cmd = [BARE, "--listen", f"127.0.0.1:{PORTS['pingora']}", "--upstream", f"127.0.0.1:{PORTS['upstream']}",
                   "--threads", "1", "--tls-listen", f"127.0.0.1:{TLS_PORTS['pingora']}",
                   "--tls-cert", bench.path("tls.pem"), "--tls-key", bench.path("tls.key")]
        elif name == "haproxy":
            bench.start_contender("haproxy")  # writes its configuration
            bench.stop("haproxy")
            cmd = ["haproxy", "-db", "-f", bench.path("haproxy.cfg")]
        else:
            cmd = [VIGILE, "serve", "--config", bench.path("vigile.yaml")]
        proc = bench.start(name, ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"] + cmd, "0,1",
                           PORTS[name], env={"RUST_LOG": "warn"})
        wait_port(TLS_PORTS[name])

        def h2(requests):
            return subprocess.run(["h2load", "-t1", "-c4", "-m32", f"-n{requests}", "-H",
                                   f"authorization: Bearer {token}", f"https://127.0.0.1:{TLS_PORTS[name]}/api/stocks/"],
                                  capture_output=True, text=True, check=True).stdout
        h2(500)  # warm-up: connections, pools, the token seen once
        subprocess.run(["callgrind_control", "-z", str(proc.pid)], capture_output=True)
        done = h2(n)
        subprocess.run(["callgrind_control", "-d", str(proc.pid)], capture_output=True)
        time.sleep(1)
        bench.stop(name)
        ok = int(re.search(r"status codes: (\d+) 2xx", done).group(1))
        if ok != n:
            log(f"  {name}: {n - ok} of {n} answers were not 2xx")
        rows.append((name, callgrind_total(out) / n))
    print_instructions(f"Instructions per HTTP/2 request over TLS (callgrind, h2load -c4 -m32, {n} requests)", rows)


def run_scale(bench):
    conf = bench.write_vigile_config("scale.yaml", "scale/vigile.redb")
    base_conf = bench.write_vigile_config("base.yaml", "base/vigile.redb")
    t0 = time.time()
    subprocess.run([SETUP, "--config", conf, "--out", bench.path("scale-out"), "--tokens", "10",
                    "--revoked-tokens", "1", "--revoked-sessions", "1000000", "--accounts", "1000000"],
                   check=True, cwd=bench.dir)
    log(f"scale setup took {time.time() - t0:.0f} s")
    subprocess.run([SETUP, "--config", base_conf, "--out", bench.path("base-out"), "--tokens", "10",
                    "--revoked-tokens", "0", "--revoked-sessions", "0"], check=True, cwd=bench.dir)
    rows = []
    for label, cfg in [("empty store", base_conf), ("1M accounts + 1M revocations", conf)]:
        starts = []
        rss = []
        for _ in range(3):
            t = time.time()
            proc = bench.start("vigile", [VIGILE, "serve", "--config", cfg], PROXY_CPU, PORTS["admin"],
                               env={"RUST_LOG": "warn"})
            starts.append(time.time() - t)
            admin_get("/healthz")
            rss.append(rss_mib(proc.pid))
            bench.stop("vigile")
        rows.append((label, statistics.median(starts), statistics.median(rss)))
    print("\n## Scale\n")
    print("| store | start-up to listening (s) | RSS (MiB) |")
    print("|---|---|---|")
    for label, s, r in rows:
        print(f"| {label} | {s:.2f} | {r:.1f} |")
    print(f"\n1M revocations + 1M accounts add {rows[1][2] - rows[0][2]:.1f} MiB RSS.")


def main():
    modes = sys.argv[1:] or ["proxy", "revoked", "storm", "timing", "scale"]
    for tool in (VIGILE, BARE, SETUP):
        if not os.path.exists(tool):
            sys.exit(f"{tool} is missing: run benches/load.sh (it builds them)")
    bench = Bench()
    try:
        print(f"# vigile load benchmark, {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs, "
              f"{open('/proc/cpuinfo').read().split('model name')[1].split(':')[1].splitlines()[0].strip()}")
        bench.start_upstream()
        if any(m in modes for m in ("proxy", "revoked", "storm", "migrated", "timing", "instructions", "tls",
                                    "h2-instructions")):
            bench.setup_vigile()
        if "proxy" in modes:
            run_proxy(bench)
        if "revoked" in modes:
            run_revoked(bench)
        if "storm" in modes:
            run_storm(bench)
        if "migrated" in modes:
            run_migrated(bench)
        if "timing" in modes:
            run_timing(bench)
        if "instructions" in modes:
            run_instructions(bench)
        if "tls" in modes:
            run_tls(bench)
        if "h2-instructions" in modes:
            run_h2_instructions(bench)
        if "scale" in modes:
            run_scale(bench)
    finally:
        bench.stop_all()
        if os.environ.get("KEEP"):
            log(f"kept {bench.dir}")
        else:
            shutil.rmtree(bench.dir, ignore_errors=True)


if __name__ == "__main__":
    main()
