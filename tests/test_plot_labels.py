"""Point labels of scatter figures: crowded points get label boxes that overlap neither each other nor a marker."""
import pytest

from workbench.plots.labels import MARKER_PX, Box, add_point_labels, place_labels, text_size


def _boxes(points, texts, offsets):
    return [Box.around(x + dx, y + dy, *text_size(t))
            for (x, y), t, (dx, dy) in zip(points, texts, offsets, strict=True)]


def test_crowded_labels_do_not_overlap_each_other_or_markers():
    # twelve defenses within a few pixels of each other, as on a leaderboard where HS differs by 1-2 points
    points = [(300 + 3 * i, 200 + (i % 3) * 4) for i in range(12)]
    texts = [f"defense_{i}(lamb=0.{i})" for i in range(12)]
    offsets = place_labels(points, texts, 800, 450)
    boxes = _boxes(points, texts, offsets)
    markers = [Box.around(x, y, MARKER_PX, MARKER_PX) for x, y in points]
    for i, b in enumerate(boxes):
        assert b.inside(800, 450)
        assert all(b.overlap(m) == 0 for m in markers)
        assert all(b.overlap(o) == 0 for o in boxes[i + 1:]), f"label {i} overlaps a later one"


def test_lone_point_keeps_its_label_close_and_above():
    (dx, dy), = place_labels([(400, 300)], ["sft"], 800, 450)
    assert dx == pytest.approx(0, abs=1e-9) and dy < 0 and abs(dy) <= 20


def test_labels_become_annotations_pointing_at_their_points():
    import plotly.graph_objects as go

    fig = add_point_labels(go.Figure(), [10.0, 10.0], [80.0, 80.0], ["a", "b"], (0, 20), (60, 100), (800, 450))
    ann = fig.layout.annotations
    assert [a.text for a in ann] == ["a", "b"] and [a.x for a in ann] == [10.0, 10.0]
    assert (ann[0].ax, ann[0].ay) != (ann[1].ax, ann[1].ay)


def test_mismatched_labels_are_an_error():
    with pytest.raises(ValueError, match="2 points but 1 labels"):
        place_labels([(0, 0), (1, 1)], ["a"], 100, 100)
