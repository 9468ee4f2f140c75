import dataclasses
import math

import pytest
import torch

from kernelbench.errors import InputError
from reformer.model import GammaBlock, ModelConfig, Reformer, soft_cross_entropy

CONFIG = ModelConfig(n_categories=(3, 4), n_numeric=5, n_kernels=4, dim=8, blocks=2)


def inputs(batch=6):
    g = torch.Generator().manual_seed(0)
    categorical = torch.stack([torch.randint(0, 3, (batch,), generator=g), torch.randint(0, 4, (batch,), generator=g)], 1)
    return categorical, torch.randn(batch, 5, generator=g), torch.zeros(batch, 5, dtype=torch.int64)


def test_non_applicable_kernels_get_minus_infinity_and_zero_probability():
    torch.manual_seed(0)
    model = Reformer(CONFIG)
    applicable = torch.tensor([[True, False, True, False]] * 6)
    logits = model(*inputs(), applicable)
    assert torch.isinf(logits[:, [1, 3]]).all() and (logits[:, [1, 3]] < 0).all()
    probs = torch.softmax(logits, 1)
    assert torch.allclose(probs[:, [0, 2]].sum(1), torch.ones(6))
    assert (probs[:, [1, 3]] == 0).all()


def test_loss_is_finite_with_masks_and_only_sees_applicable_logits():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, requires_grad=True)
    applicable = torch.tensor([[True, True, False], [False, True, True]])
    target = torch.tensor([[0.25, 0.75, 0.0], [0.0, 1.0, 0.0]])
    loss = soft_cross_entropy(logits, target, applicable)
    loss.backward()
    assert torch.isfinite(loss)
    assert logits.grad[0, 2] == 0 and logits.grad[1, 0] == 0
    # Hand check for row 0: -(0.25 log p0 + 0.75 log p1) over the two applicable logits.
    lp = torch.log_softmax(logits[0, :2].detach(), 0)
    row1 = -torch.log_softmax(logits[1, 1:].detach(), 0)[0]
    assert loss.item() == pytest.approx(((-(0.25 * lp[0] + 0.75 * lp[1])) + row1).item() / 2, rel=1e-6)


def test_gamma_block_equation():
    torch.manual_seed(0)
    block = GammaBlock(CONFIG)
    x = torch.randn(3, CONFIG.n_tokens, CONFIG.dim)  # batch-first here; the block takes [L, B, d]
    f = block.fc
    expected = torch.nn.functional.layer_norm(
        block.mix.weight @ torch.nn.functional.gelu(x @ f.weight.T + f.bias) + block.mix.bias[:, None]
        + x @ block.affine.weight.T + block.affine.bias,
        (CONFIG.dim,), block.norm.weight, block.norm.bias,
    )
    torch.testing.assert_close(block(x.transpose(0, 1).contiguous()).transpose(0, 1), expected)


@pytest.mark.parametrize(("paths", "has_fc", "has_affine"), [("both", True, True), ("affine", False, True), ("nonlinear", True, False)])
def test_paths_remove_the_right_layers(paths, has_fc, has_affine):
    block = GammaBlock(ModelConfig(n_categories=(), n_numeric=3, n_kernels=2, dim=4, paths=paths))
    assert hasattr(block, "fc") == has_fc and hasattr(block, "affine") == has_affine
    assert block(torch.randn(3, 2, 4)).shape == (3, 2, 4)


def test_transformer_variant_and_config_round_trip():
    config = ModelConfig(n_categories=(3, 4), n_numeric=5, n_kernels=4, dim=8, blocks=1, block="transformer")
    model = Reformer(config)
    assert model(*inputs()).shape == (6, 4)
    assert ModelConfig.from_json(config.to_json()) == config


def test_bad_architecture_is_an_input_error():
    with pytest.raises(InputError, match="paths"):
        ModelConfig(n_categories=(), n_numeric=2, n_kernels=2, paths="neither")
    with pytest.raises(InputError, match="heads"):
        ModelConfig(n_categories=(), n_numeric=2, n_kernels=2, dim=6, block="transformer")


def test_exact_value_embeddings_start_at_zero_and_change_the_output_once_learnt():
    torch.manual_seed(0)
    config = ModelConfig(n_categories=(3, 4), n_numeric=5, n_kernels=4, dim=8, n_values=(3, 1, 1, 1, 1))
    model = Reformer(config)
    categorical, numeric, _ = inputs()
    ids = torch.zeros(6, 5, dtype=torch.int64)
    ids[:, 0] = torch.tensor([0, 1, 2, 0, 1, 2])
    torch.testing.assert_close(model(categorical, numeric, ids), model(categorical, numeric, torch.zeros_like(ids)))
    with torch.no_grad():
        model.embed.exact.weight[1] = 1.0  # value id 1 of token 0
    changed = (model(categorical, numeric, ids) != model(categorical, numeric, torch.zeros_like(ids))).any(dim=1)
    assert changed.tolist() == [False, True, False, False, True, False]


