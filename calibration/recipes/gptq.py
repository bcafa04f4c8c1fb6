"""Recipe step ``gptq``: GPTQ (Frantar et al., 2022) on every linear layer of each block.

For each decoder block the Hessians ``H = 2/n sum x x^T`` of its linear layers' inputs are
collected over the calibration data (:meth:`BlockContext.observe_inputs`), then each
weight is quantized by :func:`ptq.algorithms.gptq` and written back. Layers that receive
the very same input tensor (q/k/v; gate/up; found at run time, not by name) share one
Hessian, computed once.

With ``true_sequential`` (the reference's ``--true-sequential``) the layers are quantized in
groups in the order the block calls them: attention inputs (q/k/v, GPT-2's ``c_attn``),
attention output, MLP inputs (gate/up, ``fc1``, ``c_fc``), MLP output; each group's Hessians
are collected after the earlier groups were quantized, so they see those groups' quantized
outputs. The groups come from one forward pass over the first calibration mini-batch:
layers in first-call order, grouped by shared input.

``passes="two"`` (default) runs the Hessian pass(es) above, then the runner re-runs the quantized
block for its outputs. ``passes="one"`` gets the true-sequential result (the same numbers) from a
single forward pass per block (:func:`calibration.runner.staged.run_in_stages`): every mini-batch's
forward pauses at each group's first layer until all have fed that group's Hessian and the group
is quantized, then continues with it; the forwards' ends are the quantized block's outputs.
"""
from __future__ import annotations

import dataclasses
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from calibration import distributed
from calibration.models.blocks import linear_weight, set_linear_weight
from calibration.recipes.step import WeightStep, option, register_step
from calibration.runner.context import BlockContext, LayerRecord, check_finite_input
from calibration.runner.spread import reduce_statistics
from calibration.runner.staged import run_in_stages
from ptq.algorithms.gptq import BLOCKSIZE, DAMP, gptq
from ptq.algorithms.hessian import PRODUCTS, HessianAccumulator, shrink_to_diagonal
from ptq.algorithms.result import QuantizedWeight
from ptq.algorithms.rtn import rtn
from ptq.choosers import get_qparams, legacy_qparams
from ptq.errors import PTQUserError

HESSIAN_DTYPES = {"float32": torch.float32, "float64": torch.float64}
PASSES = ("one", "two")
_RECORD_KEYS = ("damp", "dead_columns", "fallback", "reason")


def _same_tensor(a: torch.Tensor, b: torch.Tensor) -> bool:
    """``b`` is ``a``'s memory with the same layout (``a`` is kept alive, so its address is not reused)."""
    return a is b or (
        a.data_ptr() == b.data_ptr() and a.shape == b.shape and a.stride() == b.stride()
        and a.dtype == b.dtype and a.device == b.device
    )


class InputRouter:
    """Feeds linear-layer inputs to Hessian accumulators, one per distinct input tensor.

    Layers are recorded in first-call order; a layer whose input is the very tensor the
    previously called layer received shares that layer's accumulator (its ``leader``).
    With ``accumulate=False`` only the order and sharing are recorded.
    """

    def __init__(self, dtype: torch.dtype = torch.float32, accumulate: bool = True,
                 token_clip: float | None = None, products: str = "exact") -> None:
        self.dtype = dtype
        self.token_clip = token_clip
        self.products = products
        self.accumulate = accumulate
        self.order: list[str] = []
        self.leader: dict[str, str] = {}
        self.hessians: dict[str, HessianAccumulator] = {}
        self.seconds = 0.0
        self._last: tuple[str, torch.Tensor] | None = None

    def stat(self, name: str, layer: nn.Module) -> "_Feed":
        return _Feed(self, name)

    def feed(self, name: str, x: torch.Tensor) -> None:
        last = self._last
        same = last is not None and _same_tensor(last[1], x)
        if name not in self.leader:
            self.order.append(name)
            self.leader[name] = self.leader[last[0]] if same and last is not None else name
        leader = self.leader[name]
        if leader != name:
            if not (same and last is not None and self.leader[last[0]] == leader):
                raise RuntimeError(
                    f"layer {name} shared its input with {leader} in the first calibration batch but not later; "
                    "the block's forward pass is not deterministic"
                )
        elif self.accumulate:
            t0 = time.perf_counter()
            if name not in self.hessians:
                self.hessians[name] = HessianAccumulator(x.shape[-1], self.dtype, device=x.device,
                                                          token_clip=self.token_clip, products=self.products)
            self.hessians[name].update(x)
            self.seconds += time.perf_counter() - t0
        self._last = (name, x)

    def release(self) -> None:
        """Drop the reference to the last input (end of a pass)."""
        self._last = None

    def groups(self) -> list[list[str]]:
        """Layers grouped by shared input, in first-call order."""
        out: dict[str, list[str]] = {}
        for name in self.order:
            out.setdefault(self.leader[name], []).append(name)
        return list(out.values())


