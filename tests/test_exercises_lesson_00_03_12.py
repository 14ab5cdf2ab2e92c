"""The checkers of lessons 00, 03b and 12 name the mistake a learner is likely to make.

(Lesson 03's exercise, the encoder block, is checked by the ``encoder_block`` stage, whose
diagnoses are tested in tests/test_exercises.py.)"""
from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from sam_lab.exercises.solutions import lesson_00, lesson_03b, lesson_12
from sam_lab.exercises.turns import run_turn_check
from sam_lab.inference.transforms import ResizeLongestSide
from sam_lab.training.mae import normalised_targets


def test_click_solution_is_the_predictors_transform():
    for _, (coords, size, target), _ in lesson_00.CASES:
        expected = ResizeLongestSide(target).apply_coords(coords, size)
        assert np.array_equal(lesson_00.apply_coords(coords, size, target), expected)


@pytest.mark.parametrize("explanation,mistaken", lesson_00.MISTAKES, ids=[m.__name__ for _, m in lesson_00.MISTAKES])
def test_click_checker_names_each_mistake(explanation, mistaken):
    result = run_turn_check("click_to_model_input", mistaken)
    assert not result.passed and explanation in result.message


def test_click_checker_is_not_fooled_by_changing_the_input_in_place():
    def in_place(coords, original_size, target_length):
        coords = coords.astype(float)
        scaled = lesson_00.apply_coords(coords, original_size, target_length)
        coords[...] = -1  # spoils only its own copy
        return scaled

    assert run_turn_check("click_to_model_input", in_place).passed


def test_mae_target_solution_is_the_librarys():
    for _, args, kwargs in lesson_03b._cases():
        torch.testing.assert_close(lesson_03b.normalised_targets(*args, **kwargs), normalised_targets(*args, **kwargs))


@pytest.mark.parametrize("explanation,mistaken", lesson_03b.MISTAKES, ids=[m.__name__ for _, m in lesson_03b.MISTAKES])
def test_mae_target_checker_names_each_mistake(explanation, mistaken):
    result = run_turn_check("normalised_targets", mistaken)
    assert not result.passed and explanation in result.message


def test_mae_target_checker_says_eps_when_a_flat_patch_gives_nan():
    def without_eps(images, patch, eps=1e-6):
        rows = lesson_03b.patch_rows(images, patch)
        return (rows - rows.mean(-1, keepdim=True)) / rows.var(-1, keepdim=True).sqrt()

    result = run_turn_check("normalised_targets", without_eps)
    assert not result.passed and "add eps inside the square root" in result.message


def test_md5_solution_fits_metas_names():
    from sam_lab.weights import CHECKPOINTS

    for info in CHECKPOINTS.values():  # the recorded full MD5 starts with the name's digits
        assert info.md5.startswith(info.hash_prefix)
    data = b"x" * 100
    assert lesson_12.name_matches_md5(f"sam_vit_b_{hashlib.md5(data).hexdigest()[:6]}.pth", data)


@pytest.mark.parametrize("explanation,mistaken", lesson_12.MISTAKES, ids=[m.__name__ for _, m in lesson_12.MISTAKES])
def test_md5_checker_names_each_mistake(explanation, mistaken):
    result = run_turn_check("name_matches_md5", mistaken)
    assert not result.passed and explanation in result.message


def test_md5_checker_wants_a_yes_or_no():
    result = run_turn_check("name_matches_md5", lambda filename, contents: hashlib.md5(contents).hexdigest()[:6])
    assert not result.passed and "return True or False" in result.message
