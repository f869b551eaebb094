"""The MCC ViT backbone (wss_d2/modeling/backbone/vit.py, docs/mcc.md §1.1, §1.2, §14.2, §16) against timm."""
import pytest
import torch

timm = pytest.importorskip("timm")

from detectron2.config import get_cfg  # noqa: E402
from detectron2.layers import ShapeSpec  # noqa: E402
from detectron2.modeling import BACKBONE_REGISTRY, build_backbone  # noqa: E402
from timm.layers import resample_abs_pos_embed  # noqa: E402

from wss_d2 import add_wss_config  # noqa: E402
from wss_d2.modeling.backbone.vit import (  # noqa: E402
    MaskableViT,
    MaskedKeyAttention,
    interpolate_pos_embed,
    resolve_aux_layer,
)

SMALL = dict(embed_dim=32, depth=4, num_heads=4)  # same code path as DeiT-B, fast on CPU


def small_pair(seed=0, **kwargs):
    """A small MaskableViT and a timm deit_base_patch16_224 of the same shape holding its random weights."""
    torch.manual_seed(seed)
    model = MaskableViT(**SMALL, **kwargs).eval()
    ref = timm.create_model("deit_base_patch16_224", pretrained=False, **SMALL).eval()
    ref.load_state_dict(model.state_dict(), strict=True)
    return model, ref


def test_state_dict_equals_timm_deit_base():
    with torch.device("meta"):
        model = MaskableViT()
        ref = timm.create_model("deit_base_patch16_224", pretrained=False)
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in ref.state_dict().items()}
    assert ours == theirs
    assert ours["pos_embed"] == (1, 197, 768) and ours["blocks.11.mlp.fc1.weight"] == (3072, 768)
    assert ours["head.weight"] == (1000, 768) and "dist_token" not in ours
    blk = model.blocks[0]
    assert blk.attn.scale == 0.125 and blk.norm1.eps == 1e-6 and model.norm.eps == 1e-6
    assert not model.pos_embed.requires_grad and model.cls_token.requires_grad


def test_forward_equals_timm_at_224():
    model, ref = small_pair()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        out = model(x)
        tokens = ref.forward_features(x)  # (B, 1 + 196, C), final LayerNorm applied
    assert out["final"].shape == (2, 32, 14, 14) and out["cls"].shape == (2, 32)
    torch.testing.assert_close(out["cls"], tokens[:, 0], rtol=0, atol=1e-5)
    torch.testing.assert_close(out["final"].flatten(2).transpose(1, 2), tokens[:, 1:], rtol=0, atol=1e-5)


def test_aux_layer_is_relative_to_depth():
    assert resolve_aux_layer(-3, 12) == 9 and resolve_aux_layer(9, 12) == 9
    assert resolve_aux_layer(-3, 4) == 1 and resolve_aux_layer(0, 4) == 0
    with pytest.raises(ValueError, match="AUX_LAYER=4"):
        resolve_aux_layer(4, 4)
    with pytest.raises(ValueError, match="AUX_LAYER=-5"):
        resolve_aux_layer(-5, 4)
    model, ref = small_pair()  # depth 4, AUX_LAYER -3 -> block 1
    assert model.aux_index == 1
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        aux = model(x)["aux"]
        # timm's own intermediate of block 1 (NCHW, no final norm)
        (expected,) = ref.forward_intermediates(x, indices=[1], norm=False, intermediates_only=True)
        block3 = ref.forward_intermediates(x, indices=[3], norm=False, intermediates_only=True)[0]
    torch.testing.assert_close(aux, expected, rtol=0, atol=1e-5)
    assert (aux - block3).abs().max() > 1e-2  # another block gives another map


def test_attention_mask_removes_keys():
    """Masking a key = dropping that token's key and value; checked against a hand-written attention."""
    torch.manual_seed(1)
    attn = MaskedKeyAttention(16, num_heads=2, qkv_bias=True).eval()
    x = torch.randn(2, 6, 16)
    policy = torch.tensor([[0, 1, 0, 0, 1, 1], [0, 0, 0, 1, 0, 0]], dtype=torch.float32)
    with torch.no_grad():
        out = attn(x, policy=policy)
        qkv = x @ attn.qkv.weight.T + attn.qkv.bias  # (B, N, 3C)
        for b in range(2):
            keep = policy[b] == 0
            q, k, v = qkv[b].reshape(6, 3, 2, 8).permute(1, 2, 0, 3)  # each (heads, N, 8)
            k, v = k[:, keep], v[:, keep]
            weights = torch.softmax(q @ k.transpose(-1, -2) / 8 ** 0.5, dim=-1)
            expected = (weights @ v).transpose(0, 1).reshape(6, 16) @ attn.proj.weight.T + attn.proj.bias
            torch.testing.assert_close(out[b], expected, rtol=0, atol=1e-5)
        # a keep-everything mask is the unmasked attention, bit for bit
        assert torch.equal(attn(x, policy=torch.zeros(2, 6)), attn(x))
        assert (attn(x) - out).abs().max() > 1e-3


