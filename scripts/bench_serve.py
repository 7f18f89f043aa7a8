"""Load on `docclass serve` from a bounded asyncio client (aiohttp), next to `classify`
on the same documents, in one run on one machine. Run by scripts/bench_serve.sh.

Phases, each on a fresh server:
  idle      one short sentence at a time, 200 ms apart: latency of an idle server;
  load      LER sentences and court passages, one document per request, each document
            once, from 1, 8 and 64 clients (and, for sentences, 64 clients with other
            --chunk-tokens): documents/s, tokens/s (the server's own token counter),
            p50/p95/p99 latency, statuses, peak RSS, and the client's own CPU share (it
            runs on the same cores);
  overload  128 clients of long passages for --seconds against a small queue
            (--max-queue-tokens 8192): only 200 and 429 expected, RSS bounded.
`classify` on the same documents gives the reference tokens/s. Appends one JSON line
per measurement to --out and prints a table.
"""

import argparse
import asyncio
import json
import os
import platform
import re
import socket
import subprocess
import sys
import tempfile
import time

import aiohttp


def cpu_info():
    model, flags = platform.processor(), []
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                if line.startswith("flags"):
                    wanted = {"avx2", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8", "fma"}
                    flags = sorted(wanted & set(line.split(":", 1)[1].split()))
                    break
    except OSError:
        pass
    return {"cpu": model, "cpu_flags": flags, "cores": os.cpu_count()}


def corpora(sentences_file, passages_file):
    """Short: LER test sentences (about 50 tokens each). Long: the ler_court_cls test
    passages (median 1,600 characters, about 400 tokens)."""
    short, words = [], []
    with open(sentences_file, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line:
                words.append(line.split()[0])
            elif words:
                short.append(" ".join(words))
                words = []
    with open(passages_file, encoding="utf-8") as f:
        rows = [line.rstrip("\n").split("\t") for line in f]
    column = rows[0].index("text")
    return {"short": short[:1000], "long": [r[column] for r in rows[1:]]}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def peak_rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return None


class Server:
    def __init__(self, binary, model, extra):
        self.port = free_port()
        self.log = tempfile.TemporaryFile()
        args = [binary, "serve", "--listen", f"127.0.0.1:{self.port}", "--log-format", "json"]
        if model:
            args += ["--model", model]
        self.process = subprocess.Popen(args + extra, stderr=self.log)
        self.url = f"http://127.0.0.1:{self.port}"

    async def ready(self, session):
        for _ in range(1200):
            try:
                async with session.get(self.url + "/ready") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
        raise RuntimeError("server not ready")

    async def tokens(self, session):
        async with session.get(self.url + "/metrics") as r:
            text = await r.text()
        return float(re.search(r"^docclass_encoded_tokens_total (\S+)$", text, re.M).group(1))

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=120)
        return self.process.returncode


def percentile(values, q):
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


async def load(session, url, documents, clients, seconds=None):
    """`clients` workers post one document per request: every document once (the
    documents `classify` reads), or round robin for `seconds`."""
    latencies, statuses, errors = [], {}, []
    next_doc = 0
    deadline = time.monotonic() + seconds if seconds else None

    async def worker():
        nonlocal next_doc
        while (time.monotonic() < deadline) if deadline else next_doc < len(documents):
            text = documents[next_doc % len(documents)]
            next_doc += 1
            started = time.monotonic()
            try:
                async with session.post(url + "/v1/classify", json={"documents": [{"text": text}]}) as r:
                    await r.read()
                    statuses[r.status] = statuses.get(r.status, 0) + 1
                    if r.status == 200:
                        latencies.append(time.monotonic() - started)
                    elif r.status == 429:
                        await asyncio.sleep(float(r.headers.get("Retry-After", "1")))
            except aiohttp.ClientError as e:
                errors.append(type(e).__name__)

    started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(clients)))
    return latencies, statuses, errors, time.monotonic() - started


