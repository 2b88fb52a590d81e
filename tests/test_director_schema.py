"""The constrained schema compiles in xgrammar for the real profile's field lengths, not only the tiny ones."""

import json
import time

from animagent.backends.director import constrained_schema
from animagent.config import LimitsConfig
from animagent.tasks import (
    KeyframeDescription,
    KeyframeStyle,
    MotionDecision,
    StyleDecision,
    pick_output,
    refine_output,
    script_output,
    verdict_output,
)


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


def _strings(node):
    if isinstance(node, dict):
        if node.get("type") == "string":
            yield node
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)


def test_free_text_cannot_hold_raw_control_characters():
    """xgrammar (0.2.8, vLLM's, and 0.2.9) lets raw control characters such as \\x03 into a string bounded only by
    minLength/maxLength, which strict JSON parsing then rejects (a retry, or exit 3). Every string the decoder sees
    is an enum/const or carries a pattern, which xgrammar matches exactly (it ignores lengths beside a pattern)."""
    import xgrammar as xgr
    from xgrammar.testing import _is_grammar_accept_string as accepts

    def grammar(schema: dict):
        return xgr.Grammar.from_json_schema(json.dumps(schema), any_whitespace=False, strict_mode=True)

    limits = LimitsConfig()
    outputs = [refine_output(limits), StyleDecision, script_output(["mira"], ["hill"], limits), pick_output(3),
               verdict_output(["mira"], 56, 56), KeyframeDescription, MotionDecision, KeyframeStyle]
    for model in outputs:
        for node in _strings(constrained_schema(model, max_field_chars=2000)):
            assert "enum" in node or "const" in node or "pattern" in node, (model.__name__, node)
            assert "maxLength" not in node and "minLength" not in node or "pattern" in node, (model.__name__, node)

    schema = constrained_schema(StyleDecision, max_field_chars=16)
    reply = '{"style_class": "anime", "description": "soft %s ink"}'
    assert accepts(grammar(schema), reply % "grey")
    for control in ("\x03", "\x0c", "\n", "\x1f"):
        assert not accepts(grammar(schema), reply % control)
    # The decoder bug itself, on the same field bounded only by length: if this starts failing, xgrammar is fixed.
    bounded = {**schema, "properties": {**schema["properties"], "description": {"type": "string", "maxLength": 16}}}
    assert accepts(grammar(bounded), reply % "\x03")
