"""Hungarian matcher, set criterion and training-only queries on cases with known answers."""

from __future__ import annotations

import math

import pytest
import torch

from detr_deploy.model.box_ops import generalized_box_iou
from detr_deploy.model.detr import detr_small
from detr_deploy.train.losses import QueryLayout, SetCriterion, TrainingQueries, paired_giou
from detr_deploy.train.matcher import (
    HungarianMatcher,
    TargetBatch,
    batched_matching_cost,
    elementwise_giou,
    matching_cost,
)

K = 6  # classes; logits have K + 1 entries, the last is "no object"


def confident_logits(labels, num_queries, matched_queries):
    """Logits saying ``labels[i]`` at ``matched_queries[i]`` (and "no object" elsewhere), confidently."""
    logits = torch.full((num_queries, K + 1), -10.0)
    logits[:, K] = 10.0
    for query, label in zip(matched_queries, labels):
        logits[query] = -10.0
        logits[query, label] = 10.0
    return logits


def test_giou_by_hand():
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0]])
    b = torch.tensor([[1.0, 1.0, 3.0, 3.0], [2.0, 0.0, 3.0, 1.0], [0.0, 0.0, 1.0, 1.0]])
    # overlap 1, union 7, enclosing 9: 1/7 - 2/9 = -5/63; disjoint: 0 - (3 - 2)/3; identical: 1
    expected = torch.tensor([-5.0 / 63.0, -1.0 / 3.0, 1.0])
    torch.testing.assert_close(paired_giou(a, b), expected)
    torch.testing.assert_close(elementwise_giou(a, b), expected)
    torch.testing.assert_close(generalized_box_iou(a, b).diagonal(), expected)


def test_identical_predictions_give_identity_assignment_and_zero_box_loss():
    targets = [
        {
            "labels": torch.tensor([2, 0, 5]),
            "boxes": torch.tensor([[0.3, 0.3, 0.2, 0.1], [0.7, 0.2, 0.3, 0.2], [0.5, 0.8, 0.4, 0.1]]),
        }
    ]
    num_queries = 5
    queries = [4, 0, 2]  # target i is predicted exactly by query queries[i]
    boxes = torch.full((1, num_queries, 4), 0.5)
    boxes[0, 1] = torch.tensor([0.1, 0.9, 0.05, 0.05])
    boxes[0, 3] = torch.tensor([0.9, 0.9, 0.05, 0.05])
    for target_index, query in enumerate(queries):
        boxes[0, query] = targets[0]["boxes"][target_index]
    logits = confident_logits(targets[0]["labels"].tolist(), num_queries, queries)[None]

    ((pred, tgt),) = HungarianMatcher()(logits, boxes, targets)
    assert pred.tolist() == [0, 2, 4]  # sorted by prediction
    assert tgt.tolist() == [1, 2, 0]  # query 0 -> target 1, query 2 -> target 2, query 4 -> target 0

    losses = SetCriterion(K)({"pred_logits": logits, "pred_boxes": boxes}, targets)
    assert losses["loss_bbox"].item() == pytest.approx(0.0, abs=1e-6)
    assert losses["loss_giou"].item() == pytest.approx(0.0, abs=1e-6)
    assert losses["loss_class"].item() < 1e-6  # confident and right everywhere


def test_box_and_class_losses_by_hand():
    targets = [{"labels": torch.tensor([1]), "boxes": torch.tensor([[0.6, 0.5, 0.2, 0.4]])}]
    boxes = torch.tensor([[[0.5, 0.5, 0.2, 0.2], [0.1, 0.1, 0.1, 0.1]]])
    logits = torch.zeros(1, 2, K + 1)  # uniform: cross-entropy log(K + 1) for every query
    matches = HungarianMatcher()(logits, boxes, targets)
    assert [m.tolist() for m in matches[0]] == [[0], [0]]
    criterion = SetCriterion(K, eos_coef=0.1, weight_class=2.0, weight_bbox=5.0, weight_giou=2.0)
    losses = criterion({"pred_logits": logits, "pred_boxes": boxes}, targets)
    assert losses["loss_bbox"].item() == pytest.approx(0.1 + 0.0 + 0.0 + 0.2)
    # xyxy: prediction [0.4, 0.4, 0.6, 0.6], target [0.5, 0.3, 0.7, 0.7]: overlap 0.1 * 0.2,
    # union 0.04 + 0.08 - 0.02 = 0.1, enclosing 0.3 * 0.4 = 0.12
    giou = 0.02 / 0.1 - (0.12 - 0.1) / 0.12
    assert losses["loss_giou"].item() == pytest.approx(1 - giou, rel=1e-5)
    # weighted mean of equal cross-entropies is that cross-entropy, whatever eos_coef is
    assert losses["loss_class"].item() == pytest.approx(math.log(K + 1), rel=1e-5)
    assert losses["loss"].item() == pytest.approx(2.0 * math.log(K + 1) + 5.0 * 0.3 + 2.0 * (1 - giou), rel=1e-5)


