"""32 concurrent clients at the tiny profile: every job completes, each result decrypts to its own prompt's
block output (no lost or mixed-up results), and the latency percentiles are printed."""

import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from fhectl.llama.inference import cosine

from .helpers import KeyHolder

CLIENTS = 32


def test_concurrent_clients_get_their_own_results(server, tiny_model):
    holder = KeyHolder(server.url, tiny_model[0])
    holder.upload()
    rng = np.random.default_rng(20261201)  # named seed: the prompts only
    prompts = [[int(t) for t in rng.integers(3, 400, size=int(rng.integers(2, 7)))] for _ in range(CLIENTS)]

    def one(prompt):
        t0 = time.perf_counter()
        job = holder.service.submit(holder.token, holder.job_input(prompt, layers=1))
        result = holder.service.follow(holder.token, job["job_id"], holder.answer, poll_s=10)
        return time.perf_counter() - t0, holder.hidden(result, len(prompt))

    t0 = time.perf_counter()
    with ThreadPoolExecutor(CLIENTS) as pool:
        outcomes = list(pool.map(one, prompts))
    wall = time.perf_counter() - t0
    latencies = sorted(t for t, _ in outcomes)
    q = statistics.quantiles(latencies, n=20)
    print(f"\n{CLIENTS} concurrent jobs in {wall:.1f} s; latency p50 {statistics.median(latencies):.1f} s, "
          f"p95 {q[18]:.1f} s, max {latencies[-1]:.1f} s")
    for prompt, (_, got) in zip(prompts, outcomes):
        want = holder.reference(prompt)
        assert cosine(got, want) > 0.999
    # distinct prompts give distinguishable outputs, so a swapped result could not pass the check above
    first = holder.reference(prompts[0])
    assert sum(cosine(first, holder.reference(p)) > 0.999 for p in prompts if len(p) == len(prompts[0])) == 1
