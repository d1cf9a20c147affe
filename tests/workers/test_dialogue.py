from __future__ import annotations

import numpy as np
import torch

from workers.model.dialogue import Conversation, ask, describe

VISION_MODULES = ("vision_tower", "visual", "vision_model")


def _count_vision_calls(loaded) -> tuple[list[int], object]:
    calls = [0]
    tower = next(getattr(loaded.model.model, n) for n in VISION_MODULES if hasattr(loaded.model.model, n))

    def hook(module, args, output) -> None:
        calls[0] += 1

    return calls, tower.register_forward_hook(hook)


def test_video_is_encoded_once_across_turns(loaded_models, family, clip):
    loaded = loaded_models(family)
    calls, handle = _count_vision_calls(loaded)
    try:
        chat = Conversation(loaded, clip, fps=4.0)
        first = chat.ask("What is in the video?", max_new_tokens=5)
        second = chat.ask("Is there a dog?", max_new_tokens=5)
        third = chat.ask("Where?", max_new_tokens=3)
    finally:
        handle.remove()
    assert calls[0] == 1
    assert all(isinstance(a, str) for a in (first, second, third))
    history = chat.history
    assert [m["role"] for m in history] == ["user", "assistant"] * 3
    assert history[0]["content"][0]["type"] == "video"


def test_later_turn_equals_a_fresh_full_encoding(loaded_models, clip):
    """The kept cache gives the same next answer as re-encoding the whole history from scratch."""
    loaded = loaded_models("qwen2_5_vl")
    chat = Conversation(loaded, clip, fps=4.0)
    chat.ask("What is in the video?", max_new_tokens=4)
    answer = chat.ask("Is there a dog?", max_new_tokens=4)
    from workers.model.scoring import video_inputs

    text = loaded.adapter.render(chat.history[:-1])
    inputs = video_inputs(loaded, clip, 4.0, text)
    with torch.inference_mode():
        out = loaded.model.generate(**inputs, max_new_tokens=4, min_new_tokens=4, do_sample=False)
    reference = loaded.tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    control = {c: None for c in range(32) if chr(c) not in "\n\t"} | {0x7F: None}
    assert reference.translate(control).strip().startswith(answer)


def test_streamed_pieces_make_the_answer(loaded_models, family, clip):
    loaded = loaded_models(family)
    pieces: list[str] = []
    answer = ask(loaded, clip, fps=4.0, question="What happens?", max_new_tokens=8, on_token=pieces.append)
    assert pieces
    assert "".join(pieces).strip() == answer


def test_token_bound_and_caption(loaded_models, clip):
    loaded = loaded_models("llava_next_video")
    pieces: list[str] = []
    caption = describe(loaded, clip, fps=4.0, max_new_tokens=3, on_token=pieces.append)
    assert isinstance(caption, str)
    assert len(loaded.tokenizer.encode("".join(pieces), add_special_tokens=False)) <= 3 * 4
    longer = describe(loaded, clip, fps=4.0, max_new_tokens=6)
    assert len(longer) >= len(caption)


def test_image_conversation(loaded_models):
    loaded = loaded_models("smolvlm2")
    image = np.random.default_rng(2).integers(0, 255, (64, 80, 3), dtype=np.uint8)
    assert isinstance(ask(loaded, image, fps=1.0, question="What is this?", max_new_tokens=4), str)
