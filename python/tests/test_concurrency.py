"""The GIL is released while an engine runs: several Python threads share one Flow, and Ctrl-C
stops a long call within a second."""

import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from conftest import open_flow, rows


@pytest.mark.parametrize("device", ["native", "cpu", "gpu"])
def test_four_threads_score_like_one(models, device):
    flow = open_flow(models["d5_tanh"], device)
    batches = [rows(20_000 if device != "gpu" else 3000, 5, seed=s) for s in range(8)]
    alone = [flow.log_prob(x) for x in batches]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(flow.log_prob, batches))
    for a, b in zip(alone, together):
        np.testing.assert_array_equal(a, b)
    with ThreadPoolExecutor(4) as pool:
        drawn = list(pool.map(lambda k: flow.sample(1000, seed=5, first_row=1000 * k), range(4)))
    x, lq = flow.sample(4000, seed=5)
    np.testing.assert_array_equal(np.concatenate([d[0] for d in drawn]), x)
    np.testing.assert_array_equal(np.concatenate([d[1] for d in drawn]), lq)


def test_threads_run_in_parallel_without_the_gil(models):
    """While one thread is inside the engine, another Python thread keeps running."""
    flow = open_flow(models["d8_gelu_tanhexp"], "cpu", threads=1)
    x = rows(200_000, 8, seed=1)
    ticks = []
    done = threading.Event()

    def tick():
        while not done.is_set():
            ticks.append(time.perf_counter())
            time.sleep(0.005)

    t = threading.Thread(target=tick)
    t.start()
    start = time.perf_counter()
    flow.log_prob(x)
    elapsed = time.perf_counter() - start
    done.set()
    t.join()
    # the ticker ran throughout the call (a held GIL would starve it to a tick per chunk)
    assert elapsed > 0.2, "the call is too short to tell"
    assert len(ticks) >= 0.5 * elapsed / 0.005 * 0.5


def _interrupt_after(seconds):
    timer = threading.Timer(seconds, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    return timer


@pytest.mark.parametrize("call", ["log_prob", "sample", "score_file"])
def test_ctrl_c_stops_a_long_call_within_a_second(models, tmp_path, call):
    flow = open_flow(models["d8_gelu_tanhexp"], "cpu")
    x = rows(2_000_000, 8, seed=2)
    if call == "score_file":
        np.save(tmp_path / "x.npy", x)
    run = {
        "log_prob": lambda: flow.log_prob(x),
        "sample": lambda: flow.sample(2_000_000, seed=1),
        "score_file": lambda: flow.score_file(tmp_path / "x.npy", tmp_path / "lp.npy"),
    }[call]
    timer = _interrupt_after(0.5)
    start = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        run()
    timer.join()
    stopped = time.perf_counter() - start
    # the whole call takes tens of seconds on the reference; it stops within a second of the signal
    assert stopped < 0.5 + 1.0, f"{call} took {stopped:.2f} s to stop"
    assert not (tmp_path / "lp.npy").exists(), "an interrupted run leaves no output"
