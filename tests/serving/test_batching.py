"""The dynamic batcher: concurrent requests share forward passes, each gets its own results, failures stay local;
the generation batcher: waiting generation requests of the same model and settings share a generate call."""

import asyncio
import threading

import pytest

from thrifty.serving.batching import DynamicBatcher, GenerationBatcher


class Recorder:
    """A stand-in model: answers each text with a tagged copy and records the size of every forward pass."""

    def __init__(self, fail_on=None, delay=0.0):
        self.passes, self.threads, self.fail_on, self.delay = [], set(), fail_on, delay

    def __call__(self, texts):
        import time

        self.threads.add(threading.get_ident())
        self.passes.append(len(texts))
        time.sleep(self.delay)
        if self.fail_on is not None and self.fail_on in texts:
            raise ValueError("model failure")
        return [{"label": f"seen:{t}"} for t in texts]


def run(coro):
    return asyncio.run(coro)


def test_concurrent_requests_share_passes_and_get_their_own_results_in_order():
    model = Recorder(delay=0.02)

    async def scenario():
        batcher = DynamicBatcher(model, max_batch_texts=16, max_wait_ms=20)
        await batcher.start()
        requests = [[f"r{r}-t{t}" for t in range(1 + r % 4)] for r in range(30)]
        answers = await asyncio.gather(*(batcher.predict(texts) for texts in requests))
        await batcher.stop()
        return requests, answers

    requests, answers = run(scenario())
    for texts, answer in zip(requests, answers):
        assert [a["label"] for a in answer] == [f"seen:{t}" for t in texts]
    assert sum(model.passes) == sum(len(t) for t in requests)
    assert len(model.passes) < len(requests) / 3, model.passes  # batched, not one pass per request
    assert max(model.passes) <= 16
    assert len(model.threads) == 1  # the model is only ever called from its one thread


def test_a_request_waits_at_most_max_wait_for_company():
    model = Recorder()

    async def scenario():
        batcher = DynamicBatcher(model, max_batch_texts=64, max_wait_ms=30)
        await batcher.start()
        loop = asyncio.get_running_loop()
        started = loop.time()
        answer = await batcher.predict(["alone"])
        waited = loop.time() - started
        await batcher.stop()
        return answer, waited

    answer, waited = run(scenario())
    assert answer == [{"label": "seen:alone"}]
    assert 0.02 <= waited < 1.0


def test_a_failing_pass_fails_only_its_requests_and_the_batcher_goes_on():
    model = Recorder(fail_on="poison")

    async def scenario():
        batcher = DynamicBatcher(model, max_batch_texts=4, max_wait_ms=1)
        await batcher.start()
        failed = await asyncio.gather(batcher.predict(["poison"]), return_exceptions=True)
        after = await batcher.predict(["fine"])
        await batcher.stop()
        return failed, after

    failed, after = run(scenario())
    assert isinstance(failed[0], ValueError)
    assert after == [{"label": "seen:fine"}]


def test_batching_off_is_one_pass_per_request():
    model = Recorder(delay=0.01)

    async def scenario():
        batcher = DynamicBatcher(model, enabled=False)
        await batcher.start()
        answers = await asyncio.gather(*(batcher.predict([f"t{i}", f"u{i}"]) for i in range(6)))
        await batcher.stop()
        return answers

    answers = run(scenario())
    assert model.passes == [2] * 6
    assert answers[3] == [{"label": "seen:t3"}, {"label": "seen:u3"}]


def test_a_model_that_returns_the_wrong_number_of_results_is_refused():
    async def scenario():
        batcher = DynamicBatcher(lambda texts: [{"label": "x"}], max_wait_ms=1)
        await batcher.start()
        with pytest.raises(RuntimeError, match="2 texts"):
            await batcher.predict(["a", "b"])
        await batcher.stop()

    run(scenario())


