"""LangChain against a running `autoglm serve`, as its users write it:
`ChatOpenAI(...).with_structured_output(Model)` (json_schema and function_calling
methods) and `.bind_tools([...])`, greedy on the real model.

Usage: python3 langchain_check.py BASE_URL
Prints one line per case and "N passed, 0 failed"; exits non-zero on any failure.
"""
import sys
from typing import Literal

from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from pydantic import BaseModel, Field

from check_runner import run

llm = ChatOpenAI(base_url=sys.argv[1], api_key="none", model="", temperature=0,
                 max_tokens=80, max_retries=0, timeout=120)


class Person(BaseModel):
    """A person."""
    name: str = Field(max_length=24)
    age: int = Field(ge=0, le=120)


class Sentiment(BaseModel):
    """How a text feels."""
    label: Literal["positive", "negative", "neutral"]


@tool
def get_weather(city: str) -> str:
    """Current weather in a city."""
    return "sunny"


@tool
def get_time(city: str) -> str:
    """Local time in a city."""
    return "noon"


def case_structured_json_schema():
    p = llm.with_structured_output(Person, method="json_schema").invoke(
        "Invent a person.")
    assert isinstance(p, Person), p


def case_structured_function_calling():
    s = llm.with_structured_output(Sentiment, method="function_calling").invoke(
        "I love this phone!")
    assert isinstance(s, Sentiment), s


def case_bind_tools_named():
    m = llm.bind_tools([get_weather, get_time], tool_choice="get_weather").invoke(
        "What is the weather in Paris?")
    assert [c["name"] for c in m.tool_calls] == ["get_weather"], m
    assert isinstance(m.tool_calls[0]["args"]["city"], str), m.tool_calls


def case_bind_tools_required_then_result():
    bound = llm.bind_tools([get_weather, get_time], tool_choice="any")
    q = "What is the time in Tokyo?"
    m = bound.invoke(q)
    assert m.tool_calls and m.tool_calls[0]["name"] in ("get_weather", "get_time"), m
    call = m.tool_calls[0]
    result = {"get_weather": get_weather, "get_time": get_time}[call["name"]].invoke(call)
    answer = llm.bind_tools([get_weather, get_time], tool_choice="none").invoke(
        [("user", q), m, result])
    assert answer.content and not answer.tool_calls, answer


CASES = [case_structured_json_schema, case_structured_function_calling,
         case_bind_tools_named, case_bind_tools_required_then_result]
run(CASES)
