"""Text prompts (issue 15): the CLIP tower, the projection, the predictor's text argument, the
training of a text path (exact resume, the paper's image-crop recipe) and the shipped text path."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from sam_lab import load_model
from sam_lab.inference.predictor import SamPredictor
from sam_lab.modeling.sam import with_text_tokens
from sam_lab.modeling.text_prompt import (ClipTower, TextGrounding, TextPromptEncoder, add_text_path, has_text_path,
                                         text_mask_prior)
from sam_lab.training.data.synthetic import SyntheticShapes
from sam_lab.training.text import TextTrainConfig, caption_targets, evaluate_text, train_text_path
from sam_lab.weights.pretrained import SHIPPED_TEXT, load_text_model


@pytest.fixture(scope="module")
def tower():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ClipTower()


@pytest.fixture(scope="module")
def text_model(tower):
    """A random text path with all its parts: the colour skip given weights (a fresh one adds
    zero) and the grounding, so the predictor's tests run through both."""
    model = load_model("tiny")
    add_text_path(model, tower, colour_skip=True, grounding=True)
    torch.manual_seed(0)
    torch.nn.init.normal_(model.text_encoder.colour_skip.write.weight, std=0.05)
    return model


@pytest.fixture(scope="module")
def predictor(text_model):
    p = SamPredictor(text_model)
    p.set_image(SyntheticShapes(1, seed=3)[0]["image"])
    return p


# ----------------------------------------------------------------------------- captions

def test_captions_name_one_mask_each():
    item = {"captions": ["red circle", "blue square", "red circle", "green hexagon"],
            "parent": np.array([-1, 0, -1, 2]), "level": np.array([0, 1, 0, 1])}
    named = caption_targets(item)
    texts = [t for _, t in named]
    assert "red circle" not in texts  # two masks are red circles
    assert (1, "blue square") in named
    assert (1, "the part inside the red circle") not in named  # which red circle?
    assert (0, "the object around the blue square") in named
    assert (2, "the object around the green hexagon") in named
    assert len(texts) == len(set(texts))


def test_captions_of_a_real_item_are_unique_and_point_at_their_mask():
    for i in range(5):
        item = SyntheticShapes(5, seed=1)[i]
        named = caption_targets(item)
        assert named, "every synthetic image has at least one caption"
        for k, text in named:
            if not text.startswith("the "):
                assert item["captions"][k] == text


# ----------------------------------------------------------------------------- the tower

