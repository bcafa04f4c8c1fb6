"""Grid config validation: one clear error per mistake; presets load."""
from __future__ import annotations

import pytest

from scripts.grid import available_presets, load_config, parse_config, plan_cells


def _base(**over):
    cfg = {"models": ["m"], "datasets": ["web-nt"], "methods": [{"label": "fp32"}]}
    cfg.update(over)
    return cfg


def test_presets_ship_and_load():
    assert {"offline", "gptq-paper"} <= set(available_presets())
    off = load_config("offline")
    assert [m.label for m in off.methods][:3] == ["fp32", "bf16", "fp16"]
    assert "GPTQ W3 g64 act-order" in [m.label for m in off.methods] and off.eval.max_windows == 40
    paper = load_config("gptq-paper")
    assert paper.calibration.seqlen == 2048 and paper.published["numbers"]["GPTQ W3"]["OPT-125M"]["wikitext2"] == 53.85


def test_yaml_config(tmp_path):
    path = tmp_path / "g.yaml"
    path.write_text("models: [m]\ndatasets: [web-nt]\nmethods:\n  - label: RTN\n    steps: [{step: rtn, bits: 4}]\n"
                    "calibration: {seeds: [0, 1]}\n")
    cfg = load_config(path)
    assert cfg.name == "g" and cfg.calibration.seeds == (0, 1)
    assert len(plan_cells(cfg)) == 1  # rtn needs no calibration data: no repeats over seeds


@pytest.mark.parametrize("over, message", [
    ({"colour": 1}, "unknown key 'colour' in the config"),
    ({"methods": [{"label": "x", "steps": [{"step": "nope"}]}]}, "unknown recipe step 'nope'"),
    ({"methods": [{"label": "x", "steps": [{"step": "rtn", "bitz": 4}]}]}, "has no argument(s) bitz"),
    ({"methods": [{"label": "x", "dtype": "int8"}]}, "dtype must be one of"),
    ({"methods": [{"label": "x"}, {"label": "x"}]}, "two methods are labelled 'x'"),
    ({"baseline": "fp16"}, "baseline 'fp16' is not a method label"),
    ({"models": []}, "non-empty list 'models'"),
    ({"calibration": {"seed": 0, "seeds": [1]}}, "'seed' or 'seeds'"),
    ({"calibration": {"nsamples": 0}}, "nsamples must be an integer >= 1"),
    ({"eval": {"max_window": 3}}, "unknown key 'max_window' in [eval]"),
    ({"datasets": [{"label": "d"}]}, "datasets[0].source must be a string"),
    ({"calibration": {"source": "web-ot:0.7,pydocs:0.2"}}, "[calibration] source: calibration mixture shares sum"),
    ({"calibration": {"source": "nope"}}, "[calibration] source: unknown dataset 'nope'"),
    ({"calibration": {"bos": "yes"}}, "[calibration] bos must be one of auto, on, off"),
])
def test_one_clear_error_per_mistake(over, message):
    with pytest.raises(ValueError) as e:
        parse_config(_base(**over))
    assert message in str(e.value)


def test_overrides_by_label():
    cfg = load_config("gptq-paper").with_overrides(models={"OPT-125M": "/x"}, datasets={"ptb": "/y.txt"})
    assert cfg.models[0].id == "/x" and cfg.datasets[1].source == "/y.txt" and cfg.datasets[1].label == "ptb"
    with pytest.raises(ValueError, match="no model labelled 'OPT-9B'"):
        cfg.with_overrides(models={"OPT-9B": "/x"})


def test_unknown_preset():
    with pytest.raises(ValueError, match="neither a config file nor a preset"):
        load_config("no-such-preset")


@pytest.mark.parametrize("name", ["offline", "gptq-ablation", "llm-int8", "smoothquant", "calibration-domain"])
def test_every_offline_preset_builds_its_recipes(name):
    from calibration.recipes import Recipe

    cfg = load_config(name)
    assert cfg.models[0].id == "smollm2-135m" and cfg.baseline == "fp32"
    for method in cfg.methods:
        if method.steps:
            Recipe.from_list([dict(s) for s in method.steps])  # every step and argument is known


def test_mixture_bos_and_in_domain_marks():
    from scripts.grid.render import domain_note

    cfg = parse_config(_base(datasets=["web-nt", "pydocs", "coreutils"],
                             methods=[{"label": "g", "steps": [{"step": "gptq", "bits": 4}]}],
                             calibration={"source": "web-ot:0.5,pydocs:0.5", "bos": "off"}))
    assert cfg.calibration.settings() == {"source": "web-ot:0.5,pydocs:0.5", "nsamples": 128, "seqlen": 512,
                                          "bos": "off"}
    assert [cfg.in_domain(d) for d in cfg.datasets] == [True, True, False]
    assert "in domain web-nt, pydocs; out of domain coreutils" in domain_note(cfg)
    default = parse_config(_base(datasets=["web-nt", "pydocs"], methods=[{"label": "g", "steps": [{"step": "gptq"}]}]))
    assert "bos" not in default.calibration.settings()  # earlier cells keep their keys
    assert "in domain web-nt; out of domain pydocs" in domain_note(default)
    assert domain_note(parse_config(_base())) == ""  # nothing calibrated, nothing to say
