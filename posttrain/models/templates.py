"""Named chat templates, for tokenizers that have none or when a config names one.

Every template wraps assistant turns in `{% generation %}` markers, so
transformers can return the assistant-token mask that assistant-only loss
needs; the end-of-turn token sits inside the marked span so the model learns
to stop. Names follow LLaMA-Factory's `template:` values.
"""

from __future__ import annotations

import re

from posttrain.errors import ConfigError, closest

# ChatML with Qwen2.5's tool use: the tool list in the system turn inside <tools>, each call as
# <tool_call>\n{"name", "arguments"}\n</tool_call> in the assistant turn (learned, inside the generation markers),
# and consecutive tool results in one user turn, each inside <tool_response>. No default system prompt, like
# LLaMA-Factory's qwen3 templates; without tools it renders plain ChatML.
_TOOLS_INTRO = ("\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\n"
                "You are provided with function signatures within <tools></tools> XML tags:\\n<tools>")
_TOOLS_OUTRO = ("\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments "
                "within <tool_call></tool_call> XML tags:\\n<tool_call>\\n"
                '{\\"name\\": <function-name>, \\"arguments\\": <args-json-object>}\\n</tool_call><|im_end|>\\n')
CHATML = (
    "{%- if tools -%}"
    "{{- '<|im_start|>system\\n' -}}"
    "{%- if messages[0]['role'] == 'system' -%}{{- messages[0]['content'] -}}{%- endif -%}"
    "{{- '" + _TOOLS_INTRO + "' -}}"
    "{%- for tool in tools -%}{{- '\\n' + (tool | tojson) -}}{%- endfor -%}"
    "{{- '" + _TOOLS_OUTRO + "' -}}"
    "{%- endif -%}"
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'system' and tools and loop.first -%}"
    "{%- elif message['role'] == 'assistant' -%}"
    "{{- '<|im_start|>assistant\\n' -}}"
    "{%- generation -%}"
    "{{- message['content'] -}}"
    "{%- for call in message['tool_calls'] or [] -%}"
    "{%- if call['function'] is defined -%}{%- set call = call['function'] -%}{%- endif -%}"
    "{%- if message['content'] or not loop.first -%}{{- '\\n' -}}{%- endif -%}"
    "{{- '<tool_call>\\n{\"name\": \"' + call['name'] + '\", \"arguments\": ' -}}"
    "{{- call['arguments'] if call['arguments'] is string else call['arguments'] | tojson -}}"
    "{{- '}\\n</tool_call>' -}}"
    "{%- endfor -%}"
    "{{- '<|im_end|>' -}}"
    "{%- endgeneration -%}"
    "{{- '\\n' -}}"
    "{%- elif message['role'] == 'tool' -%}"
    "{%- if loop.first or loop.previtem['role'] != 'tool' -%}{{- '<|im_start|>user' -}}{%- endif -%}"
    "{{- '\\n<tool_response>\\n' + message['content'] + '\\n</tool_response>' -}}"
    "{%- if loop.last or loop.nextitem['role'] != 'tool' -%}{{- '<|im_end|>\\n' -}}{%- endif -%}"
    "{%- else -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)

LLAMA3 = (
    "{{- bos_token -}}"
    "{%- for message in messages -%}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' -}}"
    "{%- if message['role'] == 'assistant' -%}"
    "{%- generation -%}{{- message['content'] | trim + '<|eot_id|>' -}}{%- endgeneration -%}"
    "{%- else -%}"
    "{{- message['content'] | trim + '<|eot_id|>' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}{%- endif -%}"
)

# Mistral has no system role: the system text is put before the first user turn.
MISTRAL = (
    "{{- bos_token -}}"
    "{%- set ns = namespace(system='') -%}"
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'system' -%}{%- set ns.system = message['content'] + '\\n\\n' -%}"
    "{%- elif message['role'] == 'user' or message['role'] == 'tool' -%}"
    "{{- '[INST] ' + ns.system + message['content'] + ' [/INST]' -}}{%- set ns.system = '' -%}"
    "{%- else -%}"
    "{%- generation -%}{{- ' ' + message['content'] + eos_token -}}{%- endgeneration -%}"
    "{%- endif -%}"
    "{%- endfor -%}"
)

TEMPLATES = {"chatml": CHATML, "qwen": CHATML, "llama3": LLAMA3, "mistral": MISTRAL}
# Special tokens a template writes; a tokenizer without them splits them into ordinary tokens.
TEMPLATE_TOKENS = {
    "chatml": ["<|im_start|>", "<|im_end|>"],
    "qwen": ["<|im_start|>", "<|im_end|>"],
    "llama3": ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
    "mistral": ["[INST]", "[/INST]"],
}
# The token that ends an assistant turn, for generation.
STOP_TOKENS = {"chatml": "<|im_end|>", "qwen": "<|im_end|>", "llama3": "<|eot_id|>"}


def get_template(name: str) -> str:
    if name not in TEMPLATES:
        raise ConfigError(f"template: unknown chat template {name!r}; known: {', '.join(TEMPLATES)}"
                          f"{closest(name, TEMPLATES, cutoff=0.6)}")
    return TEMPLATES[name]


_GENERATION_TAG = re.compile(r"\{%-?\s*generation\s*-?%\}")


def has_generation_markers(template: str | None) -> bool:
    return bool(template and _GENERATION_TAG.search(template))
