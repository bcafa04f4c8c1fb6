"""Quantized checkpoints: safetensors + ``quantization_config`` (ptq format), and the GPTQ format.

* :func:`save_quantized` / :func:`load_quantized`: the ptq format (packed codes, any
  registered quantized module kind, per-module overrides);
* :func:`export_gptq`: the GPTQ checkpoint layout (AutoGPTQ / GPTQModel / transformers);
  :func:`load_quantized` also imports GPTQ-format folders;
* :func:`export_compressed_tensors` (vLLM / transformers) and :func:`export_gguf` (llama.cpp): serving
  formats, each holding only what it can hold exactly; :func:`export` picks one by name (:data:`FORMATS`);
* :func:`is_quantized_checkpoint`: whether a folder should be loaded with :func:`load_quantized`.
"""
from ptq.checkpoint.config import FORMAT_VERSION, QUANT_METHOD, build_quantization_config, parse_quantization_config
from ptq.checkpoint.compressed_tensors_format import export_compressed_tensors
from ptq.checkpoint.formats import FORMATS, export, parse_format
from ptq.checkpoint.gguf_format import export_gguf
from ptq.checkpoint.gptq_format import export_gptq
from ptq.checkpoint.load import is_quantized_checkpoint, load_quantized
from ptq.checkpoint.save import save_quantized

__all__ = [
    "FORMATS",
    "FORMAT_VERSION",
    "QUANT_METHOD",
    "build_quantization_config",
    "export",
    "export_compressed_tensors",
    "export_gguf",
    "export_gptq",
    "is_quantized_checkpoint",
    "load_quantized",
    "parse_format",
    "parse_quantization_config",
    "save_quantized",
]
