"""CompareWidget and CompareState: the same clicks fanned out to several SAMs. (Shared fixtures:
widget_support.py.)"""

import numpy as np
import pytest
import torch

import sam_lab
import sam_lab.widgets
from widget_support import RecordingPredictor, image, tiny  # noqa: F401  (fixtures)


# ------------------------------------------------------------------------------ CompareWidget
def test_compare_fans_the_same_clicks_out_to_every_model(tiny, image):
    from sam_lab.widgets import CompareState

    torch.manual_seed(1)
    other = sam_lab.build_sam("tiny").eval()
    state = CompareState({"ours": (tiny, "seed 0"), "other": (other, "seed 1")}, image)
    assert all(panel.state is None for panel in state.panels.values())  # nothing encoded before a click
    state.add_point(215, 130)
    state.add_point(245, 115, label=0)
    for panel in state.panels.values():
        assert panel.state.points == ((215.0, 130.0, 1), (245.0, 115.0, 0)) and panel.status == "ready"
        assert panel.state.masks.shape == (1, 240, 320) and panel.state.current.refined  # two prompts: one mask
        assert panel.state.encode_ms > 0 and panel.state.latency_ms > 0
    ours, theirs = (state.panels[k].state.current.scores for k in ("ours", "other"))
    assert not np.allclose(ours, theirs)  # two models really answered
    assert state.undo() and all(p.state.points == ((215.0, 130.0, 1),) for p in state.panels.values())
    state.reset()
    assert state.points == () and all(p.state.masks is None for p in state.panels.values())


def test_compare_encodes_lazily_with_progress_and_refuses_bad_clicks_before_any_work(image):
    from sam_lab.widgets import CompareState

    events = []
    state = CompareState(["tiny"], image, on_change=lambda key: events.append(state.panels[key].progress))
    panel = state.panels["tiny"]
    assert not panel.choice.built and "on the first click" in panel.status
    with pytest.raises(ValueError, match="outside the image"):
        state.add_point(500, 10)
    assert not panel.choice.built and events == [] and state.points == ()
    state.add_point(100, 100)
    progress = [p for p in events if p is not None]
    assert progress == [0.0, 0.25, 0.5, 0.75, 1.0]  # tiny has 4 encoder blocks
    assert panel.progress is None and panel.choice.built


def test_compare_labels_models_without_weights_untrained_and_estimates_encoder_time(image, tmp_path, monkeypatch):
    from sam_lab.weights import find_checkpoint
    from sam_lab.widgets import CompareWidget, estimate_encode_seconds

    from sam_lab.widgets import compare_state
    from sam_lab.widgets.calibrate import EncodeEstimate

    monkeypatch.setenv("SAM_LAB_CHECKPOINTS", str(tmp_path / "empty"))
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    measured = []  # the calibration itself is tested below; here, that each panel asks for one
    monkeypatch.setattr(compare_state, "estimate_encode", lambda config, device: measured.append(config.name)
                        or EncodeEstimate(60.0, 6.0e12, 1.0e11, 0.5))
    widget = CompareWidget({"B": "vit_b", "H": "vit_h"}, image, folder=tmp_path)
    b, h = widget.panels
    assert b["trained"] is False and b["weights"] == "untrained (random weights)"
    assert b["parameters"] == "93.7 M parameters" and h["parameters"] == "641.1 M parameters"
    assert measured == ["vit_b", "vit_h"]
    assert "about 60.0 s on this CPU (2 threads), measured just now (6000 GFLOP at 100.0 GFLOP/s)" in h["status"]
    assert estimate_encode_seconds("no_such_model") is None
    assert not widget.state.panels["H"].choice.built  # ViT-H is not even built before a click

    checkpoint = tmp_path / "sam_vit_b_01ec64.pth"
    checkpoint.write_bytes(b"")  # found by name; not loaded until a click needs it
    assert find_checkpoint("vit_b", tmp_path) == checkpoint
    found = CompareWidget({"B": "vit_b"}, image, folder=tmp_path).panels[0]
    assert found["trained"] is True and found["weights"] == "Meta checkpoint sam_vit_b_01ec64.pth"


def test_compare_widget_syncs_panels_and_masks_and_reports_bad_clicks(tiny, image):
    from sam_lab.widgets import CompareWidget

    widget = CompareWidget({"tiny": (tiny, "random")}, image)
    widget.points = [[215, 130, 1]]
    (panel,) = widget.panels
    assert widget.received == "kernel received point (x=215.00, y=130.00), label 1"
    assert len(panel["scores"]) == 3 and panel["decoder"].endswith("ms") and panel["encoder"]
    assert widget.mask_urls[0].startswith("data:image/png;base64,")
    widget.points = widget.points + [[-4, 10, 1]]
    assert "outside the image" in widget.error and widget.points == [[215.0, 130.0, 1]]
    widget.command = {"name": "reset", "count": 1}
    assert widget.points == [] and widget.mask_urls == [""] and widget.error == ""


def test_compare_shows_a_fast_models_mask_while_a_slow_one_still_encodes(tiny, image):
    from sam_lab.widgets import CompareWidget

    torch.manual_seed(2)
    widget = CompareWidget({"fast": (tiny, "a"), "slow": (sam_lab.build_sam("tiny").eval(), "b")}, image)
    seen = []
    widget.observe(lambda change: seen.append((change["new"][1]["progress"], list(widget.mask_urls))), "panels")
    widget.points = [[215, 130, 1]]
    while_encoding = [urls for progress, urls in seen if progress is not None]
    assert while_encoding and all(urls[0].startswith("data:image/png") and urls[1] == "" for urls in while_encoding)


def test_the_encoder_estimate_is_counted_flops_over_a_rate_measured_here():
    from sam_lab.widgets.calibrate import encoder_flops, estimate_encode

    # ViT-B: 12 blocks on a 64x64 grid of 768 channels; about 0.49 T multiply-adds (Meta's figure
    # for its encoder is ~487 GMACs), counted on shapes without running anything
    assert 0.9e12 < encoder_flops("vit_b") < 1.05e12
    assert encoder_flops("vit_b") < encoder_flops("vit_l") < encoder_flops("vit_h")
    tiny = estimate_encode("tiny")
    assert tiny.flops == encoder_flops("tiny") and tiny.rate > 1e6
    assert tiny.seconds == pytest.approx(tiny.flops / tiny.rate) and tiny.measured_s < 30
