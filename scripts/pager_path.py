#!/usr/bin/env python3
"""The pager path end to end: broker power loss -> agent -> Prometheus rules -> Alertmanager -> webhook.

Used by scripts/check-pager.sh. Two runs of the same length, each with its own processes on free
127.0.0.1 ports and its own temp directory:

  - a Tansu broker on memory:// storage;
  - the real agent (`losswatch run --config FILE`): probe_interval 200ms, metadata_refresh 1s,
    canary topic created by the agent with 4 partitions (canary.partitions = 4, the count Tansu
    also gives a topic it auto-creates);
  - a real Prometheus scraping the agent every second (job="losswatch") and evaluating the
    project's rules (alerts/losswatch.rules.yml, unchanged) every second, sending alerts to:
  - a real Alertmanager routing every alert to a webhook receiver served here (group_wait 1s,
    group_interval 1s, resolved notifications on), which records each POST with its arrival
    time.

"power-loss" run: after the warm-up the broker is killed with SIGKILL and a fresh one is started
on the same port with the same storage URL, so every acknowledged record is gone and every
partition starts again at offset 0. The canary topic comes back with 4 partitions (the agent
creates it again, or Tansu auto-creates it on a metadata request: both give 4). Asserts that a firing LosswatchProbesLost or LosswatchPartitionTruncated
notification with a partition label reaches the webhook before the run ends, and reports the time
from the kill to that webhook call (and when the agent counted the loss and when Prometheus
fired the alert).

"clean" run: the same, without the kill. Asserts that the pipeline was live (agent scraped and
verifying probes on every partition, Alertmanager discovered by Prometheus), that the agent counted
no loss and no truncation, that no alert was pending or firing at any time after the warm-up, and
that the webhook received nothing at all.

The agent runs under a restart loop, as under the DaemonSet's restartPolicy: if it exits it is
started again at once with the same config and state file, and every such exit is printed as a
"NOTE:" line with its signal or status; both runs assert that there was none. With Tansu 0.6.0
and stock librdkafka 2.12.1 the agent died with SIGSEGV within about a second of the broker
restart (every power-loss run of 2026-11-21): the recreated topic has a new topic id, Tansu
answers the verifier's fetch for the old id with topic id zero plus a current-leader tag, and
librdkafka's leader-discovery metadata update then looked the topic up by a NULL name
(rd_kafka_metadata_update_op -> rd_kafka_metadata_cache_find -> strcmp). The project's patched
librdkafka (crates/rdkafka-sys/PATCHES.md) skips such an entry, and the agent survives; an exit
is still printed, and the restarted agent resumes from its state file, but it fails the run.

Prints one "ok: " or "FAIL: " line per assertion and a "RESULT kill_to_webhook_seconds=..." line.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOPIC = "losswatch-canary"
PARTITIONS = 4
PAGE_ALERTS = {"LosswatchProbesLost", "LosswatchPartitionTruncated"}


def now():
    return time.monotonic()


def free_ports(n):
    """n distinct free ports, all held open while choosing so that they differ."""
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def http_get(url, timeout=2.0):
    """(status, body) or (None, error text)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace")
    except (urllib.error.URLError, OSError) as e:
        return None, str(e)


def wait_until(what, pred, limit, step=0.2):
    end = now() + limit
    while True:
        if pred():
            return
        if now() > end:
            raise RuntimeError(f"{what}: not within {limit:.0f}s")
        time.sleep(step)


