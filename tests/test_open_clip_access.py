"""What anomclip reads of open_clip's towers (anomclip.model.blocks), on public attributes only.

The layouts are built with open_clip's own modules where the installed release has them;
``make check-deps`` runs these tests on open_clip's development branch, whose ``Attention``
replaced ``nn.MultiheadAttention``.
"""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from anomclip import AnomclipError
from anomclip.model import blocks


def reference_block(x, blk):
    """A pre-norm CLIP block written out: x + out_proj(softmax(q kᵀ/√d) v), then x + mlp(ln_2(x))."""
    w, b, heads = blk.attn.in_proj_weight, blk.attn.in_proj_bias, blk.attn.num_heads
    q, k, v = F.linear(blk.ln_1(x), w, b).chunk(3, dim=-1)
    B, N, W = q.shape
    q, k, v = (t.reshape(B, N, heads, W // heads).transpose(1, 2) for t in (q, k, v))
    a = torch.softmax(q @ k.transpose(-2, -1) / (W // heads) ** 0.5, dim=-1) @ v
    x = x + blk.attn.out_proj(a.transpose(1, 2).reshape(B, N, W))
    return x + blk.mlp(blk.ln_2(x))


def open_clip_transformer(batch_first: bool):
    from open_clip.transformer import Transformer

    torch.manual_seed(0)
    try:
        return Transformer(32, 2, 4, batch_first=batch_first)
    except TypeError:  # the development branch: batch-first only, no such argument
        if not batch_first:
            pytest.skip("this open_clip has no sequence-first transformer")
        return Transformer(32, 2, 4)


@pytest.mark.parametrize("batch_first", [True, False])
def test_run_block_takes_batch_first_tokens_whatever_layout_the_block_expects(batch_first):
    t = open_clip_transformer(batch_first).eval()
    x = torch.randn(3, 7, 32)
    with torch.no_grad():
        got = x
        for blk in t.resblocks:
            got = blocks.run_block(blk, got)
        want = x
        for blk in t.resblocks:
            want = reference_block(want, blk)
    assert blocks.is_batch_first(t.resblocks[0]) == batch_first
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("batch_first", [True, False])
def test_forward_block_is_open_clips_block_and_its_class_token_alone(batch_first):
    """The block written out (blocks.forward_block) against open_clip's own block: bit for bit
    when training (forward and gradient, with a causal mask as the text tower has), to round-off
    at inference (torch's fused attention path), and its ``cls_only`` output is the first row."""
    t = open_clip_transformer(batch_first)
    mask = torch.full((7, 7), float("-inf")).triu(1)
    x0 = torch.randn(3, 7, 32, requires_grad=True)
    for attn_mask in (None, mask):
        own, theirs = x0, x0
        for blk in t.resblocks:
            own = blocks.forward_block(blk, own, attn_mask)
            theirs = blocks.run_block(blk, theirs, attn_mask)
        assert torch.equal(own, theirs)
        g_own, = torch.autograd.grad(own.square().sum(), x0)
        g_theirs, = torch.autograd.grad(theirs.square().sum(), x0)
        assert torch.equal(g_own, g_theirs)
    t.eval()
    with torch.no_grad():
        x = x0.detach()
        want = reference_block(reference_block(x, t.resblocks[0]), t.resblocks[1])
        got = blocks.forward_block(t.resblocks[1], blocks.forward_block(t.resblocks[0], x))
        last = blocks.forward_block(t.resblocks[1], blocks.forward_block(t.resblocks[0], x), cls_only=True)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert last.shape == (3, 1, 32)
    torch.testing.assert_close(last, want[:, :1], atol=1e-5, rtol=1e-5)


def test_forward_block_runs_open_clips_own_block_where_it_is_not_plain_attention():
    """Attention dropout while training, or an attention DPAM refuses (here q/k normalisation):
    the block runs as open_clip's own, so the text tower still runs every block it ran before."""
    t = open_clip_transformer(True)
    blk = t.resblocks[0]
    x = torch.randn(2, 5, 32)
    blk.attn.dropout = 0.5  # nn.MultiheadAttention's own attribute
    torch.manual_seed(1)
    want = blocks.run_block(blk, x)
    torch.manual_seed(1)
    assert torch.equal(blocks.forward_block(blk, x), want)
    blk.attn.dropout = 0.0
    blk.attn.ln_q = nn.LayerNorm(16)  # not plain softmax(q kᵀ/√d) v: qkv_projection refuses it
    with pytest.raises(AnomclipError):
        blocks.qkv_projection(blk)
    assert torch.equal(blocks.forward_block(blk, x), blocks.run_block(blk, x))


def test_a_block_without_torch_multihead_attention_is_batch_first():
    class OwnAttention(nn.Module):  # as open_clip's development branch: its own module, no batch_first
        pass

    blk = nn.Module()
    blk.attn = OwnAttention()
    assert blocks.is_batch_first(blk)


def test_qkv_projection_is_the_packed_projection_and_refuses_other_attentions():
    t = open_clip_transformer(True)
    w, b, heads = blocks.qkv_projection(t.resblocks[0])
    assert w is t.resblocks[0].attn.in_proj_weight and b is t.resblocks[0].attn.in_proj_bias and heads == 4
    from open_clip.transformer import CustomResidualAttentionBlock

    refused = 0
    for kw in ({"qk_norm": True}, {"scale_cosine_attn": True}, {"scale_heads": True}, {"scale_attn": True}):
        try:
            blk = CustomResidualAttentionBlock(32, 4, **kw)
        except TypeError:
            continue  # this release has no such option
        with pytest.raises(AnomclipError, match="plain"):
            blocks.qkv_projection(blk)
        refused += 1
    assert refused >= 2


def test_embed_tokens_is_the_input_of_open_clips_first_block(tiny_clip, images):
    """The tokens entering block 1, run through open_clip's blocks and pooled as open_clip pools
    them, give open_clip's own ``encode_image``."""
    v = tiny_clip[0].visual.eval()
    with torch.no_grad():
        x = blocks.embed_tokens(v, images)
        for blk in v.transformer.resblocks:
            x = blocks.run_block(blk, x)
        got = v.ln_post(x[:, 0]) @ v.proj
        want = tiny_clip[0].encode_image(images)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
