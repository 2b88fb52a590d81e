"""The constrained schema compiles in xgrammar for the real profile's field lengths, not only the tiny ones."""

import json
import time

from animagent.backends.director import constrained_schema
from animagent.config import LimitsConfig
from animagent.tasks import StyleDecision, refine_output, script_output


def _compile(schema: dict) -> float:
    import xgrammar as xgr
    from transformers import AutoTokenizer

    from animagent.weights import model_dir

    tokenizer = AutoTokenizer.from_pretrained(model_dir(_compile.root, "qwen2_5_vl_7b", "tiny"))
    info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=512)
    started = time.perf_counter()
    xgr.GrammarCompiler(info, max_threads=1).compile_json_schema(json.dumps(schema), any_whitespace=False)
    return time.perf_counter() - started


def test_long_fields_stay_compilable(tiny_model):
    tiny_model("qwen2_5_vl_7b")
    _compile.root = tiny_model.root
    limits = LimitsConfig()
    for model in (refine_output(limits), StyleDecision, script_output(["mira", "tobin"], ["hill"], limits)):
        schema = constrained_schema(model, max_field_chars=2000)  # the default profile's bound
        assert _compile(schema) < 10
        patterns = [v for v in json.dumps(schema).split('"pattern": ')[1:]]
        assert patterns and all("{1,2000}" not in p for p in patterns)


def test_short_fields_keep_their_bound_in_the_pattern():
    schema = constrained_schema(StyleDecision, max_field_chars=16)
    assert schema["properties"]["description"]["pattern"].endswith("{1,16}$")
