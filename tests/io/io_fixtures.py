"""Small checkpoints of each MoE family, written at test time by the official
safetensors package: the families' real tensor names and config.json fields
at toy sizes, with a non-MoE layer where the family has one.

    mixtral       2 layers, bf16, sharded (model.safetensors.index.json)
    qwen3_moe     4 layers, fp32, layer 1 in mlp_only_layers (dense)
    deepseek_v3   3 layers, first_k_dense_replace 1, experts in F8_E4M3 with
                  128x128 weight_scale_inv block scales, grouped sigmoid
                  routing with correction bias, one shared expert
    nemotron_h    5 layers "ME*-E" (relu2, shared expert, correction bias)
    gpt_oss       2 layers, bf16 gate_up_proj [E,H,2I] / down_proj [E,I,H]
    gpt_oss_mxfp4 as gpt_oss with MXFP4 experts (_blocks/_scales)

Each writer returns the numpy tensors by name (bf16 etc. as ml_dtypes
arrays) and the config dict, for the reference in io_reference.py.
"""

import json
import os

import ml_dtypes
import numpy as np
from safetensors.numpy import save_file

BF16 = ml_dtypes.bfloat16
E4M3 = ml_dtypes.float8_e4m3fn


def _rand(rng, shape, scale, dtype):
    return (rng.standard_normal(shape) * scale).astype(np.float32).astype(dtype)


def _write(path, tensors, config, shards=1):
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    names = sorted(tensors)
    if shards == 1:
        save_file({n: tensors[n] for n in names},
                  os.path.join(path, "model.safetensors"),
                  metadata={"format": "pt"})
        return
    weight_map = {}
    per = (len(names) + shards - 1) // shards
    for s in range(shards):
        part = names[s * per:(s + 1) * per]
        fname = "model-%05d-of-%05d.safetensors" % (s + 1, shards)
        save_file({n: tensors[n] for n in part}, os.path.join(path, fname),
                  metadata={"format": "pt"})
        weight_map.update({n: fname for n in part})
    total = sum(t.nbytes for t in tensors.values())
    with open(os.path.join(path, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map},
                  f, indent=2)


def _attention(t, rng, prefix, H, dtype):
    for p in ("q_proj", "k_proj", "v_proj", "o_proj"):
        t[prefix + "self_attn.%s.weight" % p] = _rand(rng, (H, H), 0.05, dtype)
    t[prefix + "input_layernorm.weight"] = np.ones(H, dtype)


def mixtral(path, rng, E=8, k=2, H=64, I=32, layers=2):
    cfg = {"architectures": ["MixtralForCausalLM"], "model_type": "mixtral",
           "hidden_size": H, "intermediate_size": I, "num_hidden_layers": layers,
           "num_local_experts": E, "num_experts_per_tok": k,
           "hidden_act": "silu", "num_attention_heads": 4,
           "num_key_value_heads": 2, "rms_norm_eps": 1e-5,
           "router_aux_loss_coef": 0.02, "torch_dtype": "bfloat16"}
    t = {"model.embed_tokens.weight": _rand(rng, (16, H), 1.0, BF16)}
    for L in range(layers):
        p = "model.layers.%d." % L
        _attention(t, rng, p, H, BF16)
        m = p + "block_sparse_moe."
        t[m + "gate.weight"] = _rand(rng, (E, H), 0.3, BF16)
        for e in range(E):
            t[m + "experts.%d.w1.weight" % e] = _rand(rng, (I, H), 0.15, BF16)
            t[m + "experts.%d.w3.weight" % e] = _rand(rng, (I, H), 0.15, BF16)
            t[m + "experts.%d.w2.weight" % e] = _rand(rng, (H, I), 0.15, BF16)
    _write(path, t, cfg, shards=3)
    return t, cfg


def qwen3_moe(path, rng, E=8, k=3, H=64, I=32, layers=4):
    cfg = {"architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe",
           "hidden_size": H, "intermediate_size": 96,
           "moe_intermediate_size": I, "num_hidden_layers": layers,
           "num_experts": E, "num_experts_per_tok": k, "norm_topk_prob": True,
           "decoder_sparse_step": 1, "mlp_only_layers": [1],
           "hidden_act": "silu", "num_attention_heads": 4,
           "num_key_value_heads": 2, "head_dim": 16,
           "output_router_logits": False, "torch_dtype": "float32"}
    f32 = np.float32
    t = {}
    for L in range(layers):
        p = "model.layers.%d." % L
        _attention(t, rng, p, H, f32)
        if L == 1:
            t[p + "mlp.gate_proj.weight"] = _rand(rng, (96, H), 0.1, f32)
            t[p + "mlp.up_proj.weight"] = _rand(rng, (96, H), 0.1, f32)
            t[p + "mlp.down_proj.weight"] = _rand(rng, (H, 96), 0.1, f32)
            continue
        m = p + "mlp."
        t[m + "gate.weight"] = _rand(rng, (E, H), 0.3, f32)
        for e in range(E):
            for n, shp in (("gate_proj", (I, H)), ("up_proj", (I, H)),
                           ("down_proj", (H, I))):
                t[m + "experts.%d.%s.weight" % (e, n)] = _rand(rng, shp, 0.15,
                                                              f32)
    _write(path, t, cfg)
    return t, cfg


