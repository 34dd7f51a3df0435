"""Structured outputs through the official openai SDK, unmodified: `chat.completions.parse`
with Pydantic models (nested objects, enums, arrays, optional fields, bounded numbers,
string patterns) against a running `autoglm serve`, greedy, every answer parsed and
validated by Pydantic itself.

Usage: python3 structured_outputs_check.py BASE_URL
Prints one line per case and "N passed, 0 failed"; exits non-zero on any failure.
"""
import enum
import json
import sys
from typing import List, Literal, Optional

from openai import OpenAI
from pydantic import BaseModel, Field

client = OpenAI(base_url=sys.argv[1], api_key="none", max_retries=0, timeout=120)
model = client.models.list().data[0].id

Short = Field(max_length=24)


class Colour(str, enum.Enum):
    red = "red"
    green = "green"
    blue = "blue"


class City(BaseModel):
    name: str = Short
    country: str = Short


class Person(BaseModel):
    name: str = Short
    age: int = Field(ge=0, le=120)


class Pet(BaseModel):
    kind: Literal["cat", "dog", "fish"]
    name: str = Short


class Owner(BaseModel):
    person: Person
    pets: List[Pet] = Field(max_length=3)


class Answer(BaseModel):
    answer: bool


class Score(BaseModel):
    score: float = Field(ge=0, le=10)


class Favourite(BaseModel):
    colour: Colour


class Tags(BaseModel):
    tags: List[str] = Field(max_length=4)


class Point(BaseModel):
    x: int = Field(ge=-100, le=100)
    y: int = Field(ge=-100, le=100)


class Line(BaseModel):
    start: Point
    end: Point


class Book(BaseModel):
    title: str = Short
    year: int = Field(ge=1400, le=2030)
    subtitle: Optional[str] = Field(default=None, max_length=24)


class Weather(BaseModel):
    city: str = Short
    temperature_c: int = Field(ge=-60, le=60)
    condition: Literal["sunny", "cloudy", "rainy", "snowy"]


class Recipe(BaseModel):
    dish: str = Short
    ingredients: List[str] = Field(max_length=5)
    minutes: int = Field(ge=1, le=600)


class Action(BaseModel):
    action: Literal["tap", "type", "swipe", "back", "finish"]
    x: Optional[int] = Field(default=None, ge=0, le=1000)
    y: Optional[int] = Field(default=None, ge=0, le=1000)
    text: Optional[str] = Field(default=None, max_length=30)


class Step(BaseModel):
    thought: str = Field(max_length=60)
    action: Action


class Plan(BaseModel):
    steps: List[Step] = Field(max_length=2)


class Sentiment(BaseModel):
    label: Literal["positive", "negative", "neutral"]
    confidence: float = Field(ge=0, le=1)


class Translation(BaseModel):
    source_language: str = Short
    target_language: str = Short
    text: str = Field(max_length=40)


class Version(BaseModel):
    major: int = Field(ge=0, le=99)
    minor: int = Field(ge=0, le=99)
    patch: int = Field(ge=0, le=99)


class Contact(BaseModel):
    email: str = Field(pattern=r"^[a-z]{1,10}@[a-z]{1,10}\.(com|org)$")
    phone: Optional[str] = Field(default=None, pattern=r"^[0-9]{3}-[0-9]{4}$")


class Matrix(BaseModel):
    rows: List[List[int]] = Field(max_length=2)


class Inventory(BaseModel):
    items: List[City] = Field(max_length=2)
    total: int = Field(ge=0, le=1000)


class Nested(BaseModel):
    owner: Owner
    city: City


CASES = [
    (City, "Name a city and its country."),
    (Person, "Invent a person with a name and an age."),
    (Pet, "Describe a pet."),
    (Owner, "Describe a pet owner and their pets."),
    (Answer, "Is water wet? Answer true or false."),
    (Score, "Rate pizza from 0 to 10."),
    (Favourite, "What is your favourite colour?"),
    (Tags, "Give tags for a photo of a beach."),
    (Point, "Give a point on a grid."),
    (Line, "Give a line segment as two points."),
    (Book, "Name a famous book."),
    (Weather, "Report the weather in Paris."),
    (Recipe, "Give a short recipe."),
    (Action, "Tap the Settings icon at 120, 540."),
    (Step, "Open the browser: say what you think, then act."),
    (Plan, "Plan two steps to send a message."),
    (Sentiment, "Classify: I love this phone."),
    (Translation, "Translate 'hello' to French."),
    (Version, "What version is this software? It is 1.2.3."),
    (Contact, "Give a contact email."),
    (Matrix, "Give a 2x2 matrix of small integers."),
    (Inventory, "List two cities in stock and the total."),
    (Nested, "Describe a pet owner and the city they live in."),
]

passed, failed = 0, 0
for schema, prompt in CASES:
    name = schema.__name__
    try:
        r = client.chat.completions.parse(
            model=model,
            messages=[{"role": "user", "content": prompt}],
            response_format=schema,
            temperature=0,
            max_tokens=400,
            extra_headers={"Cache-Control": "no-store"},
        )
        c = r.choices[0]
        assert c.finish_reason == "stop", (c.finish_reason, c.message.content)
        assert isinstance(c.message.parsed, schema), c.message.content
        # What Pydantic parsed is what was sent: the raw text is that same JSON.
        assert schema.model_validate(json.loads(c.message.content)) == c.message.parsed
        print(f"ok   {name}: {c.message.content.strip()[:100]!r}")
        passed += 1
    except Exception as e:  # noqa: BLE001 - every failure is reported, then counted
        print(f"FAIL {name}: {e!r}")
        failed += 1

# json_object: any object, always parseable.
for prompt in ["Describe a cat as JSON.", "Give me a JSON object with two numbers.", "JSON for a car."]:
    r = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": prompt}],
        response_format={"type": "json_object"},
        temperature=0,
        max_tokens=400,
        extra_headers={"Cache-Control": "no-store"},
    )
    c = r.choices[0]
    try:
        if c.finish_reason == "stop":
            assert isinstance(json.loads(c.message.content), dict), c.message.content
        else:
            # Out of tokens mid-object: the text so far is a prefix of an object.
            assert c.finish_reason == "length" and c.message.content.lstrip().startswith("{")
        print(f"ok   json_object ({c.finish_reason}): {c.message.content.strip()[:60]!r}")
        passed += 1
    except AssertionError as e:
        print(f"FAIL json_object: {e!r}")
        failed += 1

print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