def test_untrained_tower_warns_and_is_the_same_in_every_build(tower):
    with pytest.warns(UserWarning, match="untrained"):
        again = ClipTower()
    assert torch.allclose(again.fingerprint(), tower.fingerprint(), atol=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        other = ClipTower(seed=1)
    assert not torch.allclose(other.fingerprint(), tower.fingerprint(), atol=1e-3)


def test_tower_caches_each_string(tower, monkeypatch):
    first = tower.encode_text(["red circle", "blue square"])
    calls = []
    original = tower.model.encode_text
    monkeypatch.setattr(tower.model, "encode_text", lambda *a, **k: calls.append(1) or original(*a, **k))
    again = tower.encode_text(["blue square", "red circle"])
    assert not calls, "cached strings must not run the tower again"
    assert torch.equal(again, first.flip(0))
    assert torch.allclose(first.norm(dim=1), torch.ones(2), atol=1e-5)


def test_tower_warns_on_long_text_and_refuses_unknown_models(tower):
    with pytest.warns(UserWarning, match="longer than the tokenizer's context of 77"):
        tower.encode_text(["red " * 100])
    with pytest.raises(ValueError, match="model_name"):
        ClipTower("no-such-clip")


def test_tower_embeds_image_crops(tower):
    crops = [np.zeros((30, 40, 3), np.uint8), np.full((50, 20, 3), 200, np.uint8)]
    out = tower.encode_image(crops)
    assert out.shape == (2, tower.dim)
    assert torch.allclose(out.norm(dim=1), torch.ones(2), atol=1e-5)


# ----------------------------------------------------------------------------- the projection

def test_projection_shapes_and_bad_input(tower):
    encoder = TextPromptEncoder(tower.dim, 64, num_tokens=3).attach(tower)
    assert encoder.embed_texts(["red circle", "blue square"]).shape == (2, 3, 64)
    with pytest.raises(ValueError, match="clip_embeddings"):
        encoder(torch.zeros(2, 7))
    with pytest.raises(ValueError, match="num_tokens"):
        TextPromptEncoder(512, 64, num_tokens=0)


def test_projection_refuses_another_tower(tower):
    encoder = TextPromptEncoder(tower.dim, 64).attach(tower)  # records this tower's fingerprint
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        other = ClipTower(seed=2)
    with pytest.raises(ValueError, match="not the tower this projection was trained against"):
        encoder.attach(other)


def test_standardisation_centres_the_training_captions(tower):
    encoder = TextPromptEncoder(tower.dim, 64)
    e = tower.encode_text(["red circle", "blue square", "green hexagon"])
    encoder.fit_standardisation(e)
    x = (e - encoder.center) / encoder.scale
    assert torch.allclose(x.mean(0), torch.zeros(tower.dim), atol=1e-5)


def test_text_path_keys_stay_out_of_a_plain_model(text_model):
    assert has_text_path(text_model) and not has_text_path(load_model("tiny"))
    keys = text_model.state_dict().keys()
    assert {k.split(".")[0] for k in keys} == {"image_encoder", "prompt_encoder", "mask_decoder", "text_encoder"}
    assert not any("tower" in k and "fingerprint" not in k for k in keys), "the tower's weights are not saved"


def test_text_tokens_join_the_sparse_prompts():
    sparse, dense = torch.zeros(1, 0, 8), torch.zeros(1, 8, 4, 4)
    s, d = with_text_tokens(sparse, dense, torch.ones(3, 2, 8))
    assert s.shape == (3, 2, 8) and d.shape == (3, 8, 4, 4)
    s, d = with_text_tokens(torch.zeros(3, 2, 8), torch.zeros(3, 8, 4, 4), torch.ones(3, 1, 8))
    assert s.shape == (3, 3, 8) and torch.equal(s[:, 2], torch.ones(3, 8))
    with pytest.raises(ValueError, match="text_tokens"):
        with_text_tokens(torch.zeros(2, 2, 8), dense, torch.ones(3, 1, 8))


# ----------------------------------------------------------------------------- the predictor

def test_text_prompt_alone_and_with_a_click(predictor):
    masks, scores, low = predictor.predict(text="red circle")
    assert masks.shape == (1, 256, 256) and scores.shape == (1,)
    both = predictor.predict(text="red circle", point_coords=np.array([[100, 100]]), point_labels=np.array([1]))[2]
    assert not np.allclose(both, low), "the click changes the answer"
    three = predictor.predict(text="red circle", multimask_output=True)[0]
    assert three.shape == (3, 256, 256)


def test_batched_text_prompts_match_single_calls(predictor):
    texts = ["red circle", "the part inside the blue square"]
    masks, scores, low = predictor.predict_batch(texts=texts)
    assert masks.shape == (2, 1, 256, 256)
    for b, text in enumerate(texts):
        np.testing.assert_allclose(low[b], predictor.predict(text=text)[2], atol=1e-4)
    coords, labels = np.array([[[100, 100]], [[50, 60]]]), np.ones((2, 1))
    with_clicks = predictor.predict_batch(coords, labels, texts=texts)[2]
    np.testing.assert_allclose(with_clicks[1], predictor.predict(coords[1], labels[1], text=texts[1])[2], atol=1e-4)


@pytest.mark.parametrize("kwargs, error, message", [
    ({"text": ""}, ValueError, "text: expected a non-empty string"),
    ({"text": "   "}, ValueError, "text: expected a non-empty string"),
    ({"text": 3}, TypeError, "text: expected a string, got int"),
    ({"text": ["red circle"]}, TypeError, "text: expected one string for a single prompt set"),
])
def test_bad_text_is_refused_naming_the_argument(predictor, kwargs, error, message):
    with pytest.raises(error, match=message):
        predictor.predict(**kwargs)


def test_bad_batched_texts_are_refused(predictor):
    with pytest.raises(TypeError, match="texts: expected a list of strings"):
        predictor.predict_batch(texts="red circle")
    with pytest.raises(ValueError, match=r"texts\[1\]: expected a non-empty string"):
        predictor.predict_batch(texts=["red circle", ""])
    with pytest.raises(ValueError, match="batch size"):
        predictor.predict_batch(np.zeros((3, 1, 2)), np.ones((3, 1)), texts=["a", "b"])


def test_text_on_a_model_without_a_text_path_is_refused():
    p = SamPredictor(load_model("tiny"))
    p.set_image(np.zeros((64, 64, 3), np.uint8))
    with pytest.raises(ValueError, match="text: this model has no text path"):
        p.predict(text="red circle")


# ----------------------------------------------------------------------------- training

def _cfg(tmp_path, **changes):
    base = dict(out=str(tmp_path), num_images=6, steps=4, images_per_step=2, eval_images=2, checkpoint_every=2)
    return TextTrainConfig(**{**base, **changes})


def test_training_resumes_exactly_and_writes_a_loadable_text_path(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        whole = train_text_path(_cfg(tmp_path / "whole"), progress=False)
        train_text_path(_cfg(tmp_path / "cut"), progress=False, stop_after=2)  # "killed" after 2 steps
        resumed = train_text_path(_cfg(tmp_path / "cut"), progress=False)
        for key, value in whole.state_dict().items():
            assert torch.equal(value, resumed.state_dict()[key]), key
        loaded = load_text_model(tmp_path / "whole" / "text_path.safetensors")
    for key, value in whole.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key
    assert (tmp_path / "whole" / "metrics.json").is_file()


def test_resume_refuses_another_configuration(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train_text_path(_cfg(tmp_path), progress=False, stop_after=2)
        with pytest.raises(ValueError, match="another configuration"):
            train_text_path(_cfg(tmp_path, lr=5e-4), progress=False)


def test_the_papers_recipe_trains_on_image_crops(tmp_path, monkeypatch):
    """The plumbing of the paper's recipe with a random tower: prompts are CLIP image embeddings
    of the crops of masks large enough; the decoder and projection train; text is evaluated."""
    seen = []
    original = ClipTower.encode_image
    monkeypatch.setattr(ClipTower, "encode_image", lambda self, crops: seen.extend(c.shape for c in crops) or original(self, crops))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cfg = _cfg(tmp_path, prompt_source="clip_image", min_crop=40, steps=2, eval_images=1)
        before = load_model("tiny").mask_decoder.state_dict()
        model = train_text_path(cfg, progress=False)
    assert seen and all(max(h, w) >= 40 for h, w, _ in seen), "only crops of masks at least min_crop long"
    assert any(not torch.equal(v, model.mask_decoder.state_dict()[k]) for k, v in before.items())
    with pytest.raises(ValueError, match="prompt_source"):
        TextTrainConfig(prompt_source="audio")


def test_projection_only_leaves_the_model_alone(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = train_text_path(_cfg(tmp_path, train_encoder=False, train_decoder=False, point_only=0.0, steps=2),
                                progress=False)
    plain = load_model("tiny").state_dict()
    for key, value in model.state_dict().items():
        if not key.startswith("text_encoder."):
            assert torch.equal(value, plain[key]), key


def test_the_encoder_trains_only_when_asked(tmp_path):
    plain = load_model("tiny").image_encoder.state_dict()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        frozen = train_text_path(_cfg(tmp_path / "frozen", train_encoder=False, steps=2), progress=False)
        trained = train_text_path(_cfg(tmp_path / "trained", train_encoder=True, steps=2), progress=False)
    assert all(torch.equal(v, frozen.image_encoder.state_dict()[k]) for k, v in plain.items())
    assert any(not torch.equal(v, trained.image_encoder.state_dict()[k]) for k, v in plain.items())


def test_colour_skip_starts_silent_and_joins_every_call_of_the_encoder(tower):
    """A fresh ColourSkip adds zero, so the model's embedding is unchanged; once it has weights,
    every caller of model.image_encoder (here the predictor) gets the embedding plus the skip's
    share, computed from the pixels of each patch."""
    from sam_lab.modeling.text_prompt import ColourSkip

    plain = load_model("tiny")
    model = load_model("tiny")
    add_text_path(model, tower, colour_skip=True)
    skip = model.text_encoder.colour_skip
    assert isinstance(skip, ColourSkip) and skip.patch_size == 8  # tiny: 256 px, a 32x32 embedding
    image = SyntheticShapes(1, seed=3)[0]["image"]
    x = model.preprocess(torch.as_tensor(image).permute(2, 0, 1).float()[None])
    with torch.no_grad():
        assert torch.equal(model.image_encoder(x), plain.image_encoder(x))
        torch.nn.init.normal_(skip.write.weight, std=0.1)
        expected = plain.image_encoder(x) + skip(x)
        p = SamPredictor(model)
        p.set_image(image)
        assert torch.allclose(p.features, expected, atol=1e-5)
        skip.active = False
        assert torch.equal(model.image_encoder(x), plain.image_encoder(x))
    assert any(k.startswith("text_encoder.colour_skip.") for k in model.state_dict())
    with pytest.raises(ValueError, match="colour_skip"):
        add_text_path(load_model("tiny"), tower, colour_skip="yes")
    with pytest.raises(ValueError, match="already has a text path"):
        add_text_path(model, tower)
    with pytest.raises(ValueError, match="images"):
        skip(torch.zeros(1, 3, 20, 20))


def test_colour_skip_and_grounding_train_beside_a_frozen_encoder_and_reload(tmp_path):
    """With colour_skip the skip trains while the encoder stays as shipped (its embeddings are
    cached without the skip, which is added at every step), and the grounding trains; the
    written file rebuilds both and gives the same embedding and the same text masks."""
    plain = load_model("tiny").image_encoder.state_dict()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = train_text_path(_cfg(tmp_path, train_encoder=False, colour_skip=True, grounding=True, steps=3),
                                progress=False)
        loaded = load_text_model(tmp_path / "text_path.safetensors")
    assert all(torch.equal(v, model.image_encoder.state_dict()[k]) for k, v in plain.items())
    assert model.text_encoder.colour_skip.write.weight.abs().sum() > 0, "the skip trained"
    fresh = TextGrounding(model.prompt_encoder.embed_dim)
    assert not torch.equal(fresh.logit.weight, model.text_encoder.grounding.logit.weight)
    image = SyntheticShapes(1, seed=5)[0]["image"]
    x = model.preprocess(torch.as_tensor(image).permute(2, 0, 1).float()[None])
    with torch.no_grad():
        assert torch.allclose(model.image_encoder(x), loaded.image_encoder(x), atol=1e-6)
    a, b = SamPredictor(model), SamPredictor(loaded)
    a.set_image(image)
    b.set_image(image)
    assert torch.allclose(torch.as_tensor(a.predict(text="red circle", return_logits=True)[0]),
                          torch.as_tensor(b.predict(text="red circle", return_logits=True)[0]), atol=1e-4)


def test_grounding_gives_the_mask_prompt_of_a_text_prompt(tower):
    """A grounding's rough mask goes in as the mask prompt of a text prompt (the predictor and
    Sam.decode alike), a mask the caller gives takes its place, and no text means no prior."""
    model = load_model("tiny")
    add_text_path(model, tower, grounding=True)
    p = SamPredictor(model)
    p.set_image(SyntheticShapes(1, seed=3)[0]["image"])
    tokens = model.text_encoder.embed_texts(["red circle", "blue square"])
    with torch.no_grad():
        prior = text_mask_prior(model, p.features, tokens, None)
        assert prior.shape == (2, 1, *model.prompt_encoder.mask_input_size)
        own = torch.full((2, 1, *model.prompt_encoder.mask_input_size), 3.0)
        assert text_mask_prior(model, p.features, tokens, own) is own
        assert text_mask_prior(model, p.features, None, None) is None
        assert text_mask_prior(load_model("tiny"), p.features, tokens, None) is None
        decoded = model.decode(p.features, text_tokens=tokens[:1], multimask_output=False)[0]
        by_hand = model.decode(p.features, text_tokens=tokens[:1], mask_inputs=prior[:1], multimask_output=False)[0]
        assert torch.allclose(decoded, by_hand, atol=1e-5)  # the prior of a batch of 2, sliced, vs of 1
        without = model.decode(p.features, text_tokens=tokens[:1], multimask_output=False, mask_inputs=None)[0]
        model.text_encoder.grounding = None
        assert not torch.equal(without, model.decode(p.features, text_tokens=tokens[:1], multimask_output=False)[0])
        model.text_encoder.grounding = TextGrounding(model.prompt_encoder.embed_dim)
    low = p.predict(text="red circle", return_logits=True)[2]
    with torch.no_grad():
        expected = model.decode(p.features, text_tokens=model.text_encoder.embed_texts(["red circle"]),
                                multimask_output=False)[0]
    assert np.allclose(low, expected.numpy(), atol=1e-5)
    with pytest.raises(ValueError, match="image_embedding, text_tokens"):
        model.text_encoder.grounding(p.features, tokens[:, :, :3])


def test_colour_probe_reads_a_colour_map_and_not_noise():
    """The probe scores well on an "encoder" whose embedding is the image's own colour, and near
    chance on one whose embedding is noise."""
    from sam_lab.training.text import colour_probe

    class Colours(torch.nn.Module):  # embedding = the mean colour of each 8x8 patch
        def forward(self, x):
            return torch.nn.functional.avg_pool2d(x, 8)

    class Noise(torch.nn.Module):
        def forward(self, x):
            return torch.randn(len(x), 3, x.shape[-2] // 8, x.shape[-1] // 8)

    model = load_model("tiny")
    model.image_encoder = Colours()
    model.image_encoder.img_size = 256
    good = colour_probe(model, train_images=12, test_images=4)
    model.image_encoder = Noise()
    model.image_encoder.img_size = 256
    bad = colour_probe(model, train_images=12, test_images=4)
    assert good["accuracy"] > 0.6 and good["accuracy"] > bad["accuracy"] + 0.3, (good, bad)


# ----------------------------------------------------------------------------- the shipped text path

def test_shipped_text_path_segments_unseen_captions():
    """The shipped text path on unseen images (seed 10000, 12 of the card's 40). Issue 15's
    targets: a caption alone reaches mIoU 0.6 (0.713 here and 0.689 on the card's 40 when
    shipped), and a caption with a click beats the click alone (0.805 against 0.499 for the IoU
    pick and 0.510 for the one-mask answer when shipped). The floors leave room for another
    machine's rounding, not for a text path that lost the target."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = load_text_model("tiny")
    summary = evaluate_text(model, SyntheticShapes(12, seed=10000), progress=False)["summary"]
    assert summary["text_miou"] >= 0.65, summary
    assert min(summary["text_miou_colour_shape"], summary["text_miou_relational"]) >= 0.6, summary
    assert summary["text_point_miou"] > summary["point_pick_miou"] + 0.2, summary
    assert summary["text_point_miou"] > summary["point_single_miou"] + 0.2, summary  # not only the token
    assert summary["point_pick_miou"] >= 0.45, summary  # clicks still work


def test_shipped_text_path_file_names_its_tower():
    from safetensors import safe_open

    with safe_open(str(SHIPPED_TEXT["tiny"]), framework="pt") as file:
        meta = file.metadata()
        keys = list(file.keys())
    assert meta["kind"] == "sam_lab text path" and meta["base"] == "tiny" and meta["clip_model"] == "ViT-B-32"
    assert any(k.startswith("text_encoder.") for k in keys) and not any("tower." in k for k in keys)
    assert meta["colour_skip"] == "true" and meta["grounding"] == "true"
    assert any(k.startswith("text_encoder.colour_skip.") for k in keys)
    assert any(k.startswith("text_encoder.grounding.") for k in keys)
    assert not any(k.startswith("image_encoder.") for k in keys), "the image encoder is the shipped tiny's"
    assert SHIPPED_TEXT["tiny"].stat().st_size < 20 * 2**20
