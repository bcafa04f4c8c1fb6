"""``ptq quantize``: calibrate and quantize a model, write it with ``ptq.json``."""
from __future__ import annotations

import argparse
import sys
import time

from ptq.checkpoint.formats import FORMATS
from scripts.commands.common import add_calibration_arguments, add_model_arguments, add_quiet, info
from scripts.methods import all_methods
from scripts.methods.w8a8 import add_act_arguments
from ptq.jsonable import write_json
from scripts.output import atomic_folder, check_output, output_lock, work_folder_path
from scripts.commands.quantize_parts import build_report, make_segments, plan_line, plan_run  # noqa: F401
from scripts.preflight import check_corpus, enforce, ignored_data_flags, warn
from ptq.errors import PTQUserError
from calibration import distributed
from scripts.errors import UsageError

HELP = "quantize a model (RTN, ...) on a calibration corpus and write it with ptq.json"


def add_arguments(p: argparse.ArgumentParser, output_required: bool = True) -> None:
    from calibration.recipes import RTNStep
    from ptq.spec import GRANULARITIES

    add_model_arguments(p)
    g = p.add_argument_group("quantization")
    methods = all_methods()
    g.add_argument("--method", default="rtn", choices=sorted(methods),
                   help="algorithm (default rtn); w8a8 is naive W8A8, the same as --method rtn --bits 8 --act-bits 8")
    g.add_argument("--recipe", default=None, help="a TOML/YAML recipe file instead of --method and its flags")
    g.add_argument("--bits", type=int, default=RTNStep.bits, help="weight bits, 2 to 8 (default %(default)s)")
    g.add_argument("--granularity", default=RTNStep.granularity, choices=list(GRANULARITIES),
                   help="default %(default)s")
    g.add_argument("--group-size", type=int, default=None, help="columns per group (with --granularity group)")
    g.add_argument("--symmetric", action="store_true", help="symmetric grid (default asymmetric min-max)")
    g.add_argument("--compute", default="int", choices=["int", "fake"],
                   help="int8 methods (w8a8 or rtn --act-bits 8, smoothquant, llm-int8): int8 x int8 -> int32 "
                        "matmul, or fake-quant float matmul of the dequantized codes (default int)")
    add_act_arguments(p.add_argument_group(
        "activations", "int8 activations of --method rtn (with --act-bits 8), w8a8 and smoothquant"))
    for module in methods.values():
        module.add_arguments(p.add_argument_group(f"--method {module.NAME}"))
    add_calibration_arguments(p)
    o = p.add_argument_group("output")
    o.add_argument("--output", required=output_required, help="folder to write (must not exist unless --overwrite)")
    o.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    o.add_argument("--resume", action=argparse.BooleanOptionalAction, default=None,
                   help="finished blocks are kept in the hidden work folder .OUTPUT.ptq-work until the output is "
                        "written; a rerun of the same model, recipe and data resumes there (default; not under "
                        "torchrun); --no-resume starts over")
    o.add_argument("--stream", action=argparse.BooleanOptionalAction, default=None,
                   help="a model larger than memory: read one decoder block at a time from the model folder's "
                        "safetensors and write each quantized block to the output as it is made (--format ptq; no "
                        "resume). Default: on when the plan says the model does not fit in memory but streams; "
                        "--no-stream never")
    o.add_argument("--force", action="store_true",
                   help="run even when the plan says this machine's memory or disk cannot hold it")
    o.add_argument("--format", default="ptq", metavar="{" + ",".join((*FORMATS, "float")) + "}",
                   help="ptq: packed safetensors + quantization_config (default); gptq: the GPTQ checkpoint "
                        "layout (AutoGPTQ / GPTQModel / transformers; weight-only, channel or group); "
                        "compressed-tensors: vLLM / transformers (weight-only and W8A8; needs ptq[serve]); "
                        "gguf:Q4_0|Q4_1|Q8_0: llama.cpp (weight-only grids the block type holds exactly); "
                        "float: the fake-quantized float weights (save_pretrained)")
    add_quiet(p)


def build_recipe(args: argparse.Namespace):
    from calibration.recipes import Recipe

    if args.recipe:
        return Recipe.from_file(args.recipe)
    if args.group_size is not None and args.granularity != "group":
        args.granularity = "group"  # --group-size alone means per-group quantization
    return all_methods()[args.method].build_recipe(args)


