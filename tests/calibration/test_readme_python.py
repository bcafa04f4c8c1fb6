"""The README's Python section runs as written (on a tiny model and a local corpus, smaller sizes)."""
from __future__ import annotations

import json
import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_python() -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) == 1, "the README has one Python example"
    return blocks[0]


def test_readme_python_is_three_lines():
    code = [line for line in readme_python().splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert len(code) <= 3, code


def test_readme_python_runs(tiny_model_dir, tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join(f"Paragraph {i}. " + " ".join(f"word{(i * 7 + j) % 97}" for j in range(80))
                                  for i in range(20)))
    swaps = {'"smollm2-135m"': repr(str(tiny_model_dir)), '"web-ot"': repr(str(corpus)),
             "nsamples=128, seqlen=512": "nsamples=4, seqlen=32", '"out/w4g64"': repr(str(tmp_path / "w4g64"))}
    code = readme_python()
    for old, new in swaps.items():
        assert old in code, f"the README example changed: {old} is gone (update this test's swaps)"
        code = code.replace(old, new)
    scope: dict = {}
    exec(compile(code, str(README), "exec"), scope)
    q = scope["q"]
    from ptq.modules import QuantLinear

    assert sum(isinstance(m, QuantLinear) for m in q.model.modules()) == 2 * 7  # packed in place
    assert len(q.records) == 2 * 7 and "gptq" in q.summary() and "14 QuantLinear" in q.summary()
    qc = json.loads((tmp_path / "w4g64" / "config.json").read_text())["quantization_config"]
    assert (qc["method"], qc["bits"], qc["group_size"]) == ("gptq", 4, 64)
    report = json.loads((tmp_path / "w4g64" / "ptq.json").read_text())
    assert report["recipe"][0]["act_order"] is True and len(report["layers"]) == 2 * 7