def test_eos_coef_down_weights_no_object():
    targets = [{"labels": torch.tensor([0]), "boxes": torch.tensor([[0.5, 0.5, 0.2, 0.2]])}]
    boxes = torch.tensor([[[0.5, 0.5, 0.2, 0.2], [0.2, 0.2, 0.1, 0.1], [0.8, 0.8, 0.1, 0.1]]])
    logits = torch.zeros(1, 3, K + 1)
    logits[0, 0, 0] = 3.0  # matched query: right class, fairly confident
    ce_matched = -torch.log_softmax(logits[0, 0], -1)[0].item()
    ce_empty = math.log(K + 1)
    for eos in (0.1, 1.0):
        value = SetCriterion(K, eos_coef=eos)({"pred_logits": logits, "pred_boxes": boxes}, targets)["loss_class"]
        assert value.item() == pytest.approx((ce_matched + 2 * eos * ce_empty) / (1 + 2 * eos), rel=1e-5)


def test_one_to_many_and_more_targets_than_queries():
    targets = [{"labels": torch.tensor([3]), "boxes": torch.tensor([[0.5, 0.5, 0.2, 0.2]])}]
    logits, boxes = torch.zeros(1, 4, K + 1), torch.rand(1, 4, 4) * 0.5 + 0.2
    ((pred, tgt),) = HungarianMatcher()(logits, boxes, targets, repeats=3)
    assert len(pred) == 3 and tgt.tolist() == [0, 0, 0] and len(set(pred.tolist())) == 3
    many = [{"labels": torch.tensor([0, 1, 2]), "boxes": torch.rand(3, 4) * 0.3 + 0.2}]
    ((pred, tgt),) = HungarianMatcher()(torch.zeros(1, 2, K + 1), torch.rand(1, 2, 4) * 0.3 + 0.2, many)
    assert len(pred) == 2 and len(set(tgt.tolist())) == 2


def test_batched_cost_equals_pairwise_cost():
    torch.manual_seed(0)
    targets = [{"labels": torch.randint(0, K, (n,)), "boxes": torch.rand(n, 4) * 0.4 + 0.1} for n in (3, 1, 4)]
    logits, boxes = torch.randn(2, 3, 7, K + 1), torch.rand(2, 3, 7, 4) * 0.5 + 0.1
    batch = TargetBatch.from_targets(targets)
    cost = batched_matching_cost(logits, boxes, batch, 2.0, 5.0, 2.0)
    for n in range(2):
        for b, target in enumerate(targets):
            reference = matching_cost(logits[n, b], boxes[n, b], target["labels"], target["boxes"])
            torch.testing.assert_close(cost[n, b, :, : len(target["labels"])], reference, rtol=1e-5, atol=1e-5)


def test_empty_targets_train_no_object_only():
    logits = torch.zeros(2, 4, K + 1, requires_grad=True)
    boxes = torch.full((2, 4, 4), 0.5, requires_grad=True)
    targets = [{"labels": torch.zeros(0, dtype=torch.int64), "boxes": torch.zeros(0, 4)}] * 2
    losses = SetCriterion(K)({"pred_logits": logits, "pred_boxes": boxes}, targets)
    assert losses["loss_bbox"].item() == 0.0 and losses["loss_class"].item() == pytest.approx(math.log(K + 1))
    losses["loss"].backward()
    assert torch.isfinite(logits.grad).all()