def check_format(args: argparse.Namespace) -> None:
    """Refuse before calibrating what ``--format`` cannot hold (the exporters check the result exactly)."""
    if args.format == "float":
        return
    from ptq.checkpoint.formats import parse_format

    kind, qtype = parse_format(args.format)
    if kind == "ptq" or args.recipe:
        return
    act_order_groups = (getattr(args, "act_order", False) and args.granularity == "group"
                        and not getattr(args, "static_groups", False))
    if kind == "compressed-tensors":
        if args.method == "llm-int8":
            raise PTQUserError("--format compressed-tensors has no LLM.int8() layout (outliers in float); use --format ptq")
        if act_order_groups and args.method == "gptq":
            raise PTQUserError("--format compressed-tensors has no act-order groups (g_idx, removed in compressed-tensors "
                             "0.20); add --static-groups")
        return
    from ptq import QuantSpec
    from ptq.checkpoint.gguf_blocks import QTYPES, spec_misfit
    from ptq.checkpoint.gptq_format import check_gptq_spec
    from ptq.modules.swap import WEIGHT_ONLY_METHODS

    if args.method not in WEIGHT_ONLY_METHODS or args.act_bits is not None:
        asked = f"--method {args.method}" + (" --act-bits 8" if args.act_bits is not None else "")
        hint = "; W8A8 goes to --format compressed-tensors" if kind == "gguf" and args.method != "llm-int8" else ""
        raise PTQUserError(f"--format {args.format} holds weight-only methods ({', '.join(sorted(WEIGHT_ONLY_METHODS))}), "
                         f"not {asked}{hint}")
    if kind == "gptq":
        check_gptq_spec(QuantSpec(bits=args.bits, symmetric=args.symmetric, granularity=args.granularity,
                                  group_size=args.group_size))
        return
    qparams = getattr(args, "qparams", None) or "minmax"
    why = spec_misfit(args.bits, args.symmetric, args.granularity, args.group_size, qtype or "Q4_0", qparams)
    if why:
        fits = [t for t in QTYPES if t != qtype
                and spec_misfit(args.bits, args.symmetric, args.granularity, args.group_size, t, qparams) is None]
        hint = f"--format gguf:{' or gguf:'.join(fits)} may fit" if fits else "no GGUF type fits"
        raise PTQUserError(f"--format {args.format} cannot hold this grid exactly: {why}; {hint} "
                         "(compressed-tensors, gptq and ptq hold any weight-only grid)")
    if act_order_groups:
        raise PTQUserError(f"--format {args.format}: act-order groups (g_idx) do not cover whole blocks; add --static-groups")


def save(args: argparse.Namespace, model, tokenizer, result, report: dict, folder) -> None:
    """Write the quantized model into ``folder`` in ``--format``."""
    if args.format == "float":
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        return
    from ptq.checkpoint.formats import export
    from scripts.commands.common import source_gguf

    export(model, folder, args.format, result.records, tokenizer=tokenizer, extra=report, overwrite=True,
           tokenizer_gguf=source_gguf(args.model, model.config.vocab_size) if args.format.startswith("gguf") else None)


def run(args: argparse.Namespace) -> int:
    recipe = build_recipe(args)  # bad flags fail before anything is loaded
    check_format(args)
    if recipe.needs_calibration_data:
        from calibration.data.mixture import parse_mixture

        parse_mixture(args.calib)  # an unknown source or bad shares fail before the model is loaded
    out = check_output(args.output, args.overwrite)
    ignored = ignored_data_flags(args, recipe.needs_calibration_data)
    if ignored:
        what = f"--method {args.method}" if not args.recipe else f"recipe {args.recipe}"
        warn("quantize", f"{what} uses no calibration data, so {', '.join(ignored)} "
                         f"{'is' if len(ignored) == 1 else 'are'} ignored")
    if distributed.active():
        if args.resume:
            raise UsageError("--resume keeps a work folder of one process's block inputs, which a torchrun run "
                             "does not have (each rank holds a share); drop --resume or run one process")
        if not distributed.is_main():  # rank 0 holds the output lock and writes; the others calibrate with it
            return _quantize(args, recipe, out)
    with output_lock(out):
        return _quantize(args, recipe, out)


