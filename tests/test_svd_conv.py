"""SVD_Conv2d and the networks built from it: the factorized layer is an ordinary convolution."""
import pytest
import torch
import torch.nn.functional as F

from models import build_model, svd_layers
from models.customnet import feature_size
from models.svd_conv import SVD_Conv2d, default_rank
from utils.errors import UserError


def composed(N, C, Sigma, shape):
    return (N @ torch.diag(Sigma.abs()) @ C).view(shape)


def test_svd_conv_equals_conv2d_with_composed_weight():
    torch.manual_seed(0)
    layer = SVD_Conv2d(3, 8, 3, stride=2, padding=1, bias=True)
    x = torch.randn(4, 3, 9, 9)
    weight = composed(layer.N, layer.C, layer.Sigma, (8, 3, 3, 3))
    torch.testing.assert_close(layer(x), F.conv2d(x, weight, layer.bias, stride=2, padding=1), rtol=1e-5, atol=1e-5)


def test_prefix_uses_only_the_first_k_components():
    torch.manual_seed(0)
    layer = SVD_Conv2d(4, 6, 3)
    x = torch.randn(2, 4, 7, 7)
    weight = composed(layer.N[:, :3], layer.C[:3], layer.Sigma[:3], (6, 4, 3, 3))
    torch.testing.assert_close(layer(x, rank=3), F.conv2d(x, weight), rtol=1e-5, atol=1e-5)


def test_eval_mode_without_prefix_uses_the_nonzero_components():
    torch.manual_seed(0)
    layer = SVD_Conv2d(4, 6, 3)
    with torch.no_grad():
        layer.Sigma[2:5] = 0
    layer.eval()
    used = layer.Sigma != 0
    weight = composed(layer.N[:, used], layer.C[used], layer.Sigma[used], (6, 4, 3, 3))
    x = torch.randn(2, 4, 7, 7)
    torch.testing.assert_close(layer(x), F.conv2d(x, weight), rtol=1e-5, atol=1e-5)


def test_default_rank_matches_dense_parameter_count():
    assert default_rank(3, 64, 3) == int(27 * 64 / (64 + 27))


def test_net_svd_initial_ranks_and_state_dict_keys():
    model = build_model("customnet_SVD", "Net_SVD")
    model.add_heads({"1": 5, "2": 5})
    assert [layer.rank for layer in svd_layers(model)] == [18, 57, 104, 115, 170]
    keys = list(model.state_dict())
    assert keys[:3] == ["conv1.N", "conv1.C", "conv1.Sigma"]
    assert "conv6.Sigma" in keys and "last.2.0.weight" in keys and "last.2.0.bias" in keys


def test_dense_net_convolutions_have_a_bias_as_published():
    model = build_model("customnet", "Net")
    convolutions = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(m.in_channels, m.out_channels) for m in convolutions] == [(3, 64), (64, 64), (64, 128), (128, 128),
                                                                       (128, 256)]
    assert all(m.bias is not None and m.bias.shape == (m.out_channels,) for m in convolutions)


def test_formula_rank_is_the_default_rank_whatever_the_layer_holds():
    layer = SVD_Conv2d(64, 128, 3, rank=300)
    assert layer.rank == 300 and layer.formula_rank == default_rank(64, 128, 3) == 104


@pytest.mark.parametrize("image_size, size", [(32, 4), (84, 64)])
def test_feature_size_for_cifar_and_miniimagenet(image_size, size):
    assert feature_size(image_size) == size
    model = build_model("customnet_SVD", "Net_SVD", image_size=image_size)
    model.add_heads({"1": 5})
    assert model(torch.randn(2, 3, image_size, image_size), "1").shape == (2, 5)


def test_dense_net_has_the_same_layers_as_net_svd():
    dense = build_model("customnet", "Net")
    factorized = build_model("customnet_SVD", "Net_SVD")
    shapes = [tuple(conv.weight.shape) for conv in (dense.conv1, dense.conv2, dense.conv3, dense.conv4, dense.conv6)]
    assert shapes == [(l.output_channel, l.input_channel, l.kernel_size, l.kernel_size) for l in svd_layers(factorized)]
    assert dense.n_feat == factorized.n_feat == 1024


def test_net_svd_built_with_given_ranks():
    model = build_model("customnet_SVD", "Net_SVD", rank=[5, 6, 7, 8, 9])
    assert [layer.rank for layer in svd_layers(model)] == [5, 6, 7, 8, 9]


def test_unknown_model_names_are_user_errors():
    with pytest.raises(UserError, match="valid: customnet"):
        build_model("resnet", "Net")
    with pytest.raises(UserError, match="Net_SVD"):
        build_model("customnet_SVD", "Nett")
