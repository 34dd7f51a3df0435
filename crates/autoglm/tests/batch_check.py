"""The Files and Batch API through the official openai SDK, unmodified, against a running
`autoglm serve` on the real model: upload, list, retrieve and download files; run chat
and completions batches to the end and check every output line's body against the same
request sent through the normal API (greedy); a file with bad lines fails with per-line
errors; cancel mid-run; list batches with a cursor; delete a file.

Usage: python3 batch_check.py BASE_URL
Prints one line per case and "N passed, 0 failed"; exits non-zero on any failure.
"""
import io
import json
import sys
import time

from openai import OpenAI

from check_runner import run

client = OpenAI(base_url=sys.argv[1], api_key="none", max_retries=0, timeout=300)
model = client.models.list().data[0].id

QUESTIONS = ["What is the capital of France?", "Name a primary color.",
             "What is 2 + 2?", "Say hello in Spanish.", "What do bees make?",
             "Name a planet.", "What is the opposite of hot?", "Count to three."]


def jsonl(lines):
    return io.BytesIO("".join(json.dumps(l) + "\n" for l in lines).encode())


def chat_line(i, q, max_tokens=16):
    return {"custom_id": f"chat-{i}", "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": model, "messages": [{"role": "user", "content": q}],
                     "max_tokens": max_tokens, "temperature": 0}}


def wait(batch_id, until=("completed", "failed", "cancelled", "expired"), limit=600):
    t = time.time()
    while time.time() - t < limit:
        b = client.batches.retrieve(batch_id)
        if b.status in until:
            return b
        time.sleep(0.3)
    raise AssertionError(f"batch {batch_id} still {b.status} after {limit} s")


def output_lines(file_id):
    text = client.files.content(file_id).text
    return [json.loads(l) for l in text.splitlines() if l.strip()]


def same_body(batch_body, direct):
    """Equal but for the parts every response makes fresh, and the prompt tokens the
    prefix cache held (the direct request repeats a prompt the batch just ran)."""
    def strip(d):
        d = {k: v for k, v in d.items() if k not in ("id", "created")}
        d["usage"] = {k: v for k, v in d["usage"].items() if k != "prompt_tokens_details"}
        return d
    assert strip(batch_body) == strip(direct), f"\nbatch:  {batch_body}\ndirect: {direct}"


def files_round_trip():
    lines = [chat_line(i, q) for i, q in enumerate(QUESTIONS[:2])]
    raw = jsonl(lines).getvalue()
    f = client.files.create(file=("in.jsonl", raw), purpose="batch")
    assert f.purpose == "batch" and f.bytes == len(raw) and f.filename == "in.jsonl", f
    assert client.files.retrieve(f.id).id == f.id
    assert client.files.content(f.id).content == raw
    listed = client.files.list(purpose="batch")
    assert f.id in [x.id for x in listed.data]
    gone = client.files.delete(f.id)
    assert gone.deleted and gone.id == f.id
    try:
        client.files.retrieve(f.id)
        raise AssertionError("a deleted file is still there")
    except Exception as e:
        assert getattr(e, "status_code", None) == 404, e


def chat_batch_matches_the_api():
    lines = [chat_line(i, q) for i, q in enumerate(QUESTIONS)]
    f = client.files.create(file=("chat.jsonl", jsonl(lines)), purpose="batch")
    b = client.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions",
                              completion_window="24h", metadata={"job": "sdk-test"})
    assert b.status == "validating" and b.metadata == {"job": "sdk-test"}, b
    b = wait(b.id)
    assert b.status == "completed", b
    rc = b.request_counts
    assert (rc.total, rc.completed, rc.failed) == (len(lines), len(lines), 0), rc
    for stamp in ("in_progress_at", "finalizing_at", "completed_at"):
        assert getattr(b, stamp), (stamp, b)
    assert b.error_file_id is None, b
    out = output_lines(b.output_file_id)
    assert sorted(o["custom_id"] for o in out) == sorted(l["custom_id"] for l in lines)
    by_id = {l["custom_id"]: l for l in lines}
    for o in out:
        assert o["error"] is None and o["response"]["status_code"] == 200, o
        assert o["id"].startswith("batch_req_") and o["response"]["request_id"], o
        direct = client.chat.completions.create(**by_id[o["custom_id"]]["body"])
        same_body(o["response"]["body"], direct.model_dump(exclude_unset=True))


