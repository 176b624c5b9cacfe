"""`abaw_workbench.mae.MaskedAutoencoder` computes what the official MAE computes.

The reference below is an independent, plain-torch rendering of the official forward pass
(facebookresearch/mae, models_mae.py: patch embedding, sin-cos position embeddings,
argsort masking, pre-norm ViT blocks, decoder, per-patch normalised MSE on removed patches),
reading the weights by the official state-dict key names. A checkpoint saved in the official
`{"model": state_dict}` format is loaded with `load_checkpoint`; with the same noise, the
loss, prediction and mask must agree.
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from abaw_workbench.mae import MaskedAutoencoder, load_checkpoint, mae_config


# ---------------------------------------------------------------- reference implementation
def ref_sincos(dim, grid):
    "Official-style 2-D sin-cos table in NumPy: [1 + grid², dim], zero row for the class token."
    def one_d(d, pos):
        omega = 1.0 / 10000 ** (np.arange(d // 2, dtype=np.float64) / (d / 2.0))
        out = np.einsum("m,d->md", pos.reshape(-1).astype(np.float64), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)
    gw, gh = np.meshgrid(np.arange(grid, dtype=np.float32), np.arange(grid, dtype=np.float32))  # w first
    emb = np.concatenate([one_d(dim // 2, gw), one_d(dim // 2, gh)], axis=1)
    return np.concatenate([np.zeros([1, dim]), emb], axis=0)


def ref_block(sd, pre, x, heads):
    N, T, D = x.shape
    h = F.layer_norm(x, (D,), sd[pre + "norm1.weight"], sd[pre + "norm1.bias"], eps=1e-6)
    qkv = F.linear(h, sd[pre + "attn.qkv.weight"], sd[pre + "attn.qkv.bias"])
    q, k, v = qkv.reshape(N, T, 3, heads, D // heads).permute(2, 0, 3, 1, 4)
    att = ((q @ k.transpose(-2, -1)) * (D // heads) ** -0.5).softmax(dim=-1)
    o = (att @ v).transpose(1, 2).reshape(N, T, D)
    x = x + F.linear(o, sd[pre + "attn.proj.weight"], sd[pre + "attn.proj.bias"])
    h = F.layer_norm(x, (D,), sd[pre + "norm2.weight"], sd[pre + "norm2.bias"], eps=1e-6)
    h = F.linear(F.gelu(F.linear(h, sd[pre + "mlp.fc1.weight"], sd[pre + "mlp.fc1.bias"])), sd[pre + "mlp.fc2.weight"], sd[pre + "mlp.fc2.bias"])
    return x + h


def ref_forward(sd, cfg, imgs, noise, mask_ratio=0.75):
    "The official MAE forward pass (loss, pred, mask) on an official state dict."
    p, depth, ddepth = cfg["patch_size"], cfg["depth"], cfg["decoder_depth"]
    N = imgs.shape[0]
    x = F.conv2d(imgs, sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"], stride=p)
    x = x.flatten(2).transpose(1, 2)
    x = x + sd["pos_embed"][:, 1:, :]
    L, D = x.shape[1], x.shape[2]
    len_keep = int(L * (1 - mask_ratio))
    ids_shuffle = torch.argsort(noise, dim=1)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    x = torch.gather(x, 1, ids_shuffle[:, :len_keep].unsqueeze(-1).repeat(1, 1, D))
    mask = torch.ones(N, L)
    mask[:, :len_keep] = 0
    mask = torch.gather(mask, 1, ids_restore)
    cls = (sd["cls_token"] + sd["pos_embed"][:, :1, :]).expand(N, -1, -1)
    x = torch.cat([cls, x], dim=1)
    for i in range(depth): x = ref_block(sd, f"blocks.{i}.", x, cfg["num_heads"])
    x = F.layer_norm(x, (D,), sd["norm.weight"], sd["norm.bias"], eps=1e-6)
    # decoder
    x = F.linear(x, sd["decoder_embed.weight"], sd["decoder_embed.bias"])
    Dd = x.shape[2]
    mask_tokens = sd["mask_token"].repeat(N, L + 1 - x.shape[1], 1)
    x_ = torch.cat([x[:, 1:, :], mask_tokens], dim=1)
    x_ = torch.gather(x_, 1, ids_restore.unsqueeze(-1).repeat(1, 1, Dd))
    x = torch.cat([x[:, :1, :], x_], dim=1) + sd["decoder_pos_embed"]
    for i in range(ddepth): x = ref_block(sd, f"decoder_blocks.{i}.", x, cfg["decoder_num_heads"])
    x = F.layer_norm(x, (Dd,), sd["decoder_norm.weight"], sd["decoder_norm.bias"], eps=1e-6)
    pred = F.linear(x, sd["decoder_pred.weight"], sd["decoder_pred.bias"])[:, 1:, :]
    # loss
    h = imgs.shape[2] // p
    target = torch.einsum("nchpwq->nhwpqc", imgs.reshape(N, 3, h, p, h, p)).reshape(N, h * h, p * p * 3)
    if cfg["norm_pix_loss"]:
        target = (target - target.mean(dim=-1, keepdim=True)) / (target.var(dim=-1, keepdim=True) + 1.0e-6) ** 0.5
    loss = ((pred - target) ** 2).mean(dim=-1)
    loss = (loss * mask).sum() / mask.sum()
    return loss, pred, mask


# ---------------------------------------------------------------- the checks
def official_checkpoint(tmp_path, cfg, seed=0):
    "A randomised model saved in the official {'model': state_dict} format (non-trivial norms and biases)."
    torch.manual_seed(seed)
    m = MaskedAutoencoder(**cfg)
    with torch.no_grad():
        for n, p in m.named_parameters():
            if p.requires_grad: p.add_(0.05 * torch.randn_like(p))
    path = tmp_path / "checkpoint-official.pth"
    torch.save({"model": m.state_dict(), "optimizer": {}, "epoch": 799}, path)
    return path


def check_equivalence(tmp_path, cfg, n=3, mask_ratio=0.75):
    path = official_checkpoint(tmp_path, cfg)
    sd = torch.load(path, map_location="cpu", weights_only=True)["model"]
    torch.manual_seed(123)
    model = MaskedAutoencoder(**cfg)  # fresh weights, then the checkpoint
    rep = load_checkpoint(model, path, verbose=False)
    assert rep.missing == [] and rep.unexpected == [] and rep.mismatched == []
    model.eval()
    L = (cfg["img_size"] // cfg["patch_size"]) ** 2
    imgs, noise = torch.randn(n, 3, cfg["img_size"], cfg["img_size"]), torch.rand(n, L)
    with torch.no_grad():
        loss, pred, mask = model(imgs, mask_ratio, noise=noise)
        rloss, rpred, rmask = ref_forward(sd, cfg, imgs, noise, mask_ratio)
    assert torch.equal(mask, rmask)
    torch.testing.assert_close(pred, rpred, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(loss, rloss, rtol=1e-5, atol=1e-5)
    return model


@pytest.mark.parametrize("norm_pix_loss", [True, False])
def test_small_config_matches_official(tmp_path, norm_pix_loss):
    cfg = dict(img_size=64, patch_size=16, in_chans=3, embed_dim=64, depth=2, num_heads=4,
               decoder_embed_dim=32, decoder_depth=2, decoder_num_heads=4, mlp_ratio=4.0, norm_pix_loss=norm_pix_loss)
    check_equivalence(tmp_path, cfg)


def test_tiny_registry_matches_official(tmp_path):
    check_equivalence(tmp_path, mae_config("tiny", 112), mask_ratio=0.6)


def test_position_embeddings_are_the_official_table():
    m = MaskedAutoencoder(**mae_config("tiny", 112))
    torch.testing.assert_close(m.pos_embed[0], torch.from_numpy(ref_sincos(192, 7)).float())
    torch.testing.assert_close(m.decoder_pos_embed[0], torch.from_numpy(ref_sincos(128, 7)).float())


def test_official_key_names():
    "The state dict has the official MaskedAutoencoderViT key names (base: ViT-B/16, decoder 512/8/16)."
    keys = set(MaskedAutoencoder(**mae_config("tiny", 112)).state_dict())
    expected = {"cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias", "norm.weight", "norm.bias",
                "decoder_embed.weight", "decoder_embed.bias", "mask_token", "decoder_pos_embed",
                "decoder_norm.weight", "decoder_norm.bias", "decoder_pred.weight", "decoder_pred.bias"}
    for i in range(12):
        expected |= {f"blocks.{i}.{k}" for k in ("norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.qkv.bias",
                                                "attn.proj.weight", "attn.proj.bias", "norm2.weight", "norm2.bias",
                                                "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias")}
    for i in range(2): expected |= {f"decoder_blocks.{i}.{k}" for k in ("norm1.weight", "attn.qkv.weight", "mlp.fc2.bias")}
    assert expected <= keys, sorted(expected - keys)
    assert all(k.split(".")[0] in {"cls_token", "pos_embed", "patch_embed", "blocks", "norm", "decoder_embed", "mask_token",
                                   "decoder_pos_embed", "decoder_blocks", "decoder_norm", "decoder_pred"} for k in keys)


@pytest.mark.slow
def test_base_224_matches_official(tmp_path):
    "The paper's ViT-B/16 at 224 px (official mae_vit_base_patch16 configuration)."
    check_equivalence(tmp_path, mae_config("base", 224), n=2)
