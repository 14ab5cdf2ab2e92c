"""The plotting helpers draw what their docstrings promise, on a headless (Agg) backend."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.colors import to_rgba  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from sam_lab.viz import POSITIVE_COLOR, show_box, show_candidates, show_mask, show_points  # noqa: E402


@pytest.fixture
def ax():
    fig, ax = plt.subplots()
    yield ax
    plt.close(fig)


def test_show_mask_is_opaque_only_where_the_mask_is_true(ax):
    mask = np.zeros((6, 8), dtype=bool)
    mask[1:3, 2:5] = True
    layer = show_mask(mask, ax).get_array()  # (H, W, RGBA)
    assert layer.shape == (6, 8, 4)
    assert np.all(layer[mask][:, 3] > 0)
    assert np.all(layer[~mask][:, 3] == 0)


def test_show_mask_uses_the_given_color_and_keeps_its_alpha(ax):
    mask = np.ones((2, 2), dtype=bool)
    red = show_mask(mask, ax, color="red").get_array()[0, 0]
    np.testing.assert_allclose(red[:3], (1, 0, 0))
    assert 0 < red[3] < 1  # a named color gets the default translucency
    explicit = show_mask(mask, ax, color=(0, 1, 0, 0.25)).get_array()[0, 0]
    np.testing.assert_allclose(explicit, (0, 1, 0, 0.25))


def test_show_mask_accepts_a_single_mask_with_a_leading_axis(ax):
    assert show_mask(np.ones((1, 3, 4), dtype=bool), ax).get_array().shape == (3, 4, 4)
    with pytest.raises(ValueError, match="mask"):
        show_mask(np.ones((2, 3, 4), dtype=bool), ax)


def test_show_points_draws_positive_and_negative_clicks_apart(ax):
    coords = np.array([[10, 20], [30, 40], [50, 60]])
    show_points(coords, np.array([1, 0, 1]), ax)
    positive, negative = ax.collections
    np.testing.assert_array_equal(positive.get_offsets(), [[10, 20], [50, 60]])
    np.testing.assert_array_equal(negative.get_offsets(), [[30, 40]])
    assert tuple(positive.get_facecolor()[0]) != tuple(negative.get_facecolor()[0])


def test_show_points_rejects_a_label_count_that_does_not_match(ax):
    with pytest.raises(ValueError, match="labels"):
        show_points(np.zeros((2, 2)), np.ones(3), ax)


def test_show_box_draws_a_rectangle_from_corner_coordinates(ax):
    rectangle = show_box(np.array([10, 20, 110, 70]), ax)
    assert isinstance(rectangle, Rectangle) and rectangle in ax.patches
    assert rectangle.get_xy() == (10, 20)
    assert (rectangle.get_width(), rectangle.get_height()) == (100, 50)
    assert not rectangle.get_fill()


def test_show_candidates_makes_one_panel_per_mask_titled_with_its_score():
    image = np.zeros((16, 24, 3), dtype=np.uint8)
    masks = np.zeros((3, 16, 24), dtype=bool)
    masks[:, 4:8, 4:12] = True
    scores = np.array([0.5, 0.875, 0.25])
    fig = show_candidates(image, masks, scores, points=(np.array([[6, 6]]), np.array([1])), box=[2, 2, 20, 12])
    try:
        assert len(fig.axes) == 3
        titles = [ax.get_title() for ax in fig.axes]
        for title, score in zip(titles, scores):
            assert f"{score:.3f}" in title
        assert [("best" in title) for title in titles] == [False, True, False]
        for ax in fig.axes:
            assert len(ax.images) == 2  # the photo, then the mask layer
            assert len(ax.collections) == 2 and len(ax.patches) == 1  # clicks (+/-) and the box
            np.testing.assert_array_equal(ax.collections[0].get_offsets(), [[6, 6]])
    finally:
        plt.close(fig)


def test_show_candidates_takes_bare_coordinates_as_positive_clicks():
    fig = show_candidates(np.zeros((8, 8, 3)), np.ones((1, 8, 8), dtype=bool), [0.9], points=np.array([[1, 2]]))
    try:
        (ax,) = fig.axes
        positive, negative = ax.collections
        assert len(positive.get_offsets()) == 1 and len(negative.get_offsets()) == 0
        assert to_rgba(POSITIVE_COLOR) == tuple(positive.get_facecolor()[0])
    finally:
        plt.close(fig)


def test_show_candidates_needs_one_score_per_mask():
    with pytest.raises(ValueError, match="scores"):
        show_candidates(np.zeros((8, 8, 3)), np.ones((3, 8, 8), dtype=bool), [0.9, 0.8])