def tcp_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def parse_metrics(text):
    """{(name, frozenset(labels.items())): value} from the Prometheus text format."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        try:
            head, value = line.rsplit(" ", 1)
            if "{" in head:
                name, rest = head.split("{", 1)
                labels = {}
                for part in rest.rstrip("}").split('",'):
                    if "=" in part:
                        k, v = part.split("=", 1)
                        labels[k.strip()] = v.strip().strip('"')
            else:
                name, labels = head, {}
            out[(name, frozenset(labels.items()))] = float(value)
        except ValueError:
            continue
    return out


def by_partition(metrics, name):
    out = {}
    for (n, labels), v in metrics.items():
        if n == name:
            p = dict(labels).get("partition")
            out[p] = out.get(p, 0.0) + v
    return out


def describe_exit(rc):
    if rc is not None and rc < 0:
        try:
            return f"signal {signal.Signals(-rc).name}"
        except ValueError:
            return f"signal {-rc}"
    return f"exit {rc}"


def total(metrics, name):
    return sum(v for (n, _), v in metrics.items() if n == name)


# Every process started here, so that an interrupted check can stop them all.
ALL = []
ALL_LOCK = threading.Lock()


def stop_everything():
    with ALL_LOCK:
        procs = list(ALL)
    for p in procs:
        if p.poll() is None:
            p.terminate()
    end = now() + 3
    for p in procs:
        try:
            p.wait(max(0.1, end - now()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


class Proc:
    def __init__(self, name, argv, log_path, env=None):
        self.name, self.argv, self.log_path = name, argv, log_path
        self.log = open(log_path, "ab")
        self.p = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, env=env)
        with ALL_LOCK:
            ALL.append(self.p)

    def alive(self):
        return self.p.poll() is None

    def kill9(self):
        self.p.send_signal(signal.SIGKILL)
        self.p.wait()

    def stop(self):
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(5)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.log.close()

    def tail(self, n=25):
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                lines = f.readlines()[-n:]
        except OSError:
            lines = []
        return "".join(f"    {self.name}| {l}" for l in lines)


class Webhook:
    """Alertmanager webhook receiver: records every POST with its arrival time."""

    def __init__(self):
        self.posts = []
        self.lock = threading.Lock()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                t = now()
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    doc = json.loads(body)
                except ValueError:
                    doc = {"unparsed": body.decode("utf-8", "replace")}
                with hook.lock:
                    hook.posts.append((t, doc))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def snapshot(self):
        with self.lock:
            return list(self.posts)

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


class Stack:
    def __init__(self, name, args):
        self.name, self.args = name, args
        self.dir = os.path.join(args.workdir, name)
        os.makedirs(self.dir, exist_ok=True)
        self.procs = {}
        self.webhook = None
        self.restarts = []  # (time, exit status) of every agent exit during the run
        self.tansu_port, self.agent_port, self.prom_port, self.am_port = free_ports(4)

    def log(self, name):
        return os.path.join(self.dir, f"{name}.log")

    def start_tansu(self):
        url = f"tcp://127.0.0.1:{self.tansu_port}"
        self.procs["tansu"] = Proc("tansu", [
            self.args.tansu, "broker", "--listener-url", url, "--advertised-listener-url", url,
            "--storage-engine", "memory://tansu/"], self.log("tansu"))
        wait_until(f"{self.name}: tansu listening on {self.tansu_port}",
                   lambda: tcp_open(self.tansu_port), 20, 0.05)

    def start(self):
        self.webhook = Webhook()
        self.start_tansu()

        agent_cfg = os.path.join(self.dir, "losswatch.toml")
        with open(agent_cfg, "w", encoding="utf-8") as f:
            f.write(f"""[kafka]
bootstrap_servers = "127.0.0.1:{self.tansu_port}"

[canary]
topic = "{TOPIC}"
probe_interval = "200ms"
metadata_refresh = "1s"
create_topic = true
partitions = {PARTITIONS}

[http]
listen = "127.0.0.1:{self.agent_port}"

[state]
path = "{os.path.join(self.dir, 'state.db')}"

# The single Tansu broker really is fragile (replication 1, no DescribeConfigs answers): the
# audit's tickets would be true, and are not what this check is about. They are tested by
# promtool (alerts/tests/audit.yml) and against Tansu in tests/tansu_audit.rs.
[audit]
mode = "off"
""")
        self.agent_argv = [self.args.losswatch, "run", "--config", agent_cfg]
        self.agent_env = dict(os.environ, LOSSWATCH_LOG=os.environ.get("LOSSWATCH_LOG", "info"))
        self.procs["agent"] = Proc("agent", self.agent_argv, self.log("agent"), env=self.agent_env)

        am_cfg = os.path.join(self.dir, "alertmanager.yml")
        with open(am_cfg, "w", encoding="utf-8") as f:
            f.write(f"""route:
  receiver: webhook
  group_by: [alertname, topic, partition]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: webhook
    webhook_configs:
      - url: http://127.0.0.1:{self.webhook.port}/
        send_resolved: true
