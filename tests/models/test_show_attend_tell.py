"""Show, Attend and Tell (Xu et al. 2015): shapes, both attentions, losses, capture, learning."""

import pytest
import torch

from attnkit.interp.capture import capture
from attnkit.models.vision.show_attend_tell import (
    CanvasEncoder,
    ShowAttendTell,
    ShowAttendTellConfig,
    caption_loss,
)

V = 13
STEPS = {"soft": 150, "hard": 300}


def _model(attention="soft", **sizes):
    torch.manual_seed(0)
    config = ShowAttendTellConfig(vocab_size=V, feature_dim=8, embed_dim=8, hidden_dim=16,
                                  attention_dim=8, attention=attention, **sizes)
    return ShowAttendTell(config)


def _captions():
    # <bos> w w <eos> <pad> and <bos> w w w <eos>
    return torch.tensor([[1, 3, 4, 2, 0], [1, 5, 6, 7, 2]])


def test_encoder_shapes_and_classify():
    encoder = CanvasEncoder((4, 4, 8, 8))
    assert encoder(torch.rand(2, 1, 36, 128)).shape == (2, 8, 4, 16)
    assert encoder.classify(torch.rand(3, 1, 28, 28)).shape == (3, 10)
    with pytest.raises(ValueError, match="images"):
        encoder(torch.rand(2, 3, 28, 28))
    with pytest.raises(ValueError, match="widths"):
        CanvasEncoder((4, 4))


def test_position_vectors_tell_locations_apart():
    # identical annotation vectors everywhere: only the position vectors can make the
    # attention prefer one location
    model = _model(num_locations=12).eval()
    _, alphas, _ = model(torch.ones(1, 12, 8), _captions()[:1, :-1])
    assert alphas.std() > 0
    _, flat, _ = _model().eval()(torch.ones(1, 12, 8), _captions()[:1, :-1])
    torch.testing.assert_close(flat, torch.full_like(flat, 1 / 12))


def test_annotations_are_row_major():
    feature_map = torch.arange(2 * 3 * 4, dtype=torch.float32).view(1, 2, 3, 4)
    features = ShowAttendTell.annotations(feature_map)  # (1, 12, 2)
    assert features.shape == (1, 12, 2)
    assert features[0, 1 * 4 + 2].tolist() == feature_map[0, :, 1, 2].tolist()


@pytest.mark.parametrize("attention", ["soft", "hard"])
def test_forward_shapes_and_weight_rows(attention):
    model = _model(attention)
    features = torch.randn(2, 12, 8)
    logits, alphas, _ = model(features, _captions()[:, :-1])
    assert logits.shape == (2, 4, V) and alphas.shape == (2, 4, 12)
    torch.testing.assert_close(alphas.sum(-1), torch.ones(2, 4))
    if attention == "hard":  # one-hot locations, in training (sampled) and eval (argmax)
        assert ((alphas == 0) | (alphas == 1)).all()
        model.eval()
        alphas = model(features, _captions()[:, :-1])[1]
        assert ((alphas == 0) | (alphas == 1)).all()


def test_capture_records_the_decoder_attention_per_step():
    model = _model().eval()
    features = torch.randn(2, 12, 8)
    with capture(model) as cap:
        _, alphas, _ = model(features, _captions()[:, :-1])
    assert cap.names == ["attention"]
    torch.testing.assert_close(cap.weights("attention")[:, 0], alphas)


def test_doubly_stochastic_regularizer_by_hand():
    model = _model().eval()
    features, captions = torch.randn(2, 12, 8), _captions()
    plain = caption_loss(model, features, captions)
    regular = caption_loss(model, features, captions, doubly_stochastic=0.5)
    _, alphas, _ = model(features, captions[:, :-1])
    real = (captions[:, 1:] != 0).float()
    coverage = (alphas * real[..., None]).sum(1)
    expected = 0.5 * ((1 - coverage) ** 2).sum(1).mean()
    torch.testing.assert_close(regular["attention"], expected)
    torch.testing.assert_close(regular["loss"], plain["loss"] + expected)
    assert plain["attention"] == 0


