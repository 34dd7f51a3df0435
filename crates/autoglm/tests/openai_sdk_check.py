"""Drives a running `autoglm serve` with the official openai SDK, unmodified.

Usage: python3 openai_sdk_check.py BASE_URL API_KEY
Exits non-zero on the first failed check.
"""
import sys

import openai
from openai import OpenAI

base, key = sys.argv[1], sys.argv[2]
# The engine's own behaviour is checked with the response cache out of the way
# (Cache-Control: no-store on every request); the cache is checked at the end.
client = OpenAI(base_url=base, api_key=key, max_retries=0, timeout=120, default_headers={"Cache-Control": "no-store"})
cached = OpenAI(base_url=base, api_key=key, max_retries=0, timeout=120)
model = client.models.list().data[0].id
msgs = [{"role": "user", "content": "What is the capital of France?"}]

# Chat, non-streaming, greedy, with logprobs.
r = client.chat.completions.create(model=model, messages=msgs, max_tokens=12, temperature=0, logprobs=True, top_logprobs=3)
c = r.choices[0]
assert c.message.role == "assistant" and c.message.content, r
assert c.finish_reason in ("stop", "length"), c.finish_reason
assert r.usage.prompt_tokens == 37, r.usage
assert r.usage.completion_tokens == len(c.logprobs.content), (r.usage, len(c.logprobs.content))
assert all(len(t.top_logprobs) == 3 for t in c.logprobs.content)
assert "".join(t.token for t in c.logprobs.content).startswith(c.message.content[:5])
for t in c.logprobs.content:
    assert t.top_logprobs[0].logprob >= t.top_logprobs[1].logprob >= t.top_logprobs[2].logprob
    assert abs(t.top_logprobs[0].logprob - t.logprob) < 1e-6  # greedy picks the top token

# Chat, streaming, include_usage: the streamed text equals the non-streamed text.
chunks = list(client.chat.completions.create(model=model, messages=msgs, max_tokens=12, temperature=0, stream=True, stream_options={"include_usage": True}))
text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
assert text == c.message.content, (text, c.message.content)
assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == r.usage.completion_tokens
assert any(ch.choices and ch.choices[0].finish_reason for ch in chunks)

# n=2 with a seed: two choices, indices 0 and 1, reproducible.
r2 = client.chat.completions.create(model=model, messages=msgs, max_tokens=10, temperature=1.0, n=2, seed=7)
assert sorted(ch.index for ch in r2.choices) == [0, 1]
r3 = client.chat.completions.create(model=model, messages=msgs, max_tokens=10, temperature=1.0, n=2, seed=7)
assert [ch.message.content for ch in r2.choices] == [ch.message.content for ch in r3.choices]
assert r2.usage.prompt_tokens == 37 and r2.usage.completion_tokens > 10

# Stop strings: the text ends before the stop string, in both modes.
p = "The capital of France is"
full = client.completions.create(model=model, prompt=p, max_tokens=16, temperature=0).choices[0].text
assert "\n" in full, full
cut = client.completions.create(model=model, prompt=p, max_tokens=16, temperature=0, stop=["\n"])
assert cut.choices[0].text == full.split("\n")[0], (cut.choices[0].text, full)
assert cut.choices[0].finish_reason == "stop"
streamed = "".join(ch.choices[0].text for ch in client.completions.create(model=model, prompt=p, max_tokens=16, temperature=0, stop=["\n"], stream=True) if ch.choices)
assert streamed == cut.choices[0].text, (streamed, cut.choices[0].text)

# Completions with logprobs (legacy shape), several prompts, token-id prompts.
lp = client.completions.create(model=model, prompt=p, max_tokens=5, temperature=0, logprobs=2)
l = lp.choices[0].logprobs
assert len(l.tokens) == 5 and len(l.token_logprobs) == 5 and len(l.top_logprobs) == 5 and l.text_offset[0] == 0
multi = client.completions.create(model=model, prompt=[p, "Hello"], max_tokens=3, temperature=0)
assert sorted(ch.index for ch in multi.choices) == [0, 1]
ids = client.completions.create(model=model, prompt=[504, 3575, 282, 4649, 314], max_tokens=5, temperature=0)
assert ids.choices[0].text == full[: len(ids.choices[0].text)], (ids.choices[0].text, full)

# Content as parts (how agent clients send it), an image part refused with a 400.
parts = [{"role": "user", "content": [{"type": "text", "text": "What is the capital "}, {"type": "text", "text": "of France?"}]}]
rp = client.chat.completions.create(model=model, messages=parts, max_tokens=12, temperature=0)
assert rp.choices[0].message.content == c.message.content
try:
    client.chat.completions.create(model=model, messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}], max_tokens=3)
    raise AssertionError("image part accepted")
except openai.BadRequestError as e:
    assert "text-only" in str(e), e

# Errors in OpenAI's shape through the SDK's exception types.
try:
    client.chat.completions.create(model="no-such-model", messages=msgs, max_tokens=3)
    raise AssertionError("unknown model accepted")
except openai.NotFoundError:
    pass
try:
    client.chat.completions.create(model=model, messages=msgs, max_tokens=10**6)
    raise AssertionError("over-long request accepted")
except openai.BadRequestError as e:
    assert "context" in str(e)
try:
    client.chat.completions.create(model=model, messages=msgs, temperature=5)
    raise AssertionError("temperature 5 accepted")
except openai.BadRequestError as e:
    assert "temperature" in str(e)

# The response cache: a streaming hit is, to the SDK, the live stream it replays (except
# ids and timestamps), and a non-streaming hit the live JSON.
def strip(d):
    d = dict(d)
    d.pop("id", None)
    d.pop("created", None)
    if d.get("usage"):
        d["usage"] = {k: v for k, v in d["usage"].items() if k != "prompt_tokens_details"}
    return d

def stream_with_header(**kw):
    raw = cached.chat.completions.with_raw_response.create(model=model, stream=True, **kw)
    return raw.headers.get("x-cache"), [strip(ch.model_dump()) for ch in raw.parse()]

kw = dict(messages=[{"role": "user", "content": "Name a planet."}], max_tokens=12, temperature=0, logprobs=True, top_logprobs=2, stream_options={"include_usage": True})
live_h, live = stream_with_header(**kw)
hit_h, hit = stream_with_header(**kw)
assert (live_h, hit_h) == ("miss", "hit-l1"), (live_h, hit_h)
assert live == hit and len(live) > 3, (live, hit)
raw = cached.chat.completions.with_raw_response.create(model=model, **{k: v for k, v in kw.items() if k != "stream_options"})
assert raw.headers.get("x-cache") == "hit-l1", raw.headers
one = raw.parse()
assert one.choices[0].message.content == "".join(ch["choices"][0]["delta"].get("content") or "" for ch in live if ch["choices"])
assert one.usage.prompt_tokens_details.cached_tokens == one.usage.prompt_tokens

print("openai SDK checks: 15 passed, 0 failed")
