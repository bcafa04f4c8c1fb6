"""Recipe steps ``smoothquant`` and ``w8a8`` through ``quantize_model`` on a tiny Llama."""
import pytest
import torch

from calibration.recipes import Recipe, SmoothQuantStep, W8A8Step, make_step
from calibration.runner import quantize_model
from ptq.modules.w8a8_linear import W8A8Linear


pytestmark = pytest.mark.usefixtures("one_thread")


def _logits(model, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(ids).logits


def test_smoothquant_alone_keeps_the_model(tiny_model, tiny_segments) -> None:
    model = tiny_model("llama", 2)
    ids = tiny_segments(2, 16, seed=1)
    ref = _logits(model, ids)
    res = quantize_model(model, Recipe([SmoothQuantStep(alpha=0.5, prev_linear=True)]), tiny_segments(4, 16),
                         batch_size=2, progress=False)
    torch.testing.assert_close(_logits(model, ids), ref, rtol=1e-4, atol=1e-4)
    summary = res.steps[0]
    assert summary["alphas"] == {0: 0.5, 1: 0.5}
    assert "self_attn.o_proj" in summary["unsmoothed"]
    assert res.records["model.layers.0.mlp.down_proj"].info["smoothquant"]["source"] == "mlp.up_proj"


@pytest.mark.parametrize("act", ["per-token", "static"])
def test_smoothquant_auto_then_w8a8(act: str, tiny_model, tiny_segments) -> None:
    model = tiny_model("llama", 2)
    ids = tiny_segments(2, 16, seed=1)
    ref = _logits(model, ids)
    recipe = Recipe([SmoothQuantStep(alpha="auto", act=act), W8A8Step(act=act, act_observer="minmax")])
    res = quantize_model(model, recipe, tiny_segments(4, 16), batch_size=2, progress=False)
    swapped = [m for m in model.modules() if isinstance(m, W8A8Linear)]
    assert len(swapped) == 14 and all(m.act == act for m in swapped)
    out = _logits(model, ids)
    assert float((out - ref).norm() / ref.norm()) < 0.05
    alphas = res.steps[0]["alphas"]
    assert set(alphas) == {0, 1} and all(a in [round(0.1 * i, 1) for i in range(11)] for a in alphas.values())
    rec = res.records["model.layers.1.self_attn.q_proj"].to_json()
    assert rec["method"] == "w8a8" and rec["smoothquant"]["alpha"] == alphas[1]
    assert res.steps[0]["search_mse"][0][str(alphas[0])] == min(res.steps[0]["search_mse"][0].values())


def test_smoothquant_then_gptq(tiny_model, tiny_segments) -> None:
    model = tiny_model("llama", 1)
    recipe = Recipe.from_list([{"step": "smoothquant", "alpha": 0.5}, {"step": "gptq", "bits": 8}])
    res = quantize_model(model, recipe, tiny_segments(4, 16), batch_size=2, progress=False)
    assert res.records["model.layers.0.self_attn.q_proj"].method == "gptq"
    assert res.steps[0]["alphas"] == {0: 0.5}


@pytest.mark.parametrize("bits, grid", [(8, "gptq"), (4, "absmax")])
def test_smoothquant_gptq_w8_then_w8a8_keeps_gptqs_codes(bits: int, grid: str, tiny_model, tiny_segments) -> None:
    """GPTQ W8 symmetric per-channel, then W8A8: the int8 layer holds exactly GPTQ's weight.
    A GPTQ grid that is not int8 per-channel (W4) is re-quantized on the absmax grid instead."""
    model = tiny_model("llama", 1)
    recipe = Recipe.from_list([{"step": "smoothquant", "alpha": 0.5},
                               {"step": "gptq", "bits": bits, "symmetric": True, "act_order": True},
                               {"step": "w8a8", "act": "per-token"}])
    gptq_weights = {}

    class Spy:  # GPTQ's fake-quant weights, captured when the w8a8 step starts its block
        def __init__(self, step):
            self.step, self.process_block = step, step.process_block
            step.process_block = self

        def __call__(self, ctx) -> None:
            for name, layer in ctx.linear_layers().items():
                gptq_weights[ctx.qualified(name)] = layer.weight.detach().clone()
            self.process_block(ctx)

    Spy(recipe.steps[2])
    res = quantize_model(model, recipe, tiny_segments(4, 16), batch_size=2, progress=False)
    assert len(gptq_weights) == 7
    for name, W in gptq_weights.items():
        rec = res.records[name]
        assert rec.method == "w8a8" and rec.info["weight_grid"] == grid
        assert ("smoothquant" in rec.info) == (not name.endswith("o_proj"))  # notes kept (o_proj: unsmoothed)
        layer = model.get_submodule(name)
        assert isinstance(layer, W8A8Linear)
        if grid == "gptq":
            torch.testing.assert_close(layer.dequantize_weight(), W, rtol=1e-6, atol=1e-8)
            assert int(layer.qweight.min()) >= -128 and rec.error < 1e-6
        else:
            assert rec.error > 1e-4


def test_w8a8_after_rtn_w8_keeps_its_grid_and_warns_when_a_weight_left_it(tiny_model, tiny_segments) -> None:
    model = tiny_model("llama", 1)
    recipe = Recipe.from_list([{"step": "rtn", "bits": 8, "symmetric": True}, {"step": "w8a8"}])
    moved = "model.layers.0.mlp.up_proj"

    def nudge(ctx, process_block=recipe.steps[1].process_block) -> None:
        with torch.no_grad():
            model.get_submodule(moved).weight[0, 0] += 1e-3  # off RTN's grid
        process_block(ctx)

    recipe.steps[1].process_block = nudge
    with pytest.warns(RuntimeWarning, match=f"w8a8: layer {moved}: the weight does not lie on the given 8-bit grid"):
        res = quantize_model(model, recipe, tiny_segments(4, 16), batch_size=2, progress=False)
    grids = {name: rec.info["weight_grid"] for name, rec in res.records.items()}
    assert grids.pop(moved) == "absmax" and set(grids.values()) == {"rtn"} and len(grids) == 6


def test_bad_arguments() -> None:
    for bad in (1.5, -0.1, "best"):
        with pytest.raises(ValueError, match="alpha"):
            make_step("smoothquant", alpha=bad)
    with pytest.raises(ValueError, match="act"):
        make_step("w8a8", act="token")
    with pytest.raises(ValueError, match="observer"):
        make_step("w8a8", act="static", act_observer="absmax-per-channel")
    assert not W8A8Step().needs_calibration_data and W8A8Step(act="static").needs_calibration_data


def test_auto_search_on_the_first_segments_only(tiny_model, tiny_segments) -> None:
    segs = tiny_segments(8, 16)
    calls, mse = {}, {}
    for samples in (2, 0):
        model = tiny_model("llama", 1)
        q = model.model.layers[0].self_attn.q_proj
        seen: list[int] = []
        hook = q.register_forward_pre_hook(lambda m, a: seen.append(1))
        res = quantize_model(model, Recipe([SmoothQuantStep(alpha="auto", search_samples=samples)]), segs,
                             batch_size=2, progress=False)
        hook.remove()
        calls[samples], mse[samples] = len(seen), res.steps[0]["search_mse"][0]
    # the float reference and the 11 candidates run on 1 mini-batch of 2 segments instead of 4
    assert calls[0] - calls[2] == (4 - 1) * (1 + 11)
    assert mse[2] != mse[0]  # measured on different data


def test_search_samples_is_left_out_of_the_recipe_at_its_default() -> None:
    assert "search_samples" not in SmoothQuantStep(alpha=0.5).to_dict()
    assert SmoothQuantStep(alpha="auto", search_samples=0).to_dict()["search_samples"] == 0
    with pytest.raises(ValueError, match="search_samples"):
        SmoothQuantStep(alpha="auto", search_samples=-1)


def test_token_relative_metric_weighs_every_token_alike() -> None:
    from calibration.recipes.smoothquant import _mse, token_relative_mse

    ref = torch.ones(2, 4, 8)
    ref[:, 0] *= 1000.0  # massive-activation tokens
    small_on_sink, small_elsewhere = ref.clone(), ref.clone()
    small_on_sink[:, 0] += 10.0   # 1 % relative error on the sinks
    small_elsewhere[:, 1:] += 0.1  # 10 % relative error on every other token
    assert _mse([small_on_sink], [ref]) > _mse([small_elsewhere], [ref])  # plain MSE: the sinks decide
    assert token_relative_mse([small_on_sink], [ref]) < token_relative_mse([small_elsewhere], [ref])
    torch.testing.assert_close(token_relative_mse([small_elsewhere], [ref]), 0.75 * 0.01)
    assert token_relative_mse([torch.zeros(3, 4)], [torch.zeros(3, 4)]) == 0.0


def test_search_metric_option(tiny_model, tiny_segments) -> None:
    model = tiny_model("llama", 1)
    res = quantize_model(model, Recipe([SmoothQuantStep(alpha="auto", search_metric="token-relative")]),
                         tiny_segments(4, 16), batch_size=2, progress=False)
    errors = res.steps[0]["search_mse"][0]
    assert float(min(errors, key=errors.get)) == res.steps[0]["alphas"][0]
    assert "search_metric" not in SmoothQuantStep(alpha="auto").to_dict()
    assert SmoothQuantStep(alpha="auto", search_metric="token-relative").to_dict()["search_metric"] == "token-relative"
    with pytest.raises(ValueError, match="search_metric must be one of mse, token-relative"):
        SmoothQuantStep(alpha="auto", search_metric="kl")


def test_group_scope_searches_each_group_from_the_block_alpha(tiny_model, tiny_segments) -> None:
    segs = tiny_segments(4, 16)
    block_res = quantize_model(tiny_model("llama", 1), Recipe([SmoothQuantStep(alpha="auto")]), segs,
                               batch_size=2, progress=False)
    model = tiny_model("llama", 1)
    ids = tiny_segments(2, 16, seed=1)
    ref = _logits(model, ids)
    res = quantize_model(model, Recipe([SmoothQuantStep(alpha="auto", search_scope="group")]), segs,
                         batch_size=2, progress=False)
    torch.testing.assert_close(_logits(model, ids), ref, rtol=1e-4, atol=1e-4)  # smoothing alone: same function
    alphas, search = res.steps[0]["alphas"][0], res.steps[0]["search_mse"][0]
    labels = ["input_layernorm -> self_attn.q_proj, self_attn.k_proj, self_attn.v_proj",
              "post_attention_layernorm -> mlp.gate_proj, mlp.up_proj", "mlp.up_proj -> mlp.down_proj"]
    assert list(alphas) == labels and list(search) == ["block", *labels]
    assert search["block"] == block_res.steps[0]["search_mse"][0]  # the same block search comes first
    block_alpha = block_res.steps[0]["alphas"][0]
    current = search["block"][str(block_alpha)]
    for label in labels:  # coordinate descent: never worse than where it started
        errs = search[label]
        assert float(min(errs, key=lambda a: (errs[a], float(a)))) == alphas[label]
        assert errs[str(alphas[label])] <= current
        current = errs[str(alphas[label])]
    assert res.records["model.layers.0.mlp.down_proj"].info["smoothquant"]["alpha"] == alphas[labels[2]]
    assert res.records["model.layers.0.self_attn.k_proj"].info["smoothquant"]["alpha"] == alphas[labels[0]]


def test_search_scope_option() -> None:
    assert "search_scope" not in SmoothQuantStep(alpha="auto").to_dict()
    assert SmoothQuantStep(alpha="auto", search_scope="group").to_dict()["search_scope"] == "group"
    with pytest.raises(ValueError, match="search_scope must be one of block, group"):
        SmoothQuantStep(alpha="auto", search_scope="layer")
    with pytest.raises(ValueError, match="search_scope group needs alpha auto"):
        SmoothQuantStep(alpha=0.5, search_scope="group")


def test_rms_statistic_smooths_with_each_channels_rms(tiny_model, tiny_segments) -> None:
    """alpha 1 with act_stat="rms": s_j = rms_j, so the input norm's weight is divided by the RMS of its output."""
    segs = tiny_segments(4, 16)
    model = tiny_model("llama", 1)
    norm = model.model.layers[0].input_layernorm
    before = norm.weight.detach().clone()
    seen = []
    handle = norm.register_forward_hook(lambda m, a, out: seen.append(out.detach().reshape(-1, out.shape[-1])))
    with torch.no_grad():
        model(segs)
    handle.remove()
    rms = torch.cat(seen).pow(2).mean(dim=0).sqrt()
    ids = tiny_segments(2, 16, seed=1)
    ref = _logits(model, ids)
    res = quantize_model(model, Recipe([SmoothQuantStep(alpha=1.0, act_stat="rms")]), segs, batch_size=2,
                         progress=False)
    torch.testing.assert_close(norm.weight.detach(), before / rms, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(_logits(model, ids), ref, rtol=1e-4, atol=1e-4)  # the same function
    assert res.steps[0]["act_stat"] == "rms"
    assert "act_stat" not in SmoothQuantStep().to_dict()
    assert SmoothQuantStep(act_stat="rms").to_dict()["act_stat"] == "rms"
    with pytest.raises(ValueError, match="act_stat must be one of max, rms"):
        SmoothQuantStep(act_stat="mean")
    with pytest.raises(ValueError, match="act_observer must be a per-tensor range observer"):
        W8A8Step(act="static", act_observer="rms-per-channel")


@pytest.mark.parametrize("act", ["per-token", "static"])
def test_rms_statistic_with_the_search(act: str, tiny_model, tiny_segments) -> None:
    model = tiny_model("llama", 1)
    res = quantize_model(model, Recipe([SmoothQuantStep(alpha="auto", act=act, act_stat="rms"), W8A8Step(act=act)]),
                         tiny_segments(4, 16), batch_size=2, progress=False)
    errors, alpha = res.steps[0]["search_mse"][0], res.steps[0]["alphas"][0]
    assert errors[str(alpha)] == min(errors.values()) and all(e == e and e >= 0 for e in errors.values())
    assert res.records["model.layers.0.mlp.down_proj"].method == "w8a8"


def test_search_metric_needs_auto_alpha_in_the_step_too() -> None:
    """The step, not only the CLI, refuses a search option with a fixed alpha (one validation for both)."""
    with pytest.raises(ValueError, match="search_metric token-relative needs alpha auto"):
        SmoothQuantStep(alpha=0.5, search_metric="token-relative")


def _float_model_absmax(model, segs: torch.Tensor) -> dict[str, torch.Tensor]:
    """``max|X_j|`` at every block's input norm output, from one pass of the float model (the reference's act_scales)."""
    seen: dict[str, torch.Tensor] = {}
    handles = []
    for i, layer in enumerate(model.model.layers):
        for name in ("input_layernorm", "post_attention_layernorm"):
            def hook(m, a, out, key=f"{i}.{name}"):
                amax = out.detach().abs().reshape(-1, out.shape[-1]).amax(dim=0)
                seen[key] = amax if key not in seen else torch.maximum(seen[key], amax)
            handles.append(getattr(layer, name).register_forward_hook(hook))
    with torch.no_grad():
        for row in segs.split(2):
            model(row)
    for h in handles:
        h.remove()
    return seen


def test_float_model_statistics_are_the_float_models_and_cost_one_pass_per_block(tiny_model, tiny_segments) -> None:
    """statistics="float-model": every block smoothed with max|X_j| of the float model's activations (alpha 1:
    the norm's weight divided by them exactly), each block run once (no re-run), and a later W8A8 step changes
    nothing of that; the default observes the already quantized blocks' outputs instead."""
    segs = tiny_segments(4, 16)
    model = tiny_model("llama", 3)
    absmax = _float_model_absmax(model, segs)
    norms = {f"{i}.{n}": getattr(layer, n) for i, layer in enumerate(model.model.layers)
             for n in ("input_layernorm", "post_attention_layernorm")}
    before = {k: m.weight.detach().clone() for k, m in norms.items()}
    calls = [0] * 3
    for i, layer in enumerate(model.model.layers):
        layer.register_forward_pre_hook(lambda m, a, i=i: calls.__setitem__(i, calls[i] + 1))
    recipe = Recipe([SmoothQuantStep(alpha=1.0, prev_linear=False, statistics="float-model"), W8A8Step()])
    res = quantize_model(model, recipe, segs, batch_size=2, progress=False)
    for key, m in norms.items():
        torch.testing.assert_close(m.weight.detach(), before[key] / absmax[key].clamp_min(1e-5), rtol=1e-4, atol=1e-6)
    catch, smoothing_probe = 2, 1  # catching block 0's inputs; the smoothing-group finder's one mini-batch
    assert calls == [catch + smoothing_probe + 2, 2, 2]  # one pass of the 2 mini-batches per block
    assert res.steps[0]["statistics"] == "float-model"

    sequential = tiny_model("llama", 3)
    calls[:] = [0] * 3
    for i, layer in enumerate(sequential.model.layers):
        layer.register_forward_pre_hook(lambda m, a, i=i: calls.__setitem__(i, calls[i] + 1))
    quantize_model(sequential, Recipe([SmoothQuantStep(alpha=1.0, prev_linear=False), W8A8Step()]), segs,
                   batch_size=2, progress=False)
    assert calls[1:] == [4, 2]  # the statistics pass and the re-run of the quantized block (none after the last)
    last = sequential.model.layers[2].input_layernorm.weight.detach()
    assert not torch.allclose(last, before["2.input_layernorm"] / absmax["2.input_layernorm"], rtol=1e-4, atol=1e-6)


def test_float_model_statistics_option() -> None:
    assert "statistics" not in SmoothQuantStep().to_dict()
    assert SmoothQuantStep(statistics="float-model").to_dict()["statistics"] == "float-model"
    with pytest.raises(ValueError, match="statistics must be one of sequential, float-model"):
        SmoothQuantStep(statistics="float")
