"""The words Vigil asks a model: the yes/no question of a target and the evidence question of a match,
in words alone or about reference images shown after the video (versioned by TEMPLATE_VERSION here and by
each target's own `targets.prompt_version`)."""

from __future__ import annotations

# The version of the templates below, stored as analyses.template_version: bump it when their words change,
# or how reference images are shown in them. (A target's own description and images are versioned apart,
# as targets.prompt_version.) 2: LLaVA-NeXT-Video shows a reference image as a one-frame video (144 tokens,
# workers.model.pooled_references), no longer through its anyres image path (1,393-2,900 tokens).
TEMPLATE_VERSION = 2
QUESTION_TEMPLATE = "Does this video show {description}? Answer yes or no."
EVIDENCE_TEMPLATE = "Describe briefly where and how {description} appears."
IMAGE_QUESTION_TEMPLATE = "Is the {description} shown in {images} in the video? Answer yes or no."
IMAGE_EVIDENCE_TEMPLATE = (
    "Describe briefly where and how the {description} shown in {images} appears in the video."
)


def _phrase(description: str) -> str:
    return description.strip().rstrip("?.!")


def _by_example(template: str, description: str, images: int) -> str:
    words = _phrase(description)
    first, _, rest = words.partition(" ")
    if rest and first.lower() in ("a", "an", "the"):  # "the a red car" reads badly
        words = rest
    return template.format(description=words, images="this image" if images == 1 else "these images")


def question_for(description: str, images: int = 0) -> str:
    """The yes/no question asked for one target with ``images`` reference images (versioned by
    TEMPLATE_VERSION and the target's own prompt_version)."""
    if images:
        return _by_example(IMAGE_QUESTION_TEMPLATE, description, images)
    return QUESTION_TEMPLATE.format(description=_phrase(description))


def evidence_question(description: str, images: int = 0) -> str:
    if images:
        return _by_example(IMAGE_EVIDENCE_TEMPLATE, description, images)
    return EVIDENCE_TEMPLATE.format(description=_phrase(description))
