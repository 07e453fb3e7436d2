"""The pure parts of the Label Studio path: labelling config, tasks, annotations, verdicts.

What Label Studio itself makes of them is tested against the real tool in
test_labelstudio.py; these pin down the shapes on their own.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from typing import Any

import pytest

from kanaria.review import ReviewCase
from kanaria.review.labelstudio import (
    Connection,
    annotation_class,
    case_tasks,
    label_config,
    project_title,
)
from kanaria.review.puller import Decision, classify_feedback, decisions

CLASSES = ["legit", "fraud", 'odd "one" & <two>']
NOW = datetime(2026, 3, 1, tzinfo=UTC)


def case(classes: list[int], confidence: float | None = 0.8) -> ReviewCase:
    return ReviewCase(
        requestId="r1", model="fraud", version="v2", time=NOW, confidence=confidence,
        classes=classes, inputs={"amount": [12.5]}, outputs={"probs": [[0.2, 0.8, 0.0]]},
    )  # fmt: skip


def choice(name: str) -> dict[str, Any]:
    return {"from_name": "label", "to_name": "case", "type": "choices",
            "value": {"choices": [name]}}  # fmt: skip


def test_the_config_offers_each_class_once_for_the_shown_case() -> None:
    root = ET.fromstring(label_config("fraud", CLASSES))
    text = root.find("Text")
    choices = root.find("Choices")
    assert text is not None
    assert choices is not None
    assert (text.get("name"), text.get("value")) == ("case", "$text")
    assert (choices.get("name"), choices.get("toName")) == ("label", "case")
    assert [c.get("value") for c in choices.findall("Choice")] == CLASSES
    with pytest.raises(ValueError, match="unique"):
        label_config("fraud", ["a", "a"])
    with pytest.raises(ValueError, match="at least 2"):
        label_config("fraud", ["a"])


def test_a_task_shows_the_case_and_pre_fills_the_models_class() -> None:
    [task] = case_tasks(case([1]), CLASSES)
    data = task["data"]
    assert (data["request_id"], data["version"], data["row"], data["rows"]) == ("r1", "v2", 0, 1)
    assert "The model suggests: fraud (confidence 0.80)" in data["text"]
    assert "amount: [12.5]" in data["text"]
    [prediction] = task["predictions"]
    assert prediction["model_version"] == "v2"
    assert prediction["score"] == 0.8
    assert prediction["result"] == [choice("fraud")]


def test_several_rows_make_one_task_each_and_no_class_no_prediction() -> None:
    tasks = case_tasks(case([0, 2]), CLASSES)
    assert [t["data"]["row"] for t in tasks] == [0, 1]
    assert [t["predictions"][0]["result"][0]["value"]["choices"] for t in tasks] == [
        ["legit"],
        [CLASSES[2]],
    ]
    [plain] = case_tasks(case([], confidence=None), CLASSES)
    assert "predictions" not in plain
    assert plain["data"]["rows"] == 1


def test_an_annotation_names_a_class_or_nothing() -> None:
    assert annotation_class({"result": [choice("fraud")]}, CLASSES) == 1
    assert annotation_class({"result": [choice("fraud")], "was_cancelled": True}, CLASSES) is None
    assert annotation_class({"result": [choice("other")]}, CLASSES) is None
    assert annotation_class({"result": []}, CLASSES) is None


def task(request_id: str, row: int, rows: int, *annotations: dict[str, Any]) -> dict[str, Any]:
    return {
        "data": {"request_id": request_id, "row": row, "rows": rows},
        "annotations": list(annotations),
    }


def test_decisions_take_the_latest_submitted_choice_per_row() -> None:
    tasks = [
        task("a", 0, 1,
             {"id": 1, "updated_at": "2026-03-01T10:00:00Z", "result": [choice("legit")]},
             {"id": 2, "updated_at": "2026-03-01T11:00:00Z", "result": [choice("fraud")]},
             {"id": 3, "updated_at": "2026-03-01T12:00:00Z", "was_cancelled": True,
              "result": []}),
        task("b", 0, 2, {"id": 4, "result": [choice("legit")]}),
        task("b", 1, 2, {"id": 5, "result": [choice("fraud")]}),
        task("c", 0, 2, {"id": 6, "result": [choice("fraud")]}),
        task("d", 0, 1, {"id": 7, "result": [choice("unheard of")]}),
        {"data": {"something": "else"}, "annotations": [{"id": 8}]},
    ]  # fmt: skip
    found, invalid = decisions(tasks, CLASSES)
    assert found["a"] == Decision(rows=1, labels={0: 1})
    assert found["a"].label() == 1
    assert found["b"].complete()
    assert found["b"].label() == [0, 1]
    assert not found["c"].complete()
    assert "d" not in found
    assert invalid == {7}


@pytest.mark.parametrize(
    ("status", "body", "verdict"),
    [
        (200, {"matched": 1, "correct": 1, "incorrect": 0, "unknown": []}, "accepted"),
        (200, {"matched": 0, "correct": 0, "incorrect": 0, "unknown": ["r1"]}, "unknown"),
        (200, {"forwarded": {"v1": 1}, "unknown": [], "errors": {}}, "accepted"),
        (404, {"error": "no prediction with id(s) r1 is remembered"}, "unknown"),
        (502, {"forwarded": {"v1": 1}, "unknown": [], "errors": {"v1": {}}}, "retry"),
        (429, None, "retry"),
        (400, {"error": "'label' must be a class index"}, "refused"),
    ],
)
def test_what_a_feedback_answer_means(status: int, body: Any, verdict: str) -> None:
    assert classify_feedback(status, body, "r1") == verdict


def test_titles_and_token_scheme() -> None:
    assert project_title("fraud") == "Kanaria review: fraud"
    assert project_title("fraud", "ml") == "Kanaria review: ml/fraud"
    long_a, long_b = project_title("a" * 63, "ns"), project_title("a" * 62 + "b", "ns")
    assert len(long_a) == len(long_b) == 50  # Label Studio's limit
    assert long_a != long_b
    assert long_a.startswith("Kanaria review: ns/aaa")
    assert Connection("http://x", "abc123").headers() == {"Authorization": "Token abc123"}
