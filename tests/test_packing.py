"""Packed XLM-R forward (xlrepro.packing) against the padded Hugging Face forward, and the packing
planner's properties. CPU, small random encoder, never skipped.

What is proven:
  * outputs (last and every hidden state) on the real tokens, and the gradients of a scalar loss
    w.r.t. every encoder parameter, equal the padded HF model's, in float32 and float64, for
    lengths 1, 7 and 33 in one batch, right and left padding, with the "reference" varlen backend
    and the default one ("cpp" when the extension is built);
  * HF's naive packing (sequences concatenated into one row, restarting position_ids, sdpa or
    eager) is wrong: it differs from the padded model and a sequence's output changes when another
    sequence of the row changes, while the packed forward is unaffected;
  * attention dropout is the layer's probability in training and 0 in eval;
  * plan_packed_batches: each example exactly once, budget respected, deterministic per
    (seed, epoch), different across epochs.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st
from transformers import XLMRobertaConfig, XLMRobertaModel

import xlrepro.packing as packing
from xlrepro.models import get_family
from xlrepro.ops import varlen_attention_backend
from xlrepro.packing import pack_batch, packed_encoder_forward, packed_position_ids, plan_packed_batches, unpack

PAD = 1
LENGTHS = [1, 7, 33]
TOL = {torch.float32: 1e-5, torch.float64: 1e-12}


def forward(model, p, cu, mx, **kw):
    """``packed_encoder_forward`` with XLM-R's positions (what ``Family.packed_forward`` passes)."""
    return packed_encoder_forward(model, p, cu, mx, position_ids=packed_position_ids(cu, PAD), **kw)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def make_encoder(dtype=torch.float32, attn="eager", seed=0, **over):
    torch.manual_seed(seed)
    cfg = XLMRobertaConfig(
        vocab_size=100,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        max_position_embeddings=64,
        pad_token_id=PAD,
        type_vocab_size=1,
        attn_implementation=attn,
        **over,
    )
    return XLMRobertaModel(cfg, add_pooling_layer=False).to(dtype).eval()