def test_mask_in_every_block_equals_dropping_tokens():
    """With masked keys in all blocks, the visible tokens (and CLS) evolve as if the masked ones were absent."""
    model, _ = small_pair(seed=2)
    x = torch.randn(2, 3, 64, 96)  # 4x6 grid, 25 tokens
    torch.manual_seed(3)
    policy = (torch.rand(2, 25) < 0.6).float()
    policy[:, 0] = 0
    with torch.no_grad():
        tokens, _ = model.embed(x)
        final, aux = model.forward_tokens(tokens, policy)
        for b in range(2):
            keep = policy[b] == 0
            alone_final, alone_aux = model.forward_tokens(tokens[b : b + 1, keep])
            torch.testing.assert_close(final[b, keep], alone_final[0], rtol=0, atol=1e-5)
            torch.testing.assert_close(aux[b, keep], alone_aux[0], rtol=0, atol=1e-5)
        out_none = model(x)
        out_zero = model(x, policy=torch.zeros(2, 25))
        out_mask = model(x, policy=policy.bool())
    for key in ("final", "aux", "cls"):
        assert torch.equal(out_none[key], out_zero[key])
    assert (out_mask["cls"] - out_none["cls"]).abs().max() > 1e-3
    # masked tokens are not removed: they are still updated as queries
    assert out_mask["final"].shape == (2, 32, 4, 6)


def test_fused_attention_and_autocast_match_explicit():
    model, _ = small_pair(seed=4)
    fused, _ = small_pair(seed=4, fused_attn=True)
    x = torch.randn(1, 3, 64, 64)
    policy = torch.zeros(1, 17)
    policy[0, 1:12] = 1
    with torch.no_grad():
        explicit = model(x, policy=policy)
        torch.testing.assert_close(fused(x, policy=policy)["cls"], explicit["cls"], rtol=0, atol=1e-5)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(x, policy=policy)
    # the 1e12 bias does not overflow: finite and close to the float32 result at bf16 precision
    assert torch.isfinite(low["cls"]).all()
    torch.testing.assert_close(low["cls"].float(), explicit["cls"], rtol=0, atol=0.1)


def test_policy_errors():
    model, _ = small_pair()
    x = torch.randn(2, 3, 32, 32)  # 2x2 grid, 5 tokens
    with pytest.raises(ValueError, match=r"\(2, 5\).*got \(2, 4\)"):
        model(x, policy=torch.zeros(2, 4))
    bad = torch.zeros(2, 5)
    bad[1, 0] = 1
    with pytest.raises(ValueError, match="CLS"):
        model(x, policy=bad)


def test_pos_embed_interpolation():
    model, _ = small_pair(seed=5)
    pos = model.pos_embed.detach()
    assert interpolate_pos_embed(pos, (14, 14), (14, 14)) is pos  # identity at the pretraining grid
    # bicubic at the same size is the identity too (the original always interpolates)
    same = torch.nn.functional.interpolate(
        pos[:, 1:].reshape(1, 14, 14, 32).permute(0, 3, 1, 2), size=(14, 14), mode="bicubic", align_corners=False
    )
    torch.testing.assert_close(same.permute(0, 2, 3, 1).reshape(1, 196, 32), pos[:, 1:], rtol=0, atol=1e-6)
    for grid in [(28, 28), (20, 14), (7, 9)]:
        new = interpolate_pos_embed(pos, (14, 14), grid)
        assert new.shape == (1, 1 + grid[0] * grid[1], 32)
        assert torch.equal(new[:, 0], pos[:, 0])  # CLS entry unchanged
        # timm's independent resampler, bicubic, no antialias, align_corners False
        ref = resample_abs_pos_embed(pos, list(grid), [14, 14], num_prefix_tokens=1, antialias=False)
        torch.testing.assert_close(new, ref, rtol=0, atol=1e-6)
    # the forward uses it: a 448x320 input gives a 28x20 map
    with torch.no_grad():
        assert model(torch.randn(1, 3, 448, 320))["final"].shape == (1, 32, 28, 20)


def test_input_not_divisible_by_patch():
    model, _ = small_pair()
    with pytest.raises(ValueError, match=r"100x64 is not a multiple of MODEL.VIT.PATCH_SIZE=16"):
        model(torch.randn(1, 3, 100, 64))
    with pytest.raises(ValueError, match="smaller than one 16x16 patch"):
        model(torch.randn(1, 3, 8, 64))
    floor, _ = small_pair(remainder="floor")
    x = torch.randn(1, 3, 100, 70)
    with torch.no_grad():
        out = floor(x)
        cropped = floor(x[..., :96, :64])
    assert out["final"].shape == (1, 32, 6, 4)  # floor(100/16) x floor(70/16)
    assert torch.equal(out["final"], cropped["final"]) and torch.equal(out["cls"], cropped["cls"])
    with pytest.raises(ValueError, match="REMAINDER"):
        MaskableViT(**SMALL, remainder="pad")