def test_stop_finishes_queued_requests():
    model = Recorder(delay=0.02)

    async def scenario():
        batcher = DynamicBatcher(model, max_batch_texts=2, max_wait_ms=50)
        await batcher.start()
        pending = [asyncio.create_task(batcher.predict([f"t{i}"])) for i in range(5)]
        await asyncio.sleep(0)  # every request queued
        await batcher.stop()
        return [await p for p in pending]

    answers = run(scenario())
    assert [a[0]["label"] for a in answers] == [f"seen:t{i}" for i in range(5)]


class Writer:
    """A stand-in generator: writes 'PROMPT/MAX_NEW_TOKENS' for each prompt and records each call's prompts."""

    def __init__(self, delay=0.05):
        self.calls, self.delay = [], delay

    def generate(self, prompts, max_new_tokens=None, temperature=None):
        import time

        self.calls.append(list(prompts))
        time.sleep(self.delay)
        if "bad" in prompts:
            raise ValueError("no such setting")
        return [f"{p}/{max_new_tokens}" for p in prompts]


def test_waiting_generation_requests_share_a_call_of_their_own_settings():
    writer, other = Writer(), Writer()

    async def scenario():
        batcher = GenerationBatcher(max_prompts=8)
        requests = [(writer, [f"r{r}-p{p}" for p in range(1 + r % 3)], {"max_new_tokens": 4 if r % 4 else 9})
                    for r in range(12)] + [(other, ["o1"], {"max_new_tokens": 4})]
        answers = await asyncio.gather(*(batcher.generate(g, prompts, settings) for g, prompts, settings in requests))
        return requests, answers, batcher.calls

    requests, answers, calls = run(scenario())
    for (_, prompts, settings), answer in zip(requests, answers):
        assert answer == [f"{p}/{settings['max_new_tokens']}" for p in prompts]  # its own, in order, its settings
    assert calls == len(writer.calls) + len(other.calls) and len(writer.calls) < 12 / 2  # together, not one by one
    assert all(len(call) <= 8 for call in writer.calls[1:])  # after the first (alone), within max_prompts
    assert other.calls == [["o1"]]  # another model's request never joins this model's call


def test_a_failing_generation_fails_its_call_and_the_next_goes_on():
    writer = Writer()

    async def scenario():
        batcher = GenerationBatcher()
        first = asyncio.ensure_future(batcher.generate(writer, ["a"], {"max_new_tokens": 1}))
        await asyncio.sleep(0.01)  # "a" generates alone; the next two wait and go together
        results = await asyncio.gather(batcher.generate(writer, ["bad"], {"max_new_tokens": 1}),
                                       batcher.generate(writer, ["c"], {"max_new_tokens": 1}), return_exceptions=True)
        later = await batcher.generate(writer, ["d"], {"max_new_tokens": 1})
        return await first, results, later

    first, (bad, shared), later = run(scenario())
    assert first == ["a/1"] and later == ["d/1"]
    assert isinstance(bad, ValueError) and isinstance(shared, ValueError)  # they were one call
    assert writer.calls == [["a"], ["bad", "c"], ["d"]]


def test_a_request_cancelled_while_generating_still_answers_the_others_of_its_call():
    writer = Writer(delay=0.1)

    async def scenario():
        batcher = GenerationBatcher()
        first = asyncio.ensure_future(batcher.generate(writer, ["a"], {}))
        await asyncio.sleep(0.02)
        leader = asyncio.ensure_future(batcher.generate(writer, ["b"], {}))
        follower = asyncio.ensure_future(batcher.generate(writer, ["c"], {}))
        gone = asyncio.ensure_future(batcher.generate(writer, ["z"], {"max_new_tokens": 5}))
        await asyncio.sleep(0.01)
        gone.cancel()  # its client left while it waited: it is never written
        await first
        await asyncio.sleep(0.02)  # b and c are being written together; b's client leaves
        leader.cancel()
        return await follower

    assert run(scenario()) == ["c/None"]
    assert writer.calls == [["a"], ["b", "c"]]  # c's answer came from the shared call, nothing ran twice or at once,
    #                                            and the request that left while waiting was not written
