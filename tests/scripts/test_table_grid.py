"""``ptq table``: a tiny grid end to end, resuming after an interruption, presets through local stand-ins."""
from __future__ import annotations

import dataclasses

import pytest

from evaluations.results_store import ResultsStore
from scripts.cli import main
from scripts.grid import load_config, plan_cells, render, run_grid


@pytest.fixture(scope="module")
def model_dir(tiny_model_dir):
    return tiny_model_dir


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    paths = []
    for k in range(2):
        path = folder / f"corpus{k}.txt"
        paras = [f"Paragraph {i}. " + " ".join(f"word{(i * 7 + j * (k + 1)) % 97}" for j in range(120))
                 for i in range(30)]
        path.write_text("\n\n".join(paras))
        paths.append(path)
    return paths


@pytest.fixture()
def config_file(tmp_path, model_dir, corpora):
    path = tmp_path / "tiny.toml"
    path.write_text(f"""
name = "tiny"
baseline = "fp32"
models = [{{label = "tiny", id = "{model_dir}"}}]
datasets = [{{label = "a", source = "{corpora[0]}"}}, {{label = "b", source = "{corpora[1]}"}}]
[calibration]
source = "{corpora[0]}"
nsamples = 4
seqlen = 32
seeds = [0, 1]
batch_size = 4
[eval]
seqlen = 32
max_windows = 3
[[methods]]
label = "fp32"
[[methods]]
label = "fp16"
dtype = "float16"
[[methods]]
label = "RTN W4 g32"
steps = [{{step = "rtn", bits = 4, granularity = "group", group_size = 32}}]
[[methods]]
label = "GPTQ W3 g32"
steps = [{{step = "gptq", bits = 3, granularity = "group", group_size = 32}}]
""")
    return path


class Stop(Exception):
    pass


def _without_times(markdown: str) -> list[str]:
    return [line.rsplit("|", 2)[0] for line in markdown.splitlines()]


def test_interrupted_grid_resumes_to_the_same_table(config_file, tmp_path):
    cfg = load_config(config_file)
    n_cells = len(plan_cells(cfg))
    assert n_cells == 2 * 3 + 2 * 2  # GPTQ repeats over 2 seeds; the others run once
    store = ResultsStore(tmp_path / "interrupted.jsonl")

    def stop_after_3(record, seen=[]):  # noqa: B006 - a counter
        seen.append(record["key"])
        if len(seen) == 3:
            raise Stop

    with pytest.raises(Stop):
        run_grid(cfg, store, on_cell=stop_after_3)
    assert len(store.done_keys()) == 3
    computed = []
    counts = run_grid(cfg, store, on_cell=lambda r: computed.append(r["key"]))
    assert counts == {"computed": n_cells - 3, "skipped": 3} and len(computed) == n_cells - 3
    assert run_grid(cfg, store) == {"computed": 0, "skipped": n_cells}

    fresh = ResultsStore(tmp_path / "fresh.jsonl")
    run_grid(cfg, fresh)
    resumed, clean = render(cfg, store, tmp_path / "out", delta=True), render(cfg, fresh, delta=True)
    # the same table but for the "quant. s" column (wall time, noisy on a shared machine)
    assert _without_times(resumed.markdown) == _without_times(clean.markdown) and resumed.missing == 0
    assert resumed.markdown.splitlines()[0].endswith("| quant. s |")
    assert " ± " in resumed.markdown  # GPTQ over 2 seeds
    assert {p.name for p in resumed.files.values()} == {"table.md", "table.csv", "table.tex", "ppl_vs_bits.png"}
    rec = next(r for r in store.records() if r["method"] == "GPTQ W3 g32")
    for field in ("ppl", "tokens", "seconds", "footprint", "quantize_s", "peak_rss_mb", "versions", "recipe"):
        assert rec[field] is not None, field
    assert rec["recipe"][0]["blocksize"] == 128  # resolved: defaults spelled out
    assert rec["steps"][0]["step"] == "gptq" and rec["steps"][0]["bits"] == 3  # ptq.json's step summaries


def test_cli_table(config_file, tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["table", str(config_file), "--out", str(out), "--quiet", "--delta"]) == 0
    stdout = capsys.readouterr().out
    assert stdout.startswith("| method | tiny a | tiny a Δ |") and "10 cells computed" in stdout
    assert (out / "results.jsonl").is_file() and (out / "table.tex").is_file()
    assert main(["table", str(config_file), "--out", str(out), "--quiet"]) == 0
    assert "0 cells computed, 10 reused" in capsys.readouterr().out