def make_batch(lengths, side="right", seed=1):
    g = torch.Generator().manual_seed(seed)
    B, L = len(lengths), max(lengths)
    ids = torch.full((B, L), PAD, dtype=torch.long)
    mask = torch.zeros(B, L, dtype=torch.long)
    for b, n in enumerate(lengths):
        sl = slice(0, n) if side == "right" else slice(L - n, L)
        ids[b, sl] = torch.randint(3, 100, (n,), generator=g)
        mask[b, sl] = 1
    return ids, mask


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| / max |b| (0 when both are 0)."""
    den = b.abs().max().item()
    num = (a - b).abs().max().item()
    return num / den if den > 0 else num


def auto_backend(dtype):
    return varlen_attention_backend(torch.zeros(1, 1, 1, dtype=dtype))


# ---------------------------------------------------------------------------------------------
# Layout helpers
# ---------------------------------------------------------------------------------------------


def test_position_ids_restart_per_sequence():
    cu = torch.tensor([0, 1, 4, 4, 6], dtype=torch.int32)
    assert packed_position_ids(cu, PAD).tolist() == [2, 2, 3, 4, 2, 3]


@pytest.mark.parametrize("side", ["right", "left"])
def test_position_ids_match_hf_padded(side):
    ids, mask = make_batch(LENGTHS, side)
    from transformers.models.xlm_roberta.modeling_xlm_roberta import XLMRobertaEmbeddings

    padded = XLMRobertaEmbeddings.create_position_ids_from_input_ids(ids, PAD)
    _, cu, _, idx = pack_batch(ids, mask)
    assert torch.equal(packed_position_ids(cu, PAD), padded.flatten()[idx])


def test_pack_unpack_round_trip():
    ids, mask = make_batch(LENGTHS)
    p, cu, mx, idx = pack_batch(ids, mask)
    assert p.shape == (sum(LENGTHS),) and cu.dtype == torch.int32 and mx == max(LENGTHS)
    assert cu.tolist() == [0, 1, 8, 41]
    back = unpack(p, idx, *ids.shape)
    assert torch.equal(back, ids * mask)


# ---------------------------------------------------------------------------------------------
# Packed forward == padded HF forward (outputs and parameter gradients)
# ---------------------------------------------------------------------------------------------


def _loss_weights(T, H, dtype):
    return torch.randn(T, H, generator=torch.Generator().manual_seed(7), dtype=torch.float64).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["fp32", "fp64"])
@pytest.mark.parametrize("backend", ["reference", "auto"])
@pytest.mark.parametrize("side", ["right", "left"])
def test_packed_forward_and_grads_equal_padded_hf(dtype, backend, side):
    model = make_encoder(dtype)
    ids, mask = make_batch(LENGTHS, side)
    B, L = ids.shape
    p, cu, mx, idx = pack_batch(ids, mask)
    T, H = p.shape[0], model.config.hidden_size
    w = _loss_weights(T, H, dtype)
    tol = TOL[dtype]

    # padded HF reference (eager attention with the padding mask)
    out = model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    ref_states = [s.reshape(B * L, H)[idx] for s in out.hidden_states]
    (ref_states[-1] * w).sum().backward()
    ref_grads = {n: q.grad.clone() for n, q in model.named_parameters()}
    model.zero_grad(set_to_none=True)

    last, states = forward(model, p, cu, mx, output_hidden_states=True, attention_backend=backend)
    assert last.dtype == dtype and last.shape == (T, H)
    assert len(states) == len(out.hidden_states) == model.config.num_hidden_layers + 1
    errs = {"last": rel_err(last, ref_states[-1])}
    errs.update({f"hidden_states[{i}]": rel_err(a, b) for i, (a, b) in enumerate(zip(states, ref_states))})
    (last * w).sum().backward()
    scale = max(g.abs().max().item() for g in ref_grads.values())
    for n, q in model.named_parameters():
        assert q.grad is not None, n
        if n.endswith("attention.self.key.bias"):
            # exactly 0 in exact arithmetic (softmax is invariant to q.b_k, the same for every key):
            # both sides are rounding noise, so check they are ~0 instead of their ratio
            errs[f"grad {n} (abs / grad scale)"] = (
                max(q.grad.abs().max().item(), ref_grads[n].abs().max().item()) / scale
            )
            continue
        errs[f"grad {n}"] = rel_err(q.grad, ref_grads[n])
    worst = max(errs, key=errs.get)
    print(
        f"\n{dtype} backend={backend} ({auto_backend(dtype) if backend == 'auto' else backend}) side={side}: "
        f"max rel err {errs[worst]:.2e} at {worst}"
    )
    assert errs[worst] <= tol, {k: v for k, v in errs.items() if v > tol}

    # unpack gives the padded layout (zeros at padding)
    padded = unpack(last.detach(), idx, B, L)
    m = mask.bool()
    assert rel_err(padded[m], out.last_hidden_state.detach()[m]) <= tol
    assert torch.count_nonzero(padded[~m]) == 0


def test_default_backend_is_compiled_where_built():
    from xlrepro.ops import _lib

    if _lib.has_kernel("varlen_attention_fwd", "CPU"):
        assert auto_backend(torch.float32) == "cpp"
    else:
        assert auto_backend(torch.float32) == "reference"


def test_given_position_ids_are_used():
    model = make_encoder()
    ids, mask = make_batch(LENGTHS)
    p, cu, mx, _ = pack_batch(ids, mask)
    with torch.no_grad():
        a = get_family("xlmr").packed_forward(model, p, cu, mx)  # the family's positions
        b = packed_encoder_forward(model, p, cu, mx, position_ids=packed_position_ids(cu, PAD))
        c = packed_encoder_forward(model, p, cu, mx, position_ids=packed_position_ids(cu, PAD) + 1)
        d = get_family("xlmr").packed_forward(model, p, cu, mx, position_ids=packed_position_ids(cu, PAD) + 1)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    assert torch.equal(c, d)
    # packing itself has no default: the positions differ between families, so the caller passes them
    with pytest.raises(TypeError, match="position_ids"):
        packed_encoder_forward(model, p, cu, mx)
    with pytest.raises(ValueError, match="position_ids are required"):
        packed_encoder_forward(model, p, cu, mx, position_ids=None)


# ---------------------------------------------------------------------------------------------
# The point of the issue: HF's naive padding-free packing (sdpa / eager) leaks across sequences
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_hf_naive_packing_is_silently_wrong(attn):
    model = make_encoder(attn=attn)
    ids, mask = make_batch(LENGTHS)
    B, L = ids.shape
    p, cu, mx, idx = pack_batch(ids, mask)
    pos = packed_position_ids(cu, PAD)
    with torch.no_grad():
        ref = model(input_ids=ids, attention_mask=mask).last_hidden_state.reshape(B * L, -1)[idx]
        # HF "padding-free": one row, all ones mask, restarting position_ids; no block mask is built
        naive = model(
            input_ids=p[None], attention_mask=torch.ones(1, p.numel(), dtype=torch.long), position_ids=pos[None]
        ).last_hidden_state[0]
        ours = forward(model, p, cu, mx)
    err_naive, err_ours = rel_err(naive, ref), rel_err(ours, ref)
    print(f"\nattn={attn}: naive one-row packing rel err {err_naive:.2e}, packed forward {err_ours:.2e}")
    assert err_naive > 1e-3  # >= 10^4 x the packed forward's error
    assert err_ours <= 1e-5

    # the leak itself: change sequence 2's tokens; sequence 0 (one token) must not move
    p2 = p.clone()
    p2[cu[2] : cu[3]] = torch.randint(3, 100, (int(cu[3] - cu[2]),), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        naive2 = model(
            input_ids=p2[None], attention_mask=torch.ones(1, p2.numel(), dtype=torch.long), position_ids=pos[None]
        ).last_hidden_state[0]
        ours2 = forward(model, p2, cu, mx)
    s0 = slice(0, int(cu[1]))
    leak = rel_err(naive2[s0], naive[s0])
    print(f"attn={attn}: changing sequence 2 moves sequence 0's naive output by {leak:.2e} (relative)")
    assert leak > 1e-3  # sequence 0 attends to sequence 2
    assert torch.equal(ours2[s0], ours[s0])  # packed: isolated


# ---------------------------------------------------------------------------------------------
# Dropout and gradient checkpointing
# ---------------------------------------------------------------------------------------------


def test_attention_dropout_is_layer_probability_in_training_and_zero_in_eval(monkeypatch):
    model = make_encoder(attention_probs_dropout_prob=0.25)
    ids, mask = make_batch(LENGTHS)
    p, cu, mx, _ = pack_batch(ids, mask)
    seen = []
    real = packing.varlen_attention

    def spy(*a, **kw):
        seen.append(kw["dropout_p"])
        return real(*a, **kw)

    monkeypatch.setattr(packing, "varlen_attention", spy)
    with torch.no_grad():
        forward(model.eval(), p, cu, mx)
        assert seen == [0.0, 0.0]
        seen.clear()
        a = forward(model.train(), p, cu, mx)
        b = forward(model, p, cu, mx)
    assert seen == [0.25] * 4
    assert not torch.equal(a, b)  # dropout is active (hidden and attention)


def test_training_mode_without_dropout_equals_eval_and_checkpointing_keeps_grads(monkeypatch):
    model = make_encoder(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    calls = []
    real = packing.varlen_attention
    monkeypatch.setattr(packing, "varlen_attention", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    ids, mask = make_batch(LENGTHS)
    p, cu, mx, _ = pack_batch(ids, mask)
    w = _loss_weights(p.numel(), 64, torch.float32)

    def grads(train, ckpt):
        model.train(train)
        if ckpt:
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.activation_checkpointing_disable()
        model.zero_grad(set_to_none=True)
        h = forward(model, p, cu, mx)
        (h * w).sum().backward()
        return h.detach(), {n: q.grad.clone() for n, q in model.named_parameters()}

    h0, g0 = grads(False, False)
    assert len(calls) == 2
    h1, g1 = grads(True, True)
    assert len(calls) == 2 + 4  # checkpointed: each layer's attention recomputed in the backward
    assert rel_err(h1, h0) <= 1e-6
    assert all(rel_err(g1[n], g0[n]) <= 1e-5 for n in g0)


def test_bad_arguments():
    model = make_encoder()
    ids, mask = make_batch(LENGTHS)
    p, cu, mx, _ = pack_batch(ids, mask)
    with pytest.raises(ValueError, match="input_ids_packed"):
        forward(model, ids, cu, mx)
    with pytest.raises(ValueError, match="int32"):
        forward(model, p, cu.long(), mx)
    with pytest.raises(ValueError, match="total_tokens"):
        forward(model, p[:-1], cu, mx)
    with pytest.raises(ValueError, match="max_seqlen"):
        forward(model, p, cu, mx - 1)
    with pytest.raises(ValueError, match="position_ids"):
        packed_encoder_forward(model, p, cu, mx, position_ids=torch.zeros(3, dtype=torch.long))


# ---------------------------------------------------------------------------------------------
# plan_packed_batches
# ---------------------------------------------------------------------------------------------


def test_plan_first_fit_decreasing_inside_one_window():
    # one window holding everything: FFD of lengths 6,5,4,3,2 into 8-token bins -> {6,2} {5,3} {4}
    lengths = [4, 6, 2, 5, 3]
    plan = plan_packed_batches(lengths, token_budget=8, window=len(lengths), seed=0, epoch=0)
    assert sorted(sorted(lengths[i] for i in b) for b in plan) == [[2, 6], [3, 5], [4]]


def test_plan_window_of_one_is_no_packing_and_over_long_example_is_alone():
    assert sorted(map(len, plan_packed_batches([3] * 6, 100, window=1, seed=1, epoch=0))) == [1] * 6
    plan = plan_packed_batches([50, 1, 1, 1], token_budget=10, window=4, seed=0, epoch=0)
    assert [0] in plan and sorted(len(b) for b in plan) == [1, 3]


def test_plan_bad_arguments():
    for kw in ({"token_budget": 0}, {"window": 0}):
        args = {"token_budget": 8, "window": 4, **kw}
        with pytest.raises(ValueError):
            plan_packed_batches([1, 2], seed=0, epoch=0, **args)
    with pytest.raises(ValueError):
        plan_packed_batches([1, -2], token_budget=8, window=4, seed=0, epoch=0)


plan_args = dict(
    lengths=st.lists(st.integers(0, 300), min_size=0, max_size=200),
    token_budget=st.integers(1, 512),
    window=st.integers(1, 64),
    seed=st.integers(0, 2**40),
    epoch=st.integers(0, 1000),
)
plan_settings = settings(
    max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)


@plan_settings
@given(**plan_args)
def test_plan_properties(lengths, token_budget, window, seed, epoch):
    plan = plan_packed_batches(lengths, token_budget, window, seed, epoch)
    flat = [i for b in plan for i in b]
    assert sorted(flat) == list(range(len(lengths)))  # every example exactly once
    assert all(b for b in plan)
    for b in plan:
        tokens = sum(lengths[i] for i in b)
        assert tokens <= token_budget or len(b) == 1, (b, tokens)
    assert plan == plan_packed_batches(list(lengths), token_budget, window, seed, epoch)  # deterministic


@plan_settings
@given(
    lengths=st.lists(st.integers(1, 100), min_size=12, max_size=200),
    token_budget=st.integers(1, 512),
    window=st.integers(1, 64),
    seed=st.integers(0, 2**40),
    epoch=st.integers(0, 1000),
)
def test_plan_differs_across_epochs(lengths, token_budget, window, seed, epoch):
    # >= 12 examples: the plan (batches and their order) is a function of two random permutations;
    # an accidental match between consecutive epochs has probability of order 1/12!
    a = plan_packed_batches(lengths, token_budget, window, seed, epoch)
    b = plan_packed_batches(lengths, token_budget, window, seed, epoch + 1)
    assert a != b


def test_plan_batches_lie_in_one_window():
    lengths = [5] * 40
    seed, epoch, window = 3, 2, 8
    import numpy as np

    order = np.random.default_rng([seed, epoch]).permutation(len(lengths)).tolist()
    win_of = {ex: r // window for r, ex in enumerate(order)}
    plan = plan_packed_batches(lengths, token_budget=1000, window=window, seed=seed, epoch=epoch)
    assert len(plan) == 5 and all(len({win_of[i] for i in b}) == 1 for b in plan)