def _fp8_blocks(w, block=128):
    """Quantises w [R][C] to E4M3 with one fp32 scale_inv per block."""
    R, C = w.shape
    br, bc = (R + block - 1) // block, (C + block - 1) // block
    q = np.zeros((R, C), E4M3)
    s = np.zeros((br, bc), np.float32)
    for i in range(br):
        for j in range(bc):
            blk = w[i * block:(i + 1) * block, j * block:(j + 1) * block]
            amax = float(np.abs(blk).max()) or 1.0
            s[i, j] = amax / 448.0
            q[i * block:(i + 1) * block, j * block:(j + 1) * block] = \
                (blk / s[i, j]).astype(E4M3)
    return q, s


def deepseek_v3(path, rng, E=8, k=3, H=320, I=96, layers=3):
    cfg = {"architectures": ["DeepseekV3ForCausalLM"],
           "model_type": "deepseek_v3", "hidden_size": H,
           "intermediate_size": 256, "moe_intermediate_size": I,
           "num_hidden_layers": layers, "n_routed_experts": E,
           "n_shared_experts": 1, "num_experts_per_tok": k,
           "routed_scaling_factor": 2.5, "scoring_func": "sigmoid",
           "topk_method": "noaux_tc", "n_group": 4, "topk_group": 2,
           "norm_topk_prob": True, "first_k_dense_replace": 1,
           "moe_layer_freq": 1, "hidden_act": "silu",
           "num_attention_heads": 4, "kv_lora_rank": 32, "q_lora_rank": 48,
           "torch_dtype": "bfloat16",
           "quantization_config": {"activation_scheme": "dynamic",
                                   "fmt": "e4m3", "quant_method": "fp8",
                                   "weight_block_size": [128, 128]}}
    t = {}

    def fp8(name, shape, scale):
        q, s = _fp8_blocks(rng.standard_normal(shape).astype(np.float32) *
                           scale)
        t[name] = q
        t[name + "_scale_inv"] = s

    for L in range(layers):
        p = "model.layers.%d.mlp." % L
        if L == 0:
            fp8(p + "gate_proj.weight", (256, H), 0.05)
            fp8(p + "up_proj.weight", (256, H), 0.05)
            fp8(p + "down_proj.weight", (H, 256), 0.05)
            continue
        t[p + "gate.weight"] = _rand(rng, (E, H), 0.1, BF16)
        t[p + "gate.e_score_correction_bias"] = _rand(rng, (E,), 0.3,
                                                     np.float32)
        for e in range(E):
            fp8(p + "experts.%d.gate_proj.weight" % e, (I, H), 0.08)
            fp8(p + "experts.%d.up_proj.weight" % e, (I, H), 0.08)
            fp8(p + "experts.%d.down_proj.weight" % e, (H, I), 0.08)
        fp8(p + "shared_experts.gate_proj.weight", (I, H), 0.08)
        fp8(p + "shared_experts.up_proj.weight", (I, H), 0.08)
        fp8(p + "shared_experts.down_proj.weight", (H, I), 0.08)
    _write(path, t, cfg)
    return t, cfg