def random_case(dn_groups, extra_groups, k, seed=0):
    torch.manual_seed(seed)
    aids = TrainingQueries(32, K, 10, dn_groups=dn_groups, extra_groups=extra_groups, extra_group_k=k)
    targets = []
    for n in (3, 0, 5):
        centres = torch.rand(n, 2) * 0.6 + 0.2
        sizes = torch.rand(n, 2) * 0.2 + 0.05
        targets.append({"labels": torch.randint(0, K, (n,)), "boxes": torch.cat([centres, sizes], 1)})
    content, pos, mask, layout = aids(targets, 3, torch.device("cpu"))
    total, levels = layout.total, 3
    outputs = {
        "pred_logits": torch.randn(3, total, K + 1),
        "pred_boxes": torch.rand(3, total, 4) * 0.5 + 0.1,
        "aux_logits": torch.randn(levels - 1, 3, total, K + 1),
        "aux_boxes": torch.rand(levels - 1, 3, total, 4) * 0.5 + 0.1,
    }
    return outputs, targets, layout, (content, pos, mask)


@pytest.mark.parametrize(
    "dn_groups,extra_groups,k,iou_aware", [(0, 0, 1, False), (2, 0, 1, False), (0, 2, 3, False), (2, 1, 2, True)]
)
def test_vectorised_criterion_equals_reference(dn_groups, extra_groups, k, iou_aware):
    outputs, targets, layout, _ = random_case(dn_groups, extra_groups, k)
    criterion = SetCriterion(K, iou_aware=iou_aware)
    fast, slow = criterion(outputs, targets, layout), criterion.forward_reference(outputs, targets, layout)
    for key in slow:
        assert fast[key].item() == pytest.approx(slow[key].item(), rel=1e-5, abs=1e-6), key
    if dn_groups:
        assert fast["loss_dn"].item() > 0
    if extra_groups:
        assert fast["loss_extra"].item() > 0


def test_query_layout_and_attention_mask():
    layout = QueryLayout(num_queries=3, dn_groups=2, dn_size=2, extra_groups=1)
    assert layout.total == 2 * 2 + 3 + 3
    assert [kind for kind, _, _ in layout.blocks()] == ["dn", "dn", "extra", "main"]
    blocked = layout.attention_mask()
    main = slice(7, 10)
    assert blocked[main, :7].all() and not blocked[main, main].any()  # deployed queries see only themselves
    assert blocked[0:2, 2:4].all() and blocked[2:4, 0:2].all()  # denoising groups never see each other
    assert not blocked[0:2, main].any()  # denoising may look at the deployed queries
    assert blocked[4:7, :4].all() and blocked[4:7, main].all()  # an extra group is on its own
    assert QueryLayout(num_queries=3).attention_mask() is None


def test_training_only_queries_leave_the_deployed_queries_unchanged():
    """With the mask, prepended denoising / group queries cannot change the outputs of the
    model's own queries: the exported (plain) model computes exactly what training trained."""
    torch.manual_seed(0)
    model = detr_small(seed=0, num_queries=5, dropout=0.0).eval()
    aids = TrainingQueries(128, K, 5, dn_groups=2, extra_groups=1)
    targets = [
        {"labels": torch.tensor([1, 2]), "boxes": torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.6, 0.6, 0.3, 0.1]])},
        {"labels": torch.tensor([4]), "boxes": torch.tensor([[0.5, 0.5, 0.4, 0.4]])},
    ]
    images = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        plain = model(images)
        content, pos, mask, layout = aids(targets, 2, torch.device("cpu"))
        extended = model(images, None, content, pos, mask)
    extra = layout.num_extra
    assert extended["pred_logits"].shape[1] == extra + 5
    torch.testing.assert_close(extended["pred_logits"][:, extra:], plain["pred_logits"], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(extended["pred_boxes"][:, extra:], plain["pred_boxes"], rtol=1e-4, atol=1e-4)


def test_denoising_queries_carry_noised_ground_truth():
    torch.manual_seed(0)
    aids = TrainingQueries(32, K, 4, dn_groups=3, box_noise=0.0, label_noise=0.0, max_dn_queries=6)
    targets = [
        {"labels": torch.tensor([1, 2]), "boxes": torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.6, 0.6, 0.3, 0.1]])},
        {"labels": torch.tensor([4]), "boxes": torch.tensor([[0.5, 0.5, 0.4, 0.4]])},
    ]
    content, pos, mask, layout = aids(targets, 2, torch.device("cpu"))
    assert layout.dn_groups == 3 and layout.dn_size == 2  # 3 groups x 2 slots fit max_dn_queries=6
    assert layout.dn_valid.tolist() == [[True, True], [True, False]]
    # without noise, every group of image 0 holds the same two label embeddings
    torch.testing.assert_close(content[0, 0:2], content[0, 2:4])
    torch.testing.assert_close(content[0, 0], aids.label_embed.weight[1])
    assert mask.shape == (layout.total, layout.total)