""")
        self.procs["alertmanager"] = Proc("alertmanager", [
            self.args.alertmanager, f"--config.file={am_cfg}",
            f"--storage.path={os.path.join(self.dir, 'am-data')}",
            f"--web.listen-address=127.0.0.1:{self.am_port}",
            "--cluster.listen-address=", "--log.level=warn"], self.log("alertmanager"))

        prom_cfg = os.path.join(self.dir, "prometheus.yml")
        with open(prom_cfg, "w", encoding="utf-8") as f:
            f.write(f"""global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - {os.path.abspath(self.args.rules)}
alerting:
  alertmanagers:
    - static_configs:
        - targets: ['127.0.0.1:{self.am_port}']
scrape_configs:
  - job_name: losswatch
    static_configs:
      - targets: ['127.0.0.1:{self.agent_port}']
""")
        self.procs["prometheus"] = Proc("prometheus", [
            self.args.prometheus, f"--config.file={prom_cfg}",
            f"--storage.tsdb.path={os.path.join(self.dir, 'prom-data')}",
            f"--web.listen-address=127.0.0.1:{self.prom_port}", "--log.level=warn"],
            self.log("prometheus"))

        for name, url in (("alertmanager", f"http://127.0.0.1:{self.am_port}/-/ready"),
                          ("prometheus", f"http://127.0.0.1:{self.prom_port}/-/ready"),
                          ("agent", f"http://127.0.0.1:{self.agent_port}/livez")):
            wait_until(f"{self.name}: {name} ready", lambda u=url: http_get(u)[0] == 200, 30)

    def kill_broker(self):
        """Power loss: SIGKILL, then a fresh broker on the same port and storage URL."""
        self.procs["tansu"].kill9()
        self.procs["tansu"].stop()
        old = self.log("tansu")
        os.replace(old, self.log("tansu-before-kill"))
        self.start_tansu()

    def supervise_agent(self):
        """Restarts the agent if it died, as the DaemonSet's restartPolicy does; returns how it
        died (None when it runs)."""
        agent = self.procs["agent"]
        if agent.alive():
            return None
        rc = agent.p.returncode
        agent.stop()
        self.restarts.append((now(), rc))
        self.procs["agent"] = Proc("agent", self.agent_argv, self.log("agent"), env=self.agent_env)
        return rc

    def agent_metrics(self):
        status, body = http_get(f"http://127.0.0.1:{self.agent_port}/metrics")
        return parse_metrics(body) if status == 200 else None

    def prom(self, path):
        status, body = http_get(f"http://127.0.0.1:{self.prom_port}{path}")
        if status != 200:
            return None
        try:
            return json.loads(body).get("data")
        except ValueError:
            return None

    def alerts(self):
        data = self.prom("/api/v1/alerts")
        return None if data is None else data.get("alerts", [])

    def stop(self):
        for name in ("prometheus", "alertmanager", "agent", "tansu"):
            if name in self.procs:
                self.procs[name].stop()
        if self.webhook:
            self.webhook.stop()

    def tails(self):
        return "".join(p.tail() for p in self.procs.values())


def run(stack, kill, args, result):
    """One run; fills result (a dict) with what was observed."""
    result.update(error=None, posts=[], alert_seen={}, t_kill=None, t_counted=None)
    try:
        stack.start()
        t0 = now()
        result["t0"] = t0

        # Warm-up: the agent verifies probes on every partition before anything else.
        def verifying():
            m = stack.agent_metrics()
            if not m:
                return False
            rec = by_partition(m, "losswatch_probes_received_total")
            return sum(1 for v in rec.values() if v > 0) >= PARTITIONS
        wait_until(f"{stack.name}: agent verifying probes on {PARTITIONS} partitions",
                   verifying, args.warmup)
        time.sleep(max(0.0, t0 + args.warmup - now()))

        before = stack.agent_metrics() or {}
        result["before"] = before
        end = now() + args.window
        if kill:
            result["t_kill"] = now()
            stack.kill_broker()

        base_loss = total(before, "losswatch_probes_lost_total") + \
            total(before, "losswatch_partition_truncations_total")
        next_alerts = 0.0
        while now() < end:
            stack.supervise_agent()
            m = stack.agent_metrics()
            if m and result["t_counted"] is None:
                loss = total(m, "losswatch_probes_lost_total") + \
                    total(m, "losswatch_partition_truncations_total")
                if loss > base_loss:
                    result["t_counted"] = now()
            if now() >= next_alerts:
                next_alerts = now() + 0.5
                for a in stack.alerts() or []:
                    key = (a["labels"].get("alertname"), a["state"])
                    result["alert_seen"].setdefault(key, (now(), a["labels"]))
            time.sleep(0.1)

        result["after"] = stack.agent_metrics() or {}
        result["up"] = stack.prom('/api/v1/query?query=up%7Bjob%3D%22losswatch%22%7D')
        result["alertmanagers"] = stack.prom("/api/v1/alertmanagers")
        result["final_alerts"] = stack.alerts()
        # Anything Alertmanager had in flight has been sent by now (group_wait 1s).
        time.sleep(2)
        result["posts"] = stack.webhook.snapshot()
        result["alive"] = {n: p.alive() for n, p in stack.procs.items()}
        result["exits"] = {n: p.p.returncode for n, p in stack.procs.items() if not p.alive()}
        result["restarts"] = list(stack.restarts)
    except Exception as e:  # reported as a failure with the logs
        result["error"] = f"{type(e).__name__}: {e}"
    finally:
        result["tails"] = stack.tails()
        stack.stop()


def check(args):
    lines = []

    def say(good, what):
        lines.append(("ok: " if good else "FAIL: ") + what)

    stacks = {"power-loss": Stack("power-loss", args), "clean": Stack("clean", args)}
    results = {name: {} for name in stacks}
    threads = [threading.Thread(target=run, args=(stacks[n], n == "power-loss", args, results[n]),
                                daemon=True) for n in stacks]
    if args.sequential:
        for t in threads:
            t.start()
            t.join()
    else:
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    figure = None
    for name in ("power-loss", "clean"):
        r = results[name]
        if r["error"]:
            say(False, f"{name} run: {r['error']}\n{r['tails']}")
            continue
        dead = [f"{n} ({describe_exit(rc)})" for n, rc in r["exits"].items()]
        say(not dead, f"{name} run: every process alive at the end"
            + (f"; exited: {', '.join(dead)}\n{r['tails']}" if dead else ""))
        restarts = r["restarts"]
        if restarts:
            how = ", ".join(f"+{t - (r['t_kill'] or r['t0']):.2f}s: {describe_exit(rc)}"
                            for t, rc in restarts)
            print(f"NOTE: {name} run: the agent died {len(restarts)} time(s) and was restarted "
                  f"with the same state file, as the DaemonSet would ({how}; times from the "
                  f"{'kill' if r['t_kill'] else 'start'})")
        # Both runs: the power-loss run too since librdkafka is patched (crates/rdkafka-sys).
        say(not restarts, f"{name} run: the agent ran without a restart")
        before, after = r["before"], r["after"]
        if restarts:
            before = {}  # the counters started again at 0 with the last agent process
        acked_b = by_partition(before, "losswatch_probes_acked_total")
        acked_a = by_partition(after, "losswatch_probes_acked_total")
        recv_b = by_partition(before, "losswatch_probes_received_total")
        recv_a = by_partition(after, "losswatch_probes_received_total")
        moving = sorted(p for p in acked_a if acked_a[p] > acked_b.get(p, 0)
                        and recv_a.get(p, 0) > recv_b.get(p, 0))
        parts = total(after, "losswatch_canary_partitions")
        say(len(moving) == PARTITIONS and parts == PARTITIONS,
            f"{name} run: canary topic has {parts:g} partitions at the end"
            f"{' (recreated after the broker restart)' if name == 'power-loss' else ''}; probes "
            f"acked and read back after the warm-up on {len(moving)}/{PARTITIONS}: {moving}")
        am = (r["alertmanagers"] or {}).get("activeAlertmanagers") or []
        up = [x["value"][1] for x in ((r["up"] or {}).get("result") or [])]
        say(bool(am) and up == ["1"],
            f"{name} run: Prometheus scrapes the agent (up={up}) and sends to "
            f"{len(am)} Alertmanager(s)")
        posts = r["posts"]
        lost = total(after, "losswatch_probes_lost_total") - total(before, "losswatch_probes_lost_total")
        trunc = total(after, "losswatch_partition_truncations_total") - \
            total(before, "losswatch_partition_truncations_total")
        seen = sorted(f"{k[0]}({k[1]})" for k in r["alert_seen"])

        if name == "clean":
            say(lost == 0 and trunc == 0 and total(after, "losswatch_probes_lost_total") == 0,
                f"clean run: agent counted {lost:g} lost probe(s) and {trunc:g} truncation(s) "
                f"after the warm-up, {total(after, 'losswatch_probes_lost_total'):g} lost in all")
            say(not seen, "clean run: no alert pending or firing in Prometheus after the warm-up"
                + (f"; seen: {', '.join(seen)}" if seen else ""))
            summary = [f"{[a['labels'].get('alertname') for a in d.get('alerts', [])]} "
                       f"{d.get('status')}" for _, d in posts]
            say(not posts, f"clean run: webhook received {len(posts)} notification(s) in "
                           f"{args.warmup + args.window:.0f}s" + (f": {summary}" if posts else ""))
            continue

        t_kill = r["t_kill"]
        say(lost + trunc > 0,
            f"power-loss run: agent counted {lost:g} lost probe(s) and {trunc:g} truncation(s) "
            f"after the kill" + (f", {r['t_counted'] - t_kill:.2f}s after it"
                                 if r["t_counted"] else ""))
        hit = None
        for t, d in posts:
            for a in d.get("alerts", []):
                labels = a.get("labels", {})
                if (a.get("status") == "firing" and labels.get("alertname") in PAGE_ALERTS
                        and labels.get("partition") not in (None, "") and labels.get("topic") == TOPIC):
                    hit = (t, labels)
                    break
            if hit:
                break
        names = sorted({f"{a['labels'].get('alertname')}/{a['labels'].get('partition', '-')}"
                        f"({a.get('status')})" for _, d in posts for a in d.get("alerts", [])})
        if hit:
            figure = hit[0] - t_kill
            firing = [v[0] for k, v in r["alert_seen"].items()
                      if k[0] in PAGE_ALERTS and k[1] == "firing"]
            steps = []
            if r["t_counted"]:
                steps.append(f"agent counted it at +{r['t_counted'] - t_kill:.2f}s")
            if firing:
                steps.append(f"Prometheus showed it firing by +{min(firing) - t_kill:.2f}s")
            say(True, f"power-loss run: webhook got {hit[1]['alertname']} "
                      f"{{topic={hit[1]['topic']}, partition={hit[1]['partition']}"
                      f"{', broker=' + hit[1]['broker'] if 'broker' in hit[1] else ''}}} "
                      f"{figure:.2f}s after the broker was killed ({'; '.join(steps)})")
        else:
            say(False, f"power-loss run: no firing {' or '.join(sorted(PAGE_ALERTS))} notification "
                       f"with a partition label reached the webhook within {args.window:.0f}s "
                       f"of the kill; alerts seen in Prometheus: {seen or 'none'}; "
                       f"notifications: {names or 'none'}\n{r['tails']}")
        print(f"power-loss run: notifications received: {names or 'none'}; "
              f"alerts seen in Prometheus: {seen or 'none'}")

    for line in lines:
        print(line)
    if figure is not None:
        print(f"RESULT kill_to_webhook_seconds={figure:.2f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--losswatch", required=True, help="the losswatch binary")
    ap.add_argument("--tansu", required=True)
    ap.add_argument("--prometheus", default=shutil.which("prometheus") or "prometheus")
    ap.add_argument("--alertmanager",
                    default=shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
                    or "alertmanager")
    ap.add_argument("--rules", default="alerts/losswatch.rules.yml")
    ap.add_argument("--workdir", required=True, help="temp directory for configs, data and logs")
    ap.add_argument("--warmup", type=float, default=20, help="seconds before the kill")
    ap.add_argument("--window", type=float, default=40, help="seconds observed after the kill")
    ap.add_argument("--sequential", action="store_true",
                    help="run the two runs one after the other instead of side by side")
    args = ap.parse_args()

    # SIGTERM from the calling script: unwind so that every process is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        check(args)
    finally:
        stop_everything()
    return 0


if __name__ == "__main__":
    sys.exit(main())