@dataclass
class _Feed:
    router: InputRouter
    name: str

    def update(self, x: torch.Tensor) -> None:
        self.router.feed(self.name, x)


@register_step("gptq", weight_only=True)
@dataclass
class GPTQStep(WeightStep):
    """Quantize every linear weight of each block with GPTQ.

    Args:
        bits, granularity, group_size, symmetric, include_zero: the :class:`ptq.QuantSpec`.
        blocksize, damp, act_order, static_groups: as :func:`ptq.algorithms.gptq`.
        qparams: the registered chooser of (scale, zero) (``minmax``, ``mse``, ``mse-weighted``,
            ``hqq``; :mod:`ptq.choosers`), given ``diag(H)`` as importance; ``qparams_args`` its options.
            A chooser with real-valued zeros (``hqq``) gets a float16 ``zero_dtype``.
        mse, mse_weighted: the older spelling of ``qparams="mse"`` / ``"mse-weighted"``; recipes
            with them keep loading, and they are kept in step with ``qparams`` so that
            :meth:`to_dict` spells those choosers as before (same results-store keys).
        true_sequential: quantize the block's layers group by group (see module docstring).
        hessian_dtype: ``"float32"`` (default, as the reference) or ``"float64"``.
        hessian_products: ``"exact"`` (default) or ``"bfloat16"``: the dtype of the Hessian's ``X^T X``
            matmuls (:class:`ptq.algorithms.hessian.HessianAccumulator`); the sums stay float32.
        token_clip: scale a token whose layer input is more than ``token_clip`` times its
            sequence's median token norm down to that norm before it enters ``H``
            (:func:`ptq.algorithms.hessian.clip_token_norms`; ``None``, the default, as the paper).
        diag_shrink: ``lambda`` in ``H' = (1 - lambda) H + lambda diag(H)`` before the solve
            (:func:`ptq.algorithms.hessian.shrink_to_diagonal`): ``0`` (default) is GPTQ, ``1``
            round-to-nearest; in between GPTQ over-fits the calibration text less.
    """

    blocksize: int = option(BLOCKSIZE, "GPTQ lazy-batch block size (default %(default)s)")
    damp: float = option(DAMP, "GPTQ dampening, a fraction of mean(diag H) added to diag H (default %(default)s)")
    act_order: bool = option(False, "quantize columns in order of decreasing Hessian diagonal (GPTQ act-order)")
    static_groups: bool = option(False, "with --group-size: fix every group's scale/zero before quantizing")
    true_sequential: bool = option(False, "quantize each block's layers group by group (q/k/v, out, MLP in, MLP "
                                          "out), each on inputs from the already quantized earlier groups")
    mse: bool = option(False, "deprecated: use --qparams mse (GPTQ grid search of each scale minimising |w - q|^2.4)")
    hessian_dtype: str = option("float32", "dtype of the Hessian sums and the solve: float32 (default, as the reference) "
                                         "or float64 (the sums no longer depend on their order: a torchrun run gives "
                                         "the same codes as one process)", choices=tuple(HESSIAN_DTYPES))
    token_clip: float | None = option(None, "scale tokens whose layer input norm exceeds R x their sequence's median "
                                            "down to it before they enter the Hessian (massive-activation / "
                                            "attention-sink tokens); R > 1, default off",
                                      type=float, metavar="R", omit_default=True)
    mse_weighted: bool = option(False, "deprecated: use --qparams mse-weighted (the --mse search with each input "
                                       "column's error weighted by the Hessian diagonal)", omit_default=True)
    qparams: str = field(default="minmax", metadata={"omit_default": True})  # flag --qparams: scripts/methods/rtn.py
    qparams_args: dict[str, Any] | None = field(default=None, metadata={"omit_default": True})
    diag_shrink: float = option(0.0, "use H' = (1 - LAMBDA) H + LAMBDA diag(H): the input correlations measured on "
                                     "the calibration text count only by 1 - LAMBDA, so GPTQ over-fits that text "
                                     "less (0: GPTQ, default; 1: round-to-nearest)",
                                type=float, metavar="LAMBDA", omit_default=True)
    hessian_products: str = option("exact", "the Hessian's X^T X matmuls: 'exact' (default, in --hessian-dtype) or "
                                            "'bfloat16' (native bf16 dot products, each 512 tokens' sum rounded to "
                                            "bf16 once before it joins the float32 Hessian; with --autocast bfloat16 "
                                            "on a CPU with AVX-512 BF16 / AMX)", choices=tuple(PRODUCTS),
                                   omit_default=True)
    passes: str = option("two", "forward passes per block: 'two' (Hessian pass(es), then the quantized block's re-run) "
                                "or 'one' (true-sequential groups in a single pass that ends with the quantized "
                                "block's outputs; same result as --true-sequential)", choices=PASSES,
                         omit_default=True)
    resume_attrs: ClassVar[tuple[str, ...]] = ("_stats",)  # what finalize reports, kept across a resume

    def __post_init__(self) -> None:
        super().__post_init__()
        legacy = legacy_qparams(self.mse, self.mse_weighted)
        if legacy is not None and self.qparams not in ("minmax", legacy):
            raise PTQUserError(f"mse/mse_weighted ask for qparams {legacy!r} but qparams={self.qparams!r} was given")
        self.qparams = legacy or self.qparams
        self._chooser = get_qparams(self.qparams)
        self._chooser.check_options(self.qparams_args or {})
        self.mse, self.mse_weighted = self.qparams in ("mse", "mse-weighted"), self.qparams == "mse-weighted"
        if self._chooser.float_zero:
            self.spec = dataclasses.replace(self.spec, zero_dtype="float16")
        if self.hessian_dtype not in HESSIAN_DTYPES:
            raise PTQUserError(f"hessian_dtype must be float32 or float64, got {self.hessian_dtype!r}")
        if isinstance(self.blocksize, bool) or not isinstance(self.blocksize, int) or self.blocksize < 1:
            raise PTQUserError(f"blocksize must be a positive integer, got {self.blocksize!r}")
        if not (isinstance(self.damp, (int, float)) and 0 <= self.damp <= 1):
            raise PTQUserError(f"damp must be a number from 0 to 1 (a fraction of mean(diag H)), got {self.damp!r}")
        if self.token_clip is not None and not (isinstance(self.token_clip, (int, float)) and self.token_clip > 1):
            raise PTQUserError(f"token_clip must be a number above 1 (a multiple of the median token norm), "
                             f"got {self.token_clip!r}")
        if isinstance(self.diag_shrink, bool) or not (isinstance(self.diag_shrink, (int, float))
                                                      and 0 <= self.diag_shrink <= 1):
            raise PTQUserError(f"diag_shrink must be a number from 0 to 1 (0: GPTQ, 1: round-to-nearest), "
                             f"got {self.diag_shrink!r}")
        if self.static_groups and self.granularity != "group":
            raise PTQUserError("static_groups needs granularity 'group' with a group_size")
        if self.hessian_products not in PRODUCTS:
            raise PTQUserError(f"hessian_products must be one of {', '.join(PRODUCTS)}, got {self.hessian_products!r}")
        if self.hessian_products != "exact" and self.hessian_dtype != "float32":
            raise PTQUserError("hessian_products bfloat16 rounds the sums it adds; it needs hessian_dtype float32")
        if self.passes not in PASSES:
            raise PTQUserError(f"passes must be 'one' or 'two', got {self.passes!r}")
        self._stats = _new_stats()
        self._last = True
        self._groups_cache: dict[tuple[str, ...], list[list[str]]] = {}

    def to_dict(self) -> dict[str, Any]:
        """As :meth:`Step.to_dict`; ``minmax`` / ``mse`` / ``mse-weighted`` without options are spelled
        by the ``mse`` / ``mse_weighted`` booleans alone, as before ``qparams`` existed."""
        d = super().to_dict()
        if self.qparams in ("minmax", "mse", "mse-weighted") and not self.qparams_args:
            d.pop("qparams", None)
        return d

    def initialize(self, model: nn.Module) -> None:
        super().initialize(model)
        self._stats = _new_stats()

    def link_next(self, following: Any) -> None:
        self._last = following is None  # only the last step's one pass can stand for the runner's re-run

    def process_block(self, ctx: BlockContext) -> None:
        layers = ctx.linear_layers()
        if self.passes == "one":
            return self._one_pass(ctx, layers)
        groups = self._sequential_groups(ctx, layers) if self.true_sequential else [list(layers)]
        for names in groups:
            router = InputRouter(HESSIAN_DTYPES[self.hessian_dtype], token_clip=self.token_clip,
                                 products=self.hessian_products)
            t0 = time.perf_counter()
            ctx.observe_inputs(names, router.stat, reduce=False)
            router.release()
            reduce_statistics(router.hessians)  # data-parallel: the Hessians of every rank's segments
            self._stats["seconds"]["observe"] += time.perf_counter() - t0
            self._stats["seconds"]["hessian"] += router.seconds
            accs: dict[str, HessianAccumulator | None] = {}
            for name in names:
                leader = router.leader.get(name)
                accs[name] = router.hessians.get(leader) if leader is not None else None
            router.hessians.clear()  # accs holds them now; _quantize_group frees each after its last solve
            self._quantize_group(ctx, names, layers, accs)

    def _quantize_group(self, ctx: BlockContext, names: list[str], layers: dict[str, nn.Module],
                        accs: dict[str, HessianAccumulator | None]) -> None:
        """GPTQ of a group of layers whose Hessians are complete (and reduced over the ranks).

        ``accs`` maps each layer to its Hessian (layers fed the same input share one) and should be the
        only holder of them: a Hessian is dropped after its last reader's solve, which may overwrite it
        (one ``in x in`` copy fewer at the peak).
        """
        nsamples = {n: (a.nsamples if a is not None else 0) for n, a in accs.items()}
        last_reader = {id(a): n for n, a in accs.items() if a is not None}  # the later layer wins
        # a group's layers are independent given their Hessians: round-robin over the ranks (all on
        # rank 0 in one process), each rank solves its own, then every rank takes every result
        solved = {}
        alone = distributed.world_size() == 1  # one process: each result goes in at once (no copies held)
        for i, name in enumerate(names):
            acc = accs[name]
            done = acc is not None and last_reader.get(id(acc)) == name
            if distributed.owner(i) == distributed.rank():
                solved[name] = self._solve_layer(ctx.qualified(name), layers[name], acc, overwrite_H=done)
            if alone:
                self._apply_layer(ctx, name, layers[name], solved.pop(name), nsamples[name])
            if done:  # no later layer reads this Hessian: free it before the next solve
                for n in names:
                    if accs[n] is acc:
                        accs[n] = None
            del acc
        for i, name in enumerate(names if not alone else ()):
            res = distributed.broadcast_object(solved.get(name), distributed.owner(i),
                                               f"sharing the GPTQ result of {ctx.qualified(name)}")
            self._apply_layer(ctx, name, layers[name], res, nsamples[name])

    def _one_pass(self, ctx: BlockContext, layers: dict[str, nn.Module]) -> None:
        """True-sequential GPTQ of the block in one forward pass (see the module docstring); the
        quantized block's outputs replace ``ctx.inputs`` when this is the recipe's last step."""
        groups = self._sequential_groups(ctx, layers)
        dtype = HESSIAN_DTYPES[self.hessian_dtype]
        accs: list[HessianAccumulator | None] = [None] * len(groups)
        secs = self._stats["seconds"]
        solve_before = secs["solve"]

        def on_input(k: int, x: torch.Tensor) -> None:
            check_finite_input(x, ctx.qualified(groups[k][0]))
            t = time.perf_counter()
            if accs[k] is None:
                accs[k] = HessianAccumulator(x.shape[-1], dtype, device=x.device, token_clip=self.token_clip,
                                             products=self.hessian_products)
            accs[k].update(x)
            secs["hessian"] += time.perf_counter() - t

        def after_stage(k: int) -> None:
            acc, accs[k] = accs[k], None
            reduce_statistics({"H": acc})  # data-parallel: the Hessian of every rank's segments
            self._quantize_group(ctx, groups[k], layers, dict.fromkeys(groups[k], acc))

        t0 = time.perf_counter()
        run_in_stages(ctx.block, ctx.inputs, [layers[g[0]] for g in groups], on_input, after_stage,
                      autocast=ctx.autocast, write_outputs=self._last)
        ctx.advanced = self._last
        secs["observe"] += time.perf_counter() - t0 - (secs["solve"] - solve_before)

    def _sequential_groups(self, ctx: BlockContext, layers: dict[str, nn.Module]) -> list[list[str]]:
        key = tuple(layers)
        if key not in self._groups_cache:
            probe = ctx.on_batches(1)  # which layers read the same input: one mini-batch tells
            router = InputRouter(accumulate=False)
            probe.observe_inputs(list(layers), router.stat, reduce=False)  # structure only, on this rank's batch
            router.release()
            groups = router.groups()
            unseen = [n for n in layers if n not in router.leader]
            self._groups_cache[key] = groups + ([unseen] if unseen else [])
        return self._groups_cache[key]

    def _solve_layer(self, qname: str, layer: nn.Module, acc: HessianAccumulator | None,
                     overwrite_H: bool = False) -> QuantizedWeight:
        """GPTQ of one layer on its Hessian (round-to-nearest when it saw no calibration input);
        ``overwrite_H``: the layer is the last reader of ``acc``'s Hessian, which the solve may destroy
        (one ``in x in`` copy fewer at the peak)."""
        W = linear_weight(layer)
        t0 = time.perf_counter()
        if acc is None or acc.nsamples == 0:
            warnings.warn(f"GPTQ: layer {qname} received no calibration inputs; falling back to round-to-nearest",
                          RuntimeWarning, stacklevel=2)
            res = rtn(W.float(), self.spec, *self._chooser(W.float(), self.spec, **(self.qparams_args or {})))
            res.info.update(fallback="rtn", reason="no calibration inputs")
        else:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                H = shrink_to_diagonal(acc.H, self.diag_shrink) if self.diag_shrink else acc.H
                res = gptq(W, H, self.spec, blocksize=self.blocksize, damp=self.damp, act_order=self.act_order,
                           static_groups=self.static_groups, qparams=self._chooser, qparams_args=self.qparams_args or {},
                           overwrite_H=overwrite_H or H is not acc.H)
                del H
            for w in caught:
                warnings.warn(f"layer {qname}: {w.message}", w.category, stacklevel=2)
        secs = self._stats["seconds"]
        secs["solve"] += time.perf_counter() - t0
        secs["inverse"] += res.info.pop("seconds_inverse", 0.0)
        secs["column_loop"] += res.info.pop("seconds_loop", 0.0)
        return res

    def _apply_layer(self, ctx: BlockContext, name: str, layer: nn.Module, res: QuantizedWeight,
                     nsamples: int) -> None:
        """Write ``res`` (solved here or on another rank) into the layer, its record and the step's summary."""
        qname = ctx.qualified(name)
        set_linear_weight(layer, res.weight)
        info = {k: res.info[k] for k in _RECORD_KEYS if k in res.info}
        info["nsamples"] = nsamples
        info["error_kind"] = "GPTQ loss sum (w - q)^2 / [H^-1]_qq / 2" if "fallback" not in info else "||W - Q||_F^2 (RTN)"
        if "fallback" in info:
            self._stats["fallbacks"].append(qname)
        else:
            self._stats["total_loss"] += float(res.loss or 0.0)
        self._stats["layers"] += 1
        ctx.record(name, LayerRecord(method="gptq", spec=self.spec, scale=res.scale, zero=res.zero,
                                     g_idx=res.g_idx, error=res.loss, info=info))

    def finalize(self, model: nn.Module) -> dict[str, Any]:
        """Layers quantized, RTN fallbacks, total GPTQ loss, and seconds: ``observe`` (the
        forward passes feeding the Hessians, ``hessian`` included), ``hessian`` (accumulation),
        ``solve`` (all GPTQ calls: ``inverse`` + ``column_loop`` + qparams / copies)."""
        return {**self._stats, "seconds": {k: round(v, 3) for k, v in self._stats["seconds"].items()}}


def _new_stats() -> dict[str, Any]:
    seconds = dict.fromkeys(("observe", "hessian", "inverse", "column_loop", "solve"), 0.0)
    return {"layers": 0, "fallbacks": [], "total_loss": 0.0, "seconds": seconds}