def classify_reference(binary, model, documents, threads):
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "docs.jsonl")
        with open(path, "w", encoding="utf-8") as f:
            for i, text in enumerate(documents):
                f.write(json.dumps({"id": str(i), "text": text}, ensure_ascii=False) + "\n")
        args = [binary, "classify", path, "--out", os.path.join(d, "out.jsonl"), "--force", "--log-format", "json"]
        if model:
            args += ["--model", model]
        if threads:
            args += ["--threads", str(threads)]
        def seconds_and_summary(input_path):
            run = subprocess.run(args[:2] + [input_path] + args[3:], capture_output=True, text=True, check=True)
            summary = [json.loads(l) for l in run.stderr.splitlines() if '"event":"summary"' in l][-1]
            return summary["seconds"], summary
        # `classify`'s seconds include loading the model, which the server does before
        # it is measured: a run on one short document tells the loading time.
        one = os.path.join(d, "one.jsonl")
        with open(one, "w", encoding="utf-8") as f:
            f.write(json.dumps({"id": "0", "text": "Die Klage ist begründet."}) + "\n")
        loading, _ = seconds_and_summary(one)
        seconds, summary = seconds_and_summary(path)
        seconds = max(seconds - loading, 1e-9)
        return summary["tokens"] / seconds, summary["classified"] / seconds


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--binary", default="target/release/docclass")
    p.add_argument("--model", default=None)
    p.add_argument("--sentences", default="datasets/ler/ler_test.conll")
    p.add_argument("--passages", default="datasets/ler_court_cls/test.tsv")
    p.add_argument("--seconds", type=float, default=20, help="of the overload phase")
    p.add_argument("--clients", type=int, nargs="+", default=[1, 8, 64])
    p.add_argument("--chunk-tokens", type=int, nargs="*", default=[1024, 32768],
                   help="other --chunk-tokens to try with 64 clients on short sentences")
    p.add_argument("--out", default="bench/serve.jsonl")
    p.add_argument("--extra", default="", help="more `docclass serve` flags")
    args = p.parse_args()
    run_id = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    machine = cpu_info()
    texts = corpora(args.sentences, args.passages)
    extra = args.extra.split()
    lines = []

    def record(**fields):
        line = {"run": run_id, **machine, **fields}
        lines.append(line)
        with open(args.out, "a") as f:
            f.write(json.dumps(line) + "\n")

    timeout = aiohttp.ClientTimeout(total=600)
    connector = lambda: aiohttp.TCPConnector(limit=0)

    # Idle latency: one short sentence at a time.
    server = Server(args.binary, args.model, extra)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector()) as session:
        await server.ready(session)
        latencies = []
        for text in texts["short"][:50]:
            started = time.monotonic()
            async with session.post(server.url + "/v1/classify", json={"documents": [{"text": text}]}) as r:
                await r.read()
                assert r.status == 200, r.status
            latencies.append(time.monotonic() - started)
            await asyncio.sleep(0.2)
    record(phase="idle", corpus="short", clients=1, requests=len(latencies),
           p50_ms=percentile(latencies, 50) * 1e3, p95_ms=percentile(latencies, 95) * 1e3,
           p99_ms=percentile(latencies, 99) * 1e3, exit_status=server.stop())

    for corpus in ["short", "long"]:
        documents = texts[corpus]
        ref_tokens, ref_docs = classify_reference(args.binary, args.model, documents, None)
        record(phase="classify", corpus=corpus, documents=len(documents), tokens_per_s=ref_tokens, docs_per_s=ref_docs)
        runs = [(clients, None) for clients in args.clients]
        if corpus == "short":
            # The chunk budget's trade-off: fuller batches against waiting for them.
            runs += [(64, chunk) for chunk in args.chunk_tokens]
        for clients, chunk in runs:
            flags = extra + (["--chunk-tokens", str(chunk)] if chunk else [])
            server = Server(args.binary, args.model, flags)
            async with aiohttp.ClientSession(timeout=timeout, connector=connector()) as session:
                await server.ready(session)
                before = await server.tokens(session)
                client_cpu = time.process_time()
                latencies, statuses, errors, wall = await load(session, server.url, documents, clients)
                client_cpu = time.process_time() - client_cpu
                tokens = await server.tokens(session) - before
            rss = peak_rss_mb(server.process.pid)
            record(phase="load", corpus=corpus, clients=clients, chunk_tokens=chunk or 8192, seconds=wall,
                   docs_per_s=statuses.get(200, 0) / wall, tokens_per_s=tokens / wall,
                   of_classify=tokens / wall / ref_tokens, client_cpu_share=client_cpu / wall,
                   p50_ms=percentile(latencies, 50) * 1e3, p95_ms=percentile(latencies, 95) * 1e3,
                   p99_ms=percentile(latencies, 99) * 1e3, statuses=statuses, client_errors=len(errors),
                   peak_rss_mb=rss, exit_status=server.stop())

    # Overload: far more long passages than a small queue holds.
    server = Server(args.binary, args.model, extra + ["--max-queue-tokens", "8192"])
    async with aiohttp.ClientSession(timeout=timeout, connector=connector()) as session:
        await server.ready(session)
        rss_start = peak_rss_mb(server.process.pid)
        latencies, statuses, errors, wall = await load(session, server.url, texts["long"], 128, args.seconds)
    record(phase="overload", corpus="long", clients=128, seconds=wall, statuses=statuses,
           client_errors=len(errors), p50_ms=percentile(latencies, 50) * 1e3 if latencies else None,
           peak_rss_mb_ready=rss_start, peak_rss_mb=peak_rss_mb(server.process.pid), exit_status=server.stop())

    print(f"run {run_id} on {machine['cpu']} ({' '.join(machine['cpu_flags'])}), {machine['cores']} cores")
    print("| phase | corpus | clients | chunk tokens | docs/s | tokens/s | of classify | client CPU | "
          "p50 / p95 / p99 ms | statuses | peak RSS MB |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for l in lines:
        lat = " / ".join(f"{l[k]:.0f}" if l.get(k) is not None else "–" for k in ["p50_ms", "p95_ms", "p99_ms"])
        number = lambda key, fmt: format(l[key], fmt) if l.get(key) is not None else "–"
        print(f"| {l['phase']} | {l['corpus']} | {l.get('clients', '–')} | {l.get('chunk_tokens', '–')} | "
              f"{number('docs_per_s', '.1f')} | {number('tokens_per_s', ',.0f')} | {number('of_classify', '.2f')} | "
              f"{number('client_cpu_share', '.0%')} | {lat} | {l.get('statuses', '–')} | {number('peak_rss_mb', '.0f')} |")


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