def _quantize(args: argparse.Namespace, recipe, out) -> int:
    from calibration.models import load_model
    from calibration.runner import quantize_model
    from calibration.runner.workdir import RunInterrupted, WorkFolder
    from scripts.commands.quantize_stream import choose_stream, quantize_streamed
    from scripts.resume import after_block_hook, exit_code, quantize_key, stop_signals

    stream, _, verdict = choose_stream(args, recipe)
    enforce(verdict, args.force, "quantize")
    info(args, plan_line(verdict))
    data = ({"calib": args.calib, "nsamples": args.nsamples, "seqlen": args.seqlen, "seed": args.seed,
             "calib_bos": args.calib_bos} if recipe.needs_calibration_data else None)
    if data:
        from transformers import AutoTokenizer

        from calibration.models.loading import resolve_source

        tokenizer = AutoTokenizer.from_pretrained(str(resolve_source(args.model)))
        check_corpus(tokenizer, args.calib, args.nsamples, args.seqlen)
    if stream:
        return quantize_streamed(args, recipe, out, data, verdict)

    t0 = time.perf_counter()
    model, tokenizer = load_model(args.model, dtype=args.dtype, device=args.device)
    t_load = time.perf_counter() - t0

    segments, bos = make_segments(args, tokenizer, data)
    info(args, f"quantizing {args.model} with {recipe.describe()}")
    if distributed.active():  # no work folder, and a signal stops the process at once (torchrun stops them all)
        info(args, f"data-parallel: {distributed.world_size()} processes share the calibration segments")
        result = quantize_model(model, recipe, segments, batch_size=args.batch_size, progress=not args.quiet,
                                autocast=args.autocast)
        return _write(args, recipe, out, model, tokenizer, result, verdict, data, bos, t_load, None)
    with stop_signals(lambda m: print(f"ptq quantize: {m}", file=sys.stderr, flush=True)) as state:
        work = WorkFolder(work_folder_path(out), quantize_key(args, recipe, data), resume=args.resume is not False,
                          after_block=after_block_hook(state))
        resume_hint = f"the finished blocks are kept in {work.path}; run the same command again to resume"
        try:  # a recipe without calibration data is quick to redo: it keeps no work folder
            result = quantize_model(model, recipe, segments, batch_size=args.batch_size, progress=not args.quiet,
                                    autocast=args.autocast, work=work if data else None)
        except RunInterrupted as stop:
            print(f"ptq quantize: stopped by {stop.reason} after block {stop.next_block}/{stop.num_blocks}; "
                  f"{resume_hint}", file=sys.stderr)
            return exit_code(state)
        except KeyboardInterrupt:
            work.remove_if_empty()
            print(f"ptq quantize: interrupted; nothing was written to {out}"
                  + (f"; {resume_hint}" if work.path.exists() else ""), file=sys.stderr)
            return 130
        except BaseException:
            work.remove_if_empty()
            raise
    return _write(args, recipe, out, model, tokenizer, result, verdict, data, bos, t_load, work)


def _write(args: argparse.Namespace, recipe, out, model, tokenizer, result, verdict, data, bos, t_load: float,
           work) -> int:
    """Rank 0 (or the only process) writes ``out`` atomically; other ranks wait until it is written."""
    if not distributed.is_main():
        distributed.barrier("waiting for rank 0 to write the checkpoint")
        return 0
    if result.resumed_at:
        info(args, f"resumed at block {result.resumed_at} from {work.path}")

    report = build_report(args, recipe, data, bos, verdict, result, t_load)
    t1 = time.perf_counter()
    try:
        with atomic_folder(out, overwrite=args.overwrite) as tmp:
            save(args, model, tokenizer, result, report, tmp)
            report["timings_s"]["save"] = round(time.perf_counter() - t1, 3)
            write_json(tmp / "ptq.json", report)
    except OSError:
        if data and work is not None and work.enabled and work.path.exists():
            print(f"ptq quantize: writing {out} failed; the finished blocks are kept in {work.path}; run the same "
                  "command again to resume", file=sys.stderr)
        raise
    if work is not None:
        work.remove()
    info(args, f"wrote {out} ({len(result.records)} layers quantized in {result.timings['quantize']:.1f} s)")
    distributed.barrier("telling the other ranks the checkpoint is written")
    return 0
