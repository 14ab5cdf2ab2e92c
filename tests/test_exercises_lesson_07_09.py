"""The your-turn checkers of lessons 07-09 name each planted learner mistake.

Every mistaken answer below is the reference with one thing broken, the way a learner might
break it; its checker must fail it and its explanation must name the cause.
"""
import numpy as np
import pytest
from scipy.ndimage import distance_transform_edt

from sam_lab.evaluation import farthest_from_boundary
from sam_lab.exercises.solutions import lesson_07, lesson_08, lesson_09


# ----------------------------------------------------------------------------- lesson 07

def test_postprocess_solution_passes():
    assert lesson_07.check_postprocess_masks(lesson_07.postprocess_masks).passed


@pytest.mark.parametrize("explanation,mistaken", lesson_07.POSTPROCESS_MISTAKES,
                         ids=[m.__name__ for _, m in lesson_07.POSTPROCESS_MISTAKES])
def test_postprocess_mistake_is_named(explanation, mistaken):
    result = lesson_07.check_postprocess_masks(mistaken)
    assert not result.passed and explanation in result.message, result.message


# ----------------------------------------------------------------------------- lesson 08

def test_loss_solutions_pass():
    assert lesson_08.check_focal_loss(lesson_08.focal_loss).passed
    assert lesson_08.check_dice_loss(lesson_08.dice_loss).passed


@pytest.mark.parametrize("explanation,mistaken", lesson_08.FOCAL_MISTAKES,
                         ids=[m.__name__ for _, m in lesson_08.FOCAL_MISTAKES])
def test_focal_mistake_is_named(explanation, mistaken):
    result = lesson_08.check_focal_loss(mistaken)
    assert not result.passed and explanation in result.message, result.message


@pytest.mark.parametrize("explanation,mistaken", lesson_08.DICE_MISTAKES,
                         ids=[m.__name__ for _, m in lesson_08.DICE_MISTAKES])
def test_dice_mistake_is_named(explanation, mistaken):
    result = lesson_08.check_dice_loss(mistaken)
    assert not result.passed and explanation in result.message, result.message


# ----------------------------------------------------------------------------- lesson 09

def _reference(prediction, target):
    return lesson_09.next_click(prediction, target)


def _swapped(prediction, target):
    answer = _reference(prediction, target)
    return None if answer is None else (answer[0][::-1], answer[1])


def _label_from_prediction(prediction, target):
    answer = _reference(prediction, target)
    if answer is None:
        return None
    x, y = answer[0].astype(int)
    return answer[0], int(prediction[y, x])


def _middle_of_object(prediction, target):
    if not (prediction != target).any():
        return None
    point = farthest_from_boundary(target)
    return point, int(target[int(point[1]), int(point[0])])


def _border_not_boundary(prediction, target):
    error = prediction != target
    if not error.any():
        return None
    distance = distance_transform_edt(error)  # no padding: the image border is not a boundary
    y, x = np.unravel_index(np.argmax(distance), distance.shape)
    return np.array([x, y], float), int(target[y, x])


def _distance_to_object_boundary(prediction, target):
    error = prediction != target
    if not error.any():
        return None
    distance = distance_transform_edt(np.pad(target, 1))[1:-1, 1:-1] * error
    y, x = np.unravel_index(np.argmax(distance), distance.shape)
    return np.array([x, y], float), int(target[y, x])


def _never_none(prediction, target):
    answer = _reference(prediction, target)
    return answer if answer is not None else (np.zeros(2), 1)


NEXT_CLICK_MISTAKES = [
    (_swapped, "x and y are swapped"),
    (_label_from_prediction, "the label is inverted"),
    (_middle_of_object, "you clicked the middle of the object"),
    (_border_not_boundary, "the image border must count"),
    (_distance_to_object_boundary, "distance to the object's boundary"),
    (_never_none, "return None"),
]


def test_next_click_solution_passes():
    assert lesson_09.check_next_click(lesson_09.next_click).passed


@pytest.mark.parametrize("mistaken,named", NEXT_CLICK_MISTAKES, ids=[m.__name__ for m, _ in NEXT_CLICK_MISTAKES])
def test_next_click_mistake_is_named(mistaken, named):
    result = lesson_09.check_next_click(mistaken)
    assert not result.passed and named in result.message, result.message


def test_next_click_accepts_any_equally_deep_pixel():
    def last_maximum(prediction, target):
        error = prediction != target
        if not error.any():
            return None
        distance = distance_transform_edt(np.pad(error, 1))[1:-1, 1:-1]
        y, x = np.argwhere(distance == distance.max())[-1]  # another tie than np.argmax's first
        return np.array([x, y], float), int(target[y, x])

    assert lesson_09.check_next_click(last_maximum).passed
