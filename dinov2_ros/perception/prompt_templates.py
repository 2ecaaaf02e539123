"""The texts a class's prompt is set into (dino.txt): "a photo of a {}." and the like.

Apart from text_prompts.py so the node checks its `dinotxt.prompt_templates` parameter without the
tokenizer's packages (regex, ftfy), which only dino.txt needs.
"""

from __future__ import annotations

from collections.abc import Sequence

# one of the 80 OpenAI ImageNet templates Meta's notebook uses; each template costs one encoder run
DEFAULT_TEMPLATES = ("a photo of a {}.",)


def check_templates(templates: Sequence[str]) -> tuple[str, ...]:
    """The templates, each with exactly one `{}` (where the prompt goes) and no other braces."""
    templates = tuple(templates)
    bad = [
        t for t in templates if t.count("{}") != 1 or t.replace("{}", "").count("{") or t.replace("{}", "").count("}")
    ]
    if not templates or bad:
        raise ValueError(
            f"prompt templates must each hold one '{{}}' where the prompt goes, like 'a photo of a {{}}.', and no "
            f"other braces; got {bad or list(templates)}"
        )
    return templates