def test_build_from_config_and_load_timm_weights(tmp_path):
    cfg = get_cfg()
    add_wss_config(cfg)
    assert cfg.MODEL.VIT.DEPTH == 12 and cfg.MODEL.VIT.AUX_LAYER == -3 and cfg.MODEL.VIT.LN_EPS == 1e-6
    cfg.MODEL.BACKBONE.NAME = "build_vit_backbone"
    cfg.MODEL.VIT.EMBED_DIM, cfg.MODEL.VIT.DEPTH, cfg.MODEL.VIT.NUM_HEADS = 32, 4, 4
    cfg.MODEL.VIT.AUX_LAYER = -1
    assert "build_vit_backbone" in BACKBONE_REGISTRY
    backbone = build_backbone(cfg)
    assert isinstance(backbone, MaskableViT) and backbone.aux_index == 3 and backbone.size_divisibility == 0
    assert backbone.output_shape() == {"final": ShapeSpec(channels=32, stride=16), "aux": ShapeSpec(channels=32, stride=16)}
    assert not backbone.pos_embed.requires_grad
    cfg.MODEL.VIT.NUM_HEADS = 5
    with pytest.raises(ValueError, match="EMBED_DIM=32 is not divisible by MODEL.VIT.NUM_HEADS=5"):
        BACKBONE_REGISTRY.get("build_vit_backbone")(cfg, ShapeSpec(channels=3))

    # a timm-format checkpoint (DeiT release layout: {"model": state_dict}) loads strictly from a file
    torch.manual_seed(6)
    ref = timm.create_model("deit_base_patch16_224", pretrained=False, **SMALL).eval()
    path = tmp_path / "deit_small_test.pth"
    torch.save({"model": ref.state_dict()}, path)
    backbone.load_pretrained(str(path))
    backbone.eval()
    assert not backbone.pos_embed.requires_grad
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(backbone(x)["cls"], ref.forward_features(x)[:, 0], rtol=0, atol=1e-5)


def test_gradients_checkpointing_and_frozen_pos_embed():
    plain, _ = small_pair(seed=7)
    ckpt, _ = small_pair(seed=7, grad_checkpoint=True)
    x = torch.randn(1, 3, 32, 48)
    policy = torch.tensor([[0, 1, 0, 0, 1, 0, 1]], dtype=torch.float32)
    grads = []
    for model in (plain, ckpt):
        model.train()
        out = model(x, policy=policy)
        (out["final"].square().mean() + out["aux"].mean() + out["cls"].sum()).backward()
        grads.append(model.blocks[0].attn.qkv.weight.grad)
        assert model.pos_embed.grad is None and model.cls_token.grad is not None
    torch.testing.assert_close(grads[0], grads[1], rtol=0, atol=1e-6)


def test_weights_from_the_config_and_checkpoints_that_do_not_fit(tmp_path):
    torch.manual_seed(1)
    ref = timm.create_model("deit_base_patch16_224", pretrained=False, **SMALL).eval()
    good = tmp_path / "deit.pth"
    torch.save({"model": ref.state_dict()}, good)
    cfg = get_cfg()
    add_wss_config(cfg)
    cfg.MODEL.BACKBONE.NAME = "build_vit_backbone"
    cfg.MODEL.VIT.EMBED_DIM, cfg.MODEL.VIT.DEPTH, cfg.MODEL.VIT.NUM_HEADS = 32, 4, 4
    cfg.MODEL.VIT.WEIGHTS = str(good)
    backbone = build_backbone(cfg).eval()
    assert torch.equal(backbone.pos_embed, ref.pos_embed) and not backbone.pos_embed.requires_grad
    # a positional table for 384-px pretraining, and a patch-8 conv: key and both shapes named
    other = {k: v for k, v in ref.state_dict().items()}
    other["pos_embed"] = torch.zeros(1, 1 + 24 * 24, 32)
    other["patch_embed.proj.weight"] = torch.zeros(32, 3, 8, 8)
    bad = tmp_path / "deit_384.pth"
    torch.save(other, bad)
    with pytest.raises(ValueError, match=r"pos_embed: \(1, 577, 32\) in the file, \(1, 197, 32\) in the model") as info:
        backbone.load_pretrained(str(bad))
    assert "patch_embed.proj.weight: (32, 3, 8, 8)" in str(info.value) and str(bad) in str(info.value)
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        backbone.load_pretrained(str(tmp_path / "missing.pth"))
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot be read"):
        backbone.load_pretrained(str(corrupt))
    with pytest.raises(ValueError, match="smaller than one 16x16 patch"):
        backbone(torch.zeros(1, 3, 12, 40))
