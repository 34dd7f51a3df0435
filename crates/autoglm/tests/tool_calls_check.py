"""Tool calling through the official openai SDK, unmodified, against a running
`autoglm serve` on the real model, greedy: every `tool_choice` mode, streamed and not,
parallel calls, and tool results fed back in a later turn. Each call's arguments must
parse as JSON and validate against the function's own schema.

Usage: python3 tool_calls_check.py BASE_URL
Prints one line per case and "N passed, 0 failed"; exits non-zero on any failure.
"""
import json
import sys

from openai import OpenAI

from check_runner import run

client = OpenAI(base_url=sys.argv[1], api_key="none", max_retries=0, timeout=120)
model = client.models.list().data[0].id

UNITS = ["celsius", "fahrenheit"]
TOOLS = [
    {"type": "function", "function": {
        "name": "get_weather", "description": "Current weather in a city",
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string"}, "unit": {"type": "string", "enum": UNITS}},
            "required": ["city"]}}},
    {"type": "function", "function": {
        "name": "get_time", "description": "Local time in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                       "required": ["city"]}}},
]
NAMES = {t["function"]["name"] for t in TOOLS}

# An earlier turn that called two functions at once and got their results: the history
# a second turn is rendered from, and the example a small model follows to call twice.
HISTORY = [
    {"role": "user", "content": "What is the weather in Rome and in Madrid?"},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function",
         "function": {"name": "get_weather", "arguments": "{\"city\": \"Rome\"}"}},
        {"id": "call_2", "type": "function",
         "function": {"name": "get_weather", "arguments": "{\"city\": \"Madrid\"}"}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": "{\"temperature\": 25}"},
    {"role": "tool", "tool_call_id": "call_2", "content": "{\"temperature\": 28}"},
    {"role": "assistant", "content": "It is 25 degrees in Rome and 28 in Madrid."},
]


def check_args(call):
    """The arguments are a JSON object valid under the function's schema."""
    assert call.type == "function", call
    assert call.function.name in NAMES, call
    assert call.id.startswith("call_"), call
    args = json.loads(call.function.arguments)
    assert isinstance(args, dict) and isinstance(args.get("city"), str), args
    allowed = {"city", "unit"} if call.function.name == "get_weather" else {"city"}
    assert set(args) <= allowed, args
    if "unit" in args:
        assert args["unit"] in UNITS, args
    return args


def ask(messages, stream=False, **kw):
    return client.chat.completions.create(
        model=model, messages=messages, tools=TOOLS, temperature=0, max_tokens=80,
        stream=stream, **kw)


def streamed(messages, **kw):
    """Reassembles a stream: content, and calls from their deltas (the first per call
    has its id, type and name; later ones only argument fragments)."""
    content, calls, finish = "", {}, None
    for chunk in ask(messages, stream=True, **kw):
        if not chunk.choices:
            continue
        c = chunk.choices[0]
        content += c.delta.content or ""
        for d in c.delta.tool_calls or []:
            if d.index not in calls:
                assert d.id and d.type == "function" and d.function.name, d
                calls[d.index] = {"id": d.id, "name": d.function.name, "arguments": ""}
            else:
                assert d.id is None and d.function.name is None, d
            calls[d.index]["arguments"] += d.function.arguments or ""
        finish = c.finish_reason or finish
    return content, [calls[i] for i in sorted(calls)], finish


def user(q):
    return [{"role": "user", "content": q}]


def case_required():
    r = ask(user("What is the weather in Paris?"), tool_choice="required")
    c = r.choices[0]
    assert c.finish_reason == "tool_calls", c
    assert c.message.content is None, c.message
    assert check_args(c.message.tool_calls[0])["city"] == "Paris", c.message


def case_named():
    r = ask(user("What is the weather in Paris?"),
            tool_choice={"type": "function", "function": {"name": "get_time"}})
    calls = r.choices[0].message.tool_calls
    assert len(calls) == 1 and calls[0].function.name == "get_time", calls
    check_args(calls[0])


def case_auto_calls():
    r = ask(user("Write a <tool_call> that gets the weather in Paris."), tool_choice="auto")
    c = r.choices[0]
    assert c.finish_reason == "tool_calls" and c.message.tool_calls, c
    check_args(c.message.tool_calls[0])


def case_auto_answers():
    r = ask(user("What is the weather in Paris?"), tool_choice="auto")
    c = r.choices[0]
    assert c.finish_reason == "stop" and not c.message.tool_calls, c
    assert c.message.content, c


def case_none():
    r = ask(user("Write a <tool_call> that gets the weather in Paris."), tool_choice="none")
    c = r.choices[0]
    assert not c.message.tool_calls and c.finish_reason in ("stop", "length"), c
    assert c.message.content, c


def case_streamed_matches_whole():
    for kw in ({"tool_choice": "required"},
               {"tool_choice": "auto"}):
        q = user("Write a <tool_call> that gets the weather in Paris.")
        whole = ask(q, **kw).choices[0]
        content, calls, finish = streamed(q, **kw)
        assert finish == whole.finish_reason == "tool_calls", (finish, whole)
        assert (content or None) == whole.message.content, (content, whole.message)
        assert [(c["name"], c["arguments"]) for c in calls] == [
            (t.function.name, t.function.arguments) for t in whole.message.tool_calls]


def case_parallel():
    msgs = HISTORY + user("What is the weather in Paris and in Berlin?")
    c = ask(msgs, tool_choice="required").choices[0]
    cities = [check_args(t)["city"] for t in c.message.tool_calls]
    assert cities == ["Paris", "Berlin"], c.message
    ids = [t.id for t in c.message.tool_calls]
    assert len(set(ids)) == 2, ids
    _, calls, finish = streamed(msgs, tool_choice="required")
    assert finish == "tool_calls" and [json.loads(x["arguments"])["city"] for x in calls] == cities
    # Without parallel calls the grammar allows one.
    one = ask(msgs, tool_choice="required", parallel_tool_calls=False).choices[0]
    assert len(one.message.tool_calls) == 1, one.message
    check_args(one.message.tool_calls[0])


def case_results_fed_back():
    msgs = user("What is the weather in Paris?")
    first = ask(msgs, tool_choice="required").choices[0].message
    call = first.tool_calls[0]
    msgs = msgs + [first.model_dump(exclude_none=True),
                   {"role": "tool", "tool_call_id": call.id,
                    "content": "{\"temperature\": 19, \"sky\": \"clear\"}"}]
    second = ask(msgs, tool_choice="none").choices[0]
    assert second.message.content and not second.message.tool_calls, second
    assert second.finish_reason in ("stop", "length")


CASES = [case_required, case_named, case_auto_calls, case_auto_answers, case_none,
         case_streamed_matches_whole, case_parallel, case_results_fed_back]
run(CASES)