def test_gptq_paper_offline_says_it_needs_the_hub(monkeypatch, tmp_path, capsys):
    from calibration import hub_access

    monkeypatch.setattr(hub_access, "hub_reachable", lambda: False)
    assert main(["table", "gptq-paper", "--out", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "needs the Hugging Face hub" in err and "facebook/opt-125m" in err and "wikitext2" in err
    assert len(err.strip().splitlines()) == 1


def test_gptq_paper_preset_on_local_stand_ins(model_dir, corpora, monkeypatch, tmp_path):
    from calibration import hub_access

    monkeypatch.setattr(hub_access, "hub_reachable", lambda: False)
    cfg = load_config("gptq-paper").with_overrides(
        models={"OPT-125M": str(model_dir)}, datasets={"wikitext2": str(corpora[0]), "ptb": str(corpora[1]),
                                                       "c4": str(corpora[0])}, calib=str(corpora[1]))
    cfg = dataclasses.replace(cfg, models=cfg.models[:1],
                              calibration=dataclasses.replace(cfg.calibration, nsamples=4, seqlen=32),
                              eval=dataclasses.replace(cfg.eval, seqlen=32, max_windows=2))
    store = ResultsStore(tmp_path / "r.jsonl")
    assert run_grid(cfg, store)["computed"] == 5 * 3
    md = render(cfg, store, tmp_path / "out").markdown
    assert "OPT-125M wikitext2 (paper)" in md.splitlines()[0]
    assert "| GPTQ W3 |" in md and "| 53.85 |" in md


def test_autocast_rows_get_their_own_keys_and_others_keep_theirs(config_file, tmp_path):
    text = config_file.read_text()
    plain = plan_cells(load_config(config_file))
    with_amp = tmp_path / "amp.toml"
    with_amp.write_text(text + '''[[methods]]
label = "GPTQ W3 g32 bf16"
autocast = "bfloat16"
steps = [{step = "gptq", bits = 3, granularity = "group", group_size = 32}]
''')
    cells = plan_cells(load_config(with_amp))
    assert [c.key for c in cells[: len(plain)]] == [c.key for c in plain]  # unchanged by the new field
    gptq = {c.method.label: c.key for c in cells if c.seed == 0 and c.dataset.label == "a"}
    assert gptq["GPTQ W3 g32 bf16"] != gptq["GPTQ W3 g32"]
    bad = tmp_path / "bad.toml"
    bad.write_text(text + '[[methods]]\nlabel = "x"\nautocast = "int8"\nsteps = [{step = "rtn"}]\n')
    with pytest.raises(ValueError, match="autocast must be one of"):
        load_config(bad)


def test_grid_rows_carry_kl_to_float_logits_computed_once(tmp_path, model_dir, corpora, monkeypatch):
    path = tmp_path / "kl.toml"
    path.write_text(f"""
name = "kl"
baseline = "fp32"
models = [{{label = "tiny", id = "{model_dir}"}}]
datasets = [{{label = "a", source = "{corpora[0]}"}}]
[calibration]
source = "{corpora[0]}"
nsamples = 2
seqlen = 32
[eval]
seqlen = 32
max_windows = 3
[[methods]]
label = "fp32"
[[methods]]
label = "bf16"
dtype = "bfloat16"
[[methods]]
label = "RTN W3"
steps = [{{step = "rtn", bits = 3}}]
""")
    cfg = load_config(path)
    store = ResultsStore(tmp_path / "results.jsonl")
    import evaluations.reference as reference

    monkeypatch.setattr(reference, "compute_reference", lambda *a, **k: pytest.fail("a separate reference pass"))
    run_grid(cfg, store)  # the fp32 row comes first: its own evaluation pass makes the reference
    recs = {r["method"]: r for r in store.records()}
    assert len(list((tmp_path / "reference-logits").glob("*.safetensors"))) == 1  # one model x one corpus
    fp = recs["fp32"]["kl"]
    assert abs(fp["kl_mean"]) < 1e-6 and fp["top1"] == 1.0 and fp["ppl_ratio"] == pytest.approx(1.0)
    assert recs["RTN W3"]["kl"]["kl_mean"] > max(recs["bf16"]["kl"]["kl_mean"], 0.0)
    assert all(r["bos"] is False and r["ppl_se"] > 0 for r in recs.values())
    md = render(cfg, store, delta=True).markdown
    head = md.splitlines()[0]
    assert "tiny a KL" in head and "tiny a top-1 %" in head
    assert "| fp32 | " in md and "0.0000" in md and "100.0 ± 0.0" in md


def test_eval_settings_change_the_keys_only_when_set(config_file):
    cfg = load_config(config_file)
    keys = [c.key for c in plan_cells(cfg)]
    seeded = dataclasses.replace(cfg, eval=dataclasses.replace(cfg.eval, window_seed=1))
    assert all(a != b for a, b in zip(keys, [c.key for c in plan_cells(seeded)]))
    topk = dataclasses.replace(cfg, eval=dataclasses.replace(cfg.eval, kl_topk=32))
    assert keys == [c.key for c in plan_cells(topk)]  # KL settings do not change the perplexity