def test_nll_ignores_padding():
    model = _model().eval()
    features, captions = torch.randn(2, 12, 8), _captions()
    logits, _, _ = model(features, captions[:, :-1])
    targets = captions[:, 1:]
    real = targets != 0
    expected = torch.nn.functional.cross_entropy(logits[real], targets[real])
    torch.testing.assert_close(caption_loss(model, features, captions)["nll"], expected)


def test_hard_reinforce_term_reaches_the_attention_scores():
    model = _model("hard").train()
    losses = caption_loss(model, torch.randn(2, 12, 8), _captions(), entropy_weight=0.01)
    losses["loss"].backward()
    assert model.attention.energy.weight.grad.abs().sum() > 0
    assert model.attention.baseline != 0  # the moving-average baseline moved


def test_step_reward_credits_each_location_with_its_own_word():
    model = _model("hard").train()
    torch.manual_seed(3)
    losses = caption_loss(model, torch.randn(2, 12, 8), _captions(), reward="step")
    losses["loss"].backward()
    assert model.attention.energy.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="reward"):
        caption_loss(model, torch.randn(2, 12, 8), _captions(), reward="episode")


def test_generate_stops_with_eos():
    model = _model().eval()
    tokens, alphas = model.generate(torch.randn(3, 12, 8), max_len=6)
    assert tokens.shape == (3, 6) and alphas.shape == (3, 6, 12)
    for row in tokens.tolist():
        if 2 in row:
            assert all(t == 2 for t in row[row.index(2):])


def _located_words(batch, locations=6):
    """Location k holds a one-hot code of a random word and of its place k; the caption
    names the words at locations 0, 1, 2 in order."""
    words = torch.randint(0, 10, (batch, locations))
    features = torch.cat([torch.nn.functional.one_hot(words, 10).float(),
                          torch.eye(locations).expand(batch, -1, -1)], -1)  # (B, L, 16)
    captions = torch.cat([torch.ones(batch, 1, dtype=torch.long), words[:, :3] + 3,
                          torch.full((batch, 1), 2)], 1)
    return features, captions


@pytest.mark.parametrize("attention", ["soft", "hard"])
def test_learns_to_name_the_attended_location(attention):
    # fresh batches every step and a fresh test batch: the words can only be read by
    # attending to locations 0, 1, 2 in turn
    torch.manual_seed(0)
    config = ShowAttendTellConfig(vocab_size=V, feature_dim=16, embed_dim=16, hidden_dim=32,
                                  attention_dim=16, attention=attention)
    model = ShowAttendTell(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(STEPS[attention]):
        loss = caption_loss(model, *_located_words(64), entropy_weight=0.01)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    features, captions = _located_words(256)
    tokens, alphas = model.generate(features, max_len=4)
    assert (tokens == captions[:, 1:]).float().mean() > 0.9
    assert (alphas[:, :3].argmax(-1) == torch.arange(3)).float().mean() > 0.9


def test_bad_arguments():
    with pytest.raises(ValueError, match="attention"):
        ShowAttendTellConfig(vocab_size=V, attention="glimpse")
    with pytest.raises(ValueError, match="eos"):
        ShowAttendTellConfig(vocab_size=2, eos=2)
    with pytest.raises(TypeError, match="config"):
        ShowAttendTell({"vocab_size": V})
    model = _model()
    with pytest.raises(ValueError, match="features"):
        model(torch.randn(2, 12, 5), _captions())
    with pytest.raises(ValueError, match="num_locations"):
        _model(num_locations=6)(torch.randn(2, 12, 8), _captions())
    with pytest.raises(ValueError, match="tokens"):
        model(torch.randn(2, 12, 8), _captions().float())