def nemotron_h(path, rng, E=8, k=3, H=64, I=32, Is=48):
    pattern = "ME*-E"
    cfg = {"architectures": ["NemotronHForCausalLM"],
           "model_type": "nemotron_h", "hidden_size": H,
           "intermediate_size": 128, "num_hidden_layers": len(pattern),
           "hybrid_override_pattern": pattern, "n_routed_experts": E,
           "num_experts_per_tok": k, "moe_intermediate_size": I,
           "moe_shared_expert_intermediate_size": Is, "n_shared_experts": 1,
           "n_group": 1, "topk_group": 1, "norm_topk_prob": True,
           "routed_scaling_factor": 2.5, "mlp_hidden_act": "relu2",
           "mamba_num_heads": 4, "mamba_head_dim": 16, "ssm_state_size": 16,
           "torch_dtype": "bfloat16"}
    t = {}
    for L, kind in enumerate(pattern):
        p = "backbone.layers.%d." % L
        t[p + "norm.weight"] = np.ones(H, BF16)
        m = p + "mixer."
        if kind == "M":
            t[m + "in_proj.weight"] = _rand(rng, (2 * H, H), 0.05, BF16)
            t[m + "A_log"] = _rand(rng, (4,), 0.1, np.float32)
        elif kind == "*":
            t[m + "q_proj.weight"] = _rand(rng, (H, H), 0.05, BF16)
        elif kind == "-":
            t[m + "up_proj.weight"] = _rand(rng, (128, H), 0.05, BF16)
            t[m + "down_proj.weight"] = _rand(rng, (H, 128), 0.05, BF16)
        else:
            t[m + "gate.weight"] = _rand(rng, (E, H), 0.3, BF16)
            t[m + "gate.e_score_correction_bias"] = _rand(rng, (E,), 0.3,
                                                         np.float32)
            for e in range(E):
                t[m + "experts.%d.up_proj.weight" % e] = _rand(
                    rng, (I, H), 0.2, BF16)
                t[m + "experts.%d.down_proj.weight" % e] = _rand(
                    rng, (H, I), 0.2, BF16)
            t[m + "shared_experts.up_proj.weight"] = _rand(rng, (Is, H), 0.2,
                                                           BF16)
            t[m + "shared_experts.down_proj.weight"] = _rand(rng, (H, Is),
                                                             0.2, BF16)
    _write(path, t, cfg)
    return t, cfg


FP4_VALUES = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0,
                       -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0],
                      np.float32)


def gpt_oss(path, rng, E=8, k=2, H=64, I=32, layers=2, mxfp4=False):
    cfg = {"architectures": ["GptOssForCausalLM"], "model_type": "gpt_oss",
           "hidden_size": H, "intermediate_size": I,
           "num_hidden_layers": layers, "num_local_experts": E,
           "num_experts_per_tok": k, "experts_per_token": k,
           "swiglu_limit": 7.0, "hidden_act": "silu",
           "num_attention_heads": 4, "num_key_value_heads": 2,
           "head_dim": 16, "sliding_window": 128,
           "layer_types": ["sliding_attention", "full_attention"][:layers],
           "torch_dtype": "bfloat16"}
    if mxfp4:
        cfg["quantization_config"] = {"quant_method": "mxfp4",
                                      "modules_to_not_convert": [
                                          "model.layers.*.self_attn",
                                          "model.layers.*.mlp.router",
                                          "model.embed_tokens", "lm_head"]}
    t = {}
    for L in range(layers):
        p = "model.layers.%d." % L
        _attention(t, rng, p, H, BF16)
        t[p + "self_attn.sinks"] = _rand(rng, (4,), 1.0, BF16)
        m = p + "mlp."
        t[m + "router.weight"] = _rand(rng, (E, H), 0.3, BF16)
        t[m + "router.bias"] = _rand(rng, (E,), 0.3, BF16)
        t[m + "experts.gate_up_proj_bias"] = _rand(rng, (E, 2 * I), 0.2, BF16)
        t[m + "experts.down_proj_bias"] = _rand(rng, (E, H), 0.2, BF16)
        if mxfp4:
            # blocks [E, rows, cols/32, 16] (two E2M1 codes a byte, low
            # nibble first), scales [E, rows, cols/32] E8M0 (bias 127)
            for n, rows, cols in (("gate_up_proj", 2 * I, H),
                                  ("down_proj", H, I)):
                t[m + "experts.%s_blocks" % n] = rng.integers(
                    0, 256, (E, rows, cols // 32, 16), dtype=np.uint8)
                t[m + "experts.%s_scales" % n] = rng.integers(
                    121, 125, (E, rows, cols // 32), dtype=np.uint8)
        else:
            t[m + "experts.gate_up_proj"] = _rand(rng, (E, H, 2 * I), 0.2,
                                                  BF16)
            t[m + "experts.down_proj"] = _rand(rng, (E, I, H), 0.2, BF16)
    _write(path, t, cfg)
    return t, cfg


FAMILIES = {
    "mixtral": (mixtral, 0),
    "qwen3_moe": (qwen3_moe, 2),
    "deepseek_v3": (deepseek_v3, 1),
    "nemotron_h": (nemotron_h, 1),
    "gpt_oss": (gpt_oss, 1),
    "gpt_oss_mxfp4": (lambda p, r: gpt_oss(p, r, mxfp4=True), 0),
}