def completions_batch_matches_the_api():
    lines = [{"custom_id": f"c{i}", "method": "POST", "url": "/v1/completions",
              "body": {"model": model, "prompt": p, "max_tokens": 12, "temperature": 0}}
             for i, p in enumerate(["The capital of France is", "Once upon a time",
                                    "def fibonacci(n):"])]
    f = client.files.create(file=("cmpl.jsonl", jsonl(lines)), purpose="batch")
    b = wait(client.batches.create(input_file_id=f.id, endpoint="/v1/completions",
                                   completion_window="24h").id)
    assert b.status == "completed" and b.request_counts.completed == 3, b
    by_id = {l["custom_id"]: l for l in lines}
    for o in output_lines(b.output_file_id):
        direct = client.completions.create(**by_id[o["custom_id"]]["body"])
        same_body(o["response"]["body"], direct.model_dump(exclude_unset=True))


def a_bad_file_fails_with_its_lines_and_runs_nothing():
    good = chat_line(0, "hi")
    lines = [json.dumps(good), "{oops",
             json.dumps(chat_line(0, "again")),                       # duplicate custom_id
             json.dumps({**chat_line(3, "x"), "url": "/v1/completions"}),
             json.dumps({**chat_line(4, "x"), "body": {**good["body"], "stream": True}}),
             json.dumps({**chat_line(5, "x"), "body": {**good["body"], "temperature": "hot"}})]
    raw = ("\n".join(lines) + "\n").encode()
    f = client.files.create(file=("bad.jsonl", raw), purpose="batch")
    b = wait(client.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions",
                                   completion_window="24h").id)
    assert b.status == "failed" and b.failed_at, b
    got = [(e.line, e.code) for e in b.errors.data]
    assert got == [(2, "invalid_json_line"), (3, "duplicate_custom_id"),
                   (4, "mismatched_url"), (5, "invalid_request"), (6, "invalid_request")], got
    assert b.output_file_id is None and b.request_counts.completed == 0, b


def cancel_mid_run_keeps_what_was_done():
    lines = [chat_line(i, QUESTIONS[i % len(QUESTIONS)] + f" ({i})", max_tokens=48)
             for i in range(40)]
    f = client.files.create(file=("long.jsonl", jsonl(lines)), purpose="batch")
    b = client.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions",
                              completion_window="24h")
    t = time.time()
    while client.batches.retrieve(b.id).request_counts.completed < 2:
        assert time.time() - t < 300, "no line finished"
        time.sleep(0.2)
    c = client.batches.cancel(b.id)
    assert c.status == "cancelling" and c.cancelling_at, c
    b = wait(b.id)
    assert b.status == "cancelled" and b.cancelled_at, b
    done = b.request_counts.completed
    assert 2 <= done < len(lines), b
    out = output_lines(b.output_file_id)
    assert len(out) == done and len({o["custom_id"] for o in out}) == done, out
    try:
        client.batches.cancel(b.id)
        raise AssertionError("an ended batch was cancelled again")
    except Exception as e:
        assert getattr(e, "status_code", None) == 409, e


def batches_list_with_a_cursor():
    page = client.batches.list(limit=2)
    assert len(page.data) == 2 and page.has_more, page
    nxt = client.batches.list(limit=2, after=page.data[-1].id)
    first_ids = {b.id for b in page.data}
    assert nxt.data and not first_ids & {b.id for b in nxt.data}, nxt
    # Newest first.
    assert page.data[0].created_at >= page.data[1].created_at


run([files_round_trip, chat_batch_matches_the_api, completions_batch_matches_the_api,
     a_bad_file_fails_with_its_lines_and_runs_nothing, cancel_mid_run_keeps_what_was_done,
     batches_list_with_a_cursor])