def test_problem_weights_scale_each_problems_loss():
    logits = torch.tensor([[0.0, 1.0], [2.0, 0.0]])
    target = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    applicable = torch.ones(2, 2, dtype=torch.bool)
    per_problem = -torch.log_softmax(logits, 1)[[0, 1], [0, 1]]
    weighted = soft_cross_entropy(logits, target, applicable, torch.tensor([0.5, 1.5]))
    assert weighted.item() == pytest.approx(((0.5 * per_problem[0] + 1.5 * per_problem[1]) / 2).item())


def test_membership_head_loss_on_a_hand_made_batch():
    """Closed cross-entropy on the scores over the measured kernels + λ · (Σ_candidates BCE(u, measured)
    + -log P(measured set | candidates)); the membership terms do not reach z."""
    z = torch.tensor([[1.0, 0.0, 2.0, -1.0], [0.5, -0.5, 0.0, 3.0]], requires_grad=True)
    u = torch.tensor([[2.0, 1.0, -1.0, 0.0], [0.0, 3.0, -2.0, 1.0]], requires_grad=True)
    scores = z + torch.nn.functional.logsigmoid(u)
    target = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 0.25, 0.0, 0.75]])
    measured = torch.tensor([[True, True, False, False], [False, True, False, True]])
    candidates = torch.tensor([[True, True, True, False], [True, True, True, True]])
    loss = soft_cross_entropy(scores, target, measured, candidates=candidates, membership_weight=0.5, membership=u)

    def log_sigmoid(x):
        return -math.log1p(math.exp(-x))

    s = [[z[i][k].item() + log_sigmoid(u[i][k].item()) for k in range(4)] for i in range(2)]
    # Problem 0: closed CE over kernels 0, 1 with all mass on 0; BCE over candidates 0, 1 (measured), 2 (not).
    closed0 = -(s[0][0] - math.log(math.exp(s[0][0]) + math.exp(s[0][1])))
    bce0 = -(log_sigmoid(2.0) + log_sigmoid(1.0) + log_sigmoid(1.0))  # log σ(-u) for the unmeasured u = -1
    # Problem 1: closed CE over kernels 1, 3 (0.25 / 0.75); BCE over all four candidates.
    lse1 = math.log(math.exp(s[1][1]) + math.exp(s[1][3]))
    closed1 = -(0.25 * (s[1][1] - lse1) + 0.75 * (s[1][3] - lse1))
    bce1 = -(log_sigmoid(-0.0) + log_sigmoid(3.0) + log_sigmoid(2.0) + log_sigmoid(1.0))
    set0 = math.log(sum(math.exp(s[0][k]) for k in (0, 1, 2))) - math.log(math.exp(s[0][0]) + math.exp(s[0][1]))
    set1 = math.log(sum(math.exp(v) for v in s[1])) - lse1
    expected = ((closed0 + 0.5 * (bce0 + set0)) + (closed1 + 0.5 * (bce1 + set1))) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss.backward()
    # z of an unmeasured candidate is trained by nothing (its u carries membership); its u is.
    assert z.grad[0, 2] == 0 and z.grad[1, 0] == 0 and z.grad[1, 2] == 0
    assert u.grad[0, 2] > 0 and u.grad[1, 2] > 0
    with pytest.raises(ValueError, match="needs the candidates"):
        soft_cross_entropy(scores, target, measured, membership=u)


def test_membership_head_scores_and_unchanged_initialisation_without_it():
    torch.manual_seed(0)
    plain = Reformer(CONFIG)
    torch.manual_seed(0)
    headed = Reformer(dataclasses.replace(CONFIG, membership_head=True))
    assert plain.membership is None and headed.membership is not None
    # The head is created last: every other weight draws the same random numbers as without it.
    for name, tensor in plain.state_dict().items():
        torch.testing.assert_close(headed.state_dict()[name], tensor)
    scores, u = headed.scores_and_membership(*inputs())
    z = plain(*inputs())  # the same trunk and ranking head
    torch.testing.assert_close(scores, z + torch.nn.functional.logsigmoid(u))
    torch.testing.assert_close(headed(*inputs()), scores)
    assert plain.scores_and_membership(*inputs())[1] is None
    assert ModelConfig.from_json(headed.config.to_json()) == headed.config
    old = {k: v for k, v in CONFIG.to_json().items() if k != "membership_head"}  # a config.json written before
    assert not ModelConfig.from_json(old).membership_head


def test_membership_trunk_gradient_can_stop_at_the_head():
    torch.manual_seed(0)
    model = Reformer(dataclasses.replace(CONFIG, membership_head=True))
    for trunk in (True, False):
        model.zero_grad()
        u = model.scores_and_membership(*inputs(), trunk_gradient=trunk)[1]
        u.sum().backward()
        assert model.membership.weight.grad.abs().sum() > 0
        assert (model.blocks[0].fc.weight.grad is not None and model.blocks[0].fc.weight.grad.abs().sum() > 0) == trunk
